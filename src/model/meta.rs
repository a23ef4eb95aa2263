//! Object metadata shared by every kind, and the keys used to refer to objects.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The namespace of objects whose manifest names none, as in a cluster.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The subset of Kubernetes `ObjectMeta` that portcullis reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    pub name: String,
    /// Namespace; empty until [`ObjectMeta::normalize`] fills in `default`.
    pub namespace: String,
    /// Labels (allowedRoutes selectors, EndpointSlice service names).
    pub labels: BTreeMap<String, String>,
    /// Annotations (issuer selection and portcullis knobs).
    pub annotations: BTreeMap<String, String>,
    /// `metadata.generation`; standalone manifests usually omit it and get 1.
    pub generation: Option<i64>,
    /// Creation timestamp (RFC 3339); orders routes of equal precedence.
    pub creation_timestamp: Option<String>,
}

impl ObjectMeta {
    /// Puts namespaced objects without a namespace into `default`.
    pub fn normalize(&mut self) {
        if self.namespace.is_empty() {
            self.namespace = DEFAULT_NAMESPACE.to_string();
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// The generation status conditions report as `observedGeneration`.
    pub fn generation(&self) -> i64 {
        self.generation.unwrap_or(1)
    }
}

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based selector requirement.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector (Kubernetes semantics; an unknown
    /// operator matches nothing).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn match_labels_and_expressions_combine() {
        let sel = LabelSelector {
            match_labels: labels(&[("a", "1")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "b".into(),
                operator: "In".into(),
                values: vec!["x".into(), "y".into()],
            }],
        };
        assert!(sel.matches(&labels(&[("a", "1"), ("b", "y")])));
        assert!(!sel.matches(&labels(&[("a", "1"), ("b", "z")])));
        assert!(!sel.matches(&labels(&[("b", "x")])));
    }
}
