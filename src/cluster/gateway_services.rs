//! A Service per Gateway (`--per-gateway-service`): portcullis runs as
//! shared replicas, not a Deployment per Gateway, so what it makes for each
//! Gateway of its classes is a Service in the Gateway's namespace that sends
//! the Gateway's listener ports to the replicas (`--per-gateway-service-
//! selector`). The Service carries the Gateway's `spec.infrastructure`
//! labels and annotations, the `gateway.networking.k8s.io/gateway-name`
//! label, and an ownerReference to the Gateway, so the garbage collector
//! removes it with the Gateway.
//!
//! [`plan`] is pure: from the snapshot, the compiled status (which
//! Gateways are ours: the ones compile reported on) and the live Services,
//! it decides the server-side apply bodies, under a field manager of their
//! own ([`FIELD_MANAGER`]), and the deletions. A Service whose live fields
//! already say what the body says, and whose manager owns nothing the body
//! leaves out, gets no write, so a converged cluster costs no API call; a
//! label removed from `spec.infrastructure` is left out of the next body
//! and the API server removes it. Services labelled as made by this
//! controller ([`MANAGED_BY_LABEL`], [`CONTROLLER_LABEL`]) that no Gateway
//! wants any more (its Gateway gone, of another class, or the flag off)
//! are deleted. A Service of the same name that is not ours is left alone
//! ([`Plan::taken`]).

use super::cache::Live;
use super::kinds::Watched;
use super::status_patch::owned::{key_segment, owned_under, Path};
use super::status_patch::OwnedParents;
use crate::model::gateway::Listener;
use crate::model::{Gateway, ObjectKey, Resources};
use crate::status::{ConditionStatus, ConditionType, Status};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The field manager of the per-Gateway Services.
pub const FIELD_MANAGER: &str = "portcullis.dev/gateway-service";
/// The label every per-Gateway Service carries ([`MANAGED_BY`]).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// [`MANAGED_BY_LABEL`]'s value.
pub const MANAGED_BY: &str = "portcullis";
/// The label saying which controller made the Service: a short digest of
/// its `--controller-name` (which is no valid label value), so two
/// installations never delete each other's Services.
pub const CONTROLLER_LABEL: &str = "portcullis.dev/controller";
/// The Gateway API's label naming the Gateway a resource was made for.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The start of every per-Gateway Service's name (a letter, as a Service
/// name needs, whatever the Gateway's name starts with).
const NAME_PREFIX: &str = "portcullis-";
/// Longest Service name (a DNS-1035 label).
const NAME_MAX: usize = 63;

/// Why a flag's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a Service type portcullis makes.
    #[error("{0:?} is not ClusterIP, NodePort or LoadBalancer")]
    ServiceType(String),
    /// Not `key=value`.
    #[error("{0:?} is not a label key=value")]
    Label(String),
}

/// The `spec.type` of the per-Gateway Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// `ClusterIP`.
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
}

impl ServiceType {
    /// The type as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

impl std::str::FromStr for ServiceType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        [
            ServiceType::ClusterIp,
            ServiceType::NodePort,
            ServiceType::LoadBalancer,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| Error::ServiceType(s.to_string()))
    }
}

/// One `key=value` label of a selector flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

impl std::str::FromStr for Label {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Label {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(Error::Label(s.to_string())),
        }
    }
}

/// How the per-Gateway Services are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Their `spec.type`.
    pub service_type: ServiceType,
    /// Their `spec.selector`: the labels of portcullis's own pods.
    pub selector: BTreeMap<String, String>,
}

/// What [`plan`] needs besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `--controller-name`.
    pub controller_name: &'a str,
    /// `None`: no Gateway gets a Service (and those made earlier go).
    pub service: Option<&'a ServiceOptions>,
    /// `--port-offset`: listeners are bound on their port plus this, the
    /// Services' target ports.
    pub port_offset: u16,
}

/// One Service to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceApply {
    /// Which Service.
    pub key: ObjectKey,
    /// The server-side apply body.
    pub body: Value,
}

/// One Service to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDelete {
    /// Which Service.
    pub key: ObjectKey,
    /// Its uid, the deletion's precondition (a Service made again since is
    /// not the one planned for).
    pub uid: String,
}

/// What one snapshot needs done to the per-Gateway Services.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Services to create or bring up to date.
    pub applies: Vec<ServiceApply>,
    /// Services no Gateway wants.
    pub deletes: Vec<ServiceDelete>,
    /// Services a Gateway wants whose name another owner's Service has.
    pub taken: Vec<ObjectKey>,
}

/// The name of the Service of Gateway `gateway`: `portcullis-<gateway>`,
/// or, when that is no valid Service name (too long, or dots), the name cut
/// short, dots made dashes, and a digest of the Gateway's name.
pub fn service_name(gateway: &str) -> String {
    let plain = format!("{NAME_PREFIX}{gateway}");
    if plain.len() <= NAME_MAX && !gateway.contains('.') {
        return plain;
    }
    let digest = crate::hashing::short_digest(gateway.as_bytes());
    let room = NAME_MAX - NAME_PREFIX.len() - 1 - digest.len();
    let cut: String = gateway
        .chars()
        .take(room)
        .map(|c| if c == '.' { '-' } else { c })
        .collect();
    format!("{NAME_PREFIX}{cut}-{digest}")
}

/// Whether a served Service says it was made as a per-Gateway Service (by
/// any portcullis): the source keeps more of such Services' live objects.
pub fn is_managed(object: &Value) -> bool {
    object
        .pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .and_then(Value::as_str)
        == Some(MANAGED_BY)
}

/// The writes that make every Gateway of ours have its Service as
/// `settings` say, and remove the Services no Gateway wants; empty when
/// the live Services already say it.
pub fn plan(
    resources: &Resources,
    status: &Status,
    live: &BTreeMap<(Watched, ObjectKey), Live>,
    settings: &Settings<'_>,
) -> Plan {
    let controller = crate::hashing::short_digest(settings.controller_name.as_bytes());
    let desired = match settings.service {
        Some(service) => desired(resources, status, live, settings, service, &controller),
        None => BTreeMap::new(),
    };
    let mut out = Plan::default();
    for (key, body) in desired.iter() {
        match live.get(&(Watched::Service, key.clone())) {
            None => out.applies.push(ServiceApply {
                key: key.clone(),
                body: body.clone(),
            }),
            Some(l) => {
                let object = l.object.value();
                if !is_ours(&object, &controller) {
                    out.taken.push(key.clone());
                } else if !carries(&object, body) {
                    out.applies.push(ServiceApply {
                        key: key.clone(),
                        body: body.clone(),
                    });
                }
            }
        }
    }
    for ((watched, key), l) in live {
        if *watched != Watched::Service || desired.contains_key(key) {
            continue;
        }
        let object = l.object.value();
        if !is_ours(&object, &controller) {
            continue;
        }
        if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
            out.deletes.push(ServiceDelete {
                key: key.clone(),
                uid: uid.to_string(),
            });
        }
    }
    out
}

/// Whether a live Service was made by this controller.
fn is_ours(object: &Value, controller: &str) -> bool {
    is_managed(object)
        && object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(CONTROLLER_LABEL))
            .and_then(Value::as_str)
            == Some(controller)
}

/// The apply body of every Gateway of ours that has a live uid (for its
/// ownerReference) and at least one port, by Service key.
fn desired(
    resources: &Resources,
    status: &Status,
    live: &BTreeMap<(Watched, ObjectKey), Live>,
    settings: &Settings<'_>,
    service: &ServiceOptions,
    controller: &str,
) -> BTreeMap<ObjectKey, Value> {
    let owned = OwnedParents::from_status(status);
    let admitted: BTreeSet<ObjectKey> = status
        .objects
        .iter()
        .filter(|o| {
            o.kind == "ListenerSet"
                && o.conditions
                    .iter()
                    .any(|c| c.kind == ConditionType::Accepted && c.status == ConditionStatus::True)
        })
        .map(|o| ObjectKey::new(&o.namespace, &o.name))
        .collect();
    let mut sets: BTreeMap<ObjectKey, Vec<&Listener>> = BTreeMap::new();
    for s in &resources.listener_sets {
        let key = s.metadata.key();
        if !admitted.contains(&key) || !owned.owns_listener_set(&key) {
            continue;
        }
        let p = &s.spec.parent_ref;
        let ns = p.namespace.as_deref().unwrap_or(&s.metadata.namespace);
        sets.entry(ObjectKey::new(ns, &p.name))
            .or_default()
            .extend(s.spec.listeners.iter());
    }
    let mut out = BTreeMap::new();
    for gw in &resources.gateways {
        let key = gw.metadata.key();
        if !owned.owns_gateway(&key) {
            continue;
        }
        let Some(gw_live) = live.get(&(Watched::Gateway, key.clone())) else {
            continue;
        };
        let gw_object = gw_live.object.value();
        let Some(uid) = gw_object.pointer("/metadata/uid").and_then(Value::as_str) else {
            continue;
        };
        let api_version = gw_object["apiVersion"]
            .as_str()
            .unwrap_or("gateway.networking.k8s.io/v1");
        let listeners = gw
            .spec
            .listeners
            .iter()
            .chain(sets.get(&key).into_iter().flatten().copied());
        let ports = ports(listeners, settings.port_offset);
        if ports.is_empty() {
            continue;
        }
        let owner = json!({
            "apiVersion": api_version,
            "kind": "Gateway",
            "name": gw.metadata.name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        });
        let name = service_name(&gw.metadata.name);
        let body = body(gw, &name, owner, ports, service, controller);
        out.insert(ObjectKey::new(&key.namespace, &name), body);
    }
    out
}

/// The distinct ports of `listeners`: TCP for every protocol but UDP, the
/// target port where portcullis binds the listener (its port plus
/// `offset`); ports out of range are left out.
fn ports<'a>(listeners: impl Iterator<Item = &'a Listener>, offset: u16) -> Vec<Value> {
    let mut seen: BTreeSet<(i64, &'static str)> = BTreeSet::new();
    for l in listeners {
        let protocol = if l.protocol == "UDP" { "UDP" } else { "TCP" };
        seen.insert((l.port, protocol));
    }
    seen.into_iter()
        .filter_map(|(port, protocol)| {
            let service_port = u16::try_from(port).ok().filter(|p| *p > 0)?;
            let target = service_port.checked_add(offset)?;
            Some(json!({
                "name": format!("{}-{service_port}", protocol.to_ascii_lowercase()),
                "port": service_port,
                "protocol": protocol,
                "targetPort": target,
            }))
        })
        .collect()
}

/// The apply body of Gateway `gw`'s Service `name`.
fn body(
    gw: &Gateway,
    name: &str,
    owner: Value,
    ports: Vec<Value>,
    service: &ServiceOptions,
    controller: &str,
) -> Value {
    let infrastructure = gw.spec.infrastructure.as_ref();
    let mut labels: Map<String, Value> = infrastructure
        .map(|i| &i.labels)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    // A label value is at most 63 characters; a longer Gateway name is
    // found through the ownerReference instead.
    if gw.metadata.name.len() <= 63 {
        labels.insert(GATEWAY_NAME_LABEL.into(), gw.metadata.name.clone().into());
    }
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(CONTROLLER_LABEL.into(), controller.into());
    let mut metadata = json!({
        "name": name,
        "namespace": gw.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner],
    });
    if let Some(annotations) = infrastructure.filter(|i| !i.annotations.is_empty()) {
        metadata["annotations"] = json!(annotations.annotations);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": service.service_type.as_str(),
            "selector": service.selector,
            "ports": ports,
        },
    })
}

/// Whether the live Service has every field `body` sets, with its value,
/// and [`FIELD_MANAGER`] owns no label, annotation, ownerReference or port
/// the body leaves out (applying it would remove them).
fn carries(live: &Value, body: &Value) -> bool {
    let meta = |v: &'_ Value, f: &str| v["metadata"][f].clone();
    let map_has = |field: &str| {
        let want = meta(body, field);
        let have = meta(live, field);
        want.as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| have.get(k) == Some(v))
    };
    let keyed_has = |list: &Value, have: &Value, key: &[&str]| {
        list.as_array().into_iter().flatten().all(|want| {
            have.as_array().into_iter().flatten().any(|h| {
                key.iter().all(|k| h.get(*k) == want.get(*k))
                    && want
                        .as_object()
                        .into_iter()
                        .flatten()
                        .all(|(k, v)| h.get(k) == Some(v))
            })
        })
    };
    let spec = &body["spec"];
    let live_spec = &live["spec"];
    let values = map_has("labels")
        && map_has("annotations")
        && keyed_has(
            &meta(body, "ownerReferences"),
            &meta(live, "ownerReferences"),
            &["uid"],
        )
        && live_spec["type"] == spec["type"]
        && live_spec.get("selector").unwrap_or(&json!({})) == &spec["selector"]
        && keyed_has(&spec["ports"], &live_spec["ports"], &["port", "protocol"]);
    values && owns_nothing_more(live, body)
}

/// Whether [`FIELD_MANAGER`] owns, in `live`, no label, annotation,
/// ownerReference or port that `body` does not set.
fn owns_nothing_more(live: &Value, body: &Value) -> bool {
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| format!("f:{k}"))
            .collect()
    };
    let items = |v: &Value, key: &[&str]| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let k: Map<String, Value> = key
                    .iter()
                    .map(|f| (f.to_string(), item[*f].clone()))
                    .collect();
                key_segment(&k)
            })
            .collect()
    };
    let wanted = |top: &str, field: &str, segments: Vec<String>| -> BTreeSet<Path> {
        segments
            .into_iter()
            .map(|s| vec![top.to_string(), format!("f:{field}"), s])
            .collect()
    };
    let mut want = wanted("f:metadata", "labels", keys(&body["metadata"]["labels"]));
    want.extend(wanted(
        "f:metadata",
        "annotations",
        keys(&body["metadata"]["annotations"]),
    ));
    want.extend(wanted(
        "f:metadata",
        "ownerReferences",
        items(&body["metadata"]["ownerReferences"], &["uid"]),
    ));
    want.extend(wanted(
        "f:spec",
        "ports",
        items(&body["spec"]["ports"], &["port", "protocol"]),
    ));
    let lists = ["f:labels", "f:annotations", "f:ownerReferences", "f:ports"];
    ["f:metadata", "f:spec"].into_iter().all(|top| {
        owned_under(live, FIELD_MANAGER, None, top)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.len() == 2 && lists.contains(&p[0].as_str()))
            .all(|p| {
                let mut full = vec![top.to_string()];
                full.extend(p);
                want.contains(&full)
            })
    })
}

#[cfg(test)]
#[path = "gateway_services/tests.rs"]
mod tests;
