//! Which certificates must exist: a pure function from the loaded
//! [`Resources`] and the compile's [`Status`] (for route attachment) to one
//! [`Demand`] per Secret, plus the [`Problem`]s that keep a listener from
//! getting one.
//!
//! Rules (issue 4, "Which certificates"):
//! - A Gateway annotated `portcullis.dev/issuer`, `portcullis.dev/cluster-issuer`,
//!   `cert-manager.io/issuer` or `cert-manager.io/cluster-issuer` gets
//!   certificates from that issuer for its HTTPS and TLS-Terminate listeners.
//! - Standalone default: a terminating listener with neither certificateRefs
//!   nor an issuer annotation gets one from the built-in local CA.
//! - A listener naming a Secret gets its certificate issued into that Secret
//!   (the first same-namespace reference); one without gets
//!   `<gateway>-<listener>-tls` ([`auto_filled_secret`]).
//! - Listeners sharing a Secret share one certificate with all their names.
//! - A wildcard hostname is kept as is when the issuer can sign it (local
//!   CA, `ca`, `selfSigned`, or ACME with a DNS-01 solver for it); otherwise,
//!   like a listener without hostname, the certificate covers the concrete
//!   hostnames of the routes attached to the listener, intersected with the
//!   listener's. A hostname is never widened.
//!
//! ListenerSet listeners are not managed yet (their Gateway's annotations do
//! not reach them).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::request::{CertRequest, KeyAlgorithm};
use crate::model::gateway::Listener;
use crate::model::issuer::IssuerSpec;
use crate::model::{Gateway, ObjectKey, Resources};
use crate::status::{ConditionStatus, ConditionType, Status};
use crate::store::StoreKey;

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
        /// Its namespace (the Gateway's).
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

    /// The namespace the issuer's own Secrets are read from.
    pub fn secret_namespace(&self) -> &str {
        match self {
            Self::Issuer { namespace, .. } => namespace,
            Self::LocalCa | Self::ClusterIssuer { .. } => {
                crate::model::issuer::CLUSTER_RESOURCE_NAMESPACE
            }
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
    /// The listeners served by it, `namespace/gateway/listener`.
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
    /// The listener, `namespace/gateway/listener`.
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

/// The Secret name given to a listener with no certificateRefs.
pub fn auto_filled_secret(gateway: &str, listener: &str) -> String {
    format!("{gateway}-{listener}-tls")
}

/// A terminating listener whose certificate portcullis manages.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedListener<'a> {
    /// The Gateway.
    pub gateway: &'a Gateway,
    /// The listener.
    pub listener: &'a Listener,
    /// Who signs its certificate.
    pub issuer: IssuerRef,
    /// Where its certificate is kept.
    pub secret: StoreKey,
    /// Whether `secret` was made up (the listener names no Secret).
    pub auto_filled: bool,
}

/// The issuer a Gateway's annotations name, if any.
pub fn annotated_issuer(gateway: &Gateway) -> Option<IssuerRef> {
    let ann = &gateway.metadata.annotations;
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| ann.get(*k).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    if let Some(name) = first(&ISSUER_ANNOTATIONS) {
        return Some(IssuerRef::Issuer {
            namespace: gateway.metadata.namespace.clone(),
            name,
        });
    }
    first(&CLUSTER_ISSUER_ANNOTATIONS).map(|name| IssuerRef::ClusterIssuer { name })
}

/// Whether a listener ends TLS (HTTPS, or TLS in Terminate mode).
fn terminates(l: &Listener) -> bool {
    let mode = l.tls.as_ref().and_then(|t| t.mode.as_deref());
    match l.protocol.as_str() {
        "HTTPS" => mode.is_none_or(|m| m == "Terminate"),
        "TLS" => mode == Some("Terminate"),
        _ => false,
    }
}

/// The terminating listeners of every Gateway whose certificate portcullis
/// manages, with their issuer and Secret. Needs no compile: `augment` uses
/// it to fill certificateRefs before compiling.
pub fn managed_listeners(resources: &Resources) -> Vec<ManagedListener<'_>> {
    let mut out = Vec::new();
    for gw in &resources.gateways {
        let annotated = annotated_issuer(gw);
        for l in gw.spec.listeners.iter().filter(|l| terminates(l)) {
            let refs = l
                .tls
                .as_ref()
                .map(|t| t.certificate_refs.as_slice())
                .unwrap_or_default();
            let (issuer, named) = match (&annotated, refs.is_empty()) {
                (Some(issuer), _) => (issuer.clone(), refs.first()),
                (None, true) => (IssuerRef::LocalCa, None),
                // The user brings the certificate.
                (None, false) => continue,
            };
            let ns = &gw.metadata.namespace;
            let (secret, auto_filled) = match named {
                Some(r) => (
                    StoreKey::new(r.namespace.clone().unwrap_or_else(|| ns.clone()), &r.name),
                    false,
                ),
                None => (
                    StoreKey::new(ns.clone(), auto_filled_secret(&gw.metadata.name, &l.name)),
                    true,
                ),
            };
            // A name that cannot name a Secret is reported by compile.
            let Ok(secret) = secret else { continue };
            out.push(ManagedListener {
                gateway: gw,
                listener: l,
                issuer,
                secret,
                auto_filled,
            });
        }
    }
    out
}

/// Per-Gateway settings read from annotations, with the problems found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Settings {
    duration: Option<Duration>,
    renew_before: Option<Duration>,
    renew_before_percentage: Option<u32>,
    key: KeyAlgorithm,
    rotate_key: bool,
    problems: Vec<String>,
}

fn settings(gw: &Gateway) -> Settings {
    let ann = &gw.metadata.annotations;
    let get = |keys: &[&'static str]| annotation(ann, keys);
    let mut s = Settings {
        rotate_key: true,
        ..Settings::default()
    };
    let mut bad = |key: &str, value: &str, why: &str| {
        s.problems.push(format!(
            "annotation {key}: {value:?} {why}; using the default"
        ))
    };
    let duration = |keys: &[&'static str], bad: &mut dyn FnMut(&str, &str, &str)| {
        get(keys).and_then(|(k, v)| {
            let d = parse_duration(v).filter(|d| !d.is_zero());
            if d.is_none() {
                bad(k, v, "is not a duration such as 2160h, 90d or 10m");
            }
            d
        })
    };
    let d = duration(&DURATION_ANNOTATIONS, &mut bad);
    let rb = duration(&RENEW_BEFORE_ANNOTATIONS, &mut bad);
    let pct = get(&RENEW_BEFORE_PERCENTAGE_ANNOTATIONS).and_then(|(k, v)| {
        let p = v.parse::<u32>().ok().filter(|p| (1..=99).contains(p));
        if p.is_none() {
            bad(k, v, "is not a percentage from 1 to 99");
        }
        p
    });
    let size = get(&KEY_SIZE_ANNOTATIONS).and_then(|(k, v)| {
        let n = v.parse::<u32>().ok();
        if n.is_none() {
            bad(k, v, "is not a number");
        }
        n
    });
    let key = match get(&KEY_ALGORITHM_ANNOTATIONS) {
        Some((k, v)) => KeyAlgorithm::parse(v, size).unwrap_or_else(|| {
            bad(k, v, "is not a supported key algorithm");
            KeyAlgorithm::default()
        }),
        None => match size {
            Some(384) => KeyAlgorithm::EcdsaP384,
            _ => KeyAlgorithm::default(),
        },
    };
    let rotate = match get(&KEY_ROTATION_ANNOTATIONS) {
        None => true,
        Some((_, v)) if v.eq_ignore_ascii_case("always") => true,
        Some((_, v)) if v.eq_ignore_ascii_case("never") => false,
        Some((k, v)) => {
            bad(k, v, "is neither Always nor Never");
            true
        }
    };
    s.duration = d;
    s.renew_before = rb;
    s.renew_before_percentage = pct;
    s.key = key;
    s.rotate_key = rotate;
    s
}

/// The first of `keys` present in `ann`, with its trimmed value.
fn annotation<'a>(
    ann: &'a BTreeMap<String, String>,
    keys: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    keys.iter()
        .find_map(|k| ann.get(*k).map(|v| (*k, v.trim())))
}

/// Parses a Go-style duration (`2160h`, `1h30m`, `90s`, `500ms`) or whole
/// days (`90d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(value * seconds).ok()?)?;
        rest = tail;
    }
    Some(total)
}

/// Decides which certificates must exist. `status` is the compile of the
/// same resources; it tells which routes are attached to which Gateway.
pub fn demand(resources: &Resources, status: &Status) -> Demands {
    let mut by_secret: BTreeMap<StoreKey, Demand> = BTreeMap::new();
    let mut problems = Vec::new();
    for m in managed_listeners(resources) {
        // Only Gateways of our classes have a status.
        let gw_meta = &m.gateway.metadata;
        if status
            .find("Gateway", &gw_meta.namespace, &gw_meta.name)
            .is_none()
        {
            continue;
        }
        let listener_id = format!("{}/{}/{}", gw_meta.namespace, gw_meta.name, m.listener.name);
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
        let settings = settings(m.gateway);
        for p in &settings.problems {
            problem(p.clone());
        }
        let acme = spec.and_then(|s| s.acme.as_ref());
        let names = match m.listener.hostname.as_deref() {
            Some(h) if !crate::hostname::is_wildcard(h) => vec![h.to_string()],
            Some(h) if acme.is_none_or(|a| a.has_dns01_for(h)) => vec![h.to_string()],
            hostname => {
                let routes = route_hostnames(resources, status, m.gateway, m.listener);
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

/// The concrete hostnames routes attached to `listener` serve there: each
/// accepted route's hostnames intersected with the listener's, wildcards
/// dropped. HTTPRoutes and GRPCRoutes on HTTPS listeners, TLSRoutes on TLS.
fn route_hostnames(
    resources: &Resources,
    status: &Status,
    gw: &Gateway,
    listener: &Listener,
) -> Vec<String> {
    let mut routes: Vec<(&str, &crate::model::ObjectMeta, &[String])> = Vec::new();
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
    let gw_key = gw.metadata.key();
    let mut out = Vec::new();
    for (kind, meta, hostnames) in routes {
        if !namespace_allowed(resources, gw, listener, &meta.namespace) {
            continue;
        }
        let Some(st) = status.find(kind, &meta.namespace, &meta.name) else {
            continue;
        };
        let attached = st.parents.iter().any(|p| {
            p.parent_ref.kind == "Gateway"
                && ObjectKey::new(&p.parent_ref.namespace, &p.parent_ref.name) == gw_key
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

/// `allowedRoutes.namespaces` of `listener` admits routes from `namespace`.
fn namespace_allowed(resources: &Resources, gw: &Gateway, listener: &Listener, ns: &str) -> bool {
    let from = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match from.and_then(|f| f.from.as_deref()) {
        None | Some("Same") => ns == gw.metadata.namespace,
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
