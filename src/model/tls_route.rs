//! `TLSRoute` (gateway.networking.k8s.io v1, v1alpha2, v1alpha3) as serde
//! input types: routes TLS connections by SNI without terminating them.

use super::meta::ObjectMeta;
use super::route::{HttpBackendRef, ParentReference};
use serde::Deserialize;

/// `TLSRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRoute {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: TlsRouteSpec,
}

/// `TLSRoute.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRouteSpec {
    /// Parents (Gateways, ListenerSets).
    pub parent_refs: Vec<ParentReference>,
    /// SNI hostnames; empty means every hostname of the listener.
    pub hostnames: Vec<String>,
    /// Rules.
    pub rules: Vec<TlsRouteRule>,
}

/// `TLSRoute.spec.rules[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRouteRule {
    /// Optional rule name.
    pub name: Option<String>,
    /// Weighted backends (filters, if any, are ignored).
    pub backend_refs: Vec<HttpBackendRef>,
}
