//! Status as data: the conditions each object should carry after a compile,
//! with the types and reasons the Gateway API defines. Standalone mode serves
//! it on `/status` and prints it in `portcullis check`; Kubernetes mode writes
//! it to the API server (`crate::cluster::status_patch`). The strings each
//! type, reason and status stand for are spelled once, in their `as_str`, and
//! serialisation goes through them, so both outputs agree.

use serde::{Serialize, Serializer};

/// Condition types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The object is valid and accepted by the controller.
    Accepted,
    /// All references resolved.
    ResolvedRefs,
    /// Configuration is in the data plane.
    Programmed,
    /// A listener conflicts with another on the same port.
    Conflicted,
    /// Traffic can be served (Gateway).
    Ready,
    /// Gateway supports ListenerSets / attached listener sets.
    AttachedListenerSets,
    /// GatewayClass version compatibility.
    SupportedVersion,
    /// A route or listener only partially applies.
    PartiallyInvalid,
    /// Overlapping TLS configuration across listeners (HTTPS listeners
    /// with overlapping hostnames on one port).
    OverlappingTLSConfig,
    /// Frontend client-certificate validation lets clients without a
    /// valid certificate through (`AllowInsecureFallback`).
    InsecureFrontendValidationMode,
    /// A listener's managed certificate is issued and current (portcullis's
    /// own condition, set by the issuer).
    CertificateReady,
}

impl ConditionType {
    /// The condition type as the API spells it. portcullis's own type is
    /// domain-prefixed, as the API's condition `type` pattern allows
    /// (`foo.example.com/CamelCase`), so it cannot clash with a type the
    /// Gateway API defines later.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Accepted => "Accepted",
            ConditionType::ResolvedRefs => "ResolvedRefs",
            ConditionType::Programmed => "Programmed",
            ConditionType::Conflicted => "Conflicted",
            ConditionType::Ready => "Ready",
            ConditionType::AttachedListenerSets => "AttachedListenerSets",
            ConditionType::SupportedVersion => "SupportedVersion",
            ConditionType::PartiallyInvalid => "PartiallyInvalid",
            ConditionType::OverlappingTLSConfig => "OverlappingTLSConfig",
            ConditionType::InsecureFrontendValidationMode => "InsecureFrontendValidationMode",
            ConditionType::CertificateReady => "portcullis.dev/CertificateReady",
        }
    }
}

impl Serialize for ConditionType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Accepted.
    Accepted,
    /// Programmed.
    Programmed,
    /// References resolved.
    ResolvedRefs,
    /// No conflict.
    NoConflicts,
    /// Ready.
    Ready,
    /// Some listeners are invalid.
    ListenersNotValid,
    /// Listener protocol not supported.
    UnsupportedProtocol,
    /// Listener port not supported.
    PortUnavailable,
    /// Hostname conflict on one port.
    HostnameConflict,
    /// Protocol conflict on one port.
    ProtocolConflict,
    /// A certificateRef is missing or invalid.
    InvalidCertificateRef,
    /// A route kind in allowedRoutes is not supported.
    InvalidRouteKinds,
    /// A reference crosses namespaces without a ReferenceGrant.
    RefNotPermitted,
    /// The GatewayClass is unknown or not ours.
    NoMatchingParent,
    /// The route's parentRef names no listener that exists.
    NotAllowedByListeners,
    /// No listener hostname intersects the route's hostnames.
    NoMatchingListenerHostname,
    /// A backendRef names an object that does not exist.
    BackendNotFound,
    /// A backendRef names an unsupported kind.
    InvalidKind,
    /// A field has a value portcullis does not support.
    UnsupportedValue,
    /// The parametersRef of a GatewayClass is invalid.
    InvalidParameters,
    /// Pending (not yet reconciled).
    Pending,
    /// Invalid (generic).
    Invalid,
    /// Not reconciled because the class is not ours or is missing.
    NoResources,
    /// ListenerSets are not allowed by the parent Gateway.
    NotAllowed,
    /// The parent Gateway of a ListenerSet does not exist or is not accepted.
    ParentNotAccepted,
    /// The requested address cannot be used.
    UnsupportedAddress,
    /// Address not usable.
    AddressNotUsable,
    /// No address could be given to the Gateway (the address pool is
    /// exhausted); with `Programmed` False.
    AddressNotAssigned,
    /// The manifest could not be read.
    InvalidManifest,
    /// The supported version.
    SupportedVersion,
    /// An unsupported section of the Gateway API.
    UnsupportedRoute,
    /// Some rules were dropped (PartiallyInvalid).
    UnsupportedRule,
    /// Listener references an unsupported ConfigMap / CA bundle.
    InvalidCACertificateRef,
    /// Listener references an unsupported CA kind.
    InvalidCACertificateKind,
    /// Invalid client certificate reference.
    InvalidClientCertificateRef,
    /// No conflicting overlap.
    NoOverlap,
    /// Hostnames overlap with other HTTPS listeners.
    OverlappingHostnames,
    /// The listener set's listeners are invalid.
    ListenersNotAccepted,
    /// No usable CA certificate (BackendTLSPolicy, frontend validation).
    NoValidCACertificate,
    /// Another policy targets the same object and wins (BackendTLSPolicy).
    Conflicted,
    /// A setting weakens security as the user asked (insecure fallback).
    ConfigurationChanged,
    /// A certificate is being issued or waits for a retry.
    Issuing,
    /// The listener cannot get the certificate it asks for as configured
    /// (a wildcard without a DNS-01 solver, a bad annotation, no name).
    CertificateConfiguration,
    /// An Issuer or ClusterIssuer cannot issue (its account, key pair or
    /// configuration failed; the message says which).
    NotReady,
}

impl Reason {
    /// The reason as the API spells it (CamelCase, as the condition
    /// `reason` pattern requires).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::Programmed => "Programmed",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::NoConflicts => "NoConflicts",
            Reason::Ready => "Ready",
            Reason::ListenersNotValid => "ListenersNotValid",
            Reason::UnsupportedProtocol => "UnsupportedProtocol",
            Reason::PortUnavailable => "PortUnavailable",
            Reason::HostnameConflict => "HostnameConflict",
            Reason::ProtocolConflict => "ProtocolConflict",
            Reason::InvalidCertificateRef => "InvalidCertificateRef",
            Reason::InvalidRouteKinds => "InvalidRouteKinds",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::InvalidKind => "InvalidKind",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::InvalidParameters => "InvalidParameters",
            Reason::Pending => "Pending",
            Reason::Invalid => "Invalid",
            Reason::NoResources => "NoResources",
            Reason::NotAllowed => "NotAllowed",
            Reason::ParentNotAccepted => "ParentNotAccepted",
            Reason::UnsupportedAddress => "UnsupportedAddress",
            Reason::AddressNotUsable => "AddressNotUsable",
            Reason::AddressNotAssigned => "AddressNotAssigned",
            Reason::InvalidManifest => "InvalidManifest",
            Reason::SupportedVersion => "SupportedVersion",
            Reason::UnsupportedRoute => "UnsupportedRoute",
            Reason::UnsupportedRule => "UnsupportedRule",
            Reason::InvalidCACertificateRef => "InvalidCACertificateRef",
            Reason::InvalidCACertificateKind => "InvalidCACertificateKind",
            Reason::InvalidClientCertificateRef => "InvalidClientCertificateRef",
            Reason::NoOverlap => "NoOverlap",
            Reason::OverlappingHostnames => "OverlappingHostnames",
            Reason::ListenersNotAccepted => "ListenersNotAccepted",
            Reason::NoValidCACertificate => "NoValidCACertificate",
            Reason::Conflicted => "Conflicted",
            Reason::ConfigurationChanged => "ConfigurationChanged",
            Reason::Issuing => "Issuing",
            Reason::CertificateConfiguration => "CertificateConfiguration",
            Reason::NotReady => "NotReady",
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// True.
    True,
    /// False.
    False,
    /// Unknown.
    Unknown,
}

impl ConditionStatus {
    /// `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl Serialize for ConditionStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// Status.
    pub status: ConditionStatus,
    /// Reason.
    pub reason: Reason,
    /// Human-readable detail.
    pub message: String,
    /// The generation of the object this was computed from.
    pub observed_generation: i64,
}

impl Condition {
    /// Builds a condition.
    pub fn new(
        kind: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
        observed_generation: i64,
    ) -> Self {
        Self {
            kind,
            status: status.into(),
            reason,
            message: message.into(),
            observed_generation,
        }
    }
}

/// Status of one listener of a Gateway or ListenerSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Routes attached.
    pub attached_routes: u32,
    /// Route kinds this listener accepts.
    pub supported_kinds: Vec<String>,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// The certificate Secrets this listener serves (effective certificateRefs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<String>,
}

/// Status of a route for one of its parentRefs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    /// The parentRef as written (`kind namespace/name[/section][:port]`).
    pub parent_ref: ParentRefStatus,
    /// Our controller name.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// A parentRef echoed in route status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRefStatus {
    /// Group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Section name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// Status of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// Kind (`Gateway`, `HTTPRoute`, ...).
    pub kind: String,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Object-level conditions.
    pub conditions: Vec<Condition>,
    /// Listener status (Gateways and ListenerSets).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// Per-parent status (routes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentStatus>,
    /// How many ListenerSets are attached (Gateways that admit ListenerSets
    /// or that some ListenerSet targets; the API's `attachedListenerSets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<u32>,
    /// What the address pool (`--gateway-address-pool`) gave a Gateway
    /// that names no address: an address its listeners bind and its
    /// `status.addresses` reports, or none (the pool is exhausted, and it
    /// reports no address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_address: Option<crate::address_pool::PoolAddress>,
    /// The `IPAddress` of its `spec.addresses` a Gateway binds (the first
    /// this node can bind): the only one of them `status.addresses`
    /// reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_address: Option<std::net::IpAddr>,
}

impl ObjectStatus {
    /// A status with no conditions yet.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            conditions: Vec::new(),
            listeners: Vec::new(),
            parents: Vec::new(),
            attached_listener_sets: None,
            pool_address: None,
            spec_address: None,
        }
    }

    /// Whether every Accepted and ResolvedRefs condition, on the object, its
    /// listeners and its parents, is True (what `portcullis check` exits on).
    pub fn is_healthy(&self) -> bool {
        let ok = |c: &Condition| {
            !matches!(
                c.kind,
                ConditionType::Accepted | ConditionType::ResolvedRefs
            ) || c.status == ConditionStatus::True
        };
        self.conditions.iter().all(ok)
            && self.listeners.iter().all(|l| l.conditions.iter().all(ok))
            && self.parents.iter().all(|p| p.conditions.iter().all(ok))
    }
}

/// The status of every object after one compile, plus load problems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Per-object status.
    pub objects: Vec<ObjectStatus>,
}

impl Status {
    /// Finds the status of an object.
    pub fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&ObjectStatus> {
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
    }
}
