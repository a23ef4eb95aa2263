//! portcullis's issuer kinds (`portcullis.dev/v1alpha1`): `Issuer`
//! (namespaced) and `ClusterIssuer` (cluster-wide), as serde types mirroring
//! cert-manager's field names so existing manifests carry over. Exactly one of
//! `spec.acme`, `spec.ca` and `spec.selfSigned` is expected; what each does is
//! `crate::issuer`'s business. The spec types also derive `JsonSchema`:
//! `crate::crds` turns them into the CRDs' schemas, so the API server admits
//! exactly what this model reads.

use super::meta::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The namespace a `ClusterIssuer`'s Secrets (account key, CA key pair, EAB
/// and TSIG keys) are read from in standalone mode (cert-manager's "cluster
/// resource namespace").
pub const CLUSTER_RESOURCE_NAMESPACE: &str = "default";

/// `portcullis.dev/v1alpha1 Issuer`: issues certificates for Gateways in its
/// own namespace.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Issuer {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: IssuerSpec,
}

/// `portcullis.dev/v1alpha1 ClusterIssuer`: issues certificates for Gateways
/// in any namespace. Cluster-scoped: the namespace stays empty.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterIssuer {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: IssuerSpec,
}

/// The spec shared by `Issuer` and `ClusterIssuer`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct IssuerSpec {
    /// An ACME CA (Let's Encrypt, Pebble, a private ACME server).
    pub acme: Option<AcmeIssuerSpec>,
    /// A CA whose certificate and key are in a Secret.
    pub ca: Option<CaIssuerSpec>,
    /// Each certificate signs itself.
    pub self_signed: Option<SelfSignedIssuerSpec>,
}

/// `spec.acme`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct AcmeIssuerSpec {
    /// The ACME directory URL.
    pub server: String,
    /// Contact e-mail for the account.
    pub email: Option<String>,
    /// Where the account key is kept (created once, then reused).
    pub private_key_secret_ref: SecretKeySelector,
    /// External Account Binding, for CAs that require one.
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// The ACME profile to order (`shortlived`, `tlsserver`, …), when the
    /// server advertises profiles.
    pub profile: Option<String>,
    /// Base64-encoded PEM bundle trusted for the ACME server's own TLS (for a
    /// private server such as Pebble); none means the system's roots.
    pub ca_bundle: Option<String>,
    /// How challenges are solved; the first solver whose selector matches a
    /// name wins (most specific selector first, as in cert-manager).
    pub solvers: Vec<AcmeSolver>,
}

/// A reference to one key of a Secret in the issuer's namespace.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key within the Secret's data; each use has its own default.
    pub key: Option<String>,
}

/// `spec.acme.externalAccountBinding`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// The key identifier the CA gave.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// The Secret holding the base64url HMAC key.
    pub key_secret_ref: SecretKeySelector,
}

/// One entry of `spec.acme.solvers`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct AcmeSolver {
    /// Which names this solver is for; none means every name.
    pub selector: Option<SolverSelector>,
    /// HTTP-01, answered by portcullis's own port-80 listeners.
    pub http01: Option<Http01Solver>,
    /// TLS-ALPN-01 (RFC 8737), answered by the TLS front.
    pub tls_alpn01: Option<TlsAlpn01Solver>,
    /// DNS-01.
    pub dns01: Option<Dns01Solver>,
}

/// `solvers[].selector`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SolverSelector {
    /// Exact names this solver is for.
    pub dns_names: Vec<String>,
    /// Zones this solver is for: a name matches its zone and every subdomain.
    pub dns_zones: Vec<String>,
}

/// `solvers[].http01`: no settings; portcullis's HTTP listeners answer.
/// cert-manager's settings here (`ingress`, `gatewayHTTPRoute`) say how
/// cert-manager would route the challenge; portcullis needs none of them,
/// and its CRD keeps them so cert-manager issuers apply unchanged.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Http01Solver {}

/// `solvers[].tlsAlpn01`: no settings; portcullis's TLS front answers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default)]
pub struct TlsAlpn01Solver {}

/// `solvers[].dns01`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Dns01Solver {
    /// RFC 2136 dynamic update with TSIG.
    pub rfc2136: Option<Rfc2136Solver>,
}

/// `solvers[].dns01.rfc2136`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Rfc2136Solver {
    /// The authoritative nameserver, `host[:port]` (port 53 by default).
    pub nameserver: String,
    /// The TSIG key name.
    pub tsig_key_name: String,
    /// The TSIG algorithm (`HMACSHA256` by default).
    pub tsig_algorithm: Option<String>,
    /// The Secret holding the base64 TSIG secret.
    pub tsig_secret_secret_ref: SecretKeySelector,
}

impl IssuerSpec {
    /// The kind of issuer this spec configures (`acme`, `ca`, `selfSigned`),
    /// or `None` when it names none or more than one.
    pub fn kind(&self) -> Option<&'static str> {
        match (&self.acme, &self.ca, &self.self_signed) {
            (Some(_), None, None) => Some("acme"),
            (None, Some(_), None) => Some("ca"),
            (None, None, Some(_)) => Some("selfSigned"),
            _ => None,
        }
    }
}

impl AcmeIssuerSpec {
    /// Whether some solver can answer DNS-01 for `name` (a wildcard needs
    /// one).
    pub fn has_dns01_for(&self, name: &str) -> bool {
        self.solvers
            .iter()
            .any(|s| s.dns01.is_some() && s.selects(name))
    }
}

impl AcmeSolver {
    /// Whether this solver's selector admits `name` (`*.a.b` is matched by
    /// its base `a.b`). No selector, or an empty one, admits every name.
    pub fn selects(&self, name: &str) -> bool {
        let Some(sel) = &self.selector else {
            return true;
        };
        if sel.dns_names.is_empty() && sel.dns_zones.is_empty() {
            return true;
        }
        let base = name.strip_prefix("*.").unwrap_or(name);
        sel.dns_names.iter().any(|n| n == name)
            || sel.dns_zones.iter().any(|z| {
                let z = z.trim_end_matches('.');
                base == z || base.ends_with(&format!(".{z}"))
            })
    }
}

/// `spec.ca`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct CaIssuerSpec {
    /// A `kubernetes.io/tls` Secret whose `tls.crt` is the CA certificate and
    /// `tls.key` its key.
    pub secret_name: String,
}

/// `spec.selfSigned`: no settings. cert-manager's (`crlDistributionPoints`)
/// are kept by the CRD and ignored, as for `http01`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct SelfSignedIssuerSpec {}

/// The issuer's status, written by portcullis: whether it can issue
/// (condition `Ready`) and why not.
///
/// (The status subresource of the `Issuer` and `ClusterIssuer` CRDs; the
/// model never reads it.)
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct IssuerStatus {
    /// Conditions, one per type; server-side apply merges them by type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"]
    ))]
    pub conditions: Vec<IssuerCondition>,
}

/// One condition, shaped like the API's `metav1.Condition` (so a
/// `k8s_openapi` `Condition` fits it too).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerCondition {
    /// Condition type (`Ready`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// Machine-readable reason, CamelCase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = r#"
metadata: {name: le, namespace: web}
spec:
  acme:
    server: https://acme.example/dir
    email: ops@example.com
    privateKeySecretRef: {name: le-account}
    externalAccountBinding: {keyID: kid-1, keySecretRef: {name: eab, key: secret}}
    profile: shortlived
    caBundle: LS0tLQ==
    solvers:
      - selector: {dnsZones: [example.com]}
        dns01:
          rfc2136:
            nameserver: 127.0.0.1:5353
            tsigKeyName: portcullis
            tsigAlgorithm: HMACSHA256
            tsigSecretSecretRef: {name: tsig, key: secret}
      - http01: {}
      - tlsAlpn01: {}
"#;

    #[test]
    fn acme_issuer_reads_cert_manager_field_names() {
        let issuer: Issuer = serde_yaml::from_str(ACME).expect("parses");
        assert_eq!(issuer.spec.kind(), Some("acme"));
        let acme = issuer.spec.acme.expect("acme");
        assert_eq!(acme.server, "https://acme.example/dir");
        assert_eq!(acme.private_key_secret_ref.name, "le-account");
        let eab = acme.external_account_binding.expect("eab");
        assert_eq!(eab.key_id, "kid-1");
        assert_eq!(eab.key_secret_ref.key.as_deref(), Some("secret"));
        assert_eq!(acme.profile.as_deref(), Some("shortlived"));
        assert_eq!(acme.ca_bundle.as_deref(), Some("LS0tLQ=="));
        assert_eq!(acme.solvers.len(), 3);
        let rfc = acme.solvers[0]
            .dns01
            .as_ref()
            .and_then(|d| d.rfc2136.as_ref())
            .expect("rfc2136");
        assert_eq!(rfc.nameserver, "127.0.0.1:5353");
        assert_eq!(rfc.tsig_secret_secret_ref.name, "tsig");
        assert!(acme.solvers[1].http01.is_some());
        assert!(acme.solvers[2].tls_alpn01.is_some());
    }

    #[test]
    fn dns01_solver_selected_by_zone_covers_wildcards_of_the_zone_only() {
        let issuer: Issuer = serde_yaml::from_str(ACME).expect("parses");
        let acme = issuer.spec.acme.expect("acme");
        assert!(acme.has_dns01_for("*.example.com"));
        assert!(acme.has_dns01_for("a.b.example.com"));
        assert!(!acme.has_dns01_for("*.example.org"));
        assert!(!acme.has_dns01_for("notexample.com"));
    }

    #[test]
    fn spec_with_two_kinds_has_no_kind() {
        let spec: IssuerSpec =
            serde_yaml::from_str("selfSigned: {}\nca: {secretName: x}\n").expect("parses");
        assert_eq!(spec.kind(), None);
        let spec: IssuerSpec = serde_yaml::from_str("ca: {secretName: x}\n").expect("parses");
        assert_eq!(spec.kind(), Some("ca"));
    }
}
