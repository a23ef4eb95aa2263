//! The HTTP reverse proxy at run time: given a request that arrived on a
//! connection, pick the listener and route from the current
//! [`Dataplane`](crate::dataplane::Dataplane), apply the rule's filters, and
//! relay the exchange to a backend (or answer it here).
//!
//! The socket and TLS side (accepting, handshakes, serving HTTP/1.1 and HTTP/2
//! connections) belongs to [`crate::server`], which calls [`Proxy::handle`]
//! for every request. Route matching and the filter algorithms are pure
//! functions in [`crate::dataplane`]; this module does the I/O around them.
//!
//! | module | owns |
//! |---|---|
//! | `handler` | the per-request flow: listener, route, filters, backend, retries, timeouts |
//! | `connect`, `upstream`, `upstream_h1`, `upstream_h2` | connections to backends: one connector (TCP, then backend TLS), HTTP/1.1 pooled per endpoint and driven by the request's task (cleartext or TLS), HTTP/2 multiplexed per endpoint (h2c or TLS) |
//! | `h1_wire` | HTTP/1.1 bytes for that client: request head, response head, body framing, chunked decoding |
//! | `mirror` | fire-and-forget copies for `RequestMirror` |
//! | `websocket` | WebSocket upgrades spliced between client and backend |
//! | `forwarded` | hop-by-hop headers, `X-Forwarded-*`, request host |
//! | `body` | boxing bodies, buffering small bodies for replay |
//! | `retry` | the retry decision |
//! | `errors` | failures and the statuses they map to |

mod body;
pub mod connect;
mod errors;
mod forwarded;
pub mod h1_wire;
mod handler;
mod mirror;
mod retry;
mod upstream;
mod upstream_h1;
mod upstream_h2;

mod websocket;

pub use websocket::{ClientStream, Handoff};

pub use errors::{error_response, Error};
pub use forwarded::{closes_connection, is_websocket_upgrade, set_forwarded, strip_hop_by_hop};
pub use retry::{should_retry, Outcome};

use crate::dataplane::{Dataplane, ListenerKey};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A boxed, type-erased error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use body::ProxyBody;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The local address the connection was accepted on (the bind address).
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
    /// TLS details, for connections on an HTTPS bind.
    pub tls: Option<TlsInfo>,
    /// `remote`'s IP as an `X-Forwarded-For` element; private so that only
    /// [`ConnInfo::new`] sets it and it always matches `remote`.
    forwarded_for: http::HeaderValue,
}

impl ConnInfo {
    /// The facts of a connection from `remote` accepted on `local`.
    pub fn new(local: SocketAddr, remote: SocketAddr, tls: Option<TlsInfo>) -> Self {
        // An IP address always formats to visible ASCII.
        let forwarded_for = http::HeaderValue::try_from(remote.ip().to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        ConnInfo {
            local,
            remote,
            tls,
            forwarded_for,
        }
    }

    /// The client's IP address as an `X-Forwarded-For` element, formatted
    /// once per connection rather than once per request.
    pub fn forwarded_for(&self) -> &http::HeaderValue {
        &self.forwarded_for
    }
}

/// What the TLS handshake of a connection decided.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The SNI server name the client sent, normalised.
    pub sni: Option<String>,
    /// The listener the SNI selected at handshake.
    pub listener: ListenerKey,
    /// The verified client certificate, as the `X-Forwarded-Client-Cert`
    /// value sent to backends (frontend validation).
    pub client_cert: Option<String>,
}

/// The reverse proxy: the current dataplane and the connections to backends.
pub struct Proxy {
    dataplane: Arc<ArcSwap<Dataplane>>,
    upstreams: Arc<upstream::Upstreams>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy serving whatever dataplane `dataplane` holds at request time.
    pub fn new(dataplane: Arc<ArcSwap<Dataplane>>) -> Arc<Proxy> {
        Self::with_metrics(dataplane, Arc::new(crate::metrics::Metrics::new()))
    }

    /// A proxy that counts requests in `metrics`.
    pub fn with_metrics(
        dataplane: Arc<ArcSwap<Dataplane>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            dataplane,
            upstreams: Arc::new(upstream::Upstreams::new()),
            metrics,
        })
    }

    /// Serves one request received by the server. Never fails: every error
    /// becomes a response.
    ///
    /// The request's future is boxed: hyper keeps a slot of the service
    /// future's size in every connection, idle or not, so an unboxed future
    /// of several KiB would be paid per idle connection and moved into that
    /// slot per request.
    pub fn handle(
        self: Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
        conn: Arc<ConnInfo>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = http::Response<ProxyBody>> + Send>>
    {
        Box::pin(self.handle_request(req, conn))
    }
}
