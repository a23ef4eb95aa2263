//! Stream forwarding for the listeners that carry byte streams rather than
//! HTTP: `TLS` listeners in `Passthrough` mode (the ClientHello already read
//! is written to the backend first), `TLS` listeners in `Terminate` mode (the
//! decrypted stream) and `TCP` listeners (TCPRoute, the stream as received).
//! The backend is chosen by SNI (none on TCP) and weight, connected to
//! ([`crate::proxy::connect`]), optionally told the client's address with a PROXY protocol
//! v2 header (`super::proxy_protocol`), then bytes are copied both ways until
//! both sides close or the connection idles out.
//!
//! Entry and backend choice ([`choose`]) is pure; [`forward`] does the I/O.

use crate::dataplane::{BackendTarget, StreamMode, StreamTable, Upstream};
use crate::model::ObjectKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// Buffer size of each copy direction of a forwarded stream.
const COPY_BUFFER: usize = 64 * 1024;

/// A connection with no byte in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a stream connection was not forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No route entry matches the SNI (or, on a TCP listener, none exists).
    #[error("no stream route matches")]
    NoRoute,
    /// The chosen backend is invalid or has no ready endpoint.
    #[error("no usable backend endpoint")]
    NoEndpoint,
}

/// Where one connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The route whose entry matched.
    pub route: ObjectKey,
    /// The backend's endpoint pool.
    pub upstream: Arc<Upstream>,
    /// The endpoint.
    pub addr: SocketAddr,
    /// Whether to write a PROXY protocol v2 header first.
    pub proxy_protocol: bool,
}

/// The two ends of a client connection, as the gateway sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peers {
    /// The client's address.
    pub client: SocketAddr,
    /// The gateway's local address of the connection.
    pub local: SocketAddr,
}

/// A stream the backend side failed, for `portcullis_upstream_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    /// The upstream (`namespace/service:port`).
    pub upstream: String,
    /// `connect`, `timeout`, `reset` or `tls`.
    pub reason: &'static str,
}

/// The endpoint a connection with `sni` (normalised; none on TCP listeners)
/// goes to: the most specific matching entry, a backend by weight
/// (`weight_sample`), an endpoint of it (`endpoint_sample`).
pub fn choose(
    table: &StreamTable,
    sni: Option<&str>,
    weight_sample: u32,
    endpoint_sample: usize,
) -> Result<Choice, Refusal> {
    let entry = table.select(sni).ok_or(Refusal::NoRoute)?;
    let backend = crate::dataplane::filter::pick_weighted(&entry.backends, weight_sample)
        .ok_or(Refusal::NoEndpoint)?;
    match &backend.target {
        BackendTarget::Service(u) if !u.endpoints.is_empty() => Ok(Choice {
            route: entry.route.clone(),
            upstream: u.clone(),
            addr: u.endpoints[endpoint_sample % u.endpoints.len()],
            proxy_protocol: entry.proxy_protocol,
        }),
        _ => Err(Refusal::NoEndpoint),
    }
}

/// Forwards `client` through the stream `table` of a listener in `mode`:
/// `prefix` (a ClientHello already read, in passthrough) is written to the
/// backend first, after the PROXY header if the route asks for one. A
/// backend under a BackendTLSPolicy is reached over TLS (except in
/// passthrough), presenting the client certificate of `gateway` if it has
/// one. Closes the client, without a TLS alert, when no route or endpoint
/// fits or the backend cannot be reached; returns the backend failure, if
/// that is why.
pub async fn forward<S>(
    mut client: S,
    prefix: Vec<u8>,
    table: &StreamTable,
    sni: Option<&str>,
    mode: StreamMode,
    peers: Peers,
    gateway: Option<&crate::model::ObjectKey>,
) -> Option<StreamFailure>
where
    S: ClientStream,
{
    let host = sni.and_then(crate::hostname::normalize_host);
    let choice = choose(
        table,
        host.as_deref(),
        rand::random::<u32>(),
        rand::random::<u32>() as usize,
    );
    let choice = match choice {
        Ok(c) => c,
        Err(refusal) => {
            // Closed without a TLS alert, as a TCP proxy without a matching
            // filter chain does: the client learns nothing about the routes.
            tracing::debug!(sni = sni.unwrap_or("-"), %refusal, "stream refused; closing");
            return None;
        }
    };
    let Choice {
        route,
        upstream,
        addr,
        proxy_protocol,
    } = choice;
    let failed = |reason| {
        Some(StreamFailure {
            upstream: upstream.name.clone(),
            reason,
        })
    };
    let mut backend = match crate::proxy::connect::tcp(addr).await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%route, upstream = %upstream.name, %addr, %error, "stream backend connect failed; closing the client");
            return failed(if error.kind() == std::io::ErrorKind::TimedOut {
                "timeout"
            } else {
                "connect"
            });
        }
    };
    if proxy_protocol {
        let header = super::proxy_protocol::encode_v2(peers.client, peers.local);
        if let Err(error) = backend.write_all(&header).await {
            tracing::warn!(%route, upstream = %upstream.name, %addr, %error, "stream backend write failed");
            return failed("reset");
        }
    }
    // Re-encryption (BackendTLSPolicy) applies to streams the gateway
    // terminated or never encrypted; passthrough bytes are already TLS.
    let mut backend = match (&upstream.tls, mode) {
        (Some(tls), StreamMode::Terminate | StreamMode::Plain) => {
            let config = tls.config_for(gateway).clone();
            match crate::proxy::connect::tls(backend, tls.server_name.clone(), config).await {
                Ok(s) => Either::Right(Box::new(s)),
                Err(error) => {
                    tracing::warn!(%route, upstream = %upstream.name, %addr, policy = %tls.policy, %error, "backend TLS handshake failed; closing the client");
                    return failed("tls");
                }
            }
        }
        _ => Either::Left(backend),
    };
    if !prefix.is_empty() {
        if let Err(error) = backend.write_all(&prefix).await {
            tracing::warn!(%route, upstream = %upstream.name, %addr, %error, "stream backend write failed");
            return failed("reset");
        }
    }
    let upstream = &upstream.name;
    tracing::debug!(sni = sni.unwrap_or("-"), %route, %upstream, %addr, proxy_protocol, "stream established");
    let activity = Activity::new();
    let copy = relay(&mut client, &mut backend, &activity);
    tokio::pin!(copy);
    let result = loop {
        tokio::select! {
            r = copy.as_mut() => break Some(r),
            _ = tokio::time::sleep_until(activity.last() + IDLE_TIMEOUT) => {
                if activity.last() + IDLE_TIMEOUT <= tokio::time::Instant::now() {
                    break None;
                }
            }
        }
    };
    match result {
        Some((how, Ok((up, down)))) => {
            tracing::debug!(%upstream, up, down, relay = ?how, "stream closed")
        }
        Some((how, Err(error))) => {
            tracing::debug!(%upstream, %error, relay = ?how, "stream ended with an error")
        }
        None => tracing::debug!(%upstream, "stream idle timeout"),
    }
    None
}

/// How a stream's bytes were moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// Socket to pipe to socket, in the kernel.
    Spliced,
    /// Through a buffer in user space.
    Copied,
}

/// Moves bytes both ways until both directions have ended (or one fails),
/// noting each move in `activity`: with `splice(2)` when both ends are plain
/// sockets (Linux), else through a 64 KiB buffer per direction. Returns
/// which, and the bytes moved up and down.
async fn relay<S: ClientStream>(
    client: &mut S,
    backend: &mut Backend,
    activity: &Activity,
) -> (Relay, std::io::Result<(u64, u64)>) {
    #[cfg(target_os = "linux")]
    if let (Some(c), Either::Left(b)) = (client.as_tcp(), &*backend) {
        match super::splice::Pipes::new() {
            Ok(pipes) => {
                return (
                    Relay::Spliced,
                    super::splice::relay(c, b, pipes, activity).await,
                )
            }
            Err(error) => {
                tracing::debug!(%error, "no pipes for splice; copying through user space")
            }
        }
    }
    let mut client = Idle::new(client, activity.clone());
    let mut backend = Idle::new(backend, activity.clone());
    // 64 KiB per direction instead of tokio's 8 KiB: a quarter of the
    // syscalls per byte on bulk transfers (measured by bench/run.py).
    let copied = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut backend,
        COPY_BUFFER,
        COPY_BUFFER,
    )
    .await;
    (Relay::Copied, copied)
}

/// A client connection a stream is forwarded from.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin {
    /// The socket itself, when the bytes read from it are the stream's own
    /// (not a TLS session's records), so they may be spliced.
    fn as_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl ClientStream for TcpStream {
    fn as_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientStream for Box<tokio_rustls::server::TlsStream<S>> {}

/// A connection to a stream backend: cleartext (`Left`) or TLS (`Right`).
type Backend = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// When a connection last moved a byte, shared by both of its streams.
#[derive(Debug, Clone)]
pub(super) struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: Default::default(),
        }
    }

    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn last(&self) -> tokio::time::Instant {
        let ms = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start + Duration::from_millis(ms)
    }
}

/// A stream that records in [`Activity`] when it reads or writes a byte.
struct Idle<S> {
    inner: S,
    activity: Activity,
}

impl<S> Idle<S> {
    fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{StreamEntry, Upstream, UpstreamProtocol, WeightedBackend};
    use crate::model::ObjectKey;
    use crate::server::testing::{pass, socket_pair};
    use std::sync::Arc;

    /// A client end whose bytes are not the socket's (as a TLS session's).
    impl ClientStream for tokio::io::DuplexStream {}

    /// Relays one byte up and two down between `client` and a backend
    /// socket pair, returning how the relay moved them.
    async fn relay_a_little<S: ClientStream + Send + 'static>(
        mut client: S,
        mut client_outer: impl AsyncRead + AsyncWrite + Unpin,
    ) -> Relay {
        let (backend_inner, mut backend_outer) = socket_pair().await;
        let relayed = tokio::spawn(async move {
            let mut backend = Either::Left(backend_inner);
            relay(&mut client, &mut backend, &Activity::new()).await
        });
        let up = pass(&mut client_outer, &mut backend_outer, b"u").await;
        let down = pass(&mut backend_outer, &mut client_outer, b"dd").await;
        assert_eq!((up.as_slice(), down.as_slice()), (&b"u"[..], &b"dd"[..]));
        let (how, moved) = relayed.await.expect("join");
        assert_eq!(moved.expect("relay"), (1, 2));
        how
    }

    #[tokio::test]
    async fn plain_socket_pairs_are_spliced_and_other_clients_copied() {
        let (outer, inner) = socket_pair().await;
        let expected = if cfg!(target_os = "linux") {
            Relay::Spliced
        } else {
            Relay::Copied
        };
        assert_eq!(relay_a_little(inner, outer).await, expected);
        let (outer, inner) = tokio::io::duplex(1024);
        assert_eq!(relay_a_little(inner, outer).await, Relay::Copied);
    }

    fn entry(host: Option<&str>, port: u16) -> StreamEntry {
        StreamEntry {
            hostname: host.map(str::to_string),
            route: ObjectKey::new("default", "r"),
            order: Default::default(),
            backends: vec![WeightedBackend {
                weight: 1,
                target: BackendTarget::Service(Arc::new(Upstream {
                    name: format!("default/s:{port}"),
                    endpoints: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                    protocol: UpstreamProtocol::Http1,
                    tls: None,
                })),
                filters: Vec::new(),
            }],
            proxy_protocol: false,
        }
    }

    #[test]
    fn exact_beats_longer_wildcard_beats_shorter() {
        let t = StreamTable::new(vec![
            entry(Some("*.example.test"), 1),
            entry(Some("a.b.example.test"), 2),
            entry(Some("*.b.example.test"), 3),
        ]);
        let port = |sni| choose(&t, Some(sni), 0, 0).map(|c| c.addr.port());
        assert_eq!(port("a.b.example.test"), Ok(2));
        assert_eq!(port("c.b.example.test"), Ok(3));
        assert_eq!(port("c.example.test"), Ok(1));
        assert_eq!(port("other.test"), Err(Refusal::NoRoute));
    }

    #[test]
    fn no_sni_matches_only_a_route_without_hostname() {
        let t = StreamTable::new(vec![entry(Some("a.test"), 1)]);
        assert_eq!(choose(&t, None, 0, 0), Err(Refusal::NoRoute));
        let t = StreamTable::new(vec![entry(Some("a.test"), 1), entry(None, 2)]);
        assert_eq!(choose(&t, None, 0, 0).map(|c| c.addr.port()), Ok(2));
        assert_eq!(
            choose(&t, Some("a.test"), 0, 0).map(|c| c.addr.port()),
            Ok(1)
        );
    }

    #[test]
    fn weights_split_samples_in_proportion() {
        let mut e = entry(None, 1);
        let mut heavy = entry(None, 2).backends.remove(0);
        heavy.weight = 3;
        e.backends.push(heavy);
        let t = StreamTable::new(vec![e]);
        let ports: Vec<u16> = (0..8)
            .map(|s| choose(&t, None, s, 0).map(|c| c.addr.port()))
            .collect::<Result<_, _>>()
            .expect("every sample picks a backend");
        assert_eq!(ports, vec![1, 2, 2, 2, 1, 2, 2, 2]);
    }

    #[test]
    fn choice_carries_the_route_and_its_proxy_protocol_flag() {
        let mut e = entry(None, 1);
        e.proxy_protocol = true;
        let t = StreamTable::new(vec![e]);
        let c = choose(&t, None, 0, 0).expect("a choice");
        assert!(c.proxy_protocol);
        assert_eq!(c.route, ObjectKey::new("default", "r"));
        assert_eq!(c.upstream.name, "default/s:1");
    }

    #[test]
    fn invalid_or_empty_backends_refuse() {
        let mut e = entry(Some("a.test"), 1);
        e.backends[0].target = BackendTarget::Invalid;
        let t = StreamTable::new(vec![e]);
        assert_eq!(choose(&t, Some("a.test"), 0, 0), Err(Refusal::NoEndpoint));
    }
}
