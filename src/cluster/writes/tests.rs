//! Tests of the write planner over compiled fixtures.

use super::*;
use crate::cluster::cache::KindCache;
use crate::compile::{compile, CompileOptions};
use crate::model::load::parse_documents;
use serde_json::{json, Value};

const OURS: &str = "portcullis.dev/gateway-controller";

const FIXTURE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  gatewayClassName: pc
  listeners:
  - {name: http, protocol: HTTP, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: edge}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: edge}
spec: {ports: [{port: 80}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {name: self, namespace: edge}
spec: {selfSigned: {}}
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterIssuer
metadata: {name: broken}
spec: {ca: {secretName: missing}}
"#;

/// The live objects a cluster would serve for `yaml`: each manifest as the
/// API would return it, with a resourceVersion and the given status.
fn live_of(
    yaml: &str,
    status: impl Fn(&str, &str) -> Value,
) -> BTreeMap<(Watched, ObjectKey), Live> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let mut v: Value = serde::Deserialize::deserialize(doc).expect("fixture is YAML");
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let Some(watched) = Watched::ALL.into_iter().find(|w| w.kind() == kind) else {
            continue;
        };
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        v["metadata"]["resourceVersion"] = json!("10");
        v["status"] = status(&kind, &name);
        let mut cache = KindCache::new(watched, watched.api_resource(watched.versions()[0]));
        cache.apply(v);
        for (k, c) in cache.objects() {
            out.insert((watched, k.clone()), c.live.clone());
        }
    }
    out
}

fn snapshot(yaml: &str) -> (Resources, Status) {
    let r = Resources::from_objects(parse_documents(yaml, "f.yaml").expect("parses").objects);
    let status = compile(&r, &CompileOptions::default()).status;
    (r, status)
}

fn settings<'a>(sources: &'a AddressSources, service: Option<&'a ObjectKey>) -> Settings<'a> {
    Settings {
        controller_name: OURS,
        write_certificate_refs: true,
        gateway_service: service,
        per_gateway_service: false,
        addresses: sources,
        certificates: &NO_CERTIFICATES,
    }
}

static NO_CERTIFICATES: crate::issuer::status::ListenerConditions =
    crate::issuer::status::ListenerConditions::EMPTY;

fn find<'a>(applies: &'a [Apply], kind: &str, name: &str) -> Option<&'a Apply> {
    applies
        .iter()
        .find(|a| a.resource.kind == kind && a.name == name)
}

#[test]
fn every_owned_object_gets_its_status_once_and_not_again() {
    let (r, status) = snapshot(FIXTURE);
    let live = live_of(FIXTURE, |_, _| json!({}));
    let sources = AddressSources::default();
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let applies = plan(&r, &status, &live, &settings(&sources, None), now);
    for (kind, name) in [
        ("GatewayClass", "pc"),
        ("Gateway", "gw"),
        ("HTTPRoute", "web"),
        ("Issuer", "self"),
        ("ClusterIssuer", "broken"),
    ] {
        let a = find(&applies, kind, name)
            .unwrap_or_else(|| panic!("{kind} {name} written: {applies:#?}"));
        assert!(a.status, "{kind} goes to the status subresource");
        assert_eq!(a.manager, status_patch::FIELD_MANAGER);
    }
    let route = find(&applies, "HTTPRoute", "web").expect("route");
    assert_eq!(
        (route.namespace.as_str(), route.resource.plural.as_str()),
        ("edge", "httproutes")
    );
    assert_eq!(
        route.body.value()["status"]["parents"][0]["controllerName"],
        OURS
    );
    assert_eq!(
        find(&applies, "GatewayClass", "pc")
            .expect("class")
            .namespace,
        ""
    );
    // Once the API holds what was written, the same snapshot writes nothing.
    let written: BTreeMap<(String, String), Value> = applies
        .iter()
        .map(|a| {
            (
                (a.resource.kind.clone(), a.name.clone()),
                a.body.value()["status"].clone(),
            )
        })
        .collect();
    let live = live_of(FIXTURE, |kind, name| {
        written
            .get(&(kind.to_string(), name.to_string()))
            .cloned()
            .unwrap_or(json!({}))
    });
    let again = plan(&r, &status, &live, &settings(&sources, None), now);
    assert_eq!(again, vec![], "nothing left to write");
}

#[test]
fn issuer_readiness_says_why_not() {
    let (r, status) = snapshot(FIXTURE);
    let live = live_of(FIXTURE, |_, _| json!({}));
    let sources = AddressSources::default();
    let applies = plan(
        &r,
        &status,
        &live,
        &settings(&sources, None),
        SystemTime::UNIX_EPOCH,
    );
    let ready = |name: &str, kind: &str| {
        let a = find(&applies, kind, name).expect("written");
        let c = &a.body.value()["status"]["conditions"][0];
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["message"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(ready("self", "Issuer").0, "True");
    let (status, message) = ready("broken", "ClusterIssuer");
    assert_eq!(status, "False");
    assert!(message.contains("default/missing"), "{message}");
}

#[test]
fn gateways_report_the_load_balancer_ingress_of_the_gateway_service() {
    let with_service = format!(
        "{FIXTURE}---\napiVersion: v1\nkind: Service\nmetadata: {{name: portcullis, namespace: portcullis-system}}\nspec: {{type: LoadBalancer, ports: [{{port: 443}}]}}\n"
    );
    let (r, status) = snapshot(&with_service);
    let live = live_of(&with_service, |kind, name| match (kind, name) {
        ("Service", "portcullis") => json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}),
        _ => json!({}),
    });
    let sources = AddressSources::default();
    let service = ObjectKey::new("portcullis-system", "portcullis");
    let applies = plan(
        &r,
        &status,
        &live,
        &settings(&sources, Some(&service)),
        SystemTime::UNIX_EPOCH,
    );
    let gw = find(&applies, "Gateway", "gw").expect("gateway written");
    assert_eq!(
        gw.body.value()["status"]["addresses"],
        json!([{"type": "IPAddress", "value": "203.0.113.7"}])
    );
}

#[test]
fn a_gateway_with_a_service_of_its_own_reports_that_services_ingress() {
    let own = |labels: &str| {
        format!(
            "{FIXTURE}---\napiVersion: v1\nkind: Service\nmetadata: {{name: portcullis, namespace: portcullis-system}}\nspec: {{type: LoadBalancer, ports: [{{port: 443}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: portcullis-gw, namespace: edge, labels: {{{labels}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        )
    };
    let address = |yaml: &str, per_gateway_service: bool| {
        let (r, status) = snapshot(yaml);
        let live = live_of(yaml, |kind, name| match (kind, name) {
            ("Service", "portcullis") => {
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}})
            }
            ("Service", "portcullis-gw") => {
                json!({"loadBalancer": {"ingress": [{"hostname": "gw.lb.example"}]}})
            }
            _ => json!({}),
        });
        let sources = AddressSources::default();
        let shared = ObjectKey::new("portcullis-system", "portcullis");
        let with = Settings {
            per_gateway_service,
            ..settings(&sources, Some(&shared))
        };
        let applies = plan(&r, &status, &live, &with, SystemTime::UNIX_EPOCH);
        let gw = find(&applies, "Gateway", "gw").expect("gateway written");
        gw.body.value()["status"]["addresses"][0]["value"].clone()
    };
    let ours = own("app.kubernetes.io/managed-by: portcullis");
    assert_eq!(address(&ours, true), "gw.lb.example");
    assert_eq!(
        address(&ours, false),
        "203.0.113.7",
        "flag off: the shared one"
    );
    assert_eq!(
        address(&own("app: theirs"), true),
        "203.0.113.7",
        "a Service of that name portcullis did not make"
    );
}

#[test]
fn a_route_compile_no_longer_reports_loses_only_our_entry() {
    // The route now points at a Gateway of another controller; its live
    // status still has our old entry beside the other controller's.
    let moved = FIXTURE.replace("parentRefs: [{name: gw}]", "parentRefs: [{name: theirs}]");
    let (r, status) = snapshot(&moved);
    let entry = |controller: &str, gateway: &str| {
        json!({"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway},
               "controllerName": controller,
               "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                               "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    };
    let live = live_of(&moved, |kind, _| match kind {
        "HTTPRoute" => {
            json!({"parents": [entry("example.com/other", "theirs"), entry(OURS, "gw")]})
        }
        _ => json!({}),
    });
    let sources = AddressSources::default();
    let applies = plan(
        &r,
        &status,
        &live,
        &settings(&sources, None),
        SystemTime::UNIX_EPOCH,
    );
    let route = find(&applies, "HTTPRoute", "web").expect("stale entry removed");
    assert_eq!(
        route.body.value()["status"]["parents"],
        json!([entry("example.com/other", "theirs")])
    );
    assert_eq!(route.body.value()["metadata"]["resourceVersion"], "10");
}

#[test]
fn objects_of_other_controllers_get_no_write() {
    let foreign = FIXTURE.replace(
        "controllerName: portcullis.dev/gateway-controller",
        "controllerName: example.com/other",
    );
    let (r, status) = snapshot(&foreign);
    let live = live_of(&foreign, |_, _| json!({}));
    let sources = AddressSources::default();
    let applies = plan(
        &r,
        &status,
        &live,
        &settings(&sources, None),
        SystemTime::UNIX_EPOCH,
    );
    let gateway_api: Vec<&Apply> = applies
        .iter()
        .filter(|a| a.resource.group == "gateway.networking.k8s.io")
        .collect();
    assert_eq!(gateway_api, Vec::<&Apply>::new());
}

fn status_write(name: &str, read_version: &str, body: Value) -> Apply {
    Apply {
        resource: Watched::HttpRoute.api_resource("v1"),
        namespace: "edge".into(),
        name: name.into(),
        status: true,
        manager: status_patch::FIELD_MANAGER,
        body: Body::new(&body),
        read_version: read_version.into(),
    }
}

#[test]
fn a_write_planned_from_a_version_already_written_waits_for_the_echo() {
    let mut applied = Applied::default();
    let a = status_write("a", "7", json!({"status": {"parents": []}}));
    let first = applied.not_yet_applied(vec![a.clone()]);
    assert_eq!(first, vec![a.clone()], "never applied: sent");
    applied.record(&a);
    // The next snapshot was taken before the watch brought the write back:
    // the same body on the same version.
    assert!(applied.not_yet_applied(vec![a.clone()]).is_empty());
    // Still not back: still not sent.
    assert!(applied.not_yet_applied(vec![a.clone()]).is_empty());
    // Another body planned from that version (compile decided something
    // new) would carry a stale version: it waits for the echo too.
    let changed = status_write("a", "7", json!({"status": {"parents": [{"x": 1}]}}));
    assert!(applied.not_yet_applied(vec![changed]).is_empty());
    // The echo (or someone else's change) moved the version.
    let moved = status_write("a", "9", json!({"status": {"parents": []}}));
    assert_eq!(applied.not_yet_applied(vec![moved.clone()]), vec![moved]);
    // Writes planned from no live status are never held back.
    let mut refs = status_write("a", "", json!({"spec": {}}));
    refs.status = false;
    applied.record(&refs);
    assert_eq!(applied.not_yet_applied(vec![refs.clone()]), vec![refs]);
}

#[test]
fn only_the_latest_plan_is_remembered() {
    let mut applied = Applied::default();
    let a = status_write("a", "1", json!({"status": {}}));
    applied.record(&a);
    // A plan without `a` (its write came back; nothing to do) forgets it.
    assert!(applied.not_yet_applied(Vec::new()).is_empty());
    assert_eq!(applied.not_yet_applied(vec![a.clone()]), vec![a]);
}

#[test]
fn a_gateways_status_carries_its_listeners_certificate_conditions() {
    let (r, status) = snapshot(FIXTURE);
    let live = live_of(FIXTURE, |_, _| json!({}));
    let sources = AddressSources::default();
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let cert = crate::issuer::status::CertStatus {
        secret: "edge/gw-http-tls".into(),
        dns_names: vec!["*.a.test".into()],
        issuer_kind: "Issuer".into(),
        issuer_name: "self".into(),
        listeners: vec!["edge/gw/http".into()],
        not_before: None,
        not_after: None,
        serial: None,
        renewal_time: None,
        ready: false,
        status: "Waiting".into(),
        reason: crate::issuer::plan::Why::Missing,
        attempts: 0,
        last_error: None,
        next_attempt: None,
        problems: vec!["no solver for *.a.test".into()],
        ari_window: None,
        profile: None,
    };
    let conditions = crate::issuer::status::ListenerConditions::of(&[cert]);
    let with = Settings {
        certificates: &conditions,
        ..settings(&sources, None)
    };
    let applies = plan(&r, &status, &live, &with, now);
    let gw = find(&applies, "Gateway", "gw").expect("Gateway written");
    let conditions = gw.body.value()["status"]["listeners"][0]["conditions"].clone();
    let ready = conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "portcullis.dev/CertificateReady")
        .unwrap_or_else(|| panic!("no CertificateReady in {conditions}"));
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("no solver")),
        "{ready}"
    );
    // The shared compiled status itself is not annotated.
    assert!(status.objects.iter().all(|o| o.listeners.iter().all(|l| l
        .conditions
        .iter()
        .all(|c| c.kind != crate::status::ConditionType::CertificateReady))));
}
