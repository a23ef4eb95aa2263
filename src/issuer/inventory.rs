//! What is already held: the facts about a stored certificate that planning
//! needs ([`Held`]), parsed from the Store's bytes. Pure: no I/O, no clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::request::KeyAlgorithm;
use crate::store::{StoreKey, StoredCert};

/// Why a stored certificate cannot be used (it is then replaced as if
/// missing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The chain or key cannot be loaded, or the key does not belong to the
    /// leaf.
    #[error(transparent)]
    Unusable(#[from] crate::tls::certs::Error),
    /// The chain holds no certificate.
    #[error("empty chain")]
    EmptyChain,
    /// The leaf is not a valid X.509 certificate.
    #[error("invalid X.509 certificate")]
    X509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
}

/// A stored certificate, as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Where it is stored.
    pub secret: StoreKey,
    /// Its DNS and IP SANs, sorted and deduplicated.
    pub dns_names: Vec<String>,
    /// Its key algorithm, when it is one portcullis makes.
    pub key: Option<KeyAlgorithm>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// The ARI certificate id (RFC 9773 §4.1: base64url authority key
    /// identifier, `.`, base64url serial), when the certificate has an AKI.
    pub ari_id: Option<String>,
}

impl Held {
    /// The certificate's whole lifetime.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// Whether it can be served at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// Parses a stored certificate. Fails when the chain or key is unusable
    /// or the key does not match: such an entry is replaced as if missing.
    pub fn parse(secret: &StoreKey, stored: &StoredCert) -> Result<Self, Error> {
        crate::tls::certs::load_certified_key(
            stored.cert_chain_pem.as_bytes(),
            stored.key_pem.as_bytes(),
        )?;
        let chain = crate::tls::certs::parse_chain(stored.cert_chain_pem.as_bytes())?;
        let leaf = chain.first().ok_or(Error::EmptyChain)?;
        let info = crate::tls::certs::inspect(leaf)?;
        let (_, x509) = X509Certificate::from_der(leaf).map_err(Error::X509)?;
        let mut dns_names = info.sans;
        dns_names.sort();
        dns_names.dedup();
        Ok(Self {
            secret: secret.clone(),
            dns_names,
            key: key_algorithm(&x509),
            not_before: from_unix(info.not_before),
            not_after: from_unix(info.not_after),
            serial: info.serial,
            ari_id: ari_id(&x509),
        })
    }
}

fn from_unix(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

/// The key algorithm of the certificate's public key.
fn key_algorithm(x509: &X509Certificate<'_>) -> Option<KeyAlgorithm> {
    let spki = x509.public_key();
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => match rsa.key_size() {
            2048 => Some(KeyAlgorithm::Rsa2048),
            3072 => Some(KeyAlgorithm::Rsa3072),
            4096 => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        },
        PublicKey::EC(point) => match point.key_size() {
            256 => Some(KeyAlgorithm::EcdsaP256),
            384 => Some(KeyAlgorithm::EcdsaP384),
            _ => None,
        },
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Some(KeyAlgorithm::Ed25519)
        }
        _ => None,
    }
}

/// RFC 9773 §4.1 certificate identifier.
fn ari_id(x509: &X509Certificate<'_>) -> Option<String> {
    let aki = x509
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Some(format!(
        "{}.{}",
        b64.encode(aki.0),
        b64.encode(x509.raw_serial())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::LocalCa;

    #[test]
    fn local_ca_leaf_parses_with_names_key_validity_and_ari_id() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let ca = LocalCa::generate(now).expect("CA");
        let names = vec!["b.test".to_string(), "a.test".to_string()];
        let cert = ca
            .issue(&names, Duration::from_secs(3600), now)
            .expect("issue");
        let key = StoreKey::new("default", "x").expect("valid");
        let held = Held::parse(&key, &cert).expect("parses");
        assert_eq!(held.dns_names, ["a.test", "b.test"]);
        assert_eq!(held.key, Some(KeyAlgorithm::EcdsaP256));
        assert_eq!(held.not_before, now - Duration::from_secs(60));
        assert_eq!(held.lifetime(), Duration::from_secs(3660));
        let ari = held.ari_id.expect("AKI present");
        let (aki, serial) = ari.split_once('.').expect("two parts");
        assert!(!aki.is_empty() && !serial.is_empty());
        assert!(!ari.contains('='), "unpadded base64url: {ari}");
    }

    #[test]
    fn mismatched_key_is_unusable() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let ca = LocalCa::generate(now).expect("CA");
        let a = ca
            .issue(&["a.test".into()], Duration::from_secs(3600), now)
            .expect("issue");
        let b = ca
            .issue(&["b.test".into()], Duration::from_secs(3600), now)
            .expect("issue");
        let mixed = StoredCert {
            cert_chain_pem: a.cert_chain_pem,
            key_pem: b.key_pem,
            ca_pem: None,
        };
        let key = StoreKey::new("default", "x").expect("valid");
        assert!(
            matches!(
                Held::parse(&key, &mixed),
                Err(Error::Unusable(crate::tls::certs::Error::KeyMismatch))
            ),
            "{:?}",
            Held::parse(&key, &mixed)
        );
    }
}
