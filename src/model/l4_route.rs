//! `TCPRoute` and `UDPRoute` (gateway.networking.k8s.io v1 since Gateway API
//! v1.6, v1alpha2 before) as serde input types: routes that forward every
//! connection (datagram) of a `TCP` (`UDP`) listener to weighted backends,
//! with no hostname and no match.
//!
//! Both kinds share one shape, [`L4RouteSpec`]; attachment and backend
//! resolution live in `crate::compile`.

use super::meta::ObjectMeta;
use super::route::{BackendObjectReference, ParentReference};
use serde::Deserialize;

/// `TCPRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpRoute {
    /// Metadata (the `portcullis.dev/proxy-protocol` annotation lives here).
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: L4RouteSpec,
}

/// `UDPRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct UdpRoute {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: L4RouteSpec,
}

/// `TCPRoute.spec` and `UDPRoute.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct L4RouteSpec {
    /// Parents (Gateways, ListenerSets).
    pub parent_refs: Vec<ParentReference>,
    /// Rules (the API allows exactly one).
    pub rules: Vec<L4RouteRule>,
}

/// `TCPRoute.spec.rules[]` and `UDPRoute.spec.rules[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct L4RouteRule {
    /// Optional rule name.
    pub name: Option<String>,
    /// Weighted backends.
    pub backend_refs: Vec<BackendRef>,
}

/// `BackendRef`: a backend and its weight.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendRef {
    /// The backend.
    #[serde(flatten)]
    pub backend: BackendObjectReference,
    /// Weight (default 1).
    pub weight: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp_route_reads_parents_and_weighted_backends() {
        let r: TcpRoute = serde_yaml::from_str(
            "metadata: {name: db, annotations: {portcullis.dev/proxy-protocol: v2}}
spec:
  parentRefs: [{name: gw, sectionName: pg}]
  rules:
  - backendRefs: [{name: a, port: 5432, weight: 3}, {name: b, port: 5432}]
",
        )
        .expect("valid TCPRoute");
        assert_eq!(r.spec.parent_refs[0].section_name.as_deref(), Some("pg"));
        let refs = &r.spec.rules[0].backend_refs;
        assert_eq!(refs[0].backend.name, "a");
        assert_eq!(refs[0].weight, Some(3));
        assert_eq!(refs[1].weight, None);
        assert_eq!(refs[1].backend.port, Some(5432));
    }
}
