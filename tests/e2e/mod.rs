//! Support for the end-to-end tests: the real `portcullis` binary started on
//! loopback with a random port offset ([`gateway`]), echo backends
//! ([`backend`]), certificates made with rcgen or openssl ([`certs`]),
//! manifest builders ([`manifests`]) and real clients: curl, openssl s_client
//! and hyper over tokio-rustls ([`clients`]).
//!
//! Every wait is bounded: helpers time out and panic with the gateway's log.

#![allow(dead_code)]

pub mod backend;
pub mod certs;
pub mod clients;
pub mod gateway;
pub mod manifests;
#[path = "../support/ports.rs"]
pub mod ports;
pub mod tls_backend;

use std::time::Duration;

/// How long any single wait (readiness, a reload, a command) may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// FNV-1a over bytes: a cheap content fingerprint both ends of a transfer
/// compute to check that a large body arrived intact.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An address on 127.0.0.1 that refuses connections while the returned
/// socket lives: bound without `SO_REUSEADDR` and never listening, so a later
/// `bind(0)` (a test server, the gateway) cannot be handed the same port.
pub fn refused_addr() -> (std::net::SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    (socket.local_addr().expect("address"), socket)
}

/// The deterministic byte pattern the backend's `/download/N` serves.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `WAIT`
/// with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
