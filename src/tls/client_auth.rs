//! Client certificates at the edge (Gateway `spec.tls.frontend`): the
//! verifier a terminating listener asks clients with, and the identity header
//! a verified client's certificate becomes for backends.
//!
//! The header is `X-Forwarded-Client-Cert`, in the format Envoy made common
//! (`Hash=<sha256 of the DER, hex>;Subject="<RFC 4514 DN>";URI=<uri>;DNS=<dns>`,
//! one `URI=`/`DNS=` pair per SAN). The proxy always removes the header from
//! client requests, so backends can trust what they see. Pure code.

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// The identity header forwarded to backends.
pub const CLIENT_CERT_HEADER: &str = "x-forwarded-client-cert";

/// Why a client verifier could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No CA certificate in the bundles.
    #[error("no CA certificate in the referenced bundles")]
    NoCertificate,
    /// A bundle entry is not a usable trust anchor, or rustls refused.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The client-certificate settings of one listener.
#[derive(Debug)]
pub struct ClientAuth {
    /// The verifier the handshake runs.
    pub handshake: Arc<dyn ClientCertVerifier>,
    /// The strict verifier: a certificate that passes it is an identity.
    pub strict: Arc<dyn ClientCertVerifier>,
    /// `AllowInsecureFallback`: the handshake lets clients through without
    /// a certificate or with one that does not verify (no identity is
    /// forwarded for them).
    pub insecure_fallback: bool,
}

impl ClientAuth {
    /// Client certificates chained to a CA of `ca_pems` are verified; with
    /// `insecure_fallback`, other clients are let through too.
    pub fn new(ca_pems: &[&str], insecure_fallback: bool) -> Result<Self, Error> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for pem in ca_pems {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok) {
                roots
                    .add(cert)
                    .map_err(|e| Error::Verifier(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            return Err(Error::NoCertificate);
        }
        let provider = crate::tls::provider::provider();
        let strict = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::Verifier(e.to_string()))?;
        let handshake: Arc<dyn ClientCertVerifier> = if insecure_fallback {
            Arc::new(Fallback(strict.clone()))
        } else {
            strict.clone()
        };
        Ok(Self {
            handshake,
            strict,
            insecure_fallback,
        })
    }

    /// The identity header for the chain a client presented, when it is one
    /// the strict verifier accepts.
    pub fn identity(&self, chain: &[CertificateDer<'_>]) -> Option<String> {
        let (leaf, intermediates) = chain.split_first()?;
        if self.insecure_fallback
            && self
                .strict
                .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
                .is_err()
        {
            return None;
        }
        identity_header(chain)
    }
}

/// Asks for a certificate, checks the handshake signature (possession of
/// the key), and accepts any certificate or none.
#[derive(Debug)]
struct Fallback(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Fallback {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The `X-Forwarded-Client-Cert` value for a verified chain (leaf first);
/// `None` when there is no certificate or it cannot be parsed.
pub fn identity_header(chain: &[CertificateDer<'_>]) -> Option<String> {
    use std::fmt::Write;
    use x509_parser::extensions::GeneralName;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
    let mut out = String::from("Hash=");
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    let subject = cert.subject().to_string();
    let _ = write!(out, ";Subject=\"{}\"", escape(&subject));
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => {
                    let _ = write!(out, ";URI={}", escape(u));
                }
                GeneralName::DNSName(d) => {
                    let _ = write!(out, ";DNS={}", escape(d));
                }
                _ => {}
            }
        }
    }
    Some(out)
}

/// Escapes `"`, `\`, `,` and `;` so a value cannot break the header's
/// structure, and drops control characters (not allowed in header values).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' | ',' | ';' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dns: &str, uri: &str) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec![dns.to_string()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().expect("uri")));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client; \"one\"");
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn identity_header_carries_hash_subject_and_sans() {
        let der = cert("client.example", "spiffe://td/ns/a/sa/b");
        let h = identity_header(std::slice::from_ref(&der)).expect("header");
        let hash: String = ring::digest::digest(&ring::digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(h.starts_with(&format!("Hash={hash};")), "{h}");
        assert!(h.contains(r#"Subject="CN=client\; \"one\"""#), "{h}");
        assert!(h.contains(";DNS=client.example"), "{h}");
        assert!(h.contains(";URI=spiffe://td/ns/a/sa/b"), "{h}");
        assert!(http::HeaderValue::from_str(&h).is_ok());
    }

    #[test]
    fn no_certificate_no_header() {
        assert_eq!(identity_header(&[]), None);
        assert_eq!(
            identity_header(&[CertificateDer::from(vec![1, 2, 3])]),
            None
        );
    }

    #[test]
    fn a_verifier_needs_at_least_one_ca() {
        assert!(matches!(
            ClientAuth::new(&["garbage"], false),
            Err(Error::NoCertificate)
        ));
    }

    /// A CA (PEM) and a client chain it signs.
    fn signed_client() -> (String, Vec<CertificateDer<'static>>) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["client.example".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        (ca_cert.pem(), vec![leaf.der().clone()])
    }

    #[test]
    fn insecure_fallback_forwards_an_identity_only_for_verified_certificates() {
        let (ca, chain) = signed_client();
        let (other_ca, foreign) = signed_client();
        let auth = ClientAuth::new(&[&ca], true).expect("auth");
        assert!(!auth.handshake.client_auth_mandatory());
        assert!(auth.identity(&chain).is_some());
        assert_eq!(
            auth.identity(&foreign),
            None,
            "foreign certificate is no identity"
        );
        let strict = ClientAuth::new(&[&other_ca], false).expect("auth");
        assert!(strict.handshake.client_auth_mandatory());
        assert!(strict.identity(&foreign).is_some());
    }
}
