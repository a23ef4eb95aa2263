//! portcullis' own kinds (`portcullis.dev/v1alpha1`): `StaticResponse`, a
//! backendRef target answered by the gateway itself. Its spec derives
//! `JsonSchema` for the CRD `crate::crds` prints.

use super::meta::ObjectMeta;
use schemars::JsonSchema;
use serde::Deserialize;

/// API group of portcullis' own kinds.
pub const GROUP: &str = "portcullis.dev";

/// `portcullis.dev/v1alpha1 StaticResponse`: a fixed response a backendRef of
/// kind `StaticResponse` (group `portcullis.dev`) answers with.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct StaticResponse {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: StaticResponseSpec,
}

/// `StaticResponse.spec`: the response the gateway answers with.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct StaticResponseSpec {
    /// HTTP status code (default 200).
    pub status: i64,
    /// Response body.
    pub body: String,
    /// Content type (default `text/plain`).
    pub content_type: String,
}

impl Default for StaticResponseSpec {
    fn default() -> Self {
        Self {
            status: 200,
            body: String::new(),
            content_type: "text/plain".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_to_200_text_plain() {
        let s: StaticResponse =
            serde_yaml::from_str("metadata: {name: s}\nspec: {body: hi}\n").expect("parses");
        assert_eq!(s.spec.status, 200);
        assert_eq!(s.spec.content_type, "text/plain");
        assert_eq!(s.spec.body, "hi");
    }
}
