//! Which certificates must exist: a pure function from the loaded
//! [`Resources`] and the compile's [`Status`] (for route attachment and
//! ListenerSet acceptance) to one [`Demand`] per Secret, plus the
//! [`Problem`]s that keep a listener from getting one.
//!
//! Rules (issue 4, "Which certificates"):
//! - A Gateway annotated `portcullis.dev/issuer`, `portcullis.dev/cluster-issuer`,
//!   `cert-manager.io/issuer` or `cert-manager.io/cluster-issuer` gets
//!   certificates from that issuer for its HTTPS and TLS-Terminate listeners.
//! - A ListenerSet's terminating listeners are managed the same way, by the
//!   ListenerSet's own issuer annotation or, failing that, by its parent
//!   Gateway's. A namespaced `Issuer` is looked up in the ListenerSet's
//!   namespace either way (where its Secrets live, as cert-manager looks up
//!   an Issuer beside its Certificate). The knob annotations (duration,
//!   renew-before, key algorithm, rotation) follow the same precedence, one
//!   knob at a time. Only ListenerSets the parent admits are managed (their
//!   status is `Accepted`, or not yet only because their listeners lack the
//!   certificate this module asks for).
//! - A listener's own `tls.options` may name its issuer with the same
//!   `portcullis.dev/issuer` or `portcullis.dev/cluster-issuer` keys; that
//!   wins over the Gateway's (or ListenerSet's) annotation. (The Gateway
//!   API's CRDs refuse `mode: Terminate` with neither certificateRefs nor
//!   options, so this is how a listener without a Secret names an issuer.)
//! - A GatewayClass annotated `portcullis.dev/cluster-issuer` (or
//!   cert-manager's) names the ClusterIssuer of its Gateways' listeners that
//!   nothing else names one for.
//! - Default: a terminating listener with neither certificateRefs nor an
//!   issuer (on itself, its Gateway or ListenerSet and parent, or its class)
//!   gets one from the built-in local CA.
//! - References portcullis filled and wrote back into the API (listed in the
//!   owner's [`FILLED_ANNOTATION`]) count as no reference while they are
//!   still the one it wrote, so writing them back changes nothing here.
//! - A listener naming a Secret gets its certificate issued into that Secret
//!   (the first same-namespace reference); one without gets
//!   `<gateway>-<listener>-tls`, or `<listenerset>-<listener>-tls` in the
//!   ListenerSet's namespace ([`auto_filled_secret`]).
//! - Listeners sharing a Secret share one certificate with all their names.
//! - A wildcard hostname is kept as is when the issuer can sign it (local
//!   CA, `ca`, `selfSigned`, or ACME with a DNS-01 solver for it); otherwise,
//!   like a listener without hostname, the certificate covers the concrete
//!   hostnames of the routes attached to the listener (through its Gateway,
//!   or through its ListenerSet for a ListenerSet's listener), intersected
//!   with the listener's. A hostname is never widened.
//!
//! Listeners are named by [`ListenerId`]; [`super::status`] uses it to put
//! the `CertificateReady` condition on the right Gateway or ListenerSet.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::request::{CertRequest, KeyAlgorithm};
use crate::model::gateway::{Listener, SecretObjectReference, TlsMode};
use crate::model::issuer::IssuerSpec;
use crate::model::{Gateway, ListenerSet, ObjectKey, ObjectMeta, Resources};
use crate::status::{ConditionStatus, ConditionType, Reason, Status};
use crate::store::StoreKey;

#[path = "demand_settings.rs"]
mod settings;
pub use settings::parse_duration;
use settings::settings;

/// Annotations naming a namespaced `Issuer`.
pub const ISSUER_ANNOTATIONS: [&str; 2] = ["portcullis.dev/issuer", "cert-manager.io/issuer"];
/// Annotations naming a `ClusterIssuer`.
pub const CLUSTER_ISSUER_ANNOTATIONS: [&str; 2] = [
    "portcullis.dev/cluster-issuer",
    "cert-manager.io/cluster-issuer",
];
/// Requested certificate lifetime (Go duration, `2160h`, or days, `90d`).
pub const DURATION_ANNOTATIONS: [&str; 2] = ["portcullis.dev/duration", "cert-manager.io/duration"];
/// Renew this long before expiry.
pub const RENEW_BEFORE_ANNOTATIONS: [&str; 2] = [
    "portcullis.dev/renew-before",
    "cert-manager.io/renew-before",
];
/// Renew when this percentage (1–99) of the lifetime is left.
pub const RENEW_BEFORE_PERCENTAGE_ANNOTATIONS: [&str; 2] = [
    "portcullis.dev/renew-before-percentage",
    "cert-manager.io/renew-before-percentage",
];
/// Private key algorithm (`ECDSA`, `RSA`, `Ed25519`, `ecdsa-p384`, `rsa-4096`…).
pub const KEY_ALGORITHM_ANNOTATIONS: [&str; 2] = [
    "portcullis.dev/private-key-algorithm",
    "cert-manager.io/private-key-algorithm",
];
/// Private key size (bits for RSA, curve for ECDSA), as in cert-manager.
pub const KEY_SIZE_ANNOTATIONS: [&str; 2] = [
    "portcullis.dev/private-key-size",
    "cert-manager.io/private-key-size",
];
/// `Always` (default: a new key on every renewal) or `Never`.
pub const KEY_ROTATION_ANNOTATIONS: [&str; 2] = [
    "portcullis.dev/private-key-rotation",
    "cert-manager.io/private-key-rotation-policy",
];

/// Names a catch-all listener served by the local CA gets when no attached
/// route names a host: what a local client uses.
pub const LOCAL_FALLBACK_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Which issuer signs a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IssuerRef {
    /// The built-in local CA (standalone default).
    LocalCa,
    /// A namespaced `Issuer`.
    Issuer {
        /// Its namespace (that of the Gateway or ListenerSet).
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A `ClusterIssuer`.
    ClusterIssuer {
        /// Its name.
        name: String,
    },
}

impl IssuerRef {
    /// `local-ca`, `Issuer`, or `ClusterIssuer`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LocalCa => "local-ca",
            Self::Issuer { .. } => "Issuer",
            Self::ClusterIssuer { .. } => "ClusterIssuer",
        }
    }

    /// The issuer's name (`local-ca` for the local CA).
    pub fn name(&self) -> &str {
        match self {
            Self::LocalCa => "local-ca",
            Self::Issuer { name, .. } | Self::ClusterIssuer { name } => name,
        }
    }

    /// The spec of the issuer in `resources`, if it exists (`None` for the
    /// local CA, which has none).
    pub fn spec<'a>(&self, resources: &'a Resources) -> Option<&'a IssuerSpec> {
        match self {
            Self::LocalCa => None,
            Self::Issuer { namespace, name } => resources
                .issuers
                .iter()
                .find(|i| &i.metadata.namespace == namespace && &i.metadata.name == name)
                .map(|i| &i.spec),
            Self::ClusterIssuer { name } => resources
                .cluster_issuers
                .iter()
                .find(|i| &i.metadata.name == name)
                .map(|i| &i.spec),
        }
    }

    /// The namespace the issuer's own Secrets are read from: its own, or
    /// for a ClusterIssuer the cluster resource namespace of `resources`.
    pub fn secret_namespace<'a>(&'a self, resources: &'a Resources) -> &'a str {
        match self {
            Self::Issuer { namespace, .. } => namespace,
            Self::LocalCa | Self::ClusterIssuer { .. } => resources.cluster_resource_namespace(),
        }
    }
}

impl fmt::Display for IssuerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalCa => f.write_str("local-ca"),
            Self::Issuer { namespace, name } => write!(f, "Issuer {namespace}/{name}"),
            Self::ClusterIssuer { name } => write!(f, "ClusterIssuer {name}"),
        }
    }
}

/// One certificate that must exist, and how it is to be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// The Secret it is stored in.
    pub secret: StoreKey,
    /// Names (sorted, deduplicated; never empty).
    pub dns_names: Vec<String>,
    /// Who signs it.
    pub issuer: IssuerRef,
    /// The key algorithm.
    pub key: KeyAlgorithm,
    /// Requested lifetime, if set.
    pub duration: Option<Duration>,
    /// Renew this long before expiry, if set.
    pub renew_before: Option<Duration>,
    /// Renew when this percentage of the lifetime is left, if set.
    pub renew_before_percentage: Option<u32>,
    /// Whether a renewal makes a new key (default) or reuses the stored one.
    pub rotate_key: bool,
    /// ACME profile from the issuer.
    pub profile: Option<String>,
    /// The listeners served by it, as [`ListenerId`] text.
    pub listeners: Vec<String>,
    /// Whether the Secret name was made up for listeners naming none.
    pub auto_filled: bool,
}

impl Demand {
    /// The request an issuer receives for this demand.
    pub fn request(&self, replaces: Option<String>) -> CertRequest {
        CertRequest {
            secret: self.secret.clone(),
            dns_names: self.dns_names.clone(),
            key: self.key,
            duration: self.duration,
            profile: self.profile.clone(),
            replaces,
        }
    }

    /// What, if changed, makes the stored certificate wrong: issuer, names,
    /// key algorithm, lifetime and profile. Stable text, kept in the state
    /// file to notice configuration changes across restarts.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.issuer,
            self.dns_names.join(","),
            self.key,
            self.duration.map_or(0, |d| d.as_secs()),
            self.profile.as_deref().unwrap_or("")
        )
    }
}

/// Why a listener that should have a managed certificate has none (or a
/// narrower one than its hostname).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The listener, as [`ListenerId`] text.
    pub listener: String,
    /// The Secret concerned, if known.
    pub secret: Option<StoreKey>,
    /// What is wrong.
    pub message: String,
}

/// Everything [`demand`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demands {
    /// One per Secret, sorted by Secret.
    pub certificates: Vec<Demand>,
    /// Listeners that could not be served as asked.
    pub problems: Vec<Problem>,
}

/// The Secret name given to a listener with no certificateRefs: `owner` is
/// the Gateway, or the ListenerSet that declares the listener.
pub fn auto_filled_secret(owner: &str, listener: &str) -> String {
    format!("{owner}-{listener}-tls")
}

/// Annotation on a Gateway or ListenerSet listing (comma-separated) the
/// listeners whose `certificateRefs` portcullis filled and wrote back: such
/// a listener stays managed as if it named no Secret, as long as its
/// reference is still the one portcullis wrote.
pub const FILLED_ANNOTATION: &str = "portcullis.dev/filled-certificate-refs";

/// The listeners `annotations` say portcullis filled.
pub fn filled_listeners(annotations: &BTreeMap<String, String>) -> Vec<&str> {
    annotations
        .get(FILLED_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `refs` is exactly the one reference portcullis fills listener
/// `listener` of `owner` with.
fn is_filled_ref(refs: &[SecretObjectReference], owner: &str, listener: &str) -> bool {
    match refs {
        [r] => {
            r.namespace.is_none()
                && r.group.as_deref().unwrap_or_default().is_empty()
                && r.kind.as_deref().unwrap_or("Secret") == "Secret"
                && r.name == auto_filled_secret(owner, listener)
        }
        _ => false,
    }
}

/// The kind of object that declares a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerKind {
    /// A Gateway's own listener.
    Gateway,
    /// A listener a ListenerSet attaches to its parent Gateway.
    ListenerSet,
}

impl OwnerKind {
    /// The kind as in manifests and status (`Gateway`, `ListenerSet`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "Gateway",
            Self::ListenerSet => "ListenerSet",
        }
    }
}

/// Names a listener in [`Demand::listeners`] and [`Problem::listener`]:
/// `namespace/gateway/listener` for a Gateway's own listener (the form
/// `/status` has always shown) and `ListenerSet namespace/set/listener` for a
/// ListenerSet's ([`ListenerId::parse`] reads both back).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId {
    /// Gateway or ListenerSet.
    pub kind: OwnerKind,
    /// Namespace of the owner.
    pub namespace: String,
    /// Name of the owner.
    pub owner: String,
    /// The listener's section name.
    pub listener: String,
}

impl ListenerId {
    /// Reads the text [`fmt::Display`] writes; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = match text.strip_prefix("ListenerSet ") {
            Some(rest) => (OwnerKind::ListenerSet, rest),
            None => (OwnerKind::Gateway, text),
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(namespace), Some(owner), Some(listener)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            kind,
            namespace: namespace.to_string(),
            owner: owner.to_string(),
            listener: listener.to_string(),
        })
    }
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == OwnerKind::ListenerSet {
            f.write_str("ListenerSet ")?;
        }
        write!(f, "{}/{}/{}", self.namespace, self.owner, self.listener)
    }
}

/// A terminating listener whose certificate portcullis manages.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedListener<'a> {
    /// The Gateway: the listener's own, or its ListenerSet's parent.
    pub gateway: &'a Gateway,
    /// The ListenerSet declaring the listener, if it is not the Gateway's.
    pub listener_set: Option<&'a ListenerSet>,
    /// The listener.
    pub listener: &'a Listener,
    /// Who signs its certificate.
    pub issuer: IssuerRef,
    /// Where its certificate is kept.
    pub secret: StoreKey,
    /// Whether `secret` was made up (the listener names no Secret).
    pub auto_filled: bool,
}

impl ManagedListener<'_> {
    /// The kind of object declaring the listener.
    pub fn owner_kind(&self) -> OwnerKind {
        match self.listener_set {
            Some(_) => OwnerKind::ListenerSet,
            None => OwnerKind::Gateway,
        }
    }

    /// Metadata of the object declaring the listener.
    pub fn owner(&self) -> &ObjectMeta {
        match self.listener_set {
            Some(set) => &set.metadata,
            None => &self.gateway.metadata,
        }
    }

    /// The listener's name in reports.
    pub fn id(&self) -> ListenerId {
        let owner = self.owner();
        ListenerId {
            kind: self.owner_kind(),
            namespace: owner.namespace.clone(),
            owner: owner.name.clone(),
            listener: self.listener.name.clone(),
        }
    }

    /// Annotation maps to read knobs from, first match wins: the
    /// ListenerSet's own, then its parent Gateway's.
    fn annotation_layers(&self) -> Vec<&BTreeMap<String, String>> {
        let mut layers = Vec::with_capacity(2);
        if let Some(set) = self.listener_set {
            layers.push(&set.metadata.annotations);
        }
        layers.push(&self.gateway.metadata.annotations);
        layers
    }
}

/// The issuer a Gateway's annotations name, if any.
pub fn annotated_issuer(gateway: &Gateway) -> Option<IssuerRef> {
    issuer_in(&gateway.metadata.annotations, &gateway.metadata.namespace)
}

/// The class-wide default: a ClusterIssuer named by the Gateway's
/// GatewayClass's annotation (`portcullis.dev/cluster-issuer` or
/// cert-manager's), for listeners nothing else names an issuer for.
pub fn class_issuer(resources: &Resources, gateway: &Gateway) -> Option<IssuerRef> {
    let class = resources
        .gateway_classes
        .iter()
        .find(|c| c.metadata.name == gateway.spec.gateway_class_name)?;
    CLUSTER_ISSUER_ANNOTATIONS
        .iter()
        .find_map(|k| class.metadata.annotations.get(*k))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .map(|name| IssuerRef::ClusterIssuer { name })
}

/// The issuer a ListenerSet's listeners get: the one its own annotations
/// name or, failing that, the one its parent Gateway's name. A namespaced
/// `Issuer` is the ListenerSet's namespace's either way.
pub fn listener_set_issuer(set: &ListenerSet, parent: &Gateway) -> Option<IssuerRef> {
    let ns = &set.metadata.namespace;
    issuer_in(&set.metadata.annotations, ns).or_else(|| issuer_in(&parent.metadata.annotations, ns))
}

/// The issuer `ann` names, a namespaced one taken from `namespace`.
fn issuer_in(ann: &BTreeMap<String, String>, namespace: &str) -> Option<IssuerRef> {
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| ann.get(*k).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    if let Some(name) = first(&ISSUER_ANNOTATIONS) {
        return Some(IssuerRef::Issuer {
            namespace: namespace.to_string(),
            name,
        });
    }
    first(&CLUSTER_ISSUER_ANNOTATIONS).map(|name| IssuerRef::ClusterIssuer { name })
}

/// Whether a listener ends TLS (HTTPS, or TLS in Terminate mode, which is
/// also what an absent mode means).
fn terminates(l: &Listener) -> bool {
    matches!(l.protocol.as_str(), "HTTPS" | "TLS") && l.tls_mode() == TlsMode::Terminate
}

/// The Gateway a ListenerSet's `parentRef` names, if it exists.
fn parent_of<'a>(resources: &'a Resources, set: &ListenerSet) -> Option<&'a Gateway> {
    let parent = &set.spec.parent_ref;
    let group_ok = parent
        .group
        .as_deref()
        .is_none_or(|g| g == "gateway.networking.k8s.io");
    let kind_ok = parent.kind.as_deref().is_none_or(|k| k == "Gateway");
    if !group_ok || !kind_ok {
        return None;
    }
    let ns = parent
        .namespace
        .as_deref()
        .unwrap_or(&set.metadata.namespace);
    resources
        .gateways
        .iter()
        .find(|g| g.metadata.namespace == ns && g.metadata.name == parent.name)
        .map(Arc::as_ref)
}

/// The terminating listeners of every Gateway and ListenerSet whose
/// certificate portcullis manages, with their issuer and Secret. Needs no
/// compile: `augment` uses it to fill certificateRefs before compiling, so
/// ListenerSets are listed whether or not their parent admits them
/// ([`demand`] keeps only admitted ones).
pub fn managed_listeners(resources: &Resources) -> Vec<ManagedListener<'_>> {
    let mut out = Vec::new();
    for gw in &resources.gateways {
        let issuer = annotated_issuer(gw).or_else(|| class_issuer(resources, gw));
        push_managed(&mut out, gw, None, &gw.spec.listeners, issuer.as_ref());
    }
    for set in &resources.listener_sets {
        let Some(gw) = parent_of(resources, set) else {
            continue;
        };
        let issuer = listener_set_issuer(set, gw).or_else(|| class_issuer(resources, gw));
        push_managed(
            &mut out,
            gw,
            Some(set),
            &set.spec.listeners,
            issuer.as_ref(),
        );
    }
    out
}

/// Adds the managed ones of `listeners`, declared by `set` if given or else
/// by `gw`, annotated with `annotated`.
fn push_managed<'a>(
    out: &mut Vec<ManagedListener<'a>>,
    gw: &'a Gateway,
    set: Option<&'a ListenerSet>,
    listeners: &'a [Listener],
    annotated: Option<&IssuerRef>,
) {
    let owner = set.map_or(&gw.metadata, |s| &s.metadata);
    let filled = filled_listeners(&owner.annotations);
    for l in listeners.iter().filter(|l| terminates(l)) {
        let mut refs = l
            .tls
            .as_ref()
            .map(|t| t.certificate_refs.as_slice())
            .unwrap_or_default();
        // References portcullis wrote back itself are still its own.
        if filled.contains(&l.name.as_str()) && is_filled_ref(refs, &owner.name, &l.name) {
            refs = &[];
        }
        // An issuer named in the listener's own TLS options wins over the
        // one its Gateway or ListenerSet names.
        let own = l
            .tls
            .as_ref()
            .and_then(|t| issuer_in(&t.options, &owner.namespace));
        let (issuer, named) = match (own.as_ref().or(annotated), refs.is_empty()) {
            (Some(issuer), _) => (issuer.clone(), refs.first()),
            (None, true) => (IssuerRef::LocalCa, None),
            // The user brings the certificate.
            (None, false) => continue,
        };
        let ns = &owner.namespace;
        let (secret, auto_filled) = match named {
            Some(r) => (
                StoreKey::new(r.namespace.clone().unwrap_or_else(|| ns.clone()), &r.name),
                false,
            ),
            None => (
                StoreKey::new(ns.clone(), auto_filled_secret(&owner.name, &l.name)),
                true,
            ),
        };
        // A name that cannot name a Secret is reported by compile.
        let Ok(secret) = secret else { continue };
        out.push(ManagedListener {
            gateway: gw,
            listener_set: set,
            listener: l,
            issuer,
            secret,
            auto_filled,
        });
    }
}

/// Decides which certificates must exist. `status` is the compile of the
/// same resources; it tells which routes are attached to which Gateway.
pub fn demand(resources: &Resources, status: &Status) -> Demands {
    let mut by_secret: BTreeMap<StoreKey, Demand> = BTreeMap::new();
    let mut problems = Vec::new();
    for m in managed_listeners(resources) {
        if !is_ours(status, &m) {
            continue;
        }
        let listener_id = m.id().to_string();
        let mut problem = |message: String| {
            problems.push(Problem {
                listener: listener_id.clone(),
                secret: Some(m.secret.clone()),
                message,
            })
        };
        let spec = m.issuer.spec(resources);
        if m.issuer != IssuerRef::LocalCa {
            match spec.map(IssuerSpec::kind) {
                None => {
                    problem(format!("{} not found", m.issuer));
                    continue;
                }
                Some(None) => {
                    problem(format!(
                        "{} must set exactly one of acme, ca and selfSigned",
                        m.issuer
                    ));
                    continue;
                }
                Some(Some(_)) => {}
            }
        }
        let settings = settings(&m.annotation_layers());
        for p in &settings.problems {
            problem(p.clone());
        }
        let acme = spec.and_then(|s| s.acme.as_ref());
        let names = match m.listener.hostname.as_deref() {
            Some(h) if !crate::hostname::is_wildcard(h) => vec![h.to_string()],
            Some(h) if acme.is_none_or(|a| a.has_dns01_for(h)) => vec![h.to_string()],
            hostname => {
                let routes = route_hostnames(resources, status, &m);
                if let Some(h) = hostname {
                    problem(format!(
                        "wildcard hostname {h} needs a DNS-01 solver; issuing for the hostnames of attached routes instead"
                    ));
                }
                if routes.is_empty() && m.issuer == IssuerRef::LocalCa {
                    LOCAL_FALLBACK_NAMES.iter().map(|s| s.to_string()).collect()
                } else {
                    routes
                }
            }
        };
        if names.is_empty() {
            problem(
                "no hostname to certify: the listener has no hostname (or a wildcard the issuer cannot sign) and no attached route names a host"
                    .into(),
            );
            continue;
        }
        match by_secret.get_mut(&m.secret) {
            Some(existing) => {
                if existing.issuer != m.issuer {
                    problem(format!(
                        "Secret {} is already issued by {}; {} is ignored for it",
                        m.secret, existing.issuer, m.issuer
                    ));
                }
                existing.dns_names.extend(names);
                existing.dns_names.sort();
                existing.dns_names.dedup();
                existing.listeners.push(listener_id.clone());
            }
            None => {
                let mut dns_names = names;
                dns_names.sort();
                dns_names.dedup();
                by_secret.insert(
                    m.secret.clone(),
                    Demand {
                        secret: m.secret.clone(),
                        dns_names,
                        issuer: m.issuer.clone(),
                        key: settings.key,
                        duration: settings.duration,
                        renew_before: settings.renew_before,
                        renew_before_percentage: settings.renew_before_percentage,
                        rotate_key: settings.rotate_key,
                        profile: acme.and_then(|a| a.profile.clone()),
                        listeners: vec![listener_id.clone()],
                        auto_filled: m.auto_filled,
                    },
                );
            }
        }
    }
    Demands {
        certificates: by_secret.into_values().collect(),
        problems,
    }
}

/// Whether `status` says `m` is ours to manage: its Gateway is of our
/// classes, and a ListenerSet is admitted by that Gateway.
fn is_ours(status: &Status, m: &ManagedListener<'_>) -> bool {
    let owner = m.owner();
    let Some(st) = status.find(m.owner_kind().as_str(), &owner.namespace, &owner.name) else {
        // Only Gateways of our classes (and ListenerSets whose parent is
        // one) have a status.
        return false;
    };
    if m.listener_set.is_none() {
        return true;
    }
    // A ListenerSet whose listeners are all unprogrammed is still admitted:
    // they may be waiting for the very certificate demanded here.
    st.conditions.iter().any(|c| {
        c.kind == ConditionType::Accepted
            && (c.status == ConditionStatus::True || c.reason == Reason::ListenersNotValid)
    })
}

/// The concrete hostnames routes attached to `m`'s listener serve there:
/// each accepted route's hostnames intersected with the listener's,
/// wildcards dropped. HTTPRoutes and GRPCRoutes on HTTPS listeners, TLSRoutes
/// on TLS. Routes reach a ListenerSet's listener only through a ListenerSet
/// parentRef, and a Gateway's own listener only through a Gateway one.
fn route_hostnames(resources: &Resources, status: &Status, m: &ManagedListener<'_>) -> Vec<String> {
    let listener = m.listener;
    let mut routes: Vec<(&str, &ObjectMeta, &[String])> = Vec::new();
    if listener.protocol == "HTTPS" {
        for r in &resources.http_routes {
            routes.push(("HTTPRoute", &r.metadata, &r.spec.hostnames));
        }
        for r in &resources.grpc_routes {
            routes.push(("GRPCRoute", &r.metadata, &r.spec.hostnames));
        }
    } else {
        for r in &resources.tls_routes {
            routes.push(("TLSRoute", &r.metadata, &r.spec.hostnames));
        }
    }
    let owner = m.owner();
    let (owner_kind, owner_key) = (m.owner_kind().as_str(), owner.key());
    let mut out = Vec::new();
    for (kind, meta, hostnames) in routes {
        if !namespace_allowed(resources, &owner.namespace, listener, &meta.namespace) {
            continue;
        }
        let Some(st) = status.find(kind, &meta.namespace, &meta.name) else {
            continue;
        };
        let attached = st.parents.iter().any(|p| {
            p.parent_ref.kind == owner_kind
                && ObjectKey::new(&p.parent_ref.namespace, &p.parent_ref.name) == owner_key
                && p.parent_ref
                    .section_name
                    .as_ref()
                    .is_none_or(|s| *s == listener.name)
                && p.parent_ref.port.is_none_or(|port| port == listener.port)
                && p.conditions
                    .iter()
                    .any(|c| c.kind == ConditionType::Accepted && c.status == ConditionStatus::True)
        });
        if !attached {
            continue;
        }
        for h in hostnames {
            let h = h.to_ascii_lowercase();
            if let Some(name) = crate::hostname::intersect(listener.hostname.as_deref(), &h) {
                if !crate::hostname::is_wildcard(&name) && crate::hostname::is_valid(&name) {
                    out.push(name);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `allowedRoutes.namespaces` of `listener`, declared in `owner_ns`, admits
/// routes from `ns`.
fn namespace_allowed(resources: &Resources, owner_ns: &str, listener: &Listener, ns: &str) -> bool {
    let from = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match from.and_then(|f| f.from.as_deref()) {
        None | Some("Same") => ns == owner_ns,
        Some("All") => true,
        Some("Selector") => {
            let selector = from.and_then(|f| f.selector.as_ref());
            let labels = resources
                .namespace(ns)
                .map(|n| n.metadata.labels.clone())
                .unwrap_or_default();
            selector.is_some_and(|s| s.matches(&labels))
        }
        Some(_) => false,
    }
}

#[cfg(test)]
#[path = "demand_tests.rs"]
mod tests;
