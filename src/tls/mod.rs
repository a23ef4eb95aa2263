//! TLS termination: certificate parsing ([`certs`]), SNI certificate
//! resolution against the current dataplane ([`resolver`]) and the rustls
//! server configuration every HTTPS socket uses ([`server_config`]).
//!
//! Sockets and handshakes themselves live in `crate::server`.

pub mod certs;
pub mod client_hello;
pub mod resolver;

use crate::dataplane::Dataplane;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
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

/// The rustls configuration for the HTTPS socket listening on `bind`: TLS 1.2
/// and 1.3, ALPN `h2` and `http/1.1`, certificates chosen per handshake from
/// the dataplane current at that moment (so a certificate change applies to
/// the next handshake without rebuilding this configuration).
pub fn server_config(
    dataplane: Arc<ArcSwap<Dataplane>>,
    bind: SocketAddr,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(Error::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver::SniResolver::new(dataplane, bind)));
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
