//! Certificate selection: the certificate of a listener the client can
//! verify ([`choose_certificate`], used by [`ListenerCertificates`] during
//! each handshake). The listener itself is chosen before rustls sees the
//! hello (`crate::server::front`).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::sync::Arc;

/// Chooses among one listener's certificates by the client's signature
/// schemes.
#[derive(Debug)]
pub struct ListenerCertificates(Vec<Arc<CertifiedKey>>);

impl ListenerCertificates {
    /// A resolver over `certificates`.
    pub fn new(certificates: Vec<Arc<CertifiedKey>>) -> Self {
        Self(certificates)
    }
}

impl ResolvesServerCert for ListenerCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = choose_certificate(&self.0, client_hello.signature_schemes());
        if chosen.is_none() {
            tracing::debug!("no certificate matches the client's signature schemes");
        }
        chosen
    }
}

/// The first certificate whose key can sign with one of the schemes the
/// client offers (so an ECDSA certificate is only chosen for a client that
/// verifies ECDSA), or `None` when none fits.
pub fn choose_certificate(
    certificates: &[Arc<CertifiedKey>],
    schemes: &[SignatureScheme],
) -> Option<Arc<CertifiedKey>> {
    certificates
        .iter()
        .find(|c| c.key.choose_scheme(schemes).is_some())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ring cannot generate RSA keys, so the RSA test key is a fixture.
    const RSA_2048_KEY: &str = include_str!("testdata/rsa-2048.key");

    fn certified_key(key: rcgen::KeyPair) -> Arc<CertifiedKey> {
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_string()])
            .expect("valid SAN")
            .self_signed(&key)
            .expect("self-signing succeeds");
        let provider = (*crate::tls::provider::provider()).clone();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("rcgen emits PKCS#8");
        let signing = provider
            .key_provider
            .load_private_key(der)
            .expect("ring loads rcgen keys");
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
    }

    fn ecdsa() -> Arc<CertifiedKey> {
        certified_key(
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .expect("ring generates P-256 keys"),
        )
    }

    fn rsa() -> Arc<CertifiedKey> {
        certified_key(
            rcgen::KeyPair::from_pem_and_sign_algo(RSA_2048_KEY, &rcgen::PKCS_RSA_SHA256)
                .expect("fixture is a PKCS#8 RSA key"),
        )
    }

    const RSA_ONLY: &[SignatureScheme] = &[
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];
    const ECDSA_ONLY: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];

    #[test]
    fn rsa_only_client_gets_the_rsa_certificate() {
        let (e, r) = (ecdsa(), rsa());
        let chosen = choose_certificate(&[e, r.clone()], RSA_ONLY).expect("RSA fits");
        assert!(Arc::ptr_eq(&chosen, &r));
    }

    #[test]
    fn first_fitting_certificate_wins() {
        let (e, r) = (ecdsa(), rsa());
        let both: Vec<_> = ECDSA_ONLY.iter().chain(RSA_ONLY).copied().collect();
        let chosen = choose_certificate(&[e.clone(), r], &both).expect("both fit");
        assert!(Arc::ptr_eq(&chosen, &e));
    }

    #[test]
    fn no_fitting_certificate_fails_the_handshake() {
        assert!(choose_certificate(&[ecdsa()], RSA_ONLY).is_none());
        assert!(choose_certificate(&[], RSA_ONLY).is_none());
    }
}
