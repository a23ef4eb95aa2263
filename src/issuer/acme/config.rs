//! An ACME issuer's configuration with its Secret references resolved
//! ([`AcmeIssuer::resolve`], pure), and the choice of solver for one name
//! ([`choose_solver`], cert-manager's precedence).

use std::fmt;

use base64::Engine;

use super::Error;
use crate::issuer::dns::{self, tsig};
use crate::model::issuer::{AcmeIssuerSpec, SecretKeySelector, SolverSelector};
use crate::model::Resources;

/// Default key of a TSIG secret in its Secret, as in cert-manager's examples.
const DEFAULT_TSIG_KEY: &str = "secret";
/// Default key of the EAB HMAC key in its Secret.
const DEFAULT_EAB_KEY: &str = "secret";
/// Default key of a user-provided account key in its Secret.
const DEFAULT_ACCOUNT_KEY: &str = "tls.key";

/// How a challenge is answered.
#[derive(Debug, Clone)]
pub enum SolverKind {
    /// HTTP-01 on portcullis's cleartext HTTP listeners.
    Http01,
    /// TLS-ALPN-01 on portcullis's TLS front.
    TlsAlpn01,
    /// DNS-01 through an RFC 2136 dynamic update.
    Dns01(dns::Rfc2136),
}

impl SolverKind {
    /// The ACME challenge type this solver answers.
    pub fn challenge_type(&self) -> instant_acme::ChallengeType {
        match self {
            Self::Http01 => instant_acme::ChallengeType::Http01,
            Self::TlsAlpn01 => instant_acme::ChallengeType::TlsAlpn01,
            Self::Dns01(_) => instant_acme::ChallengeType::Dns01,
        }
    }
}

/// One resolved `solvers[]` entry.
#[derive(Debug, Clone)]
pub struct Solver {
    /// Which names it is for (`None`: every name).
    pub selector: Option<SolverSelector>,
    /// How it answers.
    pub kind: SolverKind,
}

/// The External Account Binding credentials. `Debug` hides the key.
#[derive(Clone)]
pub struct Eab {
    /// The key identifier.
    pub key_id: String,
    /// The decoded HMAC key.
    pub hmac_key: Vec<u8>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("key_id", &self.key_id)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// An ACME issuer ready to use: every Secret it names has been read.
#[derive(Debug, Clone)]
pub struct AcmeIssuer {
    /// The directory URL.
    pub server: String,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Namespace of the account key Secret.
    pub account_namespace: String,
    /// Name of the account key Secret.
    pub account_secret: String,
    /// A PKCS#8 PEM account key the user supplied in that Secret, if any;
    /// otherwise the key is created once and kept in the Store.
    pub account_key_pem: Option<String>,
    /// External Account Binding.
    pub eab: Option<Eab>,
    /// The profile to order when the server offers it.
    pub profile: Option<String>,
    /// PEM roots trusted for the ACME server's TLS; `None`: the system's.
    pub ca_bundle_pem: Option<String>,
    /// Solvers, in manifest order.
    pub solvers: Vec<Solver>,
}

/// What is wrong with an ACME issuer's configuration (the detail of
/// [`Error::InvalidIssuer`]). Printed whole in its message, so a status
/// condition shows it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerProblem {
    /// `server` is not HTTPS.
    #[error("server {0:?} is not an https:// URL")]
    ServerNotHttps(String),
    /// `privateKeySecretRef.name` is empty.
    #[error("privateKeySecretRef.name is required")]
    AccountSecretUnnamed,
    /// `privateKeySecretRef` does not name a valid Secret.
    #[error("privateKeySecretRef: {0}")]
    AccountSecretRef(crate::store::Error),
    /// A Secret the issuer refers to is missing, or lacks the key.
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    SecretKeyMissing {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The data key looked for.
        key: String,
    },
    /// The external account binding's HMAC key is not base64.
    #[error("externalAccountBinding key in Secret {0} is not base64url")]
    EabKeyNotBase64(String),
    /// `caBundle` is not base64.
    #[error("caBundle is not base64")]
    CaBundleNotBase64,
    /// `caBundle` holds no usable certificate.
    #[error("caBundle: {0}")]
    CaBundle(crate::tls::backend::Error),
    /// rustls refused the client configuration.
    #[error("TLS client configuration: {0}")]
    TlsClient(rustls::Error),
    /// A `dns01` solver without `rfc2136`.
    #[error("solvers[{0}].dns01 has no rfc2136")]
    NoRfc2136(usize),
    /// A solver's nameserver cannot be used.
    #[error("solvers[{solver}]: {error}")]
    Nameserver {
        /// The solver's index.
        solver: usize,
        /// Why.
        error: dns::Error,
    },
    /// A solver names a TSIG algorithm portcullis does not implement.
    #[error(
        "solvers[{solver}]: TSIG algorithm {algorithm:?} is not supported \
         (HMACSHA256, HMACSHA384, HMACSHA512)"
    )]
    TsigAlgorithm {
        /// The solver's index.
        solver: usize,
        /// The algorithm named.
        algorithm: String,
    },
    /// A solver's TSIG secret is not base64.
    #[error("solvers[{0}]: TSIG secret is not base64")]
    TsigSecretNotBase64(usize),
    /// A solver sets none or several of the kinds.
    #[error("solvers[{0}] must set exactly one of http01, tlsAlpn01, dns01")]
    SolverKinds(usize),
    /// The issuer has no solvers.
    #[error("no solvers")]
    NoSolvers,
    /// The certificate request names nothing to order.
    #[error("certificate request without names")]
    NoNames,
}

impl AcmeIssuer {
    /// The account this issuer orders with: its `privateKeySecretRef`
    /// Secret on its server.
    pub fn account_id(&self) -> Result<crate::store::AccountId, Error> {
        let secret = crate::store::StoreKey::new(&self.account_namespace, &self.account_secret)
            .map_err(|e| Error::InvalidIssuer(IssuerProblem::AccountSecretRef(e)))?;
        Ok(crate::store::AccountId::new(secret, self.server.clone()))
    }

    /// Resolves `spec`, reading its Secrets from `namespace` in `resources`
    /// (the issuer's namespace, or the cluster resource namespace for a
    /// ClusterIssuer).
    pub fn resolve(
        spec: &AcmeIssuerSpec,
        namespace: &str,
        resources: &Resources,
    ) -> Result<Self, Error> {
        let invalid = Error::InvalidIssuer;
        if !spec.server.starts_with("https://") {
            return Err(invalid(IssuerProblem::ServerNotHttps(spec.server.clone())));
        }
        if spec.private_key_secret_ref.name.is_empty() {
            return Err(invalid(IssuerProblem::AccountSecretUnnamed));
        }
        let account_key_pem = resources
            .secret(namespace, &spec.private_key_secret_ref.name)
            .and_then(|s| {
                let key = spec
                    .private_key_secret_ref
                    .key
                    .as_deref()
                    .unwrap_or(DEFAULT_ACCOUNT_KEY);
                s.data.get(key)
            })
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let eab = match &spec.external_account_binding {
            None => None,
            Some(eab) => {
                let raw = secret_value(resources, namespace, &eab.key_secret_ref, DEFAULT_EAB_KEY)?;
                let text = String::from_utf8_lossy(&raw);
                let hmac_key = decode_base64_any(text.trim()).ok_or_else(|| {
                    invalid(IssuerProblem::EabKeyNotBase64(
                        eab.key_secret_ref.name.clone(),
                    ))
                })?;
                Some(Eab {
                    key_id: eab.key_id.clone(),
                    hmac_key,
                })
            }
        };
        let ca_bundle_pem = match &spec.ca_bundle {
            None => None,
            Some(b64) => {
                let pem = decode_base64_any(b64.trim())
                    .ok_or(invalid(IssuerProblem::CaBundleNotBase64))?;
                Some(String::from_utf8_lossy(&pem).into_owned())
            }
        };
        let mut solvers = Vec::new();
        for (i, s) in spec.solvers.iter().enumerate() {
            let kind = match (&s.http01, &s.tls_alpn01, &s.dns01) {
                (Some(_), None, None) => SolverKind::Http01,
                (None, Some(_), None) => SolverKind::TlsAlpn01,
                (None, None, Some(d)) => {
                    let Some(r) = &d.rfc2136 else {
                        return Err(invalid(IssuerProblem::NoRfc2136(i)));
                    };
                    let nameserver = dns::parse_nameserver(&r.nameserver)
                        .map_err(|error| invalid(IssuerProblem::Nameserver { solver: i, error }))?;
                    let tsig = if r.tsig_key_name.is_empty() {
                        None
                    } else {
                        let alg_name = r.tsig_algorithm.as_deref().unwrap_or("HMACSHA256");
                        let algorithm = tsig::Algorithm::parse(alg_name).ok_or_else(|| {
                            invalid(IssuerProblem::TsigAlgorithm {
                                solver: i,
                                algorithm: alg_name.to_owned(),
                            })
                        })?;
                        let raw = secret_value(
                            resources,
                            namespace,
                            &r.tsig_secret_secret_ref,
                            DEFAULT_TSIG_KEY,
                        )?;
                        let secret = decode_base64_any(String::from_utf8_lossy(&raw).trim())
                            .ok_or_else(|| invalid(IssuerProblem::TsigSecretNotBase64(i)))?;
                        Some(tsig::Key {
                            name: r.tsig_key_name.clone(),
                            algorithm,
                            secret,
                        })
                    };
                    SolverKind::Dns01(dns::Rfc2136 { nameserver, tsig })
                }
                _ => return Err(invalid(IssuerProblem::SolverKinds(i))),
            };
            solvers.push(Solver {
                selector: s.selector.clone(),
                kind,
            });
        }
        if solvers.is_empty() {
            return Err(invalid(IssuerProblem::NoSolvers));
        }
        Ok(Self {
            server: spec.server.clone(),
            email: spec.email.clone().filter(|e| !e.is_empty()),
            account_namespace: namespace.to_owned(),
            account_secret: spec.private_key_secret_ref.name.clone(),
            account_key_pem,
            eab,
            profile: spec.profile.clone().filter(|p| !p.is_empty()),
            ca_bundle_pem,
            solvers,
        })
    }
}

/// The bytes under `selector.key` (or `default_key`) of a Secret.
fn secret_value(
    resources: &Resources,
    namespace: &str,
    selector: &SecretKeySelector,
    default_key: &str,
) -> Result<Vec<u8>, Error> {
    let key = selector.key.as_deref().unwrap_or(default_key);
    resources
        .secret(namespace, &selector.name)
        .and_then(|s| s.data.get(key))
        .cloned()
        .ok_or_else(|| {
            Error::InvalidIssuer(IssuerProblem::SecretKeyMissing {
                namespace: namespace.to_owned(),
                name: selector.name.clone(),
                key: key.to_owned(),
            })
        })
}

/// Decodes standard or URL-safe base64, padded or not.
fn decode_base64_any(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text: String = text.split_whitespace().collect();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&text).ok())
}

/// How specifically a selector names `name`: higher wins (cert-manager:
/// a `dnsNames` match beats the longest `dnsZones` match beats no
/// selector). `None` when the selector does not admit the name.
fn specificity(selector: Option<&SolverSelector>, name: &str) -> Option<(u8, usize)> {
    let Some(sel) = selector.filter(|s| !s.dns_names.is_empty() || !s.dns_zones.is_empty()) else {
        return Some((0, 0));
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if sel
        .dns_names
        .iter()
        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&name))
    {
        return Some((2, 0));
    }
    let base = name.strip_prefix("*.").unwrap_or(&name);
    sel.dns_zones
        .iter()
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
        .filter(|z| base == z || base.ends_with(&format!(".{z}")))
        .map(|z| (1, z.split('.').count()))
        .max()
}

/// The solver for `name` (a wildcard as `*.a.b`) among those whose challenge
/// type the CA offers: the most specific selector wins, the first listed on
/// a tie. Wildcards are only solvable with DNS-01 (RFC 8555 §7.1.3).
pub fn choose_solver<'a>(
    solvers: &'a [Solver],
    name: &str,
    offered: &[instant_acme::ChallengeType],
) -> Option<&'a Solver> {
    let wildcard = name.starts_with("*.");
    let mut best: Option<(&Solver, (u8, usize))> = None;
    for solver in solvers {
        if wildcard && !matches!(solver.kind, SolverKind::Dns01(_)) {
            continue;
        }
        if !offered.contains(&solver.kind.challenge_type()) {
            continue;
        }
        let Some(rank) = specificity(solver.selector.as_ref(), name) else {
            continue;
        };
        if best.as_ref().is_none_or(|(_, b)| rank > *b) {
            best = Some((solver, rank));
        }
    }
    best.map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use instant_acme::ChallengeType;

    fn solver(kind: SolverKind, names: &[&str], zones: &[&str]) -> Solver {
        let selector = (!names.is_empty() || !zones.is_empty()).then(|| SolverSelector {
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            dns_zones: zones.iter().map(|s| s.to_string()).collect(),
        });
        Solver { selector, kind }
    }

    fn dns01() -> SolverKind {
        SolverKind::Dns01(dns::Rfc2136 {
            nameserver: "127.0.0.1:53".parse().expect("addr"),
            tsig: None,
        })
    }

    const ALL: &[ChallengeType] = &[
        ChallengeType::Http01,
        ChallengeType::Dns01,
        ChallengeType::TlsAlpn01,
    ];

    fn kind_of(s: Option<&Solver>) -> Option<ChallengeType> {
        s.map(|s| s.kind.challenge_type())
    }

    #[test]
    fn dns_names_match_beats_zone_match_beats_no_selector() {
        let solvers = vec![
            solver(SolverKind::Http01, &[], &[]),
            solver(dns01(), &[], &["example.com"]),
            solver(SolverKind::TlsAlpn01, &["www.example.com"], &[]),
        ];
        let pick = |n| kind_of(choose_solver(&solvers, n, ALL));
        assert_eq!(pick("www.example.com"), Some(ChallengeType::TlsAlpn01));
        assert_eq!(pick("api.example.com"), Some(ChallengeType::Dns01));
        assert_eq!(pick("other.org"), Some(ChallengeType::Http01));
    }

    #[test]
    fn longest_zone_wins_and_first_listed_breaks_ties() {
        let solvers = vec![
            solver(SolverKind::Http01, &[], &["example.com"]),
            solver(SolverKind::TlsAlpn01, &[], &["a.example.com"]),
            solver(dns01(), &[], &["a.example.com"]),
        ];
        assert_eq!(
            kind_of(choose_solver(&solvers, "x.a.example.com", ALL)),
            Some(ChallengeType::TlsAlpn01)
        );
        assert_eq!(
            kind_of(choose_solver(&solvers, "b.example.com", ALL)),
            Some(ChallengeType::Http01)
        );
    }

    #[test]
    fn wildcards_only_get_dns01_solvers() {
        let solvers = vec![
            solver(SolverKind::Http01, &[], &[]),
            solver(dns01(), &[], &["example.com"]),
        ];
        assert_eq!(
            kind_of(choose_solver(&solvers, "*.example.com", ALL)),
            Some(ChallengeType::Dns01)
        );
        assert!(choose_solver(&solvers, "*.other.org", ALL).is_none());
    }

    #[test]
    fn solvers_for_challenges_the_ca_does_not_offer_are_skipped() {
        let solvers = vec![
            solver(SolverKind::TlsAlpn01, &["a.test"], &[]),
            solver(SolverKind::Http01, &[], &[]),
        ];
        assert_eq!(
            kind_of(choose_solver(&solvers, "a.test", &[ChallengeType::Http01])),
            Some(ChallengeType::Http01)
        );
        assert!(choose_solver(&solvers, "a.test", &[ChallengeType::Dns01]).is_none());
    }

    fn resources(yaml: &str) -> Resources {
        let parsed = crate::model::load::parse_documents(yaml, "test.yaml").expect("parses");
        Resources::from_objects(parsed.objects)
    }

    #[test]
    fn resolve_reads_tsig_and_eab_secrets_and_ca_bundle() {
        let res = resources(
            r#"
apiVersion: v1
kind: Secret
metadata: {name: tsig, namespace: web}
stringData: {secret: "c2VjcmV0LWJ5dGVz"}
---
apiVersion: v1
kind: Secret
metadata: {name: eab, namespace: web}
stringData: {secret: "aG1hYy1rZXk"}
"#,
        );
        let spec: AcmeIssuerSpec = serde_yaml::from_str(
            r#"
server: https://acme.test/dir
privateKeySecretRef: {name: account}
externalAccountBinding: {keyID: kid-1, keySecretRef: {name: eab}}
caBundle: LS0tLS1CRUdJTg==
solvers:
  - dns01:
      rfc2136:
        nameserver: 127.0.0.1:5353
        tsigKeyName: k
        tsigSecretSecretRef: {name: tsig}
"#,
        )
        .expect("spec parses");
        let issuer = AcmeIssuer::resolve(&spec, "web", &res).expect("resolves");
        assert_eq!(
            issuer.eab.as_ref().map(|e| e.hmac_key.as_slice()),
            Some(&b"hmac-key"[..])
        );
        assert_eq!(issuer.ca_bundle_pem.as_deref(), Some("-----BEGIN"));
        assert!(issuer.account_key_pem.is_none());
        let SolverKind::Dns01(rfc) = &issuer.solvers[0].kind else {
            panic!("dns01 solver expected");
        };
        assert_eq!(rfc.nameserver.port(), 5353);
        let key = rfc.tsig.as_ref().expect("tsig key");
        assert_eq!(key.secret, b"secret-bytes");
        assert_eq!(key.algorithm, tsig::Algorithm::HmacSha256);
    }

    #[test]
    fn resolve_reports_missing_secret_and_plain_http_server() {
        let spec: AcmeIssuerSpec = serde_yaml::from_str(
            "server: https://a.test/dir\nprivateKeySecretRef: {name: k}\n\
             externalAccountBinding: {keyID: x, keySecretRef: {name: missing}}\n\
             solvers: [{http01: {}}]\n",
        )
        .expect("parses");
        let err = AcmeIssuer::resolve(&spec, "web", &Resources::default()).expect_err("fails");
        assert!(err.to_string().contains("web/missing"), "{err}");
        let mut spec = spec;
        spec.external_account_binding = None;
        spec.server = "http://a.test/dir".into();
        assert!(matches!(
            AcmeIssuer::resolve(&spec, "web", &Resources::default()),
            Err(Error::InvalidIssuer(IssuerProblem::ServerNotHttps(_)))
        ));
    }
}
