//! Status patch tests of Gateways, GatewayClasses, ListenerSets and
//! issuers: shapes, supported features, no second write, removals through
//! `managedFields`, and what a live object must be.

use super::super::conditions::{rfc3339_seconds, MAX_MESSAGE_BYTES};
use super::*;

#[test]
fn map_merged_kinds_carry_no_resource_version() {
    let (_, c) = fixture();
    let owned = owned_of(&c);
    let gw = find(&c, "Gateway", "infra", "gw");
    let target = Target::Gateway { addresses: &[] };
    let body = patch(&target, gw, &live_of(&target, gw, json!({})), &owned).expect("a change");
    assert!(
        body["metadata"].get("resourceVersion").is_none(),
        "{body:#}"
    );
}

#[test]
fn writes_nothing_when_the_live_status_already_says_it() {
    let (resources, c) = fixture();
    let owned = owned_of(&c);
    let addresses = [GatewayAddress::ip("192.0.2.1".parse().expect("ip"))];
    let ancestors = policy_ancestors(&resources, &c.status);
    let mut checked = 0;
    for o in &c.status.objects {
        let anc = ancestors
            .get(&ObjectKey::new(&o.namespace, &o.name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let target = match o.kind.as_str() {
            "GatewayClass" => Target::GatewayClass,
            "Gateway" => Target::Gateway {
                addresses: &addresses,
            },
            "ListenerSet" => Target::ListenerSet,
            "HTTPRoute" => Target::Route(RouteKind::Http),
            "GRPCRoute" => Target::Route(RouteKind::Grpc),
            "TLSRoute" => Target::Route(RouteKind::Tls),
            "TCPRoute" => Target::Route(RouteKind::Tcp),
            "UDPRoute" => Target::Route(RouteKind::Udp),
            "BackendTLSPolicy" => Target::BackendTlsPolicy { ancestors: anc },
            other => panic!("unexpected kind {other}"),
        };
        let live = live_of(&target, o, json!({}));
        let first = patch(&target, o, &live, &owned)
            .unwrap_or_else(|| panic!("{} {} needs a first write", o.kind, o.name));
        let live = applied(&live, &first);
        // A later compile of the same input, at a later time.
        let again =
            status_patch(&target, o, &live, &ctx(&owned), at(1_900_000_000)).expect("patch builds");
        assert_eq!(again, None, "{} {} written twice", o.kind, o.name);
        checked += 1;
    }
    assert_eq!(checked, c.status.objects.len());
    assert!(checked >= 10, "the fixture covers every kind: {checked}");
}

#[test]
fn gateway_class_announces_the_supported_features_sorted() {
    let (_, c) = fixture();
    let class = find(&c, "GatewayClass", "", "pc");
    let live = live_of(&Target::GatewayClass, class, json!({}));
    let body = patch(&Target::GatewayClass, class, &live, &owned_of(&c)).expect("first write");
    assert!(body["metadata"].get("namespace").is_none());
    let names: Vec<&str> = body["status"]["supportedFeatures"]
        .as_array()
        .expect("supportedFeatures")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted ascending, no duplicates");
    assert!(names.len() <= 64, "the CRD allows at most 64");
    for must in [
        "Gateway",
        "HTTPRoute",
        "TLSRoute",
        "ListenerSet",
        "BackendTLSPolicy",
    ] {
        assert!(names.contains(&must), "{must} missing");
    }
    assert!(!names.contains(&"Mesh"));
    let accepted = &body["status"]["conditions"][0];
    assert_eq!(accepted["type"], "Accepted");
    assert_eq!(accepted["status"], "True");
}

/// The shared conformance data (`$PORTCULLIS_SHARED` or `../shared`).
fn shared_conformance() -> Option<std::path::PathBuf> {
    let shared = std::env::var_os("PORTCULLIS_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let dir = shared.join("conformance");
    dir.join("cases.json").is_file().then_some(dir)
}

#[test]
fn supported_features_are_the_ones_the_conformance_data_shows() {
    let Some(dir) = shared_conformance() else {
        // Beside a checkout without the shared directory there is no data
        // to compare with; CI and the project machines have it.
        println!("skipped: no shared/conformance (set PORTCULLIS_SHARED)");
        return;
    };
    let mut declared = BTreeSet::new();
    for file in ["cases.json", "status-only.json"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("readable");
        let cases: Value = serde_json::from_str(&text).expect("json");
        for case in cases.as_array().expect("array") {
            for f in case["features"].as_array().expect("features") {
                declared.insert(f.as_str().expect("name").to_string());
            }
        }
    }
    let supported: BTreeSet<&str> = SUPPORTED_FEATURES.iter().map(|f| f.name).collect();
    let unsupported: BTreeSet<&str> = UNSUPPORTED_FEATURES.iter().map(|(n, _)| *n).collect();
    for f in &declared {
        assert!(
            supported.contains(f.as_str()) != unsupported.contains(f.as_str()),
            "{f} must be in exactly one of SUPPORTED_FEATURES and UNSUPPORTED_FEATURES"
        );
    }
    for f in SUPPORTED_FEATURES {
        match f.evidence {
            Evidence::Conformance => assert!(
                declared.contains(f.name),
                "{} claims conformance evidence but no case declares it",
                f.name
            ),
            Evidence::IntegrationTest(file) => {
                assert!(!declared.contains(f.name), "{} has cases: use them", f.name);
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
                let text = std::fs::read_to_string(&path).expect("evidence file exists");
                assert!(text.contains(f.name), "{file} never names {}", f.name);
            }
        }
    }
}

#[test]
fn gateway_status_carries_listeners_kinds_addresses_and_attached_sets() {
    let (_, c) = fixture();
    let gw = find(&c, "Gateway", "infra", "gw");
    let addresses = [
        GatewayAddress::ip("192.0.2.1".parse().expect("ip")),
        GatewayAddress::hostname("lb.example.com"),
    ];
    let target = Target::Gateway {
        addresses: &addresses,
    };
    let live = live_of(&target, gw, json!({}));
    let body = patch(&target, gw, &live, &owned_of(&c)).expect("first write");
    let st = &body["status"];
    assert_eq!(
        st["addresses"],
        json!([{"type": "IPAddress", "value": "192.0.2.1"}, {"type": "Hostname", "value": "lb.example.com"}])
    );
    assert_eq!(st["attachedListenerSets"], 1);
    let types: Vec<&Value> = st["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert!(
        !types.contains(&&json!("AttachedListenerSets")),
        "{types:?}"
    );
    assert!(types.contains(&&json!("Accepted")) && types.contains(&&json!("Programmed")));
    let http = st["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == "http")
        .expect("http listener");
    assert_eq!(
        http["supportedKinds"],
        json!([{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}, {"group": GATEWAY_GROUP, "kind": "GRPCRoute"}])
    );
    assert_eq!(http["attachedRoutes"], 2, "web and grpc");
    assert!(http["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .all(|c| c["observedGeneration"] == 2 && c["lastTransitionTime"] == NOW));
    let https = st["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == "https")
        .expect("https listener");
    let resolved = https["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .expect("ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidCertificateRef");
}

fn managed(manager: &str, status_fields: Value) -> Value {
    json!({
        "manager": manager, "operation": "Apply", "subresource": "status",
        "apiVersion": "gateway.networking.k8s.io/v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": status_fields},
    })
}

/// The managed-fields set of a status body, spelled as the API server
/// spells it (keys as JSON, `.` for the item itself).
fn fields_of(v: &Value, field: Option<&str>) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, child) in o {
                out.insert(format!("f:{k}"), fields_of(child, Some(k)));
            }
            Value::Object(out)
        }
        Value::Array(items) => match field.and_then(map_list_key) {
            Some(key) => {
                let mut out = Map::new();
                for item in items {
                    let mut set = fields_of(item, None);
                    set["."] = json!({});
                    let mut k = Map::new();
                    k.insert(key.to_string(), item[key].clone());
                    out.insert(format!("k:{}", Value::Object(k)), set);
                }
                Value::Object(out)
            }
            None => json!({}),
        },
        _ => json!({}),
    }
}

#[test]
fn removes_a_condition_it_wrote_before_and_no_longer_reports() {
    let (_, c) = fixture();
    let owned = owned_of(&c);
    let gw = find(&c, "Gateway", "infra", "gw");
    let target = Target::Gateway { addresses: &[] };
    let live = live_of(&target, gw, json!({}));
    let body = patch(&target, gw, &live, &owned).expect("first write");
    // The API server's view after we once also wrote a condition compile
    // no longer reports.
    let mut live = applied(&live, &body);
    let extra = json!({
        "type": "InsecureFrontendValidationMode", "status": "True",
        "reason": "ConfigurationChanged", "message": "", "lastTransitionTime": EARLIER,
        "observedGeneration": 2,
    });
    live["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
        .push(extra);
    live["metadata"]["managedFields"] =
        json!([managed(FIELD_MANAGER, fields_of(&live["status"], None))]);
    let again = patch(&target, gw, &live, &owned).expect("the old condition must go");
    assert!(again["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .all(|c| c["type"] != "InsecureFrontendValidationMode"));

    // The same condition owned by another manager is not ours to remove.
    let mut theirs = live["status"].clone();
    let mut ours_only = theirs.clone();
    ours_only["conditions"]
        .as_array_mut()
        .expect("conditions")
        .retain(|c| c["type"] != "InsecureFrontendValidationMode");
    theirs["conditions"]
        .as_array_mut()
        .expect("conditions")
        .retain(|c| c["type"] == "InsecureFrontendValidationMode");
    live["metadata"]["managedFields"] = json!([
        managed(FIELD_MANAGER, fields_of(&ours_only, None)),
        managed("someone-else", fields_of(&theirs, None)),
    ]);
    assert_eq!(patch(&target, gw, &live, &owned), None);
}

#[test]
fn removes_a_listener_it_wrote_before() {
    let (_, c) = fixture();
    let owned = owned_of(&c);
    let gw = find(&c, "Gateway", "infra", "gw");
    let target = Target::Gateway { addresses: &[] };
    let live = live_of(&target, gw, json!({}));
    let body = patch(&target, gw, &live, &owned).expect("first write");
    let mut live = applied(&live, &body);
    live["metadata"]["managedFields"] =
        json!([managed(FIELD_MANAGER, fields_of(&live["status"], None))]);
    assert_eq!(patch(&target, gw, &live, &owned), None, "in sync");
    let mut fewer = gw.clone();
    fewer.listeners.retain(|l| l.name != "udp");
    let body = patch(&target, &fewer, &live, &owned).expect("udp must go");
    assert!(body["status"]["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .all(|l| l["name"] != "udp"));
}

#[test]
fn portcullis_condition_type_is_domain_prefixed() {
    let mut status = ObjectStatus::new("Gateway", "infra", "gw");
    status.conditions.push(accepted(true, 1));
    status.listeners.push(ListenerStatus {
        name: "https".into(),
        attached_routes: 0,
        supported_kinds: vec!["HTTPRoute".into()],
        conditions: vec![Condition::new(
            ConditionType::CertificateReady,
            false,
            Reason::Issuing,
            "ordering",
            1,
        )],
        certificate_refs: Vec::new(),
    });
    let target = Target::Gateway { addresses: &[] };
    let live = live_of(&target, &status, json!({}));
    let body = patch(&target, &status, &live, &owned_gateways(&[])).expect("first write");
    let c = &body["status"]["listeners"][0]["conditions"][0];
    assert_eq!(c["type"], "portcullis.dev/CertificateReady");
    assert_eq!(c["reason"], "Issuing");
}

#[test]
fn cuts_messages_at_the_api_limit_on_a_character_boundary() {
    let owned = owned_gateways(&["gw"]);
    let mut ours = route(1, &[(gw_ref("gw", None), false)]);
    ours.parents[0].conditions[0].message = "é".repeat(20_000);
    let body = patch(&HTTP_ROUTE, &ours, &live_route(vec![]), &owned).expect("first write");
    let message = body["status"]["parents"][0]["conditions"][0]["message"]
        .as_str()
        .expect("message");
    assert_eq!(message.len(), MAX_MESSAGE_BYTES);
    assert!(message.chars().all(|c| c == 'é'));
}

#[test]
fn issuer_readiness_is_one_ready_condition() {
    let key = ObjectKey::new("", "letsencrypt");
    let status = issuer_status(
        &Target::ClusterIssuer,
        &key,
        false,
        "ACME account registration failed",
        3,
    );
    let live = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterIssuer",
        "metadata": {"name": "letsencrypt", "generation": 3},
    });
    let body =
        patch(&Target::ClusterIssuer, &status, &live, &owned_gateways(&[])).expect("first write");
    assert_eq!(
        body,
        json!({
            "apiVersion": "portcullis.dev/v1alpha1",
            "kind": "ClusterIssuer",
            "metadata": {"name": "letsencrypt"},
            "status": {"conditions": [{
                "type": "Ready", "status": "False", "reason": "NotReady",
                "message": "ACME account registration failed",
                "lastTransitionTime": NOW, "observedGeneration": 3,
            }]},
        })
    );
    let ns = ObjectKey::new("team", "ca");
    let status = issuer_status(&Target::Issuer, &ns, true, "", 1);
    assert_eq!(status.conditions[0].reason, Reason::Ready);
    assert_eq!(status.conditions[0].status, ConditionStatus::True);
}

#[test]
fn refuses_a_status_or_live_object_of_another_object() {
    let owned = owned_gateways(&["gw"]);
    let ours = route(1, &[(gw_ref("gw", None), true)]);
    let err = status_patch(
        &Target::ListenerSet,
        &ours,
        &live_route(vec![]),
        &ctx(&owned),
        now(),
    )
    .expect_err("kind mismatch");
    assert!(matches!(err, Error::MatchKind { .. }), "{err}");
    let mut live = live_route(vec![]);
    live["metadata"]["namespace"] = json!("elsewhere");
    let err = status_patch(&HTTP_ROUTE, &ours, &live, &ctx(&owned), now())
        .expect_err("namespace mismatch");
    assert!(matches!(err, Error::MatchLive { .. }), "{err}");
}

#[test]
fn formats_times_as_rfc3339_utc_seconds() {
    assert_eq!(rfc3339_seconds(at(1_700_000_000)), EARLIER);
    assert_eq!(
        rfc3339_seconds(at(1_700_000_000) + Duration::from_millis(999)),
        EARLIER
    );
    assert_eq!(rfc3339_seconds(UNIX_EPOCH), "1970-01-01T00:00:00Z");
}

#[test]
fn uses_the_live_objects_api_version() {
    let owned = owned_gateways(&["gw"]);
    let mut live = live_route(vec![]);
    live["apiVersion"] = json!("gateway.networking.k8s.io/v1beta1");
    let body = patch(
        &HTTP_ROUTE,
        &route(1, &[(gw_ref("gw", None), true)]),
        &live,
        &owned,
    )
    .expect("a change");
    assert_eq!(body["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    live["apiVersion"] = json!("example.com/v1");
    let body = patch(
        &HTTP_ROUTE,
        &route(1, &[(gw_ref("gw", None), true)]),
        &live,
        &owned,
    )
    .expect("a change");
    assert_eq!(body["apiVersion"], GATEWAY_API_VERSION);
}
