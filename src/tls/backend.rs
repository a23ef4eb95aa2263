//! TLS toward backends (BackendTLSPolicy): the trust a policy declares turned
//! into a rustls client configuration, and the verifier that checks a
//! backend's certificate against it — chained to the policy's CAs (or the
//! system store), and valid for the policy's hostname or, when the policy
//! lists `subjectAltNames`, for one of those (DNS names or URIs).
//!
//! Building configurations is pure apart from [`system_roots`], which reads
//! the operating system's CA store once per process.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// Why a backend TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No certificate could be read from the CA bundle.
    #[error("no CA certificate in the bundle")]
    NoCertificate,
    /// A certificate of the bundle is not a usable trust anchor.
    #[error("CA certificate rejected: {0}")]
    BadCertificate(String),
    /// The system CA store is empty or unreadable.
    #[error("the system CA store holds no certificate")]
    NoSystemRoots,
    /// The hostname is not a valid DNS name.
    #[error("invalid hostname {0:?}")]
    Hostname(String),
    /// rustls refused the settings.
    #[error("cannot build TLS client configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A name the backend certificate must carry (BackendTLSPolicy
/// `subjectAltNames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedName {
    /// A DNS name (wildcards in the certificate match per RFC 6125).
    Dns(String),
    /// A URI SAN, compared exactly (e.g. a SPIFFE ID).
    Uri(String),
}

/// Parses every certificate of a PEM bundle into a root store.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let mut reader = pem;
    for item in rustls_pemfile_certs(&mut reader) {
        roots
            .add(item)
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(Error::NoCertificate);
    }
    Ok(roots)
}

/// The `CERTIFICATE` blocks of a PEM bundle (other blocks skipped).
fn rustls_pemfile_certs(pem: &mut &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// The operating system's CA store (`wellKnownCACertificates: System`), read
/// once per process; `None` when it holds no usable certificate.
pub fn system_roots() -> Option<Arc<RootCertStore>> {
    static ROOTS: OnceLock<Option<Arc<RootCertStore>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "reading the system CA store");
            }
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            (added > 0).then(|| Arc::new(roots))
        })
        .clone()
}

/// Settings for one client configuration toward a backend.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Trust anchors.
    pub roots: Arc<RootCertStore>,
    /// Names accepted in the backend certificate; empty means the SNI
    /// hostname.
    pub names: Vec<ExpectedName>,
    /// ALPN protocols to offer, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

/// A rustls client configuration for `settings`, presenting `client_cert`
/// when the backend asks for one.
pub fn client_config(
    settings: &ClientSettings,
    client_cert: Option<Arc<rustls::sign::CertifiedKey>>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = crate::tls::provider::provider();
    let verifier = Arc::new(BackendVerifier {
        roots: settings.roots.clone(),
        names: settings.names.clone(),
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(key))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = settings.alpn.clone();
    Ok(Arc::new(config))
}

/// Presents one certificate to every server that asks.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0
            .key
            .choose_scheme(sigschemes)
            .is_some()
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies backend certificates: chain to `roots`, then names.
#[derive(Debug)]
struct BackendVerifier {
    roots: Arc<RootCertStore>,
    names: Vec<ExpectedName>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BackendVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.names.is_empty() {
            verify_server_name(&cert, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        if names_match(&cert, end_entity, &self.names) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether the certificate carries one of `names`.
fn names_match(
    cert: &ParsedCertificate<'_>,
    der: &CertificateDer<'_>,
    names: &[ExpectedName],
) -> bool {
    let uris = uri_sans(der);
    names.iter().any(|n| match n {
        ExpectedName::Dns(host) => ServerName::try_from(host.as_str())
            .is_ok_and(|name| verify_server_name(cert, &name).is_ok()),
        ExpectedName::Uri(uri) => uris.iter().any(|u| u == uri),
    })
}

/// The URI subject alternative names of a certificate.
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect()
}

/// The SNI to send for `hostname`.
pub fn server_name(hostname: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(hostname.to_string()).map_err(|_| Error::Hostname(hostname.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca_pem: String,
        leaf_der: CertificateDer<'static>,
    }

    /// A CA and a leaf it signs for `dns` and `uri` SANs.
    fn pki(dns: &[&str], uri: &[&str]) -> Pki {
        use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        for u in uri {
            leaf.subject_alt_names
                .push(SanType::URI((*u).try_into().expect("uri")));
        }
        let key = KeyPair::generate().expect("key");
        let leaf_cert = leaf.signed_by(&key, &issuer).expect("leaf");
        Pki {
            ca_pem: ca_cert.pem(),
            leaf_der: leaf_cert.der().clone(),
        }
    }

    fn verify(p: &Pki, roots_pem: &str, sni: &str, names: Vec<ExpectedName>) -> bool {
        let roots = Arc::new(roots_from_pem(roots_pem.as_bytes()).expect("roots"));
        let v = BackendVerifier {
            roots,
            names,
            provider: crate::tls::provider::provider(),
        };
        v.verify_server_cert(
            &p.leaf_der,
            &[],
            &server_name(sni).expect("name"),
            &[],
            UnixTime::now(),
        )
        .is_ok()
    }

    #[test]
    fn hostname_is_verified_when_no_subject_alt_names_are_listed() {
        let p = pki(&["abc.example.com"], &[]);
        assert!(verify(&p, &p.ca_pem, "abc.example.com", vec![]));
        assert!(!verify(&p, &p.ca_pem, "mismatch.example.com", vec![]));
    }

    #[test]
    fn a_foreign_ca_is_refused_whatever_the_name() {
        let p = pki(&["abc.example.com"], &[]);
        let other = pki(&["abc.example.com"], &[]);
        assert!(!verify(&p, &other.ca_pem, "abc.example.com", vec![]));
    }

    #[test]
    fn subject_alt_names_replace_the_hostname_check() {
        let p = pki(&["abc.example.com"], &["spiffe://cluster.local/ns/a/sa/b"]);
        let uri = ExpectedName::Uri("spiffe://cluster.local/ns/a/sa/b".into());
        assert!(verify(&p, &p.ca_pem, "other.example.com", vec![uri]));
        let wrong = ExpectedName::Uri("spiffe://cluster.local/ns/a/sa/c".into());
        assert!(!verify(
            &p,
            &p.ca_pem,
            "abc.example.com",
            vec![wrong.clone()]
        ));
        let dns = ExpectedName::Dns("abc.example.com".into());
        assert!(verify(&p, &p.ca_pem, "x.example.com", vec![wrong, dns]));
    }

    #[test]
    fn a_bundle_without_certificates_is_an_error() {
        assert!(matches!(
            roots_from_pem(b"not a certificate"),
            Err(Error::NoCertificate)
        ));
        assert!(matches!(roots_from_pem(b""), Err(Error::NoCertificate)));
    }

    #[test]
    fn uri_sans_are_read_from_the_certificate() {
        let p = pki(&["a.example"], &["spiffe://x/y"]);
        assert_eq!(uri_sans(&p.leaf_der), vec!["spiffe://x/y".to_string()]);
    }
}
