//! Core Kubernetes kinds portcullis reads: Secret, ConfigMap, Service, Namespace
//! and EndpointSlice.

use super::meta::ObjectMeta;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `v1/Secret`. `data` is decoded from base64 at load time and merged with
/// `stringData`, so consumers see bytes only.
#[derive(Clone, Default, PartialEq)]
pub struct Secret {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Secret type (`kubernetes.io/tls` for certificates).
    pub kind: String,
    /// Decoded data.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    // Secrets hold private keys: never print their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type", &self.kind)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The manifest shape of a Secret before decoding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SecretManifest {
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: BTreeMap<String, String>,
    pub string_data: BTreeMap<String, String>,
}

/// `v1/ConfigMap`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigMap {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Data.
    pub data: BTreeMap<String, String>,
}

/// `v1/Service`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Service {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ServiceSpec,
}

/// `Service.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Cluster IP, or `None` for headless Services.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// For ExternalName Services.
    pub external_name: Option<String>,
    /// Pod selector (informational standalone; EndpointSlices carry addresses).
    pub selector: BTreeMap<String, String>,
}

/// A Service port.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name.
    pub name: Option<String>,
    /// Service port.
    pub port: i64,
    /// Target port on the pods (number or named port).
    pub target_port: Option<serde_json::Value>,
    /// `TCP` (default), `UDP`, `SCTP`.
    pub protocol: Option<String>,
    /// Application protocol (`kubernetes.io/h2c`, `kubernetes.io/ws`, ...).
    pub app_protocol: Option<String>,
}

/// `v1/Namespace`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Namespace {
    /// Metadata (its labels feed allowedRoutes selectors).
    pub metadata: ObjectMeta,
}

/// `discovery.k8s.io/v1/EndpointSlice`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Metadata; label `kubernetes.io/service-name` names the Service.
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Ports (named as the Service ports they serve).
    pub ports: Vec<EndpointPort>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Endpoint {
    /// Addresses of the endpoint.
    pub addresses: Vec<String>,
    /// Conditions; `ready: false` endpoints receive no traffic.
    pub conditions: EndpointConditions,
    /// The pod behind it, when known.
    pub target_ref: Option<serde_json::Value>,
}

/// Endpoint conditions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready; absent means ready.
    pub ready: Option<bool>,
    /// Terminating.
    pub terminating: Option<bool>,
}

/// A port of an EndpointSlice.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointPort {
    /// Name, equal to the Service port name (empty for an unnamed port).
    pub name: Option<String>,
    /// Port on the endpoints.
    pub port: Option<i64>,
    /// Protocol.
    pub protocol: Option<String>,
    /// Application protocol.
    pub app_protocol: Option<String>,
}

/// Label on EndpointSlices naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
