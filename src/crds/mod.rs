//! portcullis's own CustomResourceDefinitions (`portcullis.dev/v1alpha1`:
//! `Issuer`, `ClusterIssuer`, `StaticResponse`), built from the model's Rust
//! types so the API server admits what the model reads and nothing drifts.
//! `portcullis crds` prints them; the Helm chart ships that output in its
//! `crds/` directory (tests/chart.rs fails when the two differ).
//!
//! Each spec schema is what schemars derives from the model type
//! ([`IssuerSpec`], [`StaticResponseSpec`]), made structural by
//! [`structural::rewrite`]. The model reads every field leniently
//! (`serde(default)`), so the schemas require nothing either. Issuers get a
//! status subresource ([`IssuerStatus`]: conditions merged by type) and a
//! `Ready` printer column. Pure: no I/O.

pub mod structural;

use crate::model::issuer::{IssuerSpec, IssuerStatus};
use crate::model::portcullis::{StaticResponseSpec, GROUP};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

/// The one API version of portcullis's kinds: served and stored.
pub const VERSION: &str = "v1alpha1";

/// The first line of [`to_yaml`]'s output.
pub const HEADER: &str =
    "# portcullis's CustomResourceDefinitions, printed by `portcullis crds`. Do not edit.\n";

/// Why the definitions cannot be built (a model change the API server would
/// refuse).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A kind's schema cannot be made structural.
    #[error("cannot build the schema of {kind}")]
    Schema {
        /// The kind.
        kind: &'static str,
        /// What is wrong in it.
        #[source]
        source: structural::Error,
    },
    /// A rewritten schema does not read as OpenAPI `JSONSchemaProps`.
    #[error("the schema of {kind} is not an OpenAPI v3 schema")]
    OpenApi {
        /// The kind.
        kind: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A definition cannot be written as YAML.
    #[error("cannot write the definition of {kind} as YAML")]
    WriteYaml {
        /// The kind.
        kind: &'static str,
        /// The encoding error.
        #[source]
        source: serde_yaml::Error,
    },
}

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In a namespace.
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Namespaced => "Namespaced",
            Scope::Cluster => "Cluster",
        }
    }
}

/// What differs between portcullis's kinds.
struct Kind {
    kind: &'static str,
    plural: &'static str,
    scope: Scope,
    description: &'static str,
    spec: fn() -> Result<Value, structural::Error>,
    status: Option<fn() -> Result<Value, structural::Error>>,
    columns: fn() -> Vec<CustomResourceColumnDefinition>,
}

const KINDS: &[Kind] = &[
    Kind {
        kind: "Issuer",
        plural: "issuers",
        scope: Scope::Namespaced,
        description: "Issues certificates for Gateways in its own namespace (ACME, a CA key \
                      pair from a Secret, or self-signed). Field names follow cert-manager's.",
        spec: schema_of::<IssuerSpec>,
        status: Some(schema_of::<IssuerStatus>),
        columns: issuer_columns,
    },
    Kind {
        kind: "ClusterIssuer",
        plural: "clusterissuers",
        scope: Scope::Cluster,
        description: "Issues certificates for Gateways in any namespace; its Secrets are read \
                      from portcullis's own namespace. Field names follow cert-manager's.",
        spec: schema_of::<IssuerSpec>,
        status: Some(schema_of::<IssuerStatus>),
        columns: issuer_columns,
    },
    Kind {
        kind: "StaticResponse",
        plural: "staticresponses",
        scope: Scope::Namespaced,
        description: "A fixed HTTP response: a backendRef of group portcullis.dev and kind \
                      StaticResponse is answered by the gateway itself.",
        spec: schema_of::<StaticResponseSpec>,
        status: None,
        columns: static_response_columns,
    },
];

/// The structural schema of `T`, every subschema inlined.
fn schema_of<T: JsonSchema>() -> Result<Value, structural::Error> {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    structural::rewrite(generator.into_root_schema_for::<T>().as_value())
}

fn column(
    name: &str,
    kind: &str,
    path: &str,
    priority: Option<i32>,
) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.into(),
        type_: kind.into(),
        json_path: path.into(),
        priority,
        ..Default::default()
    }
}

fn issuer_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column(
            "Ready",
            "string",
            r#".status.conditions[?(@.type=="Ready")].status"#,
            None,
        ),
        column(
            "Status",
            "string",
            r#".status.conditions[?(@.type=="Ready")].message"#,
            Some(1),
        ),
        column("Age", "date", ".metadata.creationTimestamp", None),
    ]
}

fn static_response_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column("Code", "integer", ".spec.status", None),
        column("Age", "date", ".metadata.creationTimestamp", None),
    ]
}

/// The whole object's schema around a kind's spec (and status) schema.
fn object_schema(kind: &Kind) -> Result<Value, Error> {
    let schema_error = |source| Error::Schema {
        kind: kind.kind,
        source,
    };
    let mut properties = json!({
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": (kind.spec)().map_err(schema_error)?,
    });
    if let Some(status) = kind.status {
        properties["status"] = status().map_err(schema_error)?;
    }
    Ok(json!({
        "type": "object",
        "description": kind.description,
        "properties": properties,
    }))
}

/// The `CustomResourceDefinition` of one kind.
fn definition(kind: &Kind) -> Result<CustomResourceDefinition, Error> {
    let schema: JSONSchemaProps =
        serde_json::from_value(object_schema(kind)?).map_err(|source| Error::OpenApi {
            kind: kind.kind,
            source,
        })?;
    let singular = kind.kind.to_ascii_lowercase();
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{GROUP}", kind.plural)),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.into(),
            names: CustomResourceDefinitionNames {
                kind: kind.kind.into(),
                list_kind: Some(format!("{}List", kind.kind)),
                plural: kind.plural.into(),
                singular: Some(singular),
                // `kubectl get portcullis` lists them all. No short names:
                // cert-manager's kinds share these names in another group.
                categories: Some(vec!["portcullis".into()]),
                short_names: None,
            },
            scope: kind.scope.as_str().into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(schema),
                }),
                subresources: kind.status.map(|_| CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                additional_printer_columns: Some((kind.columns)()),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    })
}

/// The definitions of `Issuer`, `ClusterIssuer` and `StaticResponse`, in
/// that order.
pub fn definitions() -> Result<Vec<CustomResourceDefinition>, Error> {
    KINDS.iter().map(definition).collect()
}

/// [`definitions`] as multi-document YAML after [`HEADER`]: what
/// `portcullis crds` prints.
pub fn to_yaml() -> Result<String, Error> {
    let mut out = String::from(HEADER);
    for (kind, crd) in KINDS.iter().zip(definitions()?) {
        out.push_str("---\n");
        out.push_str(
            &serde_yaml::to_string(&crd).map_err(|source| Error::WriteYaml {
                kind: kind.kind,
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
