//! TLS: certificate parsing ([`certs`]), ClientHello parsing
//! ([`client_hello`]), listener selection and certificate choice
//! ([`resolver`]), the rustls server configuration of each terminating
//! listener ([`listener_config`]) with client-certificate validation
//! ([`client_auth`]) and session resumption ([`sessions`]), TLS toward
//! backends ([`backend`]) and the crypto provider all of them use
//! ([`provider`]).
//!
//! Sockets and handshakes themselves live in `crate::server`.

pub mod backend;
pub mod certs;
pub mod client_auth;
pub mod client_hello;
pub mod provider;
pub mod resolver;
pub mod sessions;

use std::sync::Arc;

/// ALPN protocols offered, in preference order: HTTP/2, then HTTP/1.1.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The crypto provider rejected the protocol versions asked for.
    #[error("cannot build TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// The rustls configuration of one terminating listener: its certificates
/// (chosen per handshake by the client's signature schemes), its client
/// verifier when frontend validation is configured, `alpn`, and how
/// sessions are resumed.
pub fn listener_config(
    certificates: Vec<Arc<rustls::sign::CertifiedKey>>,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    alpn: &[&[u8]],
    resumption: &sessions::Resumption,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = crate::tls::provider::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(Error::Config)?;
    let builder = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(resolver::ListenerCertificates::new(certificates)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Our suite order (AES-128-GCM first, see `provider`), not the client's.
    config.ignore_client_order = true;
    resumption.apply(&mut config);
    Ok(Arc::new(config))
}
