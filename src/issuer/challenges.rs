//! ACME challenges: how the ACME client makes them answerable
//! ([`ChallengePublisher`]), and the board the data plane answers from
//! ([`ChallengeBoard`]).
//!
//! The ACME client ([`super::acme`]) publishes a [`Challenge`] through a
//! [`ChallengePublisher`] before it tells the CA to validate, and withdraws
//! it afterwards ([`PublishedChallenge::withdraw`], also on failure; dropping
//! the guard is a best-effort fallback). Standalone, [`LocalPublisher`] puts
//! it on this process's board; in Kubernetes mode a publisher writes it
//! through the API so every replica's board gets it. The data plane reads
//! the board (`crate::dataplane::challenges`, carried by every dataplane
//! snapshot): the proxy answers HTTP-01, the TLS front TLS-ALPN-01. The
//! builders of the challenge certificate ([`tls_alpn01_challenge`]) and its
//! `acmeIdentifier` extension are pure functions.

use std::sync::Arc;

use crate::dataplane::challenges::normalize_domain;
pub use crate::dataplane::challenges::{
    ChallengeBoard, Published, TlsAlpnChallenge, ACME_TLS_ALPN, HTTP01_PATH_PREFIX,
};
use rustls::sign::CertifiedKey;

/// The `id-pe-acmeIdentifier` OID (RFC 8737 §6.1), 1.3.6.1.5.5.7.1.31.
pub const ACME_IDENTIFIER_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 31];

/// Why a challenge could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Generating the TLS-ALPN-01 certificate or its key failed.
    #[error("building the TLS-ALPN-01 certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls rejected the generated key or configuration.
    #[error("loading the TLS-ALPN-01 certificate into rustls")]
    Tls(#[source] rustls::Error),
    /// Kubernetes mode: the challenge's Secret could not be written.
    #[error("publishing the challenge as Secret {secret}")]
    Api {
        /// The Secret, `namespace/name`.
        secret: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Kubernetes mode: the challenge's Secret was written but this replica
    /// did not see it come back through its watch in time, so the other
    /// replicas may not answer it either.
    #[error("challenge Secret {secret} did not come back through the watch within {seconds}s")]
    Unconfirmed {
        /// The Secret, `namespace/name`.
        secret: String,
        /// How long was waited.
        seconds: u64,
    },
}

/// A challenge the data plane must answer while the CA validates it.
#[derive(Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01: answer `GET /.well-known/acme-challenge/<token>` with the key
    /// authorization.
    Http01 {
        /// The token in the path.
        token: String,
        /// The body to answer.
        key_authorization: String,
    },
    /// TLS-ALPN-01: complete `acme-tls/1` handshakes for `domain` with a
    /// certificate carrying the key authorization's digest (each publisher
    /// builds it, [`tls_alpn01_certificate`]).
    TlsAlpn01 {
        /// The domain (no `*.`), in any case, with or without a trailing dot.
        domain: String,
        /// The key authorization.
        key_authorization: String,
    },
}

impl std::fmt::Debug for Challenge {
    // Key authorizations are not secrets after validation, but a log line
    // has no use for them before.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http01 { token, .. } => f
                .debug_struct("Http01")
                .field("token", token)
                .finish_non_exhaustive(),
            Self::TlsAlpn01 { domain, .. } => f
                .debug_struct("TlsAlpn01")
                .field("domain", domain)
                .finish_non_exhaustive(),
        }
    }
}

/// Makes challenges answerable wherever the CA may connect.
#[async_trait::async_trait]
pub trait ChallengePublisher: Send + Sync + std::fmt::Debug {
    /// Publishes `challenge`; returns once it is answerable (the CA may be
    /// told to validate), with the guard that withdraws it.
    async fn publish(&self, challenge: &Challenge) -> Result<Box<dyn PublishedChallenge>, Error>;

    /// Withdraws `challenge` if an earlier process published it and was
    /// stopped before withdrawing it (a leader killed mid-order); a resumed
    /// order calls this for each authorization already valid. Publishers
    /// whose challenges end with their process have nothing to do.
    async fn withdraw_stale(&self, _challenge: &Challenge) {}
}

/// A published challenge. [`withdraw`](Self::withdraw) it when the
/// validation is over; dropping it without withdrawing withdraws it on a
/// best-effort basis (it may take a moment, or, for a publisher writing
/// through an API, not happen if the process ends first).
#[async_trait::async_trait]
pub trait PublishedChallenge: Send + Sync {
    /// Withdraws the challenge (failures are logged: a stale challenge only
    /// answers a validation nobody asks for).
    async fn withdraw(self: Box<Self>);
}

/// The standalone publisher: challenges go on this process's own board.
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    board: Arc<ChallengeBoard>,
}

impl LocalPublisher {
    /// A publisher writing to `board` (the one the proxy and the TLS front
    /// read).
    pub fn new(board: Arc<ChallengeBoard>) -> Self {
        Self { board }
    }
}

#[async_trait::async_trait]
impl ChallengePublisher for LocalPublisher {
    async fn publish(&self, challenge: &Challenge) -> Result<Box<dyn PublishedChallenge>, Error> {
        Ok(Box::new(match challenge {
            Challenge::Http01 {
                token,
                key_authorization,
            } => self.board.publish_http01(token, key_authorization),
            Challenge::TlsAlpn01 {
                domain,
                key_authorization,
            } => self
                .board
                .publish_tls_alpn01(domain, tls_alpn01_challenge(domain, key_authorization)?),
        }))
    }
}

#[async_trait::async_trait]
impl PublishedChallenge for Published {
    async fn withdraw(self: Box<Self>) {
        // Dropping withdraws it from the board, at once.
        drop(self);
    }
}

/// Builds the TLS-ALPN-01 challenge for `domain`: its certificate and a
/// configuration serving only that certificate with `acme-tls/1`.
pub fn tls_alpn01_challenge(
    domain: &str,
    key_authorization: &str,
) -> Result<Arc<TlsAlpnChallenge>, Error> {
    let domain = normalize_domain(domain);
    let certified_key = Arc::new(tls_alpn01_certificate(&domain, key_authorization)?);
    let config = tls_alpn01_config(certified_key.clone())?;
    Ok(Arc::new(TlsAlpnChallenge {
        certified_key,
        config,
    }))
}

/// The `acmeIdentifier` extension (RFC 8737 §3): critical, its value the DER
/// `OCTET STRING` of the SHA-256 digest of the key authorization.
pub fn acme_identifier_extension(key_authorization: &str) -> rcgen::CustomExtension {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    // `new_acme_identifier` asserts a 32-byte digest, which SHA-256 always is.
    rcgen::CustomExtension::new_acme_identifier(digest.as_ref())
}

/// The self-signed TLS-ALPN-01 certificate for `domain` (RFC 8737 §3): one
/// dNSName SAN, the `acmeIdentifier` extension, a fresh ECDSA P-256 key.
pub fn tls_alpn01_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, Error> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::Certificate)?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(Error::Certificate)?;
    params
        .custom_extensions
        .push(acme_identifier_extension(key_authorization));
    let cert = params.self_signed(&key).map_err(Error::Certificate)?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing_key = crate::tls::provider::signing_key(&key_der).map_err(Error::Tls)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}

/// A server configuration that serves only `certified_key` and negotiates
/// only `acme-tls/1`.
pub fn tls_alpn01_config(
    certified_key: Arc<CertifiedKey>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = crate::tls::provider::provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            certified_key,
        )));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    const KEY_AUTH: &str =
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

    #[test]
    fn acme_identifier_is_critical_octet_string_of_sha256() {
        let ck = tls_alpn01_certificate("a.example.test", KEY_AUTH).expect("builds");
        let der = ck.cert[0].as_ref();
        let (_, cert) = parse_x509_certificate(der).expect("parses");
        let oid = x509_parser::oid_registry::Oid::from(&[1u64, 3, 6, 1, 5, 5, 7, 1, 31][..])
            .expect("valid oid");
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid == oid)
            .expect("acmeIdentifier present");
        assert!(ext.critical, "RFC 8737 §3: the extension MUST be critical");
        let digest = ring::digest::digest(&ring::digest::SHA256, KEY_AUTH.as_bytes());
        let mut want = vec![0x04, 0x20];
        want.extend_from_slice(digest.as_ref());
        assert_eq!(ext.value, want.as_slice());
        assert_eq!(ACME_IDENTIFIER_OID, &[1, 3, 6, 1, 5, 5, 7, 1, 31]);
    }

    #[test]
    fn acme_identifier_oid_encodes_as_in_rfc_8737() {
        // RFC 8737 §6.1: id-pe-acmeIdentifier ::= { id-pe 31 }; DER of
        // 1.3.6.1.5.5.7.1.31 is 2B 06 01 05 05 07 01 1F.
        let ck = tls_alpn01_certificate("a.example.test", KEY_AUTH).expect("builds");
        let der = ck.cert[0].as_ref();
        let oid_tlv = [0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1F];
        let at = der
            .windows(oid_tlv.len())
            .position(|w| w == oid_tlv)
            .expect("OID bytes present");
        // critical BOOLEAN TRUE, then extnValue OCTET STRING of 34 bytes
        // holding OCTET STRING of 32.
        let rest = &der[at + oid_tlv.len()..];
        assert_eq!(&rest[..7], &[0x01, 0x01, 0xFF, 0x04, 0x22, 0x04, 0x20]);
    }

    #[test]
    fn challenge_certificate_has_exactly_one_dns_san() {
        let ck = tls_alpn01_certificate("a.example.test", KEY_AUTH).expect("builds");
        let (_, cert) = parse_x509_certificate(ck.cert[0].as_ref()).expect("parses");
        let san = cert
            .subject_alternative_name()
            .expect("valid")
            .expect("SAN present");
        let names: Vec<_> = san.value.general_names.iter().collect();
        assert_eq!(names.len(), 1);
        assert!(matches!(names[0], GeneralName::DNSName("a.example.test")));
    }

    #[tokio::test]
    async fn local_publisher_answers_until_withdrawn() {
        let board = Arc::new(ChallengeBoard::new());
        let publisher: Arc<dyn ChallengePublisher> = Arc::new(LocalPublisher::new(board.clone()));
        let http = publisher
            .publish(&Challenge::Http01 {
                token: "tok".into(),
                key_authorization: "tok.thumb".into(),
            })
            .await
            .expect("publishes");
        let alpn = publisher
            .publish(&Challenge::TlsAlpn01 {
                domain: "a.example.test".into(),
                key_authorization: KEY_AUTH.into(),
            })
            .await
            .expect("publishes");
        assert_eq!(board.http01("tok").as_deref(), Some("tok.thumb"));
        assert!(board.tls_alpn01("a.example.test").is_some());
        http.withdraw().await;
        assert!(board.http01("tok").is_none());
        assert!(board.tls_alpn01("a.example.test").is_some());
        // Dropping is the fallback.
        drop(alpn);
        assert!(board.is_empty());
    }

    #[test]
    fn challenge_debug_leaves_out_the_key_authorization() {
        let c = Challenge::Http01 {
            token: "tok".into(),
            key_authorization: "tok.SECRETISH".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("tok") && !shown.contains("SECRETISH"),
            "{shown}"
        );
    }

    #[test]
    fn tls_alpn01_needs_exactly_acme_tls_alpn_and_a_pending_sni() {
        let board = Arc::new(ChallengeBoard::new());
        let challenge = tls_alpn01_challenge("A.Example.Test.", KEY_AUTH).expect("builds");
        let guard = board.publish_tls_alpn01("A.Example.Test.", challenge);
        let acme = vec![ACME_TLS_ALPN.to_vec()];
        assert!(board
            .tls_alpn01_for_hello(&acme, Some("a.example.test"))
            .is_some());
        assert!(board
            .tls_alpn01_for_hello(&acme, Some("b.example.test"))
            .is_none());
        assert!(board.tls_alpn01_for_hello(&acme, None).is_none());
        let mixed = vec![b"h2".to_vec(), ACME_TLS_ALPN.to_vec()];
        assert!(board
            .tls_alpn01_for_hello(&mixed, Some("a.example.test"))
            .is_none());
        assert!(board
            .tls_alpn01_for_hello(&[], Some("a.example.test"))
            .is_none());
        let challenge = board.tls_alpn01("a.example.test").expect("pending");
        assert_eq!(challenge.config.alpn_protocols, acme);
        drop(guard);
        assert!(board.tls_alpn01("a.example.test").is_none());
    }
}
