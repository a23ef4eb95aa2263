//! Gateway-side kinds of the Gateway API: GatewayClass, Gateway, ListenerSet and
//! ReferenceGrant, as serde types that mirror the manifests field for field.
//!
//! These are the *input* shapes. Nothing past `compile` reads them; it turns them
//! into the domain types in `crate::dataplane`.

use super::meta::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `GatewayClass`: names the controller that implements a class of Gateways.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayClass {
    /// Metadata (cluster-scoped: the namespace stays empty).
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: GatewayClassSpec,
}

/// `GatewayClass.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that owns Gateways of this class.
    pub controller_name: String,
    /// Implementation-specific parameters; portcullis takes none.
    pub parameters_ref: Option<serde_json::Value>,
}

/// `Gateway`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Gateway {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: GatewaySpec,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass this Gateway belongs to.
    pub gateway_class_name: String,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Requested addresses; an `IPAddress` entry is where this Gateway binds.
    pub addresses: Vec<GatewayAddress>,
    /// Which ListenerSets may attach (default: none).
    pub allowed_listeners: Option<AllowedListeners>,
    /// Gateway-wide TLS settings (frontend validation, backend client cert).
    pub tls: Option<GatewayTls>,
    /// Labels and annotations for what is made for this Gateway (its
    /// Service in Kubernetes mode; ignored standalone).
    pub infrastructure: Option<GatewayInfrastructure>,
}

/// `Gateway.spec.infrastructure`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels for the resources made for the Gateway.
    pub labels: BTreeMap<String, String>,
    /// Annotations for the resources made for the Gateway.
    pub annotations: BTreeMap<String, String>,
    /// Implementation parameters (portcullis takes none: the Gateway is
    /// refused with `InvalidParameters`).
    pub parameters_ref: Option<serde_json::Value>,
}

/// `Gateway.spec.tls`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayTls {
    /// TLS toward backends: the client certificate the gateway presents.
    pub backend: Option<GatewayBackendTls>,
    /// TLS toward clients: client-certificate validation.
    pub frontend: Option<FrontendTls>,
}

/// `Gateway.spec.tls.backend`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayBackendTls {
    /// A `kubernetes.io/tls` Secret the gateway presents to backends that
    /// ask for a client certificate.
    pub client_certificate_ref: Option<SecretObjectReference>,
}

/// `Gateway.spec.tls.frontend`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FrontendTls {
    /// Settings for every HTTPS/TLS port not listed in `per_port`.
    pub default: Option<FrontendTlsConfig>,
    /// Settings for one port, replacing the default there.
    pub per_port: Vec<FrontendTlsPort>,
}

/// One `spec.tls.frontend.perPort` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FrontendTlsPort {
    /// The listener port these settings apply to.
    pub port: i64,
    /// The settings.
    pub tls: FrontendTlsConfig,
}

/// Frontend TLS settings of a port.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FrontendTlsConfig {
    /// Client-certificate validation; none means clients are not asked.
    pub validation: Option<FrontendValidation>,
}

/// Client-certificate validation of a port.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FrontendValidation {
    /// ConfigMaps (key `ca.crt`) or Secrets holding the trusted client CAs.
    pub ca_certificate_refs: Vec<SecretObjectReference>,
    /// `AllowValidOnly` (default): a verified certificate is required;
    /// `AllowInsecureFallback`: clients without one are let through.
    pub mode: Option<String>,
}

/// One `spec.addresses` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` (default) or `Hostname` or an implementation type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The address.
    pub value: String,
}

/// `spec.allowedListeners`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AllowedListeners {
    /// Namespaces ListenerSets may come from.
    pub namespaces: Option<RouteNamespaces>,
}

/// A Gateway (or ListenerSet) listener.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Listener {
    /// Section name, unique within its Gateway or ListenerSet.
    pub name: String,
    /// Hostname (exact or `*.` wildcard); none means every hostname.
    pub hostname: Option<String>,
    /// Port.
    pub port: i64,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or an implementation protocol.
    pub protocol: String,
    /// TLS settings.
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    pub allowed_routes: Option<AllowedRoutes>,
}

impl Listener {
    /// How this listener's `tls.mode` is read, the one place compile and
    /// the issuer's demand decide it: `Terminate` when absent (the Gateway
    /// API's default, which the API server fills in but a file may leave
    /// out).
    pub fn tls_mode(&self) -> TlsMode<'_> {
        match self.tls.as_ref().and_then(|t| t.mode.as_deref()) {
            None | Some("Terminate") => TlsMode::Terminate,
            Some("Passthrough") => TlsMode::Passthrough,
            Some(other) => TlsMode::Unknown(other),
        }
    }
}

/// `listener.tls.mode`, read by [`Listener::tls_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode<'a> {
    /// TLS ends at the listener (the default).
    Terminate,
    /// The TLS stream is forwarded as it is.
    Passthrough,
    /// A mode the Gateway API does not define.
    Unknown(&'a str),
}

/// `listener.tls`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    pub mode: Option<String>,
    /// Certificates (Secrets of type kubernetes.io/tls).
    pub certificate_refs: Vec<SecretObjectReference>,
    /// Implementation-specific options.
    pub options: BTreeMap<String, String>,
}

/// A reference to a Secret-like object.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// API group; empty means core.
    pub group: Option<String>,
    /// Kind; default `Secret`.
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; default the referrer's.
    pub namespace: Option<String>,
}

/// `listener.allowedRoutes`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces routes may come from (default: Same).
    pub namespaces: Option<RouteNamespaces>,
    /// Kinds of route allowed (default: by protocol).
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `allowedRoutes.namespaces` / `allowedListeners.namespaces`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Same`, `Selector` or (ListenerSets) `None`.
    pub from: Option<String>,
    /// Namespace label selector for `Selector`.
    pub selector: Option<LabelSelector>,
}

/// A group and kind of route.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Group; default `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

/// `ListenerSet`: listeners attached to a Gateway from elsewhere.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerSet {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ListenerSetSpec,
}

/// `ListenerSet.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway these listeners join.
    pub parent_ref: ParentGatewayReference,
    /// Listeners.
    pub listeners: Vec<Listener>,
}

/// `ListenerSet.spec.parentRef`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentGatewayReference {
    /// Group.
    pub group: Option<String>,
    /// Kind (Gateway).
    pub kind: Option<String>,
    /// Gateway name.
    pub name: String,
    /// Gateway namespace; default the ListenerSet's.
    pub namespace: Option<String>,
}

/// `ReferenceGrant`: lets objects in other namespaces refer into this one.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrant {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ReferenceGrantSpec,
}

/// `ReferenceGrant.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    pub from: Vec<ReferenceGrantFrom>,
    /// What they may refer to.
    pub to: Vec<ReferenceGrantTo>,
}

/// `ReferenceGrant.spec.from[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// Group of the referrer.
    pub group: String,
    /// Kind of the referrer.
    pub kind: String,
    /// Namespace of the referrer.
    pub namespace: String,
}

/// `ReferenceGrant.spec.to[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// Group of the target.
    pub group: String,
    /// Kind of the target.
    pub kind: String,
    /// Name of the target; none means all of that kind.
    pub name: Option<String>,
}
