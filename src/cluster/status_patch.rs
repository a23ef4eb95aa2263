//! The status portcullis writes to the API server, as pure functions. For one
//! object, compile's [`ObjectStatus`] (plus what compile does not know: a
//! Gateway's addresses, a BackendTLSPolicy's ancestors) and the live object
//! become the body of a server-side apply to the object's `status`
//! subresource, or `None` when the live status already says what we would
//! write. The shapes, list semantics and limits are the Gateway API v1.6
//! CRDs' (`crd_tests` checks the bodies against the real CRD schemas). The
//! client, the apply calls and the retries belong to the caller.
//!
//! The rules, each with a unit test named after it (`tests`):
//! - A condition keeps its live `lastTransitionTime` while its status stays
//!   the same, else takes `now`; `observedGeneration` is compile's (the
//!   object's `metadata.generation`). A live condition of ours with a higher
//!   `observedGeneration` means this compile is older than the object: write
//!   nothing (the Gateway API forbids going back; the next compile catches up).
//! - Conditions, listeners and `supportedFeatures` are map lists: server-side
//!   apply merges them per key, so the body holds only ours and other
//!   controllers' entries are untouched. What we wrote before and leave out
//!   now is removed by the API server; whether there is such a thing is read
//!   from the live `managedFields` (`owned`).
//! - Route `status.parents` and policy `status.ancestors` are atomic lists:
//!   an apply replaces them whole. The body keeps every live entry of another
//!   controller as it is and where it is, replaces ours, drops ours that
//!   compile no longer produces, and carries the live `resourceVersion`, so
//!   a concurrent writer makes the API server answer 409 Conflict instead of
//!   losing its entry.
//! - Only parents and ancestors that are Gateways or ListenerSets of our
//!   classes ([`OwnedParents`]) get entries: compile also reports a parentRef
//!   naming a Gateway that does not exist, and that one may belong to any
//!   controller once it appears.

use crate::dataplane::RouteKind;
use crate::model::ObjectKey;
use crate::status::{Condition, ConditionType, ObjectStatus, ParentRefStatus, Status};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::SystemTime;

mod ancestors;
mod conditions;
mod features;
pub(in crate::cluster) mod owned;
mod shared;

#[cfg(test)]
mod crd_tests;
#[cfg(test)]
mod tests;

use conditions::Render;
use shared::{policy_status, route_status};

pub use ancestors::policy_ancestors;
pub use features::{Evidence, SupportedFeature, SUPPORTED_FEATURES, UNSUPPORTED_FEATURES};

/// The field manager of every status apply (the contract's).
pub const FIELD_MANAGER: &str = "portcullis.dev/gateway-controller";

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";
const PORTCULLIS_API_VERSION: &str = "portcullis.dev/v1alpha1";

/// Which object a patch is for, and what its status needs besides
/// compile's [`ObjectStatus`]. The object's namespace and name are the
/// status's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A GatewayClass whose `controllerName` is ours.
    GatewayClass,
    /// A Gateway of one of our classes, with the addresses it is reachable
    /// at (`spec.addresses`, the LoadBalancer Service's ingress or the
    /// `--gateway-address` flag; the caller decides).
    Gateway {
        /// `status.addresses`, in order.
        addresses: &'a [GatewayAddress],
    },
    /// A ListenerSet attached (or trying to attach) to one of our Gateways.
    ListenerSet,
    /// A route of any kind.
    Route(RouteKind),
    /// A BackendTLSPolicy, with the Gateways it takes effect through
    /// ([`policy_ancestors`]).
    BackendTlsPolicy {
        /// The ancestor Gateways.
        ancestors: &'a [ParentRefStatus],
    },
    /// A `portcullis.dev` Issuer (status from [`issuer_status`]).
    Issuer,
    /// A `portcullis.dev` ClusterIssuer (status from [`issuer_status`]).
    ClusterIssuer,
}

impl Target<'_> {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::GatewayClass => "GatewayClass",
            Target::Gateway { .. } => "Gateway",
            Target::ListenerSet => "ListenerSet",
            Target::Route(kind) => kind.name(),
            Target::BackendTlsPolicy { .. } => "BackendTLSPolicy",
            Target::Issuer => "Issuer",
            Target::ClusterIssuer => "ClusterIssuer",
        }
    }

    /// The API version the body names when the live object names none of
    /// the same group (every Gateway API kind is served as `v1` in v1.6).
    pub fn api_version(&self) -> &'static str {
        match self {
            Target::Issuer | Target::ClusterIssuer => PORTCULLIS_API_VERSION,
            _ => GATEWAY_API_VERSION,
        }
    }

    /// The resource's plural name, for the request path.
    pub fn plural(&self) -> &'static str {
        match self {
            Target::GatewayClass => "gatewayclasses",
            Target::Gateway { .. } => "gateways",
            Target::ListenerSet => "listenersets",
            Target::Route(RouteKind::Http) => "httproutes",
            Target::Route(RouteKind::Grpc) => "grpcroutes",
            Target::Route(RouteKind::Tls) => "tlsroutes",
            Target::Route(RouteKind::Tcp) => "tcproutes",
            Target::Route(RouteKind::Udp) => "udproutes",
            Target::BackendTlsPolicy { .. } => "backendtlspolicies",
            Target::Issuer => "issuers",
            Target::ClusterIssuer => "clusterissuers",
        }
    }

    /// Whether the kind is namespaced.
    pub fn is_namespaced(&self) -> bool {
        !matches!(self, Target::GatewayClass | Target::ClusterIssuer)
    }

    /// Whether the status is one atomic list shared with other controllers
    /// (the apply then carries a `resourceVersion` precondition).
    pub fn has_shared_list(&self) -> bool {
        matches!(self, Target::Route(_) | Target::BackendTlsPolicy { .. })
    }

    /// The API group of the kind.
    pub fn api_group(&self) -> &'static str {
        match self {
            Target::Issuer | Target::ClusterIssuer => "portcullis.dev",
            _ => GATEWAY_GROUP,
        }
    }
}

/// One entry of a Gateway's `status.addresses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddress {
    /// The address type.
    pub kind: AddressType,
    /// The address.
    pub value: String,
}

impl GatewayAddress {
    /// An IP address.
    pub fn ip(ip: IpAddr) -> Self {
        Self {
            kind: AddressType::IpAddress,
            value: ip.to_string(),
        }
    }

    /// A DNS name (a LoadBalancer ingress `hostname`).
    pub fn hostname(name: &str) -> Self {
        Self {
            kind: AddressType::Hostname,
            value: name.to_string(),
        }
    }
}

/// The Gateway API address types portcullis reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    /// `IPAddress`.
    IpAddress,
    /// `Hostname`.
    Hostname,
}

impl AddressType {
    /// The type as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IpAddress => "IPAddress",
            AddressType::Hostname => "Hostname",
        }
    }
}

/// The Gateways and ListenerSets route parents and policy ancestors may
/// name for us to write their entry: those compile reported on (Gateways of
/// our classes, ListenerSets whose parent is one of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedParents {
    gateways: BTreeSet<ObjectKey>,
    listener_sets: BTreeSet<ObjectKey>,
}

impl OwnedParents {
    /// The parents compile reported on in `status`.
    pub fn from_status(status: &Status) -> Self {
        let mut out = Self::default();
        for o in &status.objects {
            let key = ObjectKey::new(&o.namespace, &o.name);
            match o.kind.as_str() {
                "Gateway" => {
                    out.gateways.insert(key);
                }
                "ListenerSet" => {
                    out.listener_sets.insert(key);
                }
                _ => {}
            }
        }
        out
    }

    /// Whether the Gateway `key` is ours.
    pub fn owns_gateway(&self, key: &ObjectKey) -> bool {
        self.gateways.contains(key)
    }

    /// Whether the ListenerSet `key` has our parent.
    pub fn owns_listener_set(&self, key: &ObjectKey) -> bool {
        self.listener_sets.contains(key)
    }

    /// Whether `r` names one of our Gateways or ListenerSets.
    pub fn owns(&self, r: &ParentRefStatus) -> bool {
        if r.group != GATEWAY_GROUP {
            return false;
        }
        let key = ObjectKey::new(&r.namespace, &r.name);
        match r.kind.as_str() {
            "Gateway" => self.gateways.contains(&key),
            "ListenerSet" => self.listener_sets.contains(&key),
            _ => false,
        }
    }
}

/// Who writes: our controller name (route parents' and policy ancestors'
/// `controllerName`), our field manager, and the parents that are ours.
#[derive(Debug, Clone, Copy)]
pub struct PatchContext<'a> {
    /// `--controller-name`.
    pub controller_name: &'a str,
    /// The field manager the apply is sent with ([`FIELD_MANAGER`]).
    pub field_manager: &'a str,
    /// Parents we may write entries for.
    pub owned: &'a OwnedParents,
}

/// Why no body could be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The status given is of another kind than the target.
    #[error("cannot patch {target}: the status given is for a {given}")]
    MatchKind {
        /// The target's kind.
        target: &'static str,
        /// The status's kind.
        given: String,
    },
    /// The live object is not the object the status is for.
    #[error("cannot patch {kind} {key}: the live object is {live}")]
    MatchLive {
        /// The target's kind.
        kind: &'static str,
        /// The status's object.
        key: String,
        /// What the live object says it is.
        live: String,
    },
    /// The live object has no `metadata.resourceVersion`, which guards the
    /// write of a list other controllers share.
    #[error("cannot patch {kind} {key}: the live object has no metadata.resourceVersion")]
    ReadResourceVersion {
        /// The target's kind.
        kind: &'static str,
        /// The object.
        key: String,
    },
}

/// The server-side apply body for the `status` subresource of the object
/// `ours` describes, or `None` when `live` (the object as the API server
/// has it, `managedFields` included when the watch keeps them) already
/// carries that status. For routes and policies, `ours` may have no parents
/// (an object compile no longer reports on): the body then only removes
/// entries of ours that are left. `now` stamps conditions whose status
/// changes.
pub fn status_patch(
    target: &Target<'_>,
    ours: &ObjectStatus,
    live: &Value,
    ctx: &PatchContext<'_>,
    now: SystemTime,
) -> Result<Option<Value>, Error> {
    let key = display_key(&ours.namespace, &ours.name);
    if ours.kind != target.kind() {
        return Err(Error::MatchKind {
            target: target.kind(),
            given: ours.kind.clone(),
        });
    }
    check_live(target, ours, live, &key)?;
    let mut render = Render::new(now);
    let live_status = &live["status"];
    let status = match target {
        Target::GatewayClass => class_status(&mut render, ours, live_status),
        Target::Gateway { addresses } => gateway_status(&mut render, ours, live_status, addresses),
        Target::ListenerSet => listener_set_status(&mut render, ours, live_status),
        Target::Route(_) => route_status(&mut render, ours, live, ctx),
        Target::BackendTlsPolicy { ancestors } => {
            policy_status(&mut render, ours, live, ctx, ancestors)
        }
        Target::Issuer | Target::ClusterIssuer => {
            let mut st = Map::new();
            st.insert(
                "conditions".into(),
                render.conditions(&ours.conditions, &live_status["conditions"]),
            );
            Value::Object(st)
        }
    };
    if render.stale {
        return Ok(None);
    }
    let status = Value::Object(status_object(status));
    if covers(live_status, &status, None) && !owned::drops_owned(live, ctx.field_manager, &status) {
        return Ok(None);
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(ours.name.clone()));
    if target.is_namespaced() {
        metadata.insert("namespace".into(), Value::String(ours.namespace.clone()));
    }
    if target.has_shared_list() {
        let version = live["metadata"]["resourceVersion"]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or(Error::ReadResourceVersion {
                kind: target.kind(),
                key,
            })?;
        metadata.insert("resourceVersion".into(), Value::String(version.into()));
    }
    Ok(Some(json!({
        "apiVersion": body_api_version(target, live),
        "kind": target.kind(),
        "metadata": metadata,
        "status": status,
    })))
}

/// The status of an Issuer or ClusterIssuer (`key.namespace` empty): one
/// `Ready` condition, reason `Ready` or `NotReady`, for the object's
/// `metadata.generation`.
pub fn issuer_status(
    target: &Target<'_>,
    key: &ObjectKey,
    ready: bool,
    message: &str,
    generation: i64,
) -> ObjectStatus {
    let mut status = ObjectStatus::new(target.kind(), &key.namespace, &key.name);
    let reason = if ready {
        crate::status::Reason::Ready
    } else {
        crate::status::Reason::NotReady
    };
    status.conditions.push(Condition::new(
        ConditionType::Ready,
        ready,
        reason,
        message,
        generation,
    ));
    status
}

fn display_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The live object must be the one the status is for (kind when it says,
/// name, and namespace for namespaced kinds).
fn check_live(
    target: &Target<'_>,
    ours: &ObjectStatus,
    live: &Value,
    key: &str,
) -> Result<(), Error> {
    let meta = &live["metadata"];
    let live_kind = live["kind"].as_str();
    let live_name = meta["name"].as_str().unwrap_or_default();
    let live_ns = meta["namespace"].as_str().unwrap_or_default();
    let kind_ok = live_kind.is_none_or(|k| k == target.kind());
    let ns_ok = !target.is_namespaced() || live_ns == ours.namespace;
    if kind_ok && live_name == ours.name && ns_ok {
        return Ok(());
    }
    Err(Error::MatchLive {
        kind: target.kind(),
        key: key.to_string(),
        live: format!(
            "{} {}",
            live_kind.unwrap_or("(no kind)"),
            display_key(live_ns, live_name)
        ),
    })
}

/// The live object's own API version when it is of the target's group (so
/// the body matches the version the object was read with), else the
/// target's default.
fn body_api_version(target: &Target<'_>, live: &Value) -> String {
    live["apiVersion"]
        .as_str()
        .filter(|v| v.split('/').next() == Some(target.api_group()) && v.contains('/'))
        .unwrap_or(target.api_version())
        .to_string()
}

fn status_object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn class_status(render: &mut Render, ours: &ObjectStatus, live: &Value) -> Value {
    let features: Vec<Value> = SUPPORTED_FEATURES
        .iter()
        .map(|f| json!({ "name": f.name }))
        .collect();
    json!({
        "conditions": render.conditions(&ours.conditions, &live["conditions"]),
        "supportedFeatures": features,
    })
}

fn gateway_status(
    render: &mut Render,
    ours: &ObjectStatus,
    live: &Value,
    addresses: &[GatewayAddress],
) -> Value {
    // The API carries the count of attached ListenerSets as a field
    // (`attachedListenerSets`), not as a condition.
    let conditions = render.conditions_where(&ours.conditions, &live["conditions"], |t| {
        t != ConditionType::AttachedListenerSets
    });
    let mut st = Map::new();
    st.insert("conditions".into(), conditions);
    if !ours.listeners.is_empty() {
        st.insert(
            "listeners".into(),
            listeners(render, ours, &live["listeners"]),
        );
    }
    if !addresses.is_empty() {
        let list = addresses
            .iter()
            .map(|a| json!({ "type": a.kind.as_str(), "value": a.value }))
            .collect();
        st.insert("addresses".into(), Value::Array(list));
    }
    if let Some(n) = ours.attached_listener_sets {
        st.insert("attachedListenerSets".into(), json!(clamp_i32(n)));
    }
    Value::Object(st)
}

fn listener_set_status(render: &mut Render, ours: &ObjectStatus, live: &Value) -> Value {
    let mut st = Map::new();
    st.insert(
        "conditions".into(),
        render.conditions(&ours.conditions, &live["conditions"]),
    );
    if !ours.listeners.is_empty() {
        st.insert(
            "listeners".into(),
            listeners(render, ours, &live["listeners"]),
        );
    }
    Value::Object(st)
}

/// Listener entries (Gateway `ListenerStatus`, ListenerSet
/// `ListenerEntryStatus`: the same fields), one per name.
fn listeners(render: &mut Render, ours: &ObjectStatus, live: &Value) -> Value {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for l in &ours.listeners {
        if !seen.insert(l.name.as_str()) {
            continue;
        }
        let previous = live
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == l.name.as_str()))
            .map_or(&Value::Null, |x| &x["conditions"]);
        let kinds: Vec<Value> = l
            .supported_kinds
            .iter()
            .map(|k| json!({ "group": GATEWAY_GROUP, "kind": k }))
            .collect();
        out.push(json!({
            "name": l.name,
            "attachedRoutes": clamp_i32(l.attached_routes),
            "supportedKinds": kinds,
            "conditions": render.conditions(&l.conditions, previous),
        }));
    }
    Value::Array(out)
}

fn clamp_i32(n: u32) -> i64 {
    i64::from(n.min(i32::MAX as u32))
}

/// The lists server-side apply merges per key, by field name, and their key.
fn map_list_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" => Some("type"),
        "listeners" | "supportedFeatures" => Some("name"),
        _ => None,
    }
}

/// Whether `live` already holds everything in `desired` (`field` names the
/// value's field, for list semantics): objects field by field, map lists
/// item by key (order aside, others' items aside), atomic lists and scalars
/// exactly. An absent list equals an empty one (the API server may drop an
/// empty list it was sent).
fn covers(live: &Value, desired: &Value, field: Option<&str>) -> bool {
    match desired {
        Value::Object(d) => d.iter().all(|(k, dv)| {
            let lv = live.get(k).unwrap_or(&Value::Null);
            covers(lv, dv, Some(k))
        }),
        Value::Array(d) => {
            let empty = Vec::new();
            let l = match live {
                Value::Array(l) => l,
                Value::Null => &empty,
                _ => return false,
            };
            match field.and_then(map_list_key) {
                Some(key) => d.iter().all(|di| {
                    l.iter()
                        .find(|li| li[key] == di[key])
                        .is_some_and(|li| covers(li, di, None))
                }),
                None => l == d,
            }
        }
        scalar => live == scalar,
    }
}
