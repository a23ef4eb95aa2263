//! Tests of the generated definitions: their shape, that their schemas are
//! structural, and that every portcullis.dev manifest the project serves today
//! validates against them (with a small validator that decodes as the API
//! server does under strict field validation: unknown fields refused).

use super::*;
use crate::model::load::parse_documents;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The object schema of `kind` from the printed definitions.
fn schema(kind: &str) -> Value {
    let crd = definitions()
        .expect("definitions build")
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no definition of {kind}"));
    let version = &crd.spec.versions[0];
    let schema = version.schema.as_ref().expect("schema");
    serde_json::to_value(schema.open_api_v3_schema.as_ref().expect("openAPIV3Schema"))
        .expect("serialises")
}

/// Where `value` breaks `schema`, as field paths with the reason; empty
/// when it validates. Decodes as the API server does with strict field
/// validation: an unknown field is an error unless the schema keeps unknown
/// fields; `null` only where the schema is `nullable`.
fn violations(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            out.push(format!("{path}: null"));
        }
        return;
    }
    let kind = schema["type"].as_str();
    let type_ok = match kind {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        None => schema["x-kubernetes-preserve-unknown-fields"] == true,
        Some(other) => panic!("{path}: unknown type {other}"),
    };
    if !type_ok {
        out.push(format!("{path}: expected {kind:?}, got {value}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            out.push(format!("{path}: {value} not in {allowed:?}"));
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            violations(&schema["items"], item, &format!("{path}[{i}]"), out);
        }
    }
    let Some(fields) = value.as_object() else {
        return;
    };
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().expect("required names");
        if !fields.contains_key(name) {
            out.push(format!("{path}: missing required field {name}"));
        }
    }
    for (name, field) in fields {
        let at = format!("{path}.{name}");
        if let Some(property) = schema["properties"].get(name) {
            violations(property, field, &at, out);
        } else if schema["additionalProperties"].is_object() {
            violations(&schema["additionalProperties"], field, &at, out);
        } else if schema["x-kubernetes-preserve-unknown-fields"] != true {
            out.push(format!("{at}: unknown field"));
        }
    }
}

/// `violations` of a whole object against its kind's schema. `metadata` is
/// the API's ObjectMeta, which the API server checks with its own schema
/// (a CRD's says only `type: object`): here it only has to be an object.
fn validate(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().expect("kind");
    let mut rest = object.clone();
    let metadata = rest
        .as_object_mut()
        .and_then(|o| o.remove("metadata"))
        .unwrap_or(Value::Null);
    let mut out = Vec::new();
    if !metadata.is_object() {
        out.push(".metadata: not an object".into());
    }
    violations(&schema(kind), &rest, "", &mut out);
    out
}

/// Every portcullis.dev document of a YAML text, with where it came from.
fn portcullis_documents(text: &str, source: &str) -> Vec<(String, Value)> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .filter_map(|(i, doc)| {
            let value: Value = serde::Deserialize::deserialize(doc).expect("YAML");
            let ours = value["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("portcullis.dev/"));
            ours.then(|| (format!("{source} document {}", i + 1), value))
        })
        .collect()
}

/// The ```yaml blocks of a Markdown file that hold portcullis.dev objects.
fn markdown_documents(file: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(file).expect("read markdown");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut block {
            None if trimmed.starts_with("```yaml") => block = Some(String::new()),
            Some(text) if trimmed.starts_with("```") => {
                let source = format!("{} block", file.display());
                out.extend(portcullis_documents(&unindent(text), &source));
                block = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Removes the indentation every line of a Markdown list's code block has.
fn unindent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every node of a schema, with its path.
fn walk<'a>(schema: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), schema));
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            walk(property, format!("{path}.{name}"), out);
        }
    }
    if schema["items"].is_object() {
        walk(&schema["items"], format!("{path}[]"), out);
    }
    if schema["additionalProperties"].is_object() {
        walk(&schema["additionalProperties"], format!("{path}{{}}"), out);
    }
}

#[test]
fn three_kinds_in_one_group_and_version_with_their_scopes() {
    let crds = definitions().expect("definitions build");
    let names: Vec<(&str, &str, &str)> = crds
        .iter()
        .map(|c| {
            (
                c.metadata.name.as_deref().expect("name"),
                c.spec.names.kind.as_str(),
                c.spec.scope.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("issuers.portcullis.dev", "Issuer", "Namespaced"),
            ("clusterissuers.portcullis.dev", "ClusterIssuer", "Cluster"),
            (
                "staticresponses.portcullis.dev",
                "StaticResponse",
                "Namespaced"
            ),
        ]
    );
    for crd in &crds {
        assert_eq!(crd.spec.group, "portcullis.dev");
        let [version] = crd.spec.versions.as_slice() else {
            panic!("one version");
        };
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let issuer = crd.spec.names.kind.ends_with("Issuer");
        // Issuers carry Ready in a status subresource, which the controller
        // writes without touching the spec; StaticResponse has no status.
        assert_eq!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            issuer
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        if issuer {
            assert_eq!(columns, ["Ready", "Status", "Age"]);
        } else {
            assert_eq!(columns, ["Code", "Age"]);
        }
    }
}

#[test]
fn every_schema_node_is_structural() {
    for kind in ["Issuer", "ClusterIssuer", "StaticResponse"] {
        let schema = schema(kind);
        let mut nodes = Vec::new();
        walk(&schema, String::new(), &mut nodes);
        assert!(nodes.len() > 5, "{kind}: {nodes:?}");
        for (path, node) in nodes {
            let node = node.as_object().expect("object");
            let typed = node.get("type").and_then(Value::as_str).is_some();
            let open = node.get("x-kubernetes-preserve-unknown-fields") == Some(&true.into());
            assert!(typed || open, "{kind} {path}: no type");
            for keyword in [
                "$ref", "anyOf", "oneOf", "allOf", "default", "const", "title",
            ] {
                assert!(!node.contains_key(keyword), "{kind} {path}: {keyword}");
            }
            assert_ne!(
                node.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{kind} {path}"
            );
        }
    }
}

#[test]
fn the_typed_definition_keeps_every_keyword_the_rewrite_produced() {
    // JSONSchemaProps ignores keys it does not know; nothing may be lost.
    for kind in KINDS {
        let rewritten = object_schema(kind).expect("schema");
        assert_eq!(schema(kind.kind), rewritten, "{}", kind.kind);
    }
}

#[test]
fn options_are_nullable_and_nothing_is_required_in_a_spec() {
    let issuer = schema("Issuer");
    let spec = &issuer["properties"]["spec"];
    assert!(spec.get("required").is_none());
    assert_eq!(spec["properties"]["acme"]["nullable"], true);
    let acme = &spec["properties"]["acme"];
    assert_eq!(acme["properties"]["email"]["type"], "string");
    assert_eq!(acme["properties"]["email"]["nullable"], true);
    assert_eq!(acme["properties"]["solvers"]["type"], "array");
    assert_eq!(
        acme["properties"]["externalAccountBinding"]["properties"]["keyID"]["type"],
        "string"
    );
    // Descriptions come from the doc comments, for `kubectl explain`.
    assert_eq!(
        acme["properties"]["server"]["description"],
        "The ACME directory URL."
    );
    let conditions = &issuer["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    assert_eq!(
        conditions["items"]["required"],
        serde_json::json!(["type", "status"])
    );
    let response = schema("StaticResponse");
    let status = &response["properties"]["spec"]["properties"]["status"];
    assert_eq!(status["type"], "integer");
    assert_eq!(status["format"], "int64");
}

#[test]
fn every_manifest_that_loads_today_validates_against_its_schema() {
    let mut documents = Vec::new();
    let fixtures = root().join("src/crds/testdata/manifests.yaml");
    let text = std::fs::read_to_string(&fixtures).expect("fixtures");
    documents.extend(portcullis_documents(&text, "testdata/manifests.yaml"));
    for example in [
        "examples/quickstart/routes.yaml",
        "examples/quickstart/gateway.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(example)).expect("example");
        documents.extend(portcullis_documents(&text, example));
    }
    let readme = markdown_documents(&root().join("README.md"));
    assert!(!readme.is_empty(), "the README shows an Issuer");
    documents.extend(readme);
    assert!(documents.len() >= 18, "{} documents", documents.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (source, object) in &documents {
        // It is what the model reads today...
        let text = serde_yaml::to_string(object).expect("yaml");
        let parsed = parse_documents(&text, source).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(parsed.objects.len(), 1, "{source}: {parsed:?}");
        // ...and the API server would store it.
        let errors = validate(object);
        assert!(errors.is_empty(), "{source}: {errors:?}");
        kinds.insert(object["kind"].as_str().expect("kind").to_string());
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}

#[test]
fn the_validator_refuses_what_the_api_server_would() {
    let object: Value = serde_yaml::from_str(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Issuer\nmetadata: {name: x}\n\
         spec: {acme: {server: https://a, solvers: [{dns01: {rfc2136: {nameserver: n}}}]}}\n",
    )
    .expect("yaml");
    assert!(validate(&object).is_empty(), "{:?}", validate(&object));
    for (bad, why) in [
        ("serverr: https://a", "spec.acme.serverr: unknown field"),
        ("server: [https://a]", "spec.acme.server: expected"),
        (
            "privateKeySecretRef: {name: 3}",
            "privateKeySecretRef.name: expected",
        ),
        (
            "solvers: [{dns01: {rfc2137: {}}}]",
            "dns01.rfc2137: unknown field",
        ),
    ] {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: Issuer\nmetadata: {{name: x}}\n\
             spec: {{acme: {{{bad}}}}}\n"
        );
        let object: Value = serde_yaml::from_str(&text).expect("yaml");
        let errors = validate(&object);
        assert!(errors.iter().any(|e| e.contains(why)), "{bad}: {errors:?}");
    }
    let wrong_status: Value = serde_yaml::from_str(
        "apiVersion: portcullis.dev/v1alpha1\nkind: StaticResponse\nmetadata: {name: x}\n\
         spec: {status: \"200\"}\n",
    )
    .expect("yaml");
    assert!(!validate(&wrong_status).is_empty());
    let bad_condition: Value = serde_yaml::from_str(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterIssuer\nmetadata: {name: x}\n\
         status: {conditions: [{type: Ready, status: Yes}]}\n",
    )
    .expect("yaml");
    assert!(!validate(&bad_condition).is_empty());
}

#[test]
fn the_printed_yaml_is_every_definition_after_the_header() {
    let text = to_yaml().expect("yaml");
    assert!(text.starts_with(HEADER));
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .filter(|v: &Value| !v.is_null())
        .collect();
    assert_eq!(documents.len(), 3);
    for (document, crd) in documents.iter().zip(definitions().expect("definitions")) {
        assert_eq!(document["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(document["kind"], "CustomResourceDefinition");
        assert_eq!(
            document,
            &serde_json::to_value(&crd).expect("json"),
            "YAML and JSON agree"
        );
    }
}
