//! The status bodies against the real Gateway API CRDs (v1.6.1, both
//! channels, from the Go module cache the test rig uses): the kind, version
//! and scope the body names, and its `status` against the CRD's structural
//! schema: types, required fields, unknown fields (which the API server
//! would prune), enums, patterns, lengths, item counts, map-list keys and
//! formats. CEL rules (`x-kubernetes-validations`) are not evaluated here;
//! the only one on status (Gateway address values) is checked by hand.
//! Also checks the feature lists against the module's feature names.
//!
//! Skipped, with the reason printed, only when Go is not installed.

use super::tests::{applied, fixture, live_of};
use super::*;
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `sigs.k8s.io/gateway-api` module directory, as the rig resolves it.
fn gateway_api_dir() -> Option<PathBuf> {
    let rig = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/rig");
    let output = Command::new("go")
        .args([
            "list",
            "-mod=readonly",
            "-m",
            "-f",
            "{{.Dir}}",
            "sigs.k8s.io/gateway-api",
        ])
        .current_dir(&rig)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: `go` is not installed, so the gateway-api module cannot be located");
            return None;
        }
        Err(e) => panic!("running go list: {e}"),
    };
    assert!(
        output.status.success(),
        "go list -m sigs.k8s.io/gateway-api failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        dir.join("config/crd").is_dir(),
        "{} has no CRDs",
        dir.display()
    );
    Some(dir)
}

fn crd(dir: &Path, channel: &str, plural: &str) -> Value {
    let path = dir.join(format!(
        "config/crd/{channel}/gateway.networking.k8s.io_{plural}.yaml"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Checks `body` against `crd`; returns every violation.
fn check_body(crd: &Value, body: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    if body["kind"] != spec["names"]["kind"] {
        errs.push(format!(
            "kind {} is not {}",
            body["kind"], spec["names"]["kind"]
        ));
    }
    let api_version = body["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or_default();
    if group != spec["group"] {
        errs.push(format!("group {group} is not {}", spec["group"]));
    }
    let namespaced = spec["scope"] == "Namespaced";
    if body["metadata"].get("namespace").is_some() != namespaced {
        errs.push(format!(
            "metadata.namespace does not fit scope {}",
            spec["scope"]
        ));
    }
    let Some(v) = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == version && v["served"] == true)
    else {
        errs.push(format!("version {version} is not served"));
        return errs;
    };
    if v["subresources"].get("status").is_none() {
        errs.push("no status subresource".into());
    }
    let schema = &v["schema"]["openAPIV3Schema"]["properties"]["status"];
    validate(&body["status"], schema, "status", &mut errs);
    errs
}

fn validate(v: &Value, s: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(allowed) = s["enum"].as_array() {
        if !allowed.contains(v) {
            errs.push(format!("{path}: {v} not in {allowed:?}"));
        }
    }
    match s["type"].as_str() {
        Some("object") => {
            let Some(o) = v.as_object() else {
                errs.push(format!("{path}: {v} is not an object"));
                return;
            };
            for r in s["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !o.contains_key(r) {
                    errs.push(format!("{path}.{r}: required but missing"));
                }
            }
            for (k, child) in o {
                match s["properties"].get(k) {
                    Some(cs) => validate(child, cs, &format!("{path}.{k}"), errs),
                    None if s["x-kubernetes-preserve-unknown-fields"] == true => {}
                    None => errs.push(format!("{path}.{k}: unknown field (would be pruned)")),
                }
            }
        }
        Some("array") => {
            let Some(a) = v.as_array() else {
                errs.push(format!("{path}: {v} is not an array"));
                return;
            };
            let n = a.len() as u64;
            if s["maxItems"].as_u64().is_some_and(|m| n > m) {
                errs.push(format!("{path}: {n} items, at most {}", s["maxItems"]));
            }
            if s["minItems"].as_u64().is_some_and(|m| n < m) {
                errs.push(format!("{path}: {n} items, at least {}", s["minItems"]));
            }
            if s["x-kubernetes-list-type"] == "map" {
                let keys: Vec<&str> = s["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen = BTreeSet::new();
                for item in a {
                    let k: Vec<String> = keys.iter().map(|k| item[*k].to_string()).collect();
                    if !seen.insert(k.clone()) {
                        errs.push(format!("{path}: duplicate map key {k:?}"));
                    }
                }
            }
            for (i, item) in a.iter().enumerate() {
                validate(item, &s["items"], &format!("{path}[{i}]"), errs);
            }
        }
        Some("string") => {
            let Some(t) = v.as_str() else {
                errs.push(format!("{path}: {v} is not a string"));
                return;
            };
            let chars = t.chars().count() as u64;
            if s["maxLength"].as_u64().is_some_and(|m| chars > m) {
                errs.push(format!("{path}: longer than {}", s["maxLength"]));
            }
            if s["minLength"].as_u64().is_some_and(|m| chars < m) {
                errs.push(format!("{path}: shorter than {}", s["minLength"]));
            }
            if let Some(p) = s["pattern"].as_str() {
                let re = Regex::new(p).unwrap_or_else(|e| panic!("CRD pattern {p}: {e}"));
                if !re.is_match(t) {
                    errs.push(format!("{path}: {t:?} does not match {p}"));
                }
            }
            if s["format"] == "date-time" {
                let rfc3339 =
                    Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
                        .expect("valid");
                if !rfc3339.is_match(t) {
                    errs.push(format!("{path}: {t:?} is not an RFC 3339 date-time"));
                }
            }
        }
        Some("integer") => {
            let Some(n) = v.as_i64() else {
                errs.push(format!("{path}: {v} is not an integer"));
                return;
            };
            if s["minimum"].as_i64().is_some_and(|m| n < m) {
                errs.push(format!("{path}: {n} below {}", s["minimum"]));
            }
            if s["maximum"].as_i64().is_some_and(|m| n > m) {
                errs.push(format!("{path}: {n} above {}", s["maximum"]));
            }
            if s["format"] == "int32" && i32::try_from(n).is_err() {
                errs.push(format!("{path}: {n} is not an int32"));
            }
        }
        Some("boolean") if !v.is_boolean() => {
            errs.push(format!("{path}: {v} is not a boolean"));
        }
        _ => {}
    }
}

/// Every status body portcullis writes for the fixture, with a foreign
/// parent entry kept, addresses, ancestors and portcullis's own listener
/// condition: `(plural, body)`.
fn bodies() -> Vec<(&'static str, Value)> {
    let (resources, mut c) = fixture();
    let owned = OwnedParents::from_status(&c.status);
    let ancestors = policy_ancestors(&resources, &c.status);
    let addresses = [
        GatewayAddress::ip("192.0.2.1".parse().expect("ip")),
        GatewayAddress::ip("2001:db8::1".parse().expect("ip")),
        GatewayAddress::hostname("lb.example.com"),
    ];
    // What the issuer adds to a listener it manages a certificate for.
    for o in c.status.objects.iter_mut().filter(|o| o.kind == "Gateway") {
        for l in &mut o.listeners {
            l.conditions.push(Condition::new(
                ConditionType::CertificateReady,
                false,
                crate::status::Reason::Issuing,
                "waiting for the ACME order",
                2,
            ));
        }
    }
    let ctx = PatchContext {
        controller_name: crate::compile::DEFAULT_CONTROLLER_NAME,
        field_manager: FIELD_MANAGER,
        owned: &owned,
    };
    let foreign = json!({
        "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "infra", "name": "foreign"},
        "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z",
                        "observedGeneration": 3}],
    });
    let mut out = Vec::new();
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
        let mut live = live_of(&target, o, json!({}));
        if matches!(target, Target::Route(_)) {
            live = applied(&live, &json!({"status": {"parents": [foreign.clone()]}}));
        }
        let body = status_patch(&target, o, &live, &ctx, SystemTime::UNIX_EPOCH)
            .expect("builds")
            .unwrap_or_else(|| panic!("{} {} needs a write", o.kind, o.name));
        out.push((target.plural(), body));
    }
    out
}

#[test]
fn bodies_validate_against_the_gateway_api_crds() {
    let Some(dir) = gateway_api_dir() else {
        return;
    };
    let bodies = bodies();
    let plurals: BTreeSet<&str> = bodies.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        plurals.len(),
        9,
        "every Gateway API kind portcullis writes: {plurals:?}"
    );
    for channel in ["standard", "experimental"] {
        for (plural, body) in &bodies {
            let errs = check_body(&crd(&dir, channel, plural), body);
            assert!(
                errs.is_empty(),
                "{channel} {plural} {}: {errs:#?}\n{body:#}",
                body["metadata"]["name"]
            );
        }
    }
}

#[test]
fn gateway_addresses_fit_their_type() {
    // The Gateway CRD checks address values with CEL, which `validate`
    // does not run: IPAddress values must parse, Hostname values be names.
    let hostname =
        Regex::new(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .expect("valid");
    for (plural, body) in bodies() {
        if plural != "gateways" {
            continue;
        }
        for a in body["status"]["addresses"].as_array().expect("addresses") {
            let value = a["value"].as_str().expect("value");
            match a["type"].as_str() {
                Some("IPAddress") => assert!(value.parse::<IpAddr>().is_ok(), "{value}"),
                Some("Hostname") => assert!(hostname.is_match(value), "{value}"),
                other => panic!("unexpected address type {other:?}"),
            }
        }
    }
}

#[test]
fn the_validator_catches_what_the_api_server_rejects() {
    // The checks above mean something only if broken bodies fail them.
    let Some(dir) = gateway_api_dir() else {
        return;
    };
    let routes = crd(&dir, "experimental", "httproutes");
    let (_, body) = bodies()
        .into_iter()
        .find(|(p, _)| *p == "httproutes")
        .expect("a route body");
    let mut bad = body.clone();
    bad["status"]["parents"][1]["conditions"][0]["status"] = json!("Maybe");
    bad["status"]["parents"][1]["conditions"][0]["type"] = json!("portcullis.dev/");
    bad["status"]["parents"][1]
        .as_object_mut()
        .expect("entry")
        .remove("controllerName");
    bad["status"]["parents"][1]["extra"] = json!(1);
    let errs = check_body(&routes, &bad);
    for needle in ["Maybe", "portcullis.dev/", "controllerName", "extra"] {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "{needle} not caught: {errs:#?}"
        );
    }
    let classes = crd(&dir, "experimental", "gatewayclasses");
    let (_, mut class) = bodies()
        .into_iter()
        .find(|(p, _)| *p == "gatewayclasses")
        .expect("a class body");
    let many: Vec<Value> = (0..65)
        .map(|i| json!({ "name": format!("F{i}") }))
        .collect();
    class["status"]["supportedFeatures"] = Value::Array(many);
    class["metadata"]["namespace"] = json!("default");
    let errs = check_body(&classes, &class);
    assert!(errs.iter().any(|e| e.contains("at most 64")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("scope")), "{errs:#?}");
}

#[test]
fn every_upstream_feature_is_either_supported_or_explained() {
    let Some(dir) = gateway_api_dir() else {
        return;
    };
    let name = Regex::new(r#"FeatureName = "([A-Za-z0-9]+)""#).expect("valid");
    let mut upstream = BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("pkg/features")).expect("pkg/features") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "go") {
            let text = std::fs::read_to_string(&path).expect("readable");
            upstream.extend(name.captures_iter(&text).map(|c| c[1].to_string()));
        }
    }
    assert!(upstream.len() > 40, "found {upstream:?}");
    let supported: BTreeSet<&str> = SUPPORTED_FEATURES.iter().map(|f| f.name).collect();
    let unsupported: BTreeSet<&str> = UNSUPPORTED_FEATURES.iter().map(|(n, _)| *n).collect();
    assert!(supported.is_disjoint(&unsupported));
    for f in &upstream {
        assert!(
            supported.contains(f.as_str()) || unsupported.contains(f.as_str()),
            "gateway-api defines {f}: announce it or say why not"
        );
    }
}
