//! Certificate parsing: turning a PEM certificate chain and private key (the
//! `tls.crt` / `tls.key` of a `kubernetes.io/tls` Secret) into a rustls
//! [`CertifiedKey`], and reading the facts about a certificate that status,
//! renewal planning and metrics report ([`CertInfo`]).
//!
//! Pure functions over bytes: no file access, no clock. Callers pass `now`
//! where validity matters.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The certificate data holds no PEM `CERTIFICATE` block.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// A PEM certificate block could not be decoded.
    #[error("malformed PEM certificate: {0}")]
    CertificatePem(String),
    /// The key data holds no usable PEM private key.
    #[error("no PEM private key found: {0}")]
    KeyPem(String),
    /// The private key is of a type or curve rustls cannot sign with.
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
    /// The private key does not belong to the leaf certificate.
    #[error("private key does not match the certificate")]
    KeyMismatch,
    /// The certificate DER is not a valid X.509 certificate.
    #[error("invalid X.509 certificate: {0}")]
    X509(String),
}

/// Facts about one certificate, for status pages, metrics and renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name, if any.
    pub subject_cn: Option<String>,
    /// DNS and IP subject alternative names, in certificate order.
    pub sans: Vec<String>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Serial number as lowercase hex without separators.
    pub serial: String,
}

impl CertInfo {
    /// Whether the certificate is outside its validity window at `now` (Unix seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        now > self.not_after || now < self.not_before
    }
}

/// Parses every PEM `CERTIFICATE` block of `cert_pem`, leaf first.
pub fn parse_chain(cert_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::CertificatePem(e.to_string()))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate);
    }
    Ok(chain)
}

/// A usable certificate and key, with the facts about each certificate of
/// its chain.
#[derive(Debug)]
pub struct Loaded {
    /// The chain and signing key, ready for rustls.
    pub key: CertifiedKey,
    /// Subject, SANs, validity and serial of the leaf certificate.
    pub leaf: CertInfo,
    /// The same of every certificate after the leaf, in chain order.
    pub intermediates: Vec<CertInfo>,
}

/// Builds a [`CertifiedKey`] from a PEM chain and a PEM private key (PKCS#1,
/// PKCS#8 or SEC1), checking that the key matches the leaf certificate and that
/// every certificate of the chain is well-formed X.509.
pub fn load_certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, Error> {
    load_certified(cert_pem, key_pem).map(|l| l.key)
}

/// [`load_certified_key`], also returning the [`CertInfo`] of every chain
/// certificate read by the same X.509 parse (callers checking validity, and
/// the metrics, need not parse again).
pub fn load_certified(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, Error> {
    let chain = parse_chain(cert_pem)?;
    let mut infos = chain
        .iter()
        .map(|c| inspect(c))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let leaf = infos.next().ok_or(Error::NoCertificate)?;
    let intermediates = infos.collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::KeyPem(e.to_string()))?;
    let signing_key = crate::tls::provider::signing_key(&key)
        .map_err(|e| Error::UnsupportedKey(e.to_string()))?;
    let key = CertifiedKey::new(chain, signing_key);
    match key.keys_match() {
        Ok(()) => Ok(Loaded {
            key,
            leaf,
            intermediates,
        }),
        // rustls cannot derive the public key of every key type; do not
        // refuse what it cannot check.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(Loaded {
            key,
            leaf,
            intermediates,
        }),
        Err(_) => Err(Error::KeyMismatch),
    }
}

/// Reads subject, SANs, validity and serial of a DER certificate.
pub fn inspect(cert_der: &[u8]) -> Result<CertInfo, Error> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der)
        .map_err(|e| Error::X509(e.to_string()))?;
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(general_name_text)
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(Error::X509(e.to_string())),
    };
    let validity = cert.validity();
    Ok(CertInfo {
        subject_cn,
        sans,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

fn general_name_text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(d) => Some(d.to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::IpAddr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::IpAddr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("valid names");
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_chain_and_key_load() {
        let (cert, key) = self_signed(&["a.example.com"]);
        let ck = load_certified_key(cert.as_bytes(), key.as_bytes()).expect("loads");
        assert_eq!(ck.cert.len(), 1);
    }

    #[test]
    fn key_of_another_certificate_is_a_mismatch() {
        let (cert, _) = self_signed(&["a.example.com"]);
        let (_, other_key) = self_signed(&["b.example.com"]);
        assert_eq!(
            load_certified_key(cert.as_bytes(), other_key.as_bytes()).err(),
            Some(Error::KeyMismatch)
        );
    }

    #[test]
    fn non_pem_data_is_rejected() {
        let (_, key) = self_signed(&["a.example.com"]);
        assert_eq!(
            load_certified_key(b"not a certificate", key.as_bytes()).err(),
            Some(Error::NoCertificate)
        );
        let (cert, _) = self_signed(&["a.example.com"]);
        assert!(matches!(
            load_certified_key(cert.as_bytes(), b"garbage"),
            Err(Error::KeyPem(_))
        ));
    }

    #[test]
    fn load_certified_reports_the_leaf_of_the_chain() {
        let (leaf, key) = self_signed(&["leaf.example.com"]);
        let (other, _) = self_signed(&["intermediate.example.com"]);
        let chain = format!("{leaf}{other}");
        let loaded = load_certified(chain.as_bytes(), key.as_bytes()).expect("loads");
        assert_eq!(loaded.key.cert.len(), 2);
        assert_eq!(loaded.leaf.sans, vec!["leaf.example.com"]);
    }

    #[test]
    fn inspect_reads_sans_and_validity() {
        let (cert, _) = self_signed(&["a.example.com", "10.0.0.1"]);
        let chain = parse_chain(cert.as_bytes()).expect("chain");
        let info = inspect(&chain[0]).expect("inspect");
        assert_eq!(info.sans, vec!["a.example.com", "10.0.0.1"]);
        assert!(info.not_after > info.not_before);
        assert!(!info.serial.is_empty());
        assert!(info.is_expired_at(info.not_after + 1));
        assert!(!info.is_expired_at(info.not_before + 1));
    }
}
