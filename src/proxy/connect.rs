//! The one way the gateway reaches a backend: a TCP connection within
//! [`CONNECT_TIMEOUT`] with `TCP_NODELAY`, then, where a BackendTLSPolicy
//! applies, a TLS handshake within [`HANDSHAKE_TIMEOUT`] with the policy's SNI
//! and the client configuration chosen for the Gateway
//! ([`crate::dataplane::UpstreamTls::config_for`]).
//!
//! The HTTP/1.1 pool, h2c and TLS HTTP/2 connections, WebSocket handshakes
//! and stream routes (`crate::server::stream`, which may write a PROXY
//! header between the two steps) all connect through here; what each does
//! with the connection is theirs.

use super::errors::Error;
use super::BoxError;
use crate::dataplane::UpstreamTls;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Bound on establishing a TCP connection to an endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the TLS handshake with a backend.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `addr` within [`CONNECT_TIMEOUT`] (else an error of
/// kind `TimedOut`), with `TCP_NODELAY`: requests and frames are small, and
/// Nagle's algorithm would only delay them.
pub async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(connected) => connected?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            ))
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        // Only delays small writes; the connection works without it.
        tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
    }
    Ok(stream)
}

/// The client side of a TLS handshake over `stream`, within
/// [`HANDSHAKE_TIMEOUT`].
pub async fn tls<S>(
    stream: S,
    server_name: rustls::pki_types::ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<S>, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
}

/// [`tcp`] for a request to upstream `name`: a failure is the attempt's
/// [`Error::Connect`].
pub(crate) async fn tcp_for(name: &str, addr: SocketAddr) -> Result<TcpStream, Error> {
    tcp(addr).await.map_err(|e| failed(name, addr, e.into()))
}

/// A connection to `addr` of upstream `name` that could not be
/// established (also when the protocol's own handshake on it fails).
pub(crate) fn failed(name: &str, addr: SocketAddr, source: BoxError) -> Error {
    Error::Connect {
        upstream: name.to_string(),
        addr,
        source,
    }
}

/// [`tls`] over `stream` for a request to upstream `name` under `policy`
/// with `config`: a failure is logged (an operator must fix trust or names)
/// and is the attempt's [`Error::BackendTls`].
pub(crate) async fn tls_for(
    name: &str,
    addr: SocketAddr,
    stream: TcpStream,
    policy: &UpstreamTls,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, Error> {
    tls(stream, policy.server_name.clone(), config)
        .await
        .map_err(|source| {
            tracing::warn!(upstream = %name, %addr, policy = %policy.policy, error = %source, "backend TLS handshake failed");
            Error::BackendTls {
                upstream: name.to_string(),
                addr,
                source,
            }
        })
}
