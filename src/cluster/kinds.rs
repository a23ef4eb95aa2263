//! The kinds Kubernetes mode lists and watches in full ([`Watched`]), how
//! each is found on the API server (group, versions in order of preference,
//! scope), and how one object the API serves becomes a [`model::Object`]
//! (through the same field rules as a manifest file: [`decode`]).
//!
//! Secrets and ConfigMaps are not here: they are watched by metadata only
//! and fetched when something refers to them (`super::referenced`).

use crate::model::{self, load, Object};
use kube::api::ApiResource;

/// A kind watched in full, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    /// gateway.networking.k8s.io GatewayClass.
    GatewayClass,
    /// gateway.networking.k8s.io Gateway.
    Gateway,
    /// gateway.networking.k8s.io ListenerSet.
    ListenerSet,
    /// gateway.networking.k8s.io HTTPRoute.
    HttpRoute,
    /// gateway.networking.k8s.io GRPCRoute.
    GrpcRoute,
    /// gateway.networking.k8s.io TLSRoute.
    TlsRoute,
    /// gateway.networking.k8s.io TCPRoute.
    TcpRoute,
    /// gateway.networking.k8s.io UDPRoute.
    UdpRoute,
    /// gateway.networking.k8s.io ReferenceGrant.
    ReferenceGrant,
    /// gateway.networking.k8s.io BackendTLSPolicy.
    BackendTlsPolicy,
    /// v1 Service.
    Service,
    /// discovery.k8s.io EndpointSlice.
    EndpointSlice,
    /// v1 Namespace.
    Namespace,
    /// portcullis.dev Issuer.
    Issuer,
    /// portcullis.dev ClusterIssuer.
    ClusterIssuer,
    /// portcullis.dev StaticResponse.
    StaticResponse,
}

/// The Gateway API's group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// portcullis's own group.
pub const PORTCULLIS_GROUP: &str = "portcullis.dev";

impl Watched {
    /// Every watched kind.
    pub const ALL: [Watched; 16] = [
        Watched::GatewayClass,
        Watched::Gateway,
        Watched::ListenerSet,
        Watched::HttpRoute,
        Watched::GrpcRoute,
        Watched::TlsRoute,
        Watched::TcpRoute,
        Watched::UdpRoute,
        Watched::ReferenceGrant,
        Watched::BackendTlsPolicy,
        Watched::Service,
        Watched::EndpointSlice,
        Watched::Namespace,
        Watched::Issuer,
        Watched::ClusterIssuer,
        Watched::StaticResponse,
    ];

    /// The API group (empty for core).
    pub fn group(self) -> &'static str {
        match self {
            Watched::Service | Watched::Namespace => "",
            Watched::EndpointSlice => "discovery.k8s.io",
            Watched::Issuer | Watched::ClusterIssuer | Watched::StaticResponse => PORTCULLIS_GROUP,
            _ => GATEWAY_GROUP,
        }
    }

    /// The kind as the API spells it.
    pub fn kind(self) -> &'static str {
        match self {
            Watched::GatewayClass => "GatewayClass",
            Watched::Gateway => "Gateway",
            Watched::ListenerSet => "ListenerSet",
            Watched::HttpRoute => "HTTPRoute",
            Watched::GrpcRoute => "GRPCRoute",
            Watched::TlsRoute => "TLSRoute",
            Watched::TcpRoute => "TCPRoute",
            Watched::UdpRoute => "UDPRoute",
            Watched::ReferenceGrant => "ReferenceGrant",
            Watched::BackendTlsPolicy => "BackendTLSPolicy",
            Watched::Service => "Service",
            Watched::EndpointSlice => "EndpointSlice",
            Watched::Namespace => "Namespace",
            Watched::Issuer => "Issuer",
            Watched::ClusterIssuer => "ClusterIssuer",
            Watched::StaticResponse => "StaticResponse",
        }
    }

    /// The versions to use, best first: an older Gateway API install
    /// (TLSRoute v1alpha2, ReferenceGrant v1beta1) is read through the
    /// version it serves, as a manifest of that version is read.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Watched::GatewayClass | Watched::Gateway | Watched::HttpRoute => &["v1", "v1beta1"],
            Watched::ReferenceGrant => &["v1", "v1beta1"],
            Watched::TlsRoute => &["v1", "v1alpha3", "v1alpha2"],
            Watched::TcpRoute | Watched::UdpRoute => &["v1", "v1alpha2"],
            Watched::BackendTlsPolicy => &["v1", "v1alpha3"],
            Watched::ListenerSet | Watched::GrpcRoute => &["v1"],
            Watched::Service | Watched::Namespace | Watched::EndpointSlice => &["v1"],
            Watched::Issuer | Watched::ClusterIssuer | Watched::StaticResponse => &["v1alpha1"],
        }
    }

    /// The resource's plural name.
    pub fn plural(self) -> &'static str {
        match self {
            Watched::GatewayClass => "gatewayclasses",
            Watched::Gateway => "gateways",
            Watched::ListenerSet => "listenersets",
            Watched::HttpRoute => "httproutes",
            Watched::GrpcRoute => "grpcroutes",
            Watched::TlsRoute => "tlsroutes",
            Watched::TcpRoute => "tcproutes",
            Watched::UdpRoute => "udproutes",
            Watched::ReferenceGrant => "referencegrants",
            Watched::BackendTlsPolicy => "backendtlspolicies",
            Watched::Service => "services",
            Watched::EndpointSlice => "endpointslices",
            Watched::Namespace => "namespaces",
            Watched::Issuer => "issuers",
            Watched::ClusterIssuer => "clusterissuers",
            Watched::StaticResponse => "staticresponses",
        }
    }

    /// Whether objects of the kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(
            self,
            Watched::GatewayClass | Watched::Namespace | Watched::ClusterIssuer
        )
    }

    /// Whether the source keeps the live status beside the decoded object:
    /// for the kinds whose status portcullis writes, and for Services (a
    /// LoadBalancer Service's ingress gives Gateways their addresses).
    pub fn keeps_status(self) -> bool {
        !matches!(
            self,
            Watched::EndpointSlice
                | Watched::Namespace
                | Watched::ReferenceGrant
                | Watched::StaticResponse
        )
    }

    /// Whether the kind is part of every cluster (core kinds), so it needs
    /// no discovery and its absence is an error, not a missing CRD.
    pub fn is_builtin(self) -> bool {
        matches!(
            self,
            Watched::Service | Watched::Namespace | Watched::EndpointSlice
        )
    }

    /// The API resource of `version` of this kind.
    pub fn api_resource(self, version: &str) -> ApiResource {
        let group = self.group();
        ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            },
            kind: self.kind().to_string(),
            plural: self.plural().to_string(),
        }
    }
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// Decodes one object as the API serves it. The list and watch responses of
/// built-in kinds omit `apiVersion` and `kind` on items, so both are set
/// from `resource` first. Errors carry the field rule that failed, as for a
/// manifest.
pub fn decode(
    resource: &ApiResource,
    mut value: serde_json::Value,
) -> Result<Option<Object>, load::Error> {
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            serde_json::Value::String(resource.api_version.clone()),
        );
        map.insert(
            "kind".into(),
            serde_json::Value::String(resource.kind.clone()),
        );
        // Status is the controller's output, not its input; managedFields
        // only cost memory.
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
        }
    }
    load::parse_api_object(&value, "api")
}

/// `namespace/name` of an object as served (empty namespace for
/// cluster-scoped kinds).
pub fn key_of(value: &serde_json::Value) -> model::ObjectKey {
    let meta = value.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    model::ObjectKey::new(field("namespace"), field("name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_has_a_resource_of_its_first_version() {
        for k in Watched::ALL {
            let ar = k.api_resource(k.versions()[0]);
            assert_eq!(ar.kind, k.kind());
            if k.group().is_empty() {
                assert_eq!(ar.api_version, "v1");
            } else {
                assert!(ar.api_version.starts_with(k.group()), "{k}");
            }
        }
    }

    #[test]
    fn a_listed_item_without_type_fields_decodes_as_its_kind() {
        let ar = Watched::Service.api_resource("v1");
        let item = json!({
            "metadata": {"name": "web", "namespace": "apps", "resourceVersion": "7",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"ports": [{"name": "http", "port": 80}]},
            "status": {"loadBalancer": {}}
        });
        match decode(&ar, item) {
            Ok(Some(Object::Service(s))) => {
                assert_eq!(s.metadata.key(), model::ObjectKey::new("apps", "web"));
                assert_eq!(s.spec.ports[0].port, 80);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_field_of_the_wrong_shape_is_refused_with_the_rule() {
        let ar = Watched::Gateway.api_resource("v1");
        let item = json!({
            "metadata": {"name": "g", "namespace": "apps"},
            "spec": {"gatewayClassName": "c", "listeners": 5}
        });
        let err = decode(&ar, item).expect_err("refused");
        assert!(err.to_string().contains("Gateway g"), "{err}");
    }

    #[test]
    fn cluster_scoped_kinds_have_no_namespace() {
        let namespaced: Vec<_> = Watched::ALL
            .iter()
            .filter(|k| !k.is_namespaced())
            .map(|k| k.kind())
            .collect();
        assert_eq!(namespaced, ["GatewayClass", "Namespace", "ClusterIssuer"]);
    }
}
