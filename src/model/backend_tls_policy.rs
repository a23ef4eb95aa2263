//! `BackendTLSPolicy` (gateway.networking.k8s.io v1; v1alpha3 read too) as
//! serde input types: how the gateway speaks TLS to a Service's backends.

use super::meta::ObjectMeta;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `BackendTLSPolicy`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTlsPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: BackendTlsPolicySpec,
}

/// `BackendTLSPolicy.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    /// Services (and optionally one named port of each) the policy applies to.
    pub target_refs: Vec<PolicyTargetReference>,
    /// How the backend's certificate is verified.
    pub validation: BackendTlsValidation,
    /// Implementation-specific options.
    pub options: BTreeMap<String, String>,
}

/// A `targetRefs` entry: a local object, optionally one section of it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group; empty means core.
    pub group: String,
    /// Kind (`Service`).
    pub kind: String,
    /// Name, in the policy's namespace.
    pub name: String,
    /// A Service port name; none means every port.
    pub section_name: Option<String>,
}

/// `BackendTLSPolicy.spec.validation`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTlsValidation {
    /// ConfigMaps (key `ca.crt`) holding the CAs that sign backend
    /// certificates.
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System`: trust the operating system's CA store instead.
    pub well_known_ca_certificates: Option<String>,
    /// The SNI sent, and the name verified unless `subject_alt_names` is set.
    pub hostname: String,
    /// Names the backend certificate must carry one of (instead of
    /// `hostname`).
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A reference to an object in the referrer's namespace.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// API group; empty means core.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// A `subjectAltNames` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SubjectAltName {
    /// `Hostname` or `URI`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The DNS name, for `Hostname`.
    pub hostname: Option<String>,
    /// The URI, for `URI`.
    pub uri: Option<String>,
}
