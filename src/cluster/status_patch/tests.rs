//! Status patch tests, named after the rule each one checks. Compile runs
//! on a small cluster fixture ([`fixture`]); live objects are JSON as the
//! API server returns them. Here: the shared lists (route parents, policy
//! ancestors) and conditions; `objects`: the other kinds, features, and
//! removals through `managedFields`.

mod objects;

use super::shared::MAX_ROUTE_PARENTS;
use super::*;
use crate::compile::{compile, CompileOptions, Compiled};
use crate::model::load::parse_documents;
use crate::model::Resources;
use crate::status::{ConditionStatus, ListenerStatus, ParentStatus, Reason};
use std::time::{Duration, UNIX_EPOCH};

const CONTROLLER: &str = "portcullis.dev/gateway-controller";
const OTHER: &str = "example.com/other-controller";
/// 1_700_000_000 s.
const EARLIER: &str = "2023-11-14T22:13:20Z";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 1_800_000_000 s: `2027-01-15T08:00:00Z`.
fn now() -> SystemTime {
    at(1_800_000_000)
}
const NOW: &str = "2027-01-15T08:00:00Z";

/// Two classes (ours `pc`, another controller's `other`), our Gateway
/// `infra/gw` with a listener of every protocol and an HTTPS one whose
/// Secret is missing, another controller's Gateway `infra/foreign`, a
/// ListenerSet `app/extra` on `gw`, a route of every kind in `app` (the
/// HTTPRoute also names `foreign` and a Gateway that does not exist), and a
/// BackendTLSPolicy on the `https` port of `app/svc`.
pub(super) const FIXTURE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc, generation: 1}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other, generation: 1}
spec: {controllerName: example.com/other-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra, generation: 2}
spec:
  gatewayClassName: pc
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.example.com
    tls: {mode: Terminate, certificateRefs: [{name: missing-cert}]}
    allowedRoutes: {namespaces: {from: All}}
  - {name: tls, port: 8443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: All}}}
  - {name: tcp, port: 9000, protocol: TCP, allowedRoutes: {namespaces: {from: All}}}
  - {name: udp, port: 9001, protocol: UDP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign, namespace: infra, generation: 1}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: app, generation: 1}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
  - {name: extra-http, port: 8080, protocol: HTTP, hostname: extra.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec:
  ports: [{name: http, port: 80}, {name: https, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app, generation: 3}
spec:
  parentRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: infra, sectionName: http}
  - {group: gateway.networking.k8s.io, kind: Gateway, name: foreign, namespace: infra}
  - {group: gateway.networking.k8s.io, kind: Gateway, name: missing, namespace: infra}
  rules:
  - backendRefs: [{name: svc, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-set, namespace: app, generation: 1}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: extra}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: app, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tls, namespace: app, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: tls}]
  hostnames: [tls.example.com]
  rules:
  - backendRefs: [{name: svc, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp, namespace: app, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: tcp}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {name: udp, namespace: app, generation: 1}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: udp}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: to-svc, namespace: app, generation: 4}
spec:
  targetRefs: [{group: '', kind: Service, name: svc, sectionName: https}]
  validation:
    caCertificateRefs: [{group: '', kind: ConfigMap, name: missing-ca}]
    hostname: svc.example.com
";

pub(super) fn load(yaml: &str) -> Resources {
    Resources::from_objects(
        parse_documents(yaml, "t.yaml")
            .expect("fixture parses")
            .objects,
    )
}

pub(super) fn fixture() -> (Resources, Compiled) {
    let resources = load(FIXTURE);
    let compiled = compile(&resources, &CompileOptions::default());
    (resources, compiled)
}

pub(super) fn find<'a>(c: &'a Compiled, kind: &str, ns: &str, name: &str) -> &'a ObjectStatus {
    c.status
        .find(kind, ns, name)
        .unwrap_or_else(|| panic!("no status for {kind} {ns}/{name}"))
}

/// The object `status` is for, as the API server would return it before
/// any status was written (`spec` given for routes).
pub(super) fn live_of(target: &Target<'_>, status: &ObjectStatus, spec: Value) -> Value {
    let mut meta = json!({"name": status.name, "resourceVersion": "100", "generation": 1});
    if target.is_namespaced() {
        meta["namespace"] = json!(status.namespace);
    }
    json!({
        "apiVersion": target.api_version(),
        "kind": target.kind(),
        "metadata": meta,
        "spec": spec,
    })
}

/// `live` after the API server took `body` (status replaced; the cases
/// here never share a map list with another manager).
pub(super) fn applied(live: &Value, body: &Value) -> Value {
    let mut out = live.clone();
    out["status"] = body["status"].clone();
    out
}

fn owned_of(c: &Compiled) -> OwnedParents {
    OwnedParents::from_status(&c.status)
}

fn ctx(owned: &OwnedParents) -> PatchContext<'_> {
    PatchContext {
        controller_name: CONTROLLER,
        field_manager: FIELD_MANAGER,
        owned,
    }
}

fn patch(
    target: &Target<'_>,
    ours: &ObjectStatus,
    live: &Value,
    owned: &OwnedParents,
) -> Option<Value> {
    status_patch(target, ours, live, &ctx(owned), now()).expect("patch builds")
}

fn gw_ref(name: &str, section: Option<&str>) -> ParentRefStatus {
    ParentRefStatus {
        group: GATEWAY_GROUP.into(),
        kind: "Gateway".into(),
        namespace: "infra".into(),
        name: name.into(),
        section_name: section.map(str::to_string),
        port: None,
    }
}

fn owned_gateways(names: &[&str]) -> OwnedParents {
    let mut status = Status::default();
    for n in names {
        status
            .objects
            .push(ObjectStatus::new("Gateway", "infra", n));
    }
    OwnedParents::from_status(&status)
}

fn accepted(ok: bool, generation: i64) -> Condition {
    let reason = if ok {
        Reason::Accepted
    } else {
        Reason::NotAllowedByListeners
    };
    Condition::new(ConditionType::Accepted, ok, reason, "", generation)
}

/// An HTTPRoute `app/r` of generation `generation` with parents of ours.
fn route(generation: i64, parents: &[(ParentRefStatus, bool)]) -> ObjectStatus {
    let mut s = ObjectStatus::new("HTTPRoute", "app", "r");
    for (r, ok) in parents {
        s.parents.push(ParentStatus {
            parent_ref: r.clone(),
            controller_name: CONTROLLER.into(),
            conditions: vec![accepted(*ok, generation)],
        });
    }
    s
}

/// A live parent entry.
fn entry(controller: &str, gateway: &str, status: &str, since: &str, generation: i64) -> Value {
    json!({
        "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "infra", "name": gateway},
        "controllerName": controller,
        "conditions": [{
            "type": "Accepted", "status": status, "reason": "Accepted", "message": "",
            "lastTransitionTime": since, "observedGeneration": generation,
        }],
    })
}

fn live_route(parents: Vec<Value>) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "app", "resourceVersion": "7", "generation": 1},
        "spec": {"parentRefs": []},
        "status": {"parents": parents},
    })
}

const HTTP_ROUTE: Target<'static> = Target::Route(RouteKind::Http);

#[test]
fn keeps_other_controllers_parent_entries_unchanged_and_in_place() {
    let owned = owned_gateways(&["gw"]);
    let theirs_a = entry(OTHER, "a", "True", EARLIER, 1);
    let theirs_b = entry(OTHER, "b", "False", EARLIER, 1);
    let live = live_route(vec![
        theirs_a.clone(),
        entry(CONTROLLER, "gw", "True", EARLIER, 1),
        theirs_b.clone(),
    ]);
    let ours = route(1, &[(gw_ref("gw", None), false)]);
    let body = patch(&HTTP_ROUTE, &ours, &live, &owned).expect("a change");
    let parents = body["status"]["parents"].as_array().expect("parents");
    assert_eq!(parents.len(), 3);
    assert_eq!(parents[0], theirs_a);
    assert_eq!(parents[1]["controllerName"], CONTROLLER);
    assert_eq!(parents[1]["conditions"][0]["status"], "False");
    assert_eq!(parents[2], theirs_b);
}

#[test]
fn other_controllers_entry_for_the_same_parent_is_kept_beside_ours() {
    let owned = owned_gateways(&["gw"]);
    let theirs = entry(OTHER, "gw", "False", EARLIER, 1);
    let live = live_route(vec![theirs.clone()]);
    let ours = route(1, &[(gw_ref("gw", None), true)]);
    let body = patch(&HTTP_ROUTE, &ours, &live, &owned).expect("a change");
    let parents = body["status"]["parents"].as_array().expect("parents");
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], theirs);
    assert_eq!(parents[1]["controllerName"], CONTROLLER);
}

#[test]
fn drops_our_entries_compile_no_longer_produces() {
    let owned = owned_gateways(&["gw", "old"]);
    let theirs = entry(OTHER, "a", "True", EARLIER, 1);
    let live = live_route(vec![
        entry(CONTROLLER, "old", "True", EARLIER, 1),
        theirs.clone(),
        entry(CONTROLLER, "gw", "True", EARLIER, 1),
    ]);
    let ours = route(1, &[(gw_ref("gw", None), true)]);
    let body = patch(&HTTP_ROUTE, &ours, &live, &owned).expect("a change");
    let parents = body["status"]["parents"].as_array().expect("parents");
    let names: Vec<&Value> = parents.iter().map(|p| &p["parentRef"]["name"]).collect();
    assert_eq!(names, [&json!("a"), &json!("gw")]);
    assert_eq!(parents[0], theirs);
}

#[test]
fn removes_every_entry_of_ours_when_compile_reports_no_parent() {
    let owned = owned_gateways(&["gw"]);
    let theirs = entry(OTHER, "a", "True", EARLIER, 1);
    let live = live_route(vec![
        entry(CONTROLLER, "gw", "True", EARLIER, 1),
        theirs.clone(),
    ]);
    let ours = ObjectStatus::new("HTTPRoute", "app", "r");
    let body = patch(&HTTP_ROUTE, &ours, &live, &owned).expect("a change");
    assert_eq!(body["status"]["parents"], json!([theirs]));
}

#[test]
fn writes_nothing_to_a_route_without_entries_of_ours() {
    let owned = owned_gateways(&["gw"]);
    let live = live_route(vec![entry(OTHER, "a", "True", EARLIER, 1)]);
    let ours = ObjectStatus::new("HTTPRoute", "app", "r");
    assert_eq!(patch(&HTTP_ROUTE, &ours, &live, &owned), None);
    let bare = json!({
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "app", "resourceVersion": "7"},
    });
    assert_eq!(patch(&HTTP_ROUTE, &ours, &bare, &owned), None);
}

#[test]
fn carries_the_resource_version_for_shared_lists() {
    let owned = owned_gateways(&["gw"]);
    let live = live_route(vec![]);
    let body = patch(
        &HTTP_ROUTE,
        &route(1, &[(gw_ref("gw", None), true)]),
        &live,
        &owned,
    )
    .expect("a change");
    assert_eq!(body["metadata"]["resourceVersion"], "7");

    let (_, c) = fixture();
    let owned = owned_of(&c);
    let policy = find(&c, "BackendTLSPolicy", "app", "to-svc");
    let ancestors = [gw_ref("gw", None)];
    let target = Target::BackendTlsPolicy {
        ancestors: &ancestors,
    };
    let live = live_of(&target, policy, json!({}));
    let body = patch(&target, policy, &live, &owned).expect("a change");
    assert_eq!(body["metadata"]["resourceVersion"], "100");
}

#[test]
fn refuses_a_shared_list_write_without_a_resource_version() {
    let owned = owned_gateways(&["gw"]);
    let mut live = live_route(vec![]);
    live["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let ours = route(1, &[(gw_ref("gw", None), true)]);
    let err = status_patch(&HTTP_ROUTE, &ours, &live, &ctx(&owned), now())
        .expect_err("no resourceVersion");
    assert!(matches!(err, Error::ReadResourceVersion { .. }), "{err}");
}

#[test]
fn never_writes_a_parent_of_another_class_or_a_missing_gateway() {
    let (_, c) = fixture();
    let owned = owned_of(&c);
    let web = find(&c, "HTTPRoute", "app", "web");
    // Compile reports the Gateway that does not exist (NoMatchingParent)
    // beside ours; it names the other class's Gateway nowhere.
    let reported: Vec<&str> = web
        .parents
        .iter()
        .map(|p| p.parent_ref.name.as_str())
        .collect();
    assert_eq!(reported, ["gw", "missing"]);
    let spec = json!({"parentRefs": [
        {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw", "namespace": "infra", "sectionName": "http"},
        {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "foreign", "namespace": "infra"},
        {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "missing", "namespace": "infra"},
    ]});
    let live = live_of(&HTTP_ROUTE, web, spec);
    let body = patch(&HTTP_ROUTE, web, &live, &owned).expect("a change");
    let names: Vec<&Value> = body["status"]["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .map(|p| &p["parentRef"]["name"])
        .collect();
    assert_eq!(names, [&json!("gw")]);

    // A route whose only parents are another controller's Gateway and a
    // missing one gets nothing written at all.
    let lonely = load(&format!(
        "{FIXTURE}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: lonely, namespace: app}}
spec:
  parentRefs: [{{name: foreign, namespace: infra}}, {{name: missing, namespace: infra}}]
"
    ));
    let c = compile(&lonely, &CompileOptions::default());
    let status = find(&c, "HTTPRoute", "app", "lonely");
    assert_eq!(
        status.parents.len(),
        1,
        "compile reports the missing parent"
    );
    let live = live_of(&HTTP_ROUTE, status, json!({}));
    assert_eq!(patch(&HTTP_ROUTE, status, &live, &owned_of(&c)), None);
}

#[test]
fn echoes_parent_refs_as_written_in_the_spec() {
    let owned = owned_gateways(&["gw"]);
    let mut live = live_route(vec![]);
    // As stored: group and kind defaulted by the API server; a namespace
    // and a port for the Gateway in another namespace, neither for the one
    // in the route's own namespace.
    live["spec"]["parentRefs"] = json!([
        {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw", "namespace": "infra", "port": 80},
        {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "local", "sectionName": "http"},
    ]);
    let mut same_ns = gw_ref("local", Some("http"));
    same_ns.namespace = "app".into();
    let mut owned_local = Status::default();
    owned_local
        .objects
        .push(ObjectStatus::new("Gateway", "infra", "gw"));
    owned_local
        .objects
        .push(ObjectStatus::new("Gateway", "app", "local"));
    let owned_local = OwnedParents::from_status(&owned_local);
    let mut with_port = gw_ref("gw", None);
    with_port.port = Some(80);
    let ours = route(1, &[(with_port, true), (same_ns, true)]);
    let body = patch(&HTTP_ROUTE, &ours, &live, &owned_local).expect("a change");
    let parents = &body["status"]["parents"];
    assert_eq!(
        parents[0]["parentRef"],
        json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw", "namespace": "infra", "port": 80})
    );
    assert_eq!(
        parents[1]["parentRef"],
        json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": "local", "sectionName": "http"})
    );
    // Not in the spec (compile saw an older one): written in full.
    let body = patch(
        &HTTP_ROUTE,
        &route(1, &[(gw_ref("gw", Some("https")), true)]),
        &live,
        &owned,
    )
    .expect("a change");
    assert_eq!(
        body["status"]["parents"][0]["parentRef"],
        json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw", "namespace": "infra", "sectionName": "https"})
    );
}

#[test]
fn keeps_last_transition_time_while_the_status_is_unchanged() {
    let owned = owned_gateways(&["gw"]);
    let live = live_route(vec![entry(CONTROLLER, "gw", "True", EARLIER, 1)]);
    let mut ours = route(1, &[(gw_ref("gw", None), true)]);
    ours.parents[0].conditions[0].message = "new words".into();
    let body = patch(&HTTP_ROUTE, &ours, &live, &owned).expect("message changed");
    let c = &body["status"]["parents"][0]["conditions"][0];
    assert_eq!(c["message"], "new words");
    assert_eq!(c["lastTransitionTime"], EARLIER);
}

#[test]
fn takes_now_as_last_transition_time_when_the_status_flips() {
    let owned = owned_gateways(&["gw"]);
    let live = live_route(vec![entry(CONTROLLER, "gw", "True", EARLIER, 1)]);
    let body = patch(
        &HTTP_ROUTE,
        &route(1, &[(gw_ref("gw", None), false)]),
        &live,
        &owned,
    )
    .expect("status flipped");
    let c = &body["status"]["parents"][0]["conditions"][0];
    assert_eq!(c["status"], "False");
    assert_eq!(c["lastTransitionTime"], NOW);
}

#[test]
fn bumps_observed_generation_without_a_new_transition() {
    let owned = owned_gateways(&["gw"]);
    let live = live_route(vec![entry(CONTROLLER, "gw", "True", EARLIER, 1)]);
    let body = patch(
        &HTTP_ROUTE,
        &route(2, &[(gw_ref("gw", None), true)]),
        &live,
        &owned,
    )
    .expect("new generation");
    let c = &body["status"]["parents"][0]["conditions"][0];
    assert_eq!(c["observedGeneration"], 2);
    assert_eq!(c["lastTransitionTime"], EARLIER);
}

#[test]
fn writes_nothing_from_a_compile_older_than_the_live_conditions() {
    let owned = owned_gateways(&["gw"]);
    let live = live_route(vec![entry(CONTROLLER, "gw", "True", EARLIER, 3)]);
    let stale = route(2, &[(gw_ref("gw", None), false)]);
    assert_eq!(patch(&HTTP_ROUTE, &stale, &live, &owned), None);

    let (_, c) = fixture();
    let gw = find(&c, "Gateway", "infra", "gw");
    let target = Target::Gateway { addresses: &[] };
    let mut live = live_of(&target, gw, json!({}));
    live["status"] = json!({"conditions": [{
        "type": "Accepted", "status": "False", "reason": "Invalid", "message": "",
        "lastTransitionTime": EARLIER, "observedGeneration": 9,
    }]});
    assert_eq!(patch(&target, gw, &live, &owned_of(&c)), None);
}

#[test]
fn policy_ancestors_are_the_gateways_whose_accepted_routes_use_the_target() {
    let (resources, c) = fixture();
    let ancestors = policy_ancestors(&resources, &c.status);
    // `to-svc` targets port `https` (443) of app/svc: web (on gw) and tls
    // (on gw) use it; on-set (through ListenerSet extra on gw) uses port 80.
    assert_eq!(
        ancestors.get(&ObjectKey::new("app", "to-svc")),
        Some(&vec![gw_ref("gw", None)])
    );
    // The whole Service: every route of ours counts, still one Gateway.
    let whole = load(&FIXTURE.replace(", sectionName: https}", "}"));
    let c = compile(&whole, &CompileOptions::default());
    assert_eq!(
        policy_ancestors(&whole, &c.status).get(&ObjectKey::new("app", "to-svc")),
        Some(&vec![gw_ref("gw", None)])
    );
    // A port name the Service lacks matches no backendRef.
    let none = load(&FIXTURE.replace("sectionName: https}", "sectionName: nope}"));
    let c = compile(&none, &CompileOptions::default());
    assert!(policy_ancestors(&none, &c.status).is_empty());
}

#[test]
fn policy_ancestors_count_only_routes_accepted_by_our_gateways() {
    // Only the other class's Gateway uses the Service.
    let yaml = FIXTURE
        .replace(
            "name: gw, namespace: infra, sectionName: http}",
            "name: foreign, namespace: infra}",
        )
        .replace(
            "name: gw, namespace: infra, sectionName: tls}",
            "name: foreign, namespace: infra}",
        );
    let resources = load(&yaml);
    let c = compile(&resources, &CompileOptions::default());
    assert!(policy_ancestors(&resources, &c.status).is_empty());
}

#[test]
fn policy_writes_one_entry_per_ancestor_with_the_policy_conditions() {
    let (resources, c) = fixture();
    let owned = owned_of(&c);
    let policy = find(&c, "BackendTLSPolicy", "app", "to-svc");
    let ancestors = policy_ancestors(&resources, &c.status);
    let anc = &ancestors[&ObjectKey::new("app", "to-svc")];
    let target = Target::BackendTlsPolicy { ancestors: anc };
    let theirs = json!({
        "ancestorRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "infra", "name": "foreign"},
        "controllerName": OTHER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": EARLIER, "observedGeneration": 4}],
    });
    let mut live = live_of(&target, policy, json!({}));
    live["status"] = json!({"ancestors": [theirs.clone()]});
    let body = patch(&target, policy, &live, &owned).expect("first write");
    let list = body["status"]["ancestors"].as_array().expect("ancestors");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], theirs);
    assert_eq!(
        list[1]["ancestorRef"],
        json!({"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "infra", "name": "gw"})
    );
    let conds = list[1]["conditions"].as_array().expect("conditions");
    assert_eq!(conds[0]["type"], "Accepted");
    assert_eq!(conds[0]["observedGeneration"], 4);
    // An ancestor that is not ours is never written.
    let foreign = [gw_ref("foreign", None)];
    let target = Target::BackendTlsPolicy {
        ancestors: &foreign,
    };
    let live = live_of(&target, policy, json!({}));
    assert_eq!(patch(&target, policy, &live, &owned), None);
}

#[test]
fn keeps_at_most_the_api_limit_of_parents_cutting_ours_first() {
    let mut names: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    names.push("gw".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let owned = owned_gateways(&refs);
    let theirs: Vec<Value> = (0..30)
        .map(|i| entry(OTHER, &format!("t{i}"), "True", EARLIER, 1))
        .collect();
    let parents: Vec<(ParentRefStatus, bool)> = (0..5)
        .map(|i| (gw_ref(&format!("g{i}"), None), true))
        .collect();
    let body = patch(
        &HTTP_ROUTE,
        &route(1, &parents),
        &live_route(theirs.clone()),
        &owned,
    )
    .expect("a change");
    let list = body["status"]["parents"].as_array().expect("parents");
    assert_eq!(list.len(), MAX_ROUTE_PARENTS);
    assert_eq!(list[..30], theirs[..]);
}
