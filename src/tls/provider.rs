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
        .get_or_init(|| {
            #[cfg(not(feature = "aws-lc-rs"))]
            let provider = rustls::crypto::ring::default_provider();
            #[cfg(feature = "aws-lc-rs")]
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            Arc::new(provider)
        })
        .clone()
}

/// A signing key for `key` (RSA, ECDSA or Ed25519, as the provider supports).
pub fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    provider().key_provider.load_private_key(key.clone_key())
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
}
