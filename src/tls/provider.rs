//! The one crypto provider behind every TLS configuration and signing key:
//! *ring* by default, AWS-LC when built with `--features aws-lc-rs`.
//!
//! Both are measured side by side by `bench/run.py --providers` (full
//! handshakes cost mostly ECDSA signing and X25519, where the two differ);
//! everything else in the crate asks this module instead of naming one.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use std::sync::{Arc, OnceLock};

/// Name of the provider compiled in, for logs and metrics.
#[cfg(not(feature = "aws-lc-rs"))]
pub const NAME: &str = "ring";
/// Name of the provider compiled in, for logs and metrics.
#[cfg(feature = "aws-lc-rs")]
pub const NAME: &str = "aws-lc-rs";

/// The process-wide provider (built once; configurations share it).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(prefer_aes_128(compiled_in())))
        .clone()
}

/// The compiled-in provider with its own defaults.
#[cfg(not(feature = "aws-lc-rs"))]
fn compiled_in() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The compiled-in provider with its own defaults.
#[cfg(feature = "aws-lc-rs")]
fn compiled_in() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// `provider` with AES-128-GCM suites ahead of AES-256-GCM and then
/// ChaCha20 (the providers list AES-256 first), as Go's TLS and BoringSSL
/// servers order them.
///
/// Listeners choose by this order, not the client's (`listener_config`): a
/// TLS 1.3 handshake with SHA-256 instead of SHA-384 is cheaper everywhere,
/// and much cheaper with *ring* on AMD CPUs, which get its scalar SHA-512
/// (SHA-384 was 8% of a full handshake's CPU, measured with perf), while
/// SHA-256 uses the CPU's SHA extensions. AES-128 is also the cheaper bulk
/// cipher, at a security level no attack comes near.
fn prefer_aes_128(mut provider: CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite as S;
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
            _ => 2,
        });
    provider
}

/// A signing key for `key` (RSA, ECDSA or Ed25519, as the provider supports).
pub fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    provider().key_provider.load_private_key(key.clone_key())
}

/// A self-signed certificate for `name`, a server configuration serving
/// it and a client configuration trusting it (tests with a real TLS peer).
#[cfg(test)]
pub(crate) fn test_configs(name: &str) -> (rustls::ServerConfig, rustls::ClientConfig) {
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()])
        .expect("self-signed certificate");
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_is_built_once_and_signs_with_the_keys_it_loads() {
        assert!(Arc::ptr_eq(&provider(), &provider()));
        let key = rcgen::KeyPair::generate().expect("P-256 key generation");
        let der = PrivateKeyDer::try_from(key.serialize_der()).expect("rcgen emits PKCS#8");
        let signer = signing_key(&der).expect("P-256 is supported");
        assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::ECDSA);
        assert!(!provider().kx_groups.is_empty());
    }

    #[test]
    fn aes_128_comes_first_and_no_suite_is_lost() {
        use rustls::CipherSuite as S;
        let suites: Vec<S> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites.len(), compiled_in().cipher_suites.len());
        let tls13: Vec<S> = suites
            .iter()
            .copied()
            .filter(|s| format!("{s:?}").starts_with("TLS13_"))
            .collect();
        assert_eq!(tls13.first(), Some(&S::TLS13_AES_128_GCM_SHA256));
        let position = |s: S| suites.iter().position(|x| *x == s);
        assert!(
            position(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
                < position(S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        );
        assert!(
            position(S::TLS13_AES_256_GCM_SHA384) < position(S::TLS13_CHACHA20_POLY1305_SHA256)
        );
    }
}
