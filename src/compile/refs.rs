//! Permission rules between objects: ReferenceGrants for references that cross
//! namespaces, and the namespace filters of `allowedRoutes` and
//! `allowedListeners` (Same, All, Selector over Namespace labels).

use crate::model::gateway::RouteNamespaces;
use crate::model::Resources;
use std::collections::BTreeMap;

/// The API group of the Gateway API kinds.
pub(crate) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Label every Namespace carries with its own name (Kubernetes ≥ 1.22).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One side of a reference: group, kind and namespace of the referrer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Referrer<'a> {
    /// Group of the referring object.
    pub group: &'a str,
    /// Kind of the referring object.
    pub kind: &'a str,
    /// Namespace of the referring object.
    pub namespace: &'a str,
}

/// The object referred to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Group of the target (empty for core).
    pub group: &'a str,
    /// Kind of the target.
    pub kind: &'a str,
    /// Namespace of the target.
    pub namespace: &'a str,
    /// Name of the target.
    pub name: &'a str,
}

/// Whether `from` may refer to `to`: always within one namespace, otherwise
/// only when a ReferenceGrant in the target's namespace allows it (Gateway API
/// ReferenceGrant: `from` group/kind/namespace and `to` group/kind/optional name).
pub(crate) fn is_permitted(resources: &Resources, from: Referrer<'_>, to: Target<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    resources
        .reference_grants
        .iter()
        .filter(|g| g.metadata.namespace == to.namespace)
        .any(|g| {
            g.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            }) && g.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to.name)
            })
        })
}

/// The labels of a namespace as a selector sees them: its Namespace object's
/// labels (none when no object exists) plus `kubernetes.io/metadata.name`.
pub(crate) fn namespace_labels(resources: &Resources, name: &str) -> BTreeMap<String, String> {
    let mut labels = resources
        .namespace(name)
        .map(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    labels
}

/// Whether an object in `candidate` namespace passes a namespace filter owned
/// by an object in `owner` namespace. `default_from` applies when the filter
/// or its `from` is absent (`Same` for routes, `None` for ListenerSets).
pub(crate) fn namespace_allowed(
    resources: &Resources,
    filter: Option<&RouteNamespaces>,
    default_from: &str,
    owner: &str,
    candidate: &str,
) -> bool {
    let from = filter
        .and_then(|f| f.from.as_deref())
        .unwrap_or(default_from);
    match from {
        "All" => true,
        "Same" => owner == candidate,
        "Selector" => filter
            .and_then(|f| f.selector.as_ref())
            .is_some_and(|s| s.matches(&namespace_labels(resources, candidate))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load::parse_documents;

    fn resources(yaml: &str) -> Resources {
        Resources::from_objects(
            parse_documents(yaml, "t.yaml")
                .expect("fixture parses")
                .objects,
        )
    }

    const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: target}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: routes}]
  to: [{group: '', kind: Service, name: only}]
";

    fn route_ref(ns: &str) -> Referrer<'_> {
        Referrer {
            group: GATEWAY_GROUP,
            kind: "HTTPRoute",
            namespace: ns,
        }
    }

    fn service<'a>(ns: &'a str, name: &'a str) -> Target<'a> {
        Target {
            group: "",
            kind: "Service",
            namespace: ns,
            name,
        }
    }

    #[test]
    fn same_namespace_needs_no_grant() {
        let r = Resources::default();
        assert!(is_permitted(&r, route_ref("a"), service("a", "s")));
        assert!(!is_permitted(&r, route_ref("a"), service("b", "s")));
    }

    #[test]
    fn grant_naming_one_object_allows_only_that_object() {
        let r = resources(GRANT);
        assert!(is_permitted(
            &r,
            route_ref("routes"),
            service("target", "only")
        ));
        assert!(!is_permitted(
            &r,
            route_ref("routes"),
            service("target", "other")
        ));
        assert!(!is_permitted(
            &r,
            route_ref("elsewhere"),
            service("target", "only")
        ));
    }

    #[test]
    fn selector_sees_the_automatic_name_label() {
        let r = resources(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {team: a}}\n",
        );
        let filter: RouteNamespaces = serde_yaml::from_str(
            "from: Selector\nselector: {matchLabels: {kubernetes.io/metadata.name: other}}",
        )
        .expect("filter");
        assert!(namespace_allowed(&r, Some(&filter), "Same", "gw", "other"));
        assert!(!namespace_allowed(&r, Some(&filter), "Same", "gw", "web"));
        let team: RouteNamespaces =
            serde_yaml::from_str("from: Selector\nselector: {matchLabels: {team: a}}")
                .expect("filter");
        assert!(namespace_allowed(&r, Some(&team), "Same", "gw", "web"));
        assert!(!namespace_allowed(
            &r,
            Some(&team),
            "Same",
            "gw",
            "nolabels"
        ));
    }

    #[test]
    fn default_from_applies_when_filter_is_absent() {
        let r = Resources::default();
        assert!(namespace_allowed(&r, None, "Same", "a", "a"));
        assert!(!namespace_allowed(&r, None, "Same", "a", "b"));
        assert!(!namespace_allowed(&r, None, "None", "a", "a"));
    }
}
