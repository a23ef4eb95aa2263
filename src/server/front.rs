//! The TLS front's decision: what a parsed ClientHello on an HTTPS socket
//! gets, decided once from the dataplane snapshot ([`decide`], pure, tested
//! without sockets), and the one I/O stage that belongs to no other module
//! (answering a TLS-ALPN-01 validation, [`answer_tls_alpn01`]).
//! `super::accept` reads the hello, calls [`decide`] and runs the stage the
//! answer names.

use crate::dataplane::challenges::TlsAlpnChallenge;
use crate::dataplane::{Dataplane, Listener, StreamMode};
use crate::tls::client_hello::ClientHello;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a ClientHello gets.
#[derive(Debug)]
pub(crate) enum Front {
    /// RFC 8737: a validation handshake (ALPN exactly `acme-tls/1`) for a
    /// name with a pending challenge gets the challenge certificate, and
    /// the connection ends there.
    Challenge(Arc<TlsAlpnChallenge>),
    /// No listener of the socket serves the SNI. A socket that only passes
    /// TLS through never speaks TLS itself: it closes, as a TCP proxy
    /// would (`alert` false); one that terminates answers with a
    /// handshake_failure alert.
    NoListener {
        /// Whether to send the alert before closing.
        alert: bool,
    },
    /// The listener passes the TLS bytes through to its TLSRoute backend.
    Passthrough(Arc<Listener>),
    /// The listener terminates TLS with its own configuration; then HTTP,
    /// or its TLSRoute backend when it has stream routes (Terminate mode).
    Terminate(Arc<Listener>, Arc<rustls::ServerConfig>),
    /// The listener terminates but has no usable TLS configuration (no
    /// certificate could be loaded): refused with an alert.
    Unconfigured(Arc<Listener>),
}

/// The decision for `hello` on the socket bound at `bind`.
pub(crate) fn decide(dataplane: &Dataplane, bind: SocketAddr, hello: &ClientHello) -> Front {
    let sni = hello.server_name.as_deref();
    if let Some(challenge) = dataplane.challenges.tls_alpn01_for_hello(&hello.alpn, sni) {
        return Front::Challenge(challenge);
    }
    let Some(listener) = dataplane.select_listener(bind, sni) else {
        let passthrough_only = dataplane
            .bind(bind)
            .is_some_and(|b| b.listeners.iter().all(|l| passes_through(l)));
        return Front::NoListener {
            alert: !passthrough_only,
        };
    };
    if passes_through(&listener) {
        return Front::Passthrough(listener);
    }
    match listener.tls.clone() {
        Some(config) => Front::Terminate(listener, config),
        None => Front::Unconfigured(listener),
    }
}

/// Whether the listener passes TLS through (TLSRoutes in Passthrough mode).
fn passes_through(listener: &Listener) -> bool {
    listener
        .streams
        .as_ref()
        .is_some_and(|s| s.mode == StreamMode::Passthrough)
}

/// Completes a TLS-ALPN-01 validation handshake on `stream` (whose
/// ClientHello, `hello`, was already read) with the challenge certificate,
/// then closes: the validator only looks at the certificate (RFC 8737 §3).
pub(crate) async fn answer_tls_alpn01<S>(
    timeout: Duration,
    stream: S,
    hello: Vec<u8>,
    challenge: &TlsAlpnChallenge,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let stream = super::hello::Prefixed::new(hello, stream);
    let acceptor = tokio_rustls::TlsAcceptor::from(challenge.config.clone());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(mut tls)) => {
            tracing::info!("answered a TLS-ALPN-01 validation");
            let _ = tls.shutdown().await;
        }
        Ok(Err(error)) => tracing::debug!(%error, "TLS-ALPN-01 handshake failed"),
        Err(_) => tracing::debug!("TLS-ALPN-01 handshake timed out"),
    }
}

#[cfg(test)]
mod tests;
