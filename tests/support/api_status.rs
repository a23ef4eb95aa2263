//! The status portcullis wrote into the API server, in the shape of its own
//! `GET /status` document (`{"objects": [{kind, namespace, name,
//! conditions, listeners, parents, attachedListenerSets}]}`), so the
//! conformance status checks ([`super::status_checks::check`]) run unchanged
//! on what the API server holds.
//!
//! [`to_status_document`] is the conversion, pure; [`ApiStatusReader`]
//! lists the objects. What the conversion does, field by field:
//! - GatewayClass, Gateway, ListenerSet: `status.conditions` as they are;
//!   listeners with `supportedKinds` reduced to the kind names `/status`
//!   lists; a Gateway's `attachedListenerSets` field as it is.
//! - Routes (HTTP, gRPC, TLS, TCP, UDP): the `status.parents` entries whose
//!   `controllerName` is ours, with the API's defaults filled into the
//!   `parentRef` (group, kind `Gateway`, the route's namespace).
//! - BackendTLSPolicy: `/status` reports the policy's own conditions, the API
//!   one copy per ancestor; the conditions of our first ancestor entry become
//!   the object's, and the entries are kept under `ancestors`.
//! - Objects without any status of ours are left out: a check then reports
//!   them missing, as it would for `/status`.
//!
//! Conditions keep `type`, `status`, `reason`, `message` and
//! `observedGeneration` (`/status` has no `lastTransitionTime`).

use anyhow::{Context, Result};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The kinds whose status is read, all of the Gateway API group.
pub const STATUS_KINDS: &[&str] = &[
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "BackendTLSPolicy",
];

const ROUTE_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

/// Lists the objects of [`STATUS_KINDS`] the API server serves.
pub struct ApiStatusReader {
    client: kube::Client,
    resources: Vec<(ApiResource, bool)>,
    /// Kinds of [`STATUS_KINDS`] the API server does not serve.
    pub not_served: Vec<String>,
}

impl ApiStatusReader {
    /// Resolves each kind's served version through discovery (once).
    pub async fn discover(client: &kube::Client) -> Result<Self> {
        let mut resources = Vec::new();
        let mut not_served = Vec::new();
        for kind in STATUS_KINDS {
            let mut found = None;
            for version in ["v1", "v1beta1", "v1alpha3", "v1alpha2"] {
                let gvk = GroupVersionKind::gvk(GATEWAY_GROUP, version, kind);
                if let Ok((ar, caps)) = pinned_kind(client, &gvk).await {
                    found = Some((ar, caps.scope == Scope::Namespaced));
                    break;
                }
            }
            match found {
                Some(r) => resources.push(r),
                None => not_served.push((*kind).to_string()),
            }
        }
        Ok(Self {
            client: client.clone(),
            resources,
            not_served,
        })
    }

    /// Every object of the served kinds, as JSON with `kind` set.
    pub async fn objects(&self) -> Result<Vec<Value>> {
        let lists = futures_util::future::join_all(self.resources.iter().map(|(ar, _)| {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), ar);
            async move {
                api.list(&ListParams::default())
                    .await
                    .with_context(|| format!("list {}", ar.plural))
                    .map(|l| (ar, l.items))
            }
        }))
        .await;
        let mut out = Vec::new();
        for list in lists {
            let (ar, items) = list?;
            for item in items {
                let mut v = serde_json::to_value(item).context("an object as JSON")?;
                if let Some(m) = v.as_object_mut() {
                    m.insert("kind".into(), Value::String(ar.kind.clone()));
                    m.insert("apiVersion".into(), Value::String(ar.api_version.clone()));
                }
                out.push(v);
            }
        }
        Ok(out)
    }

    /// [`ApiStatusReader::objects`] converted by [`to_status_document`].
    pub async fn status_document(&self, controller_name: &str) -> Result<Value> {
        Ok(to_status_document(&self.objects().await?, controller_name))
    }
}

/// The `/status`-shaped document of `objects` (API objects with `kind`).
pub fn to_status_document(objects: &[Value], controller_name: &str) -> Value {
    let list: Vec<Value> = objects
        .iter()
        .filter_map(|o| object_status(o, controller_name))
        .collect();
    json!({ "objects": list })
}

/// One object's `/status` entry, or None when it carries no status of ours.
pub fn object_status(o: &Value, controller_name: &str) -> Option<Value> {
    let kind = o["kind"].as_str()?;
    let namespace = o["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = o["metadata"]["name"].as_str()?;
    let st = &o["status"];
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("namespace".into(), json!(namespace));
    out.insert("name".into(), json!(name));
    match kind {
        "GatewayClass" | "Gateway" | "ListenerSet" => {
            let conditions = conditions(&st["conditions"]);
            let listeners = listeners(&st["listeners"]);
            if conditions.is_empty() && listeners.is_empty() {
                return None;
            }
            out.insert("conditions".into(), Value::Array(conditions));
            if !listeners.is_empty() {
                out.insert("listeners".into(), Value::Array(listeners));
            }
            if let Some(n) = st["attachedListenerSets"].as_u64() {
                out.insert("attachedListenerSets".into(), json!(n));
            }
        }
        "BackendTLSPolicy" => {
            let ours = entries_of(&st["ancestors"], controller_name, "ancestorRef", namespace);
            let first = ours.first()?;
            out.insert("conditions".into(), first["conditions"].clone());
            out.insert("ancestors".into(), Value::Array(ours));
        }
        k if ROUTE_KINDS.contains(&k) => {
            let ours = entries_of(&st["parents"], controller_name, "parentRef", namespace);
            if ours.is_empty() {
                return None;
            }
            out.insert("conditions".into(), json!([]));
            out.insert("parents".into(), Value::Array(ours));
        }
        _ => return None,
    }
    Some(Value::Object(out))
}

/// The conditions with the fields `/status` has.
fn conditions(list: &Value) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "type": c["type"],
                "status": c["status"],
                "reason": c["reason"],
                "message": c["message"],
                "observedGeneration": c["observedGeneration"],
            })
        })
        .collect()
}

fn listeners(list: &Value) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let kinds: Vec<Value> = l["supportedKinds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| k["group"].as_str().is_none_or(|g| g == GATEWAY_GROUP))
                .filter_map(|k| k["kind"].as_str().map(|s| json!(s)))
                .collect();
            json!({
                "name": l["name"],
                "attachedRoutes": l["attachedRoutes"],
                "supportedKinds": kinds,
                "conditions": conditions(&l["conditions"]),
            })
        })
        .collect()
}

/// The entries of a route's `parents` or a policy's `ancestors` written by
/// `controller_name`, the reference (`ref_field`) with the API's defaults.
fn entries_of(list: &Value, controller_name: &str, ref_field: &str, namespace: &str) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["controllerName"] == controller_name)
        .map(|e| {
            let r = &e[ref_field];
            let mut full = Map::new();
            full.insert(
                "group".into(),
                json!(r["group"].as_str().unwrap_or(GATEWAY_GROUP)),
            );
            full.insert(
                "kind".into(),
                json!(r["kind"].as_str().unwrap_or("Gateway")),
            );
            full.insert(
                "namespace".into(),
                json!(r["namespace"].as_str().unwrap_or(namespace)),
            );
            full.insert("name".into(), r["name"].clone());
            for f in ["sectionName", "port"] {
                if !r[f].is_null() {
                    full.insert(f.into(), r[f].clone());
                }
            }
            json!({
                ref_field: Value::Object(full),
                "controllerName": e["controllerName"],
                "conditions": conditions(&e["conditions"]),
            })
        })
        .collect()
}

/// Objects of `objects` whose status carries a condition of an older
/// generation than `metadata.generation` (route parents and policy
/// ancestors: ours only), as `Kind ns/name: why`.
pub fn stale(objects: &[Value], controller_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in objects {
        let Some(generation) = o["metadata"]["generation"].as_i64() else {
            continue;
        };
        let Some(st) = object_status(o, controller_name) else {
            continue;
        };
        let mut groups: Vec<&Value> = vec![&st["conditions"]];
        for list in ["listeners", "parents", "ancestors"] {
            groups.extend(
                st[list]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| &x["conditions"]),
            );
        }
        let old: Vec<String> = groups
            .iter()
            .flat_map(|g| g.as_array().into_iter().flatten())
            .filter(|c| c["observedGeneration"].as_i64() != Some(generation))
            .map(|c| format!("{}@{}", c["type"], c["observedGeneration"]))
            .collect();
        if !old.is_empty() {
            out.push(format!(
                "{} {}/{}: generation {generation}, conditions {}",
                st["kind"].as_str().unwrap_or_default(),
                st["namespace"].as_str().unwrap_or_default(),
                st["name"].as_str().unwrap_or_default(),
                old.join(", ")
            ));
        }
    }
    out
}

/// `kind`, `namespace`, `name` of an object.
pub type Key = (String, String, String);

/// Where the API status (a [`to_status_document`]) of the objects `keys`
/// differs from portcullis's own `/status` document (`replica`: a
/// Kubernetes-mode replica's or a standalone one's), one line per
/// difference. What the API carries differently by design is not one: the
/// Gateway's `AttachedListenerSets` condition (the API has the
/// `attachedListenerSets` field), and route parents that are not Gateways or
/// ListenerSets the replica reports on (their controller may be another).
pub fn differences(api: &Value, replica: &Value, keys: &BTreeSet<Key>) -> Vec<String> {
    let objects =
        |doc: &Value| -> Vec<Value> { doc["objects"].as_array().cloned().unwrap_or_default() };
    let key = |o: &Value| -> Key {
        let s = |f: &str| o[f].as_str().unwrap_or_default().to_string();
        (s("kind"), s("namespace"), s("name"))
    };
    let replica_objects = objects(replica);
    let owned: BTreeSet<Key> = replica_objects
        .iter()
        .map(key)
        .filter(|(k, _, _)| k == "Gateway" || k == "ListenerSet")
        .collect();
    let api_objects = objects(api);
    let mut out = Vec::new();
    for r in replica_objects.iter().filter(|o| keys.contains(&key(o))) {
        let (kind, ns, name) = key(r);
        let what = format!("{kind} {ns}/{name}");
        let empty = json!({});
        // A route with no parent of ours has no status of ours in the API.
        let a = match api_objects.iter().find(|a| key(a) == key(r)) {
            Some(a) => a,
            None if ROUTE_KINDS.contains(&kind.as_str()) => &empty,
            None => {
                out.push(format!("{what}: on /status, not in the API"));
                continue;
            }
        };
        let skip_attached = kind == "Gateway";
        diff_conditions(
            &mut out,
            &what,
            &a["conditions"],
            &r["conditions"],
            skip_attached,
        );
        if r["attachedListenerSets"] != a["attachedListenerSets"]
            && !r["attachedListenerSets"].is_null()
        {
            out.push(format!(
                "{what}: attachedListenerSets {} in the API, {} on /status",
                a["attachedListenerSets"], r["attachedListenerSets"]
            ));
        }
        for l in r["listeners"].as_array().into_iter().flatten() {
            let lw = format!("{what} listener {}", l["name"]);
            let Some(al) = a["listeners"]
                .as_array()
                .and_then(|ls| ls.iter().find(|x| x["name"] == l["name"]))
            else {
                out.push(format!("{lw}: not in the API"));
                continue;
            };
            if al["attachedRoutes"] != l["attachedRoutes"] {
                out.push(format!(
                    "{lw}: attachedRoutes {} in the API, {} on /status",
                    al["attachedRoutes"], l["attachedRoutes"]
                ));
            }
            if sorted(&al["supportedKinds"]) != sorted(&l["supportedKinds"]) {
                out.push(format!(
                    "{lw}: supportedKinds {} in the API, {} on /status",
                    al["supportedKinds"], l["supportedKinds"]
                ));
            }
            diff_conditions(&mut out, &lw, &al["conditions"], &l["conditions"], false);
        }
        let api_listeners = a["listeners"].as_array().map_or(0, Vec::len);
        let replica_listeners = r["listeners"].as_array().map_or(0, Vec::len);
        if api_listeners != replica_listeners {
            out.push(format!(
                "{what}: {api_listeners} listeners in the API, {replica_listeners} on /status"
            ));
        }
        let mut expected_parents = 0;
        for p in r["parents"].as_array().into_iter().flatten() {
            let pr = &p["parentRef"];
            let parent: Key = (
                pr["kind"].as_str().unwrap_or("Gateway").to_string(),
                pr["namespace"].as_str().unwrap_or(&ns).to_string(),
                pr["name"].as_str().unwrap_or_default().to_string(),
            );
            let in_group = pr["group"].as_str().is_none_or(|g| g == GATEWAY_GROUP);
            if !in_group
                || !owned.contains(&parent)
                || p["conditions"].as_array().is_none_or(Vec::is_empty)
            {
                continue;
            }
            expected_parents += 1;
            let pw = format!("{what} parent {pr}");
            let Some(ap) = a["parents"]
                .as_array()
                .and_then(|ps| ps.iter().find(|x| same_ref(&x["parentRef"], pr, &ns)))
            else {
                out.push(format!("{pw}: not in the API"));
                continue;
            };
            diff_conditions(&mut out, &pw, &ap["conditions"], &p["conditions"], false);
        }
        let api_parents = a["parents"].as_array().map_or(0, Vec::len);
        if api_parents != expected_parents {
            out.push(format!(
                "{what}: {api_parents} parents of ours in the API, {expected_parents} on /status"
            ));
        }
    }
    out
}

fn same_ref(a: &Value, b: &Value, ns: &str) -> bool {
    let f = |v: &Value, k: &str, d: &str| v[k].as_str().unwrap_or(d).to_string();
    f(a, "group", GATEWAY_GROUP) == f(b, "group", GATEWAY_GROUP)
        && f(a, "kind", "Gateway") == f(b, "kind", "Gateway")
        && f(a, "namespace", ns) == f(b, "namespace", ns)
        && a["name"] == b["name"]
        && a["sectionName"] == b["sectionName"]
        && a["port"] == b["port"]
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        .collect();
    out.sort();
    out
}

/// Conditions compared by type: status, reason, message, observedGeneration.
fn diff_conditions(
    out: &mut Vec<String>,
    what: &str,
    api: &Value,
    replica: &Value,
    skip_attached: bool,
) {
    let fields = ["status", "reason", "message", "observedGeneration"];
    let list = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|c| !(skip_attached && c["type"] == "AttachedListenerSets"))
            .cloned()
            .collect()
    };
    let (api, replica) = (list(api), list(replica));
    for r in &replica {
        match api.iter().find(|a| a["type"] == r["type"]) {
            None => out.push(format!("{what}: condition {} not in the API", r["type"])),
            Some(a) => {
                for f in fields {
                    if a[f] != r[f] {
                        out.push(format!(
                            "{what}: condition {} {f} {} in the API, {} on /status",
                            r["type"], a[f], r[f]
                        ));
                    }
                }
            }
        }
    }
    for a in &api {
        if !replica.iter().any(|r| r["type"] == a["type"]) {
            out.push(format!("{what}: condition {} only in the API", a["type"]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "portcullis.dev/gateway-controller";

    #[test]
    fn route_parents_of_other_controllers_are_left_out_and_refs_get_defaults() {
        let route = json!({
            "kind": "HTTPRoute",
            "metadata": {"namespace": "apps", "name": "r", "generation": 2},
            "status": {"parents": [
                {"parentRef": {"name": "gw"}, "controllerName": "other.example/ctl",
                 "conditions": [{"type": "Accepted", "status": "False"}]},
                {"parentRef": {"name": "gw", "sectionName": "http"}, "controllerName": OURS,
                 "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                 "message": "", "observedGeneration": 2,
                                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
            ]},
        });
        let doc = to_status_document(&[route], OURS);
        let parents = &doc["objects"][0]["parents"];
        assert_eq!(parents.as_array().map(Vec::len), Some(1), "{doc}");
        assert_eq!(
            parents[0]["parentRef"],
            json!({"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "apps",
                   "name": "gw", "sectionName": "http"})
        );
        assert!(parents[0]["conditions"][0]
            .get("lastTransitionTime")
            .is_none());
    }

    #[test]
    fn policy_conditions_come_from_our_first_ancestor_and_listeners_list_kind_names() {
        let policy = json!({
            "kind": "BackendTLSPolicy",
            "metadata": {"namespace": "ns", "name": "p", "generation": 1},
            "status": {"ancestors": [
                {"ancestorRef": {"name": "gw"}, "controllerName": OURS,
                 "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 1}]},
            ]},
        });
        let gateway = json!({
            "kind": "Gateway",
            "metadata": {"namespace": "ns", "name": "gw", "generation": 3},
            "status": {
                "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}],
                "listeners": [{"name": "http", "attachedRoutes": 1,
                               "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                               "conditions": []}],
                "attachedListenerSets": 0,
            },
        });
        let objects = [policy, gateway];
        let doc = to_status_document(&objects, OURS);
        assert_eq!(doc["objects"][0]["conditions"][0]["type"], "Accepted");
        assert_eq!(
            doc["objects"][1]["listeners"][0]["supportedKinds"],
            json!(["HTTPRoute"])
        );
        assert_eq!(doc["objects"][1]["attachedListenerSets"], 0);
        let stale = stale(&objects, OURS);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert!(stale[0].starts_with("Gateway ns/gw"), "{stale:?}");
    }

    #[test]
    fn objects_without_status_of_ours_are_left_out() {
        let objects = [
            json!({"kind": "HTTPRoute", "metadata": {"namespace": "a", "name": "r"}, "status": {}}),
            json!({"kind": "BackendTLSPolicy", "metadata": {"namespace": "a", "name": "p"}}),
            json!({"kind": "Gateway", "metadata": {"namespace": "a", "name": "g"}}),
        ];
        assert_eq!(to_status_document(&objects, OURS), json!({"objects": []}));
    }

    #[test]
    fn differences_name_what_the_api_lacks_and_skip_what_it_carries_elsewhere() {
        let c = |ty: &str, status: &str| {
            json!({"type": ty, "status": status, "reason": "R",
                                                 "message": "", "observedGeneration": 1})
        };
        let key = |k: &str, n: &str| (k.to_string(), "ns".to_string(), n.to_string());
        let keys: BTreeSet<Key> = [key("Gateway", "gw"), key("HTTPRoute", "r")].into();
        let replica = json!({"objects": [
            {"kind": "Gateway", "namespace": "ns", "name": "gw",
             "conditions": [c("Accepted", "True"), c("AttachedListenerSets", "False")],
             "listeners": [{"name": "http", "attachedRoutes": 1, "supportedKinds": ["HTTPRoute"],
                            "conditions": [c("Accepted", "True")]}]},
            {"kind": "HTTPRoute", "namespace": "ns", "name": "r", "conditions": [], "parents": [
                {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "ns", "name": "gw"},
                 "conditions": [c("Accepted", "True")]},
                {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "ns", "name": "absent"},
                 "conditions": [c("Accepted", "False")]}]},
        ]});
        let mut api = replica.clone();
        api["objects"][0]["conditions"] = json!([c("Accepted", "True")]);
        api["objects"][1]["parents"] = json!([replica["objects"][1]["parents"][0]]);
        assert_eq!(differences(&api, &replica, &keys), Vec::<String>::new());
        api["objects"][0]["listeners"][0]["attachedRoutes"] = json!(0);
        api["objects"][1]["parents"][0]["conditions"] = json!([c("Accepted", "False")]);
        let found = differences(&api, &replica, &keys);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("attachedRoutes 0 in the API, 1 on /status"),
            "{found:?}"
        );
        assert!(
            found[1].contains("condition \"Accepted\" status"),
            "{found:?}"
        );
    }
}
