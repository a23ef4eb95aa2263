//! Turns a JSON Schema that schemars generated (OpenAPI 3 settings, every
//! subschema inlined) into a *structural* OpenAPI v3 schema, the only kind a
//! `CustomResourceDefinition` (`apiextensions.k8s.io/v1`) accepts:
//!
//! - every node states a `type` (or keeps unknown fields on purpose with
//!   `x-kubernetes-preserve-unknown-fields`);
//! - an `Option` is its inner schema with `nullable: true`, never an
//!   `anyOf` with a null branch;
//! - no `$ref`, `const`, `title`, `$schema` or other keyword the API server
//!   rejects or the structural rules forbid;
//! - no `default`: the model applies its own defaults when it reads an object
//!   (`serde(default)`), and the API server must not write schemars' idea of
//!   them (an empty ACME server URL, say) into stored objects;
//! - descriptions (the doc comments) unwrapped: a line break inside a
//!   paragraph is a space, as rustdoc reads it, so `kubectl explain` wraps
//!   them itself;
//! - `additionalProperties: false` dropped: unknown fields are pruned, or
//!   refused under strict field validation, anyway, and the API server forbids
//!   it beside `properties`.
//!
//! Anything else that cannot be expressed is an error naming the field, so a
//! model change that the API server would refuse fails `portcullis crds` and
//! its tests instead of a `helm install`. Pure: JSON in, JSON out.

use serde_json::{Map, Value};
use std::fmt;

/// Why a schema cannot become structural.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A node is not a JSON object (a boolean schema, say).
    #[error("{path}: not a schema object")]
    NotAnObject {
        /// Where in the schema.
        path: Path,
    },
    /// A `$ref` is left: a recursive type, which a CRD cannot describe.
    #[error("{path}: a reference ({reference}) is left; CRD schemas cannot refer or recurse")]
    Reference {
        /// Where in the schema.
        path: Path,
        /// The `$ref` target.
        reference: String,
    },
    /// A node states no single type and does not preserve unknown fields.
    #[error("{path}: no single type")]
    MissingType {
        /// Where in the schema.
        path: Path,
    },
    /// An `anyOf`/`oneOf`/`allOf` that is not an `Option`.
    #[error("{path}: `{keyword}` other than one schema or null cannot be structural")]
    Union {
        /// Where in the schema.
        path: Path,
        /// The combining keyword.
        keyword: String,
    },
    /// A keyword the API server does not accept in a CRD schema.
    #[error("{path}: unsupported keyword `{keyword}`")]
    Unsupported {
        /// Where in the schema.
        path: Path,
        /// The keyword.
        keyword: String,
    },
}

/// Where a node sits in a schema, as a field path (`spec.acme.solvers[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    fn field(&self, name: &str) -> Path {
        let mut next = self.0.clone();
        next.push(format!(".{name}"));
        Path(next)
    }

    fn suffix(&self, suffix: &str) -> Path {
        let mut next = self.0.clone();
        next.push(suffix.to_string());
        Path(next)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        let text = self.0.concat();
        f.write_str(text.strip_prefix('.').unwrap_or(&text))
    }
}

/// Keywords that only annotate a schema or that schemars adds for tooling;
/// dropped (see the module doc for `default`).
const DROPPED: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "default",
    "examples",
    "example",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Validation keywords kept as they are.
const KEPT: &[&str] = &[
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
];

/// The `format`s the API server knows; others (schemars' `uint16`, ...)
/// are dropped, their bounds are kept as `minimum`/`maximum`.
const FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "duration",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "uuid",
    "password",
];

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];

/// Rewrites `schema` (a schemars root schema as JSON) into a structural
/// OpenAPI v3 schema.
pub fn rewrite(schema: &Value) -> Result<Value, Error> {
    node(schema, &Path::default())
}

fn node(schema: &Value, path: &Path) -> Result<Value, Error> {
    let Value::Object(input) = schema else {
        return Err(Error::NotAnObject { path: path.clone() });
    };
    let mut input = input.clone();
    let mut out = Map::new();
    let mut nullable = take_bool(&mut input, "nullable");
    // An Option of a schema schemars did not inline into a type list
    // (`anyOf: [T, null]`): T, nullable.
    for keyword in ["anyOf", "oneOf", "allOf"] {
        let Some(branches) = input.remove(keyword) else {
            continue;
        };
        let (inner, has_null) = option_branch(&branches).ok_or_else(|| Error::Union {
            path: path.clone(),
            keyword: keyword.to_string(),
        })?;
        nullable |= has_null;
        let Value::Object(inner) = inner else {
            return Err(Error::NotAnObject { path: path.clone() });
        };
        for (key, value) in inner {
            if key == "nullable" {
                nullable |= value == Value::Bool(true);
            } else if !input.contains_key(&key) {
                input.insert(key, value);
            }
        }
    }
    for (key, value) in input {
        match key.as_str() {
            "$ref" => {
                return Err(Error::Reference {
                    path: path.clone(),
                    reference: value.as_str().unwrap_or_default().to_string(),
                })
            }
            "type" => {
                let (kind, has_null) =
                    single_type(&value).ok_or_else(|| Error::MissingType { path: path.clone() })?;
                nullable |= has_null;
                if let Some(kind) = kind {
                    out.insert(key, kind.into());
                }
            }
            "description" => {
                let text = value.as_str().ok_or_else(|| Error::Unsupported {
                    path: path.clone(),
                    keyword: "description that is not text".into(),
                })?;
                out.insert(key, unwrap_paragraphs(text).into());
            }
            "const" => {
                out.insert("enum".into(), Value::Array(vec![value]));
            }
            "format" => {
                if value.as_str().is_some_and(|f| FORMATS.contains(&f)) {
                    out.insert(key, value);
                }
            }
            "properties" => {
                let Value::Object(properties) = value else {
                    return Err(Error::NotAnObject { path: path.clone() });
                };
                let mut rewritten = Map::new();
                for (name, property) in properties {
                    rewritten.insert(name.clone(), node(&property, &path.field(&name))?);
                }
                out.insert(key, Value::Object(rewritten));
            }
            "items" => {
                out.insert(key, node(&value, &path.suffix("[]"))?);
            }
            "additionalProperties" => match value {
                Value::Bool(false) => {}
                Value::Bool(true) => {
                    out.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
                }
                schema => {
                    out.insert(key, node(&schema, &path.suffix("{}"))?);
                }
            },
            "uniqueItems" if value == Value::Bool(false) => {}
            _ if DROPPED.contains(&key.as_str()) => {}
            _ if KEPT.contains(&key.as_str()) || key.starts_with("x-kubernetes-") => {
                out.insert(key, value);
            }
            _ => {
                return Err(Error::Unsupported {
                    path: path.clone(),
                    keyword: key,
                })
            }
        }
    }
    if out
        .get("required")
        .is_some_and(|r| r.as_array().is_some_and(Vec::is_empty))
    {
        out.remove("required");
    }
    if out.contains_key("properties") && out.contains_key("additionalProperties") {
        return Err(Error::Unsupported {
            path: path.clone(),
            keyword: "additionalProperties beside properties".into(),
        });
    }
    let preserves = out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !out.contains_key("type") && !preserves {
        return Err(Error::MissingType { path: path.clone() });
    }
    // A null the enum lists (an Option of an enum) is what `nullable` says.
    if let Some(Value::Array(values)) = out.get_mut("enum") {
        if values.iter().any(Value::is_null) {
            values.retain(|v| !v.is_null());
            nullable = true;
        }
    }
    if nullable {
        out.insert("nullable".into(), true.into());
    }
    Ok(Value::Object(out))
}

/// Joins the lines of each paragraph (paragraphs end at a blank line).
fn unwrap_paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Removes a boolean keyword, reading it as false when absent.
fn take_bool(map: &mut Map<String, Value>, key: &str) -> bool {
    map.remove(key) == Some(Value::Bool(true))
}

/// The one type of a `type` keyword (a string, or a list of one type and
/// possibly `null`) and whether `null` was in it. `None` for a list of two
/// real types; an inner `None` for `null` alone.
fn single_type(value: &Value) -> Option<(Option<&'static str>, bool)> {
    let names: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let has_null = names.contains(&"null");
    let real: Vec<&'static str> = names
        .iter()
        .filter_map(|n| TYPES.iter().copied().find(|t| t == n))
        .collect();
    match real.as_slice() {
        [] if has_null => Some((None, true)),
        [one] if real.len() + usize::from(has_null) == names.len() => Some((Some(one), has_null)),
        _ => None,
    }
}

/// For `[T]` or `[T, null]` (either order): T and whether null was there.
fn option_branch(branches: &Value) -> Option<(Value, bool)> {
    let branches = branches.as_array()?;
    let (nulls, others): (Vec<&Value>, Vec<&Value>) = branches.iter().partition(|b| is_null(b));
    match others.as_slice() {
        [one] => Some(((*one).clone(), !nulls.is_empty())),
        _ => None,
    }
}

/// Whether a schema only admits `null`, in any of the spellings schemars
/// produces (`type: null`, or `nullable` with `const`/`enum` null).
fn is_null(schema: &Value) -> bool {
    let Value::Object(map) = schema else {
        return false;
    };
    map.get("type") == Some(&Value::from("null"))
        || map.get("const") == Some(&Value::Null)
        || map.get("enum") == Some(&Value::Array(vec![Value::Null]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_option_becomes_its_inner_type_and_nullable() {
        let out = rewrite(&json!({"type": ["string", "null"], "description": "d"})).expect("ok");
        assert_eq!(
            out,
            json!({"type": "string", "nullable": true, "description": "d"})
        );
        let out = rewrite(&json!({"anyOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"nullable": true, "enum": [null]}
        ]}))
        .expect("ok");
        assert_eq!(
            out,
            json!({"type": "object", "nullable": true, "properties": {"a": {"type": "string"}}})
        );
    }

    #[test]
    fn annotations_and_defaults_are_dropped_and_additional_false_removed() {
        let out = rewrite(&json!({
            "$schema": "x", "title": "T", "type": "object", "default": {},
            "additionalProperties": false,
            "properties": {"n": {"type": "integer", "format": "uint16", "minimum": 0, "maximum": 65535, "default": 1}}
        }))
        .expect("ok");
        assert_eq!(
            out,
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 65535}}})
        );
    }

    #[test]
    fn descriptions_are_unwrapped_within_paragraphs() {
        let out = rewrite(&json!({
            "type": "string",
            "description": "One line\nwrapped here.\n\nA second\n  paragraph."
        }))
        .expect("ok");
        assert_eq!(
            out["description"],
            "One line wrapped here.\n\nA second paragraph."
        );
    }

    #[test]
    fn const_becomes_a_one_value_enum_and_a_null_in_an_enum_becomes_nullable() {
        assert_eq!(
            rewrite(&json!({"type": "string", "const": "x"})).expect("ok"),
            json!({"type": "string", "enum": ["x"]})
        );
        assert_eq!(
            rewrite(&json!({"type": ["string", "null"], "enum": ["a", null]})).expect("ok"),
            json!({"type": "string", "enum": ["a"], "nullable": true})
        );
    }

    #[test]
    fn maps_keep_their_value_schema_and_kubernetes_extensions_pass_through() {
        let out = rewrite(&json!({
            "type": "object",
            "additionalProperties": {"type": "string"},
            "x-kubernetes-map-type": "granular"
        }))
        .expect("ok");
        assert_eq!(out["additionalProperties"], json!({"type": "string"}));
        assert_eq!(out["x-kubernetes-map-type"], "granular");
        // An object keeping unknown fields needs no properties.
        let open =
            rewrite(&json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}))
                .expect("ok");
        assert_eq!(open["x-kubernetes-preserve-unknown-fields"], true);
    }

    #[test]
    fn what_cannot_be_structural_is_an_error_naming_the_field() {
        let reference = rewrite(&json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}
        }}))
        .expect_err("a reference");
        assert_eq!(
            reference.to_string(),
            "spec.next: a reference (#/components/schemas/Node) is left; CRD schemas cannot refer or recurse"
        );
        let untyped = rewrite(&json!({"type": "object", "properties": {
            "list": {"type": "array", "items": {"description": "anything"}}
        }}))
        .expect_err("no type");
        assert_eq!(untyped.to_string(), "list[]: no single type");
        let union = rewrite(&json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}))
            .expect_err("a real union");
        assert!(matches!(union, Error::Union { .. }), "{union}");
        let two = rewrite(&json!({"type": ["string", "integer"]})).expect_err("two types");
        assert!(matches!(two, Error::MissingType { .. }), "{two}");
        let unknown = rewrite(&json!({"type": "string", "contentEncoding": "base64"}))
            .expect_err("unknown keyword");
        assert!(matches!(unknown, Error::Unsupported { .. }), "{unknown}");
        let both = rewrite(&json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "additionalProperties": {"type": "string"}
        }))
        .expect_err("both");
        assert!(matches!(both, Error::Unsupported { .. }), "{both}");
    }
}
