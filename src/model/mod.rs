//! The typed snapshot of every object portcullis reads ([`Resources`]), whatever
//! its source: a directory of manifests ([`load`]) or, later, Kubernetes
//! reflectors. Nothing downstream knows where an object came from.

pub mod backend_tls_policy;
pub mod core;
pub mod gateway;
pub mod issuer;
pub mod l4_route;
pub mod load;
pub mod meta;
pub mod portcullis;
pub mod route;
pub mod tls_route;

pub use self::core::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
pub use backend_tls_policy::BackendTlsPolicy;
pub use gateway::{Gateway, GatewayClass, ListenerSet, ReferenceGrant};
pub use issuer::{ClusterIssuer, Issuer};
pub use l4_route::{TcpRoute, UdpRoute};
pub use meta::{ObjectKey, ObjectMeta};
pub use portcullis::StaticResponse;
pub use route::{GrpcRoute, HttpRoute};
pub use tls_route::TlsRoute;

use std::sync::Arc;

/// One object of a kind portcullis understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// GatewayClass.
    GatewayClass(Arc<GatewayClass>),
    /// Gateway.
    Gateway(Arc<Gateway>),
    /// ListenerSet.
    ListenerSet(Arc<ListenerSet>),
    /// HTTPRoute.
    HttpRoute(Arc<HttpRoute>),
    /// GRPCRoute.
    GrpcRoute(Arc<GrpcRoute>),
    /// TLSRoute.
    TlsRoute(Arc<TlsRoute>),
    /// TCPRoute.
    TcpRoute(Arc<TcpRoute>),
    /// UDPRoute.
    UdpRoute(Arc<UdpRoute>),
    /// BackendTLSPolicy.
    BackendTlsPolicy(Arc<BackendTlsPolicy>),
    /// ReferenceGrant.
    ReferenceGrant(Arc<ReferenceGrant>),
    /// Secret.
    Secret(Arc<Secret>),
    /// ConfigMap.
    ConfigMap(Arc<ConfigMap>),
    /// Service.
    Service(Arc<Service>),
    /// Namespace.
    Namespace(Arc<Namespace>),
    /// EndpointSlice.
    EndpointSlice(Arc<EndpointSlice>),
    /// portcullis.dev StaticResponse.
    StaticResponse(Arc<StaticResponse>),
    /// portcullis.dev Issuer.
    Issuer(Arc<Issuer>),
    /// portcullis.dev ClusterIssuer.
    ClusterIssuer(Arc<ClusterIssuer>),
}

impl Object {
    /// The kind as manifests spell it and the object's `namespace/name`:
    /// what identifies it, so two definitions of one object can be told.
    pub fn identity(&self) -> (&'static str, ObjectKey) {
        let (kind, meta) = match self {
            Object::GatewayClass(o) => ("GatewayClass", &o.metadata),
            Object::Gateway(o) => ("Gateway", &o.metadata),
            Object::ListenerSet(o) => ("ListenerSet", &o.metadata),
            Object::HttpRoute(o) => ("HTTPRoute", &o.metadata),
            Object::GrpcRoute(o) => ("GRPCRoute", &o.metadata),
            Object::TlsRoute(o) => ("TLSRoute", &o.metadata),
            Object::TcpRoute(o) => ("TCPRoute", &o.metadata),
            Object::UdpRoute(o) => ("UDPRoute", &o.metadata),
            Object::BackendTlsPolicy(o) => ("BackendTLSPolicy", &o.metadata),
            Object::ReferenceGrant(o) => ("ReferenceGrant", &o.metadata),
            Object::Secret(o) => ("Secret", &o.metadata),
            Object::ConfigMap(o) => ("ConfigMap", &o.metadata),
            Object::Service(o) => ("Service", &o.metadata),
            Object::Namespace(o) => ("Namespace", &o.metadata),
            Object::EndpointSlice(o) => ("EndpointSlice", &o.metadata),
            Object::StaticResponse(o) => ("StaticResponse", &o.metadata),
            Object::Issuer(o) => ("Issuer", &o.metadata),
            Object::ClusterIssuer(o) => ("ClusterIssuer", &o.metadata),
        };
        (kind, meta.key())
    }
}

/// A snapshot of every object, grouped by kind, in load order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// GatewayClasses.
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: Vec<Arc<Gateway>>,
    /// ListenerSets.
    pub listener_sets: Vec<Arc<ListenerSet>>,
    /// HTTPRoutes.
    pub http_routes: Vec<Arc<HttpRoute>>,
    /// GRPCRoutes.
    pub grpc_routes: Vec<Arc<GrpcRoute>>,
    /// TLSRoutes.
    pub tls_routes: Vec<Arc<TlsRoute>>,
    /// TCPRoutes.
    pub tcp_routes: Vec<Arc<TcpRoute>>,
    /// UDPRoutes.
    pub udp_routes: Vec<Arc<UdpRoute>>,
    /// BackendTLSPolicies.
    pub backend_tls_policies: Vec<Arc<BackendTlsPolicy>>,
    /// ReferenceGrants.
    pub reference_grants: Vec<Arc<ReferenceGrant>>,
    /// Secrets.
    pub secrets: Vec<Arc<Secret>>,
    /// ConfigMaps.
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// Namespaces.
    pub namespaces: Vec<Arc<Namespace>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// portcullis.dev StaticResponses.
    pub static_responses: Vec<Arc<StaticResponse>>,
    /// portcullis.dev Issuers.
    pub issuers: Vec<Arc<Issuer>>,
    /// portcullis.dev ClusterIssuers.
    pub cluster_issuers: Vec<Arc<ClusterIssuer>>,
    /// Where ClusterIssuers' Secrets are read from (cert-manager's "cluster
    /// resource namespace"): the controller's own namespace in Kubernetes
    /// mode; empty means [`issuer::CLUSTER_RESOURCE_NAMESPACE`].
    pub cluster_resource_namespace: String,
}

impl Resources {
    /// Adds one object to the snapshot.
    pub fn push(&mut self, object: Object) {
        match object {
            Object::GatewayClass(o) => self.gateway_classes.push(o),
            Object::Gateway(o) => self.gateways.push(o),
            Object::ListenerSet(o) => self.listener_sets.push(o),
            Object::HttpRoute(o) => self.http_routes.push(o),
            Object::GrpcRoute(o) => self.grpc_routes.push(o),
            Object::TlsRoute(o) => self.tls_routes.push(o),
            Object::TcpRoute(o) => self.tcp_routes.push(o),
            Object::UdpRoute(o) => self.udp_routes.push(o),
            Object::BackendTlsPolicy(o) => self.backend_tls_policies.push(o),
            Object::ReferenceGrant(o) => self.reference_grants.push(o),
            Object::Secret(o) => self.secrets.push(o),
            Object::ConfigMap(o) => self.config_maps.push(o),
            Object::Service(o) => self.services.push(o),
            Object::Namespace(o) => self.namespaces.push(o),
            Object::EndpointSlice(o) => self.endpoint_slices.push(o),
            Object::StaticResponse(o) => self.static_responses.push(o),
            Object::Issuer(o) => self.issuers.push(o),
            Object::ClusterIssuer(o) => self.cluster_issuers.push(o),
        }
    }

    /// Builds a snapshot from objects.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut r = Resources::default();
        for o in objects {
            r.push(o);
        }
        r
    }

    /// The namespace ClusterIssuers' Secrets are read from.
    pub fn cluster_resource_namespace(&self) -> &str {
        if self.cluster_resource_namespace.is_empty() {
            issuer::CLUSTER_RESOURCE_NAMESPACE
        } else {
            &self.cluster_resource_namespace
        }
    }

    /// Finds a Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .find(|s| s.metadata.namespace == namespace && s.metadata.name == name)
            .map(Arc::as_ref)
    }

    /// Finds a ConfigMap.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .iter()
            .find(|s| s.metadata.namespace == namespace && s.metadata.name == name)
            .map(Arc::as_ref)
    }

    /// Finds a Service.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.metadata.namespace == namespace && s.metadata.name == name)
            .map(Arc::as_ref)
    }

    /// Finds a Namespace.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .find(|n| n.metadata.name == name)
            .map(Arc::as_ref)
    }
}
