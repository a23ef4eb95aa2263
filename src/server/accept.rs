//! One listening socket: the accept loop (connection limit, accept-error
//! back-off, stop signal) and the task serving each connection (TLS
//! handshake when the bind is HTTPS, then HTTP/1.1 or HTTP/2 through the
//! proxy, with graceful shutdown; or, for a stream listener (TLS
//! passthrough or terminate, TCP), the connection handed to
//! `super::stream`).
//!
//! The bind's protocol is read from the current dataplane at each accept, so
//! a socket survives reloads that keep its address; the TLS acceptor is built
//! once per socket and resolves certificates from the current dataplane.

use super::front::Front;
use crate::dataplane::{BindProtocol, Dataplane, StreamMode};
use crate::metrics::traffic::OpenConnection;
use crate::metrics::HandshakeFailure;
use crate::proxy::{ConnInfo, Proxy, TlsInfo};
use crate::server::stream::StreamFailure;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// How long to wait before accepting again after an accept error (EMFILE,
/// ENFILE, ENOBUFS...), so the loop does not spin while resources are short.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The longest a client may take, by default, to send its ClientHello and
/// then to complete the TLS handshake (each).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection on every socket shares.
pub struct ConnContext {
    /// The current dataplane.
    pub dataplane: Arc<ArcSwap<Dataplane>>,
    /// The proxy requests go to.
    pub proxy: Arc<Proxy>,
    /// Caps concurrent connections across all sockets.
    pub limit: Arc<Semaphore>,
    /// Sent once at shutdown; every connection holds a receiver until it
    /// ends, so `closed()` on this sender waits for the last connection.
    pub drain: watch::Sender<()>,
    /// HTTP/1.1 + HTTP/2 connection settings.
    pub http: super::http_conn::HttpSettings,
    /// Bound on reading the ClientHello, and again on the TLS handshake: a
    /// client that trickles bytes is cut off.
    pub handshake_timeout: Duration,
    /// Where connections and handshakes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for ConnContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnContext")
            .field("available_connections", &self.limit.available_permits())
            .finish_non_exhaustive()
    }
}

impl ConnContext {
    /// A context allowing `max_connections` concurrent connections.
    pub fn new(
        dataplane: Arc<ArcSwap<Dataplane>>,
        proxy: Arc<Proxy>,
        max_connections: usize,
    ) -> Self {
        let (drain, _) = watch::channel(());
        Self {
            dataplane,
            proxy,
            limit: Arc::new(Semaphore::new(max_connections)),
            drain,
            http: Default::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }
}

/// Accepts connections on `listener` (bound to `bind`) until `stop` changes
/// or its sender is dropped. Established connections are not affected by the
/// loop ending.
pub async fn run(
    ctx: Arc<ConnContext>,
    bind: SocketAddr,
    listener: TcpListener,
    mut stop: watch::Receiver<()>,
) {
    loop {
        if ctx.limit.available_permits() == 0 {
            let dataplane = ctx.dataplane.load_full();
            ctx.metrics
                .traffic()
                .socket(&dataplane, bind)
                .limit_reached();
        }
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            permit = ctx.limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed; treat it as a stop anyway.
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%bind, %error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%bind, %error, "cannot set TCP_NODELAY");
        }
        // Subscribed here, before the task starts, so that a shutdown that
        // begins right after this accept still waits for the connection.
        let drain = ctx.drain.subscribe();
        let span = tracing::debug_span!("conn", %remote, local = %bind);
        let open = ctx
            .metrics
            .traffic()
            .socket(&ctx.dataplane.load_full(), bind)
            .opened();
        tokio::spawn(
            serve(ctx.clone(), bind, stream, remote, (permit, open), drain).instrument(span),
        );
    }
    tracing::info!(%bind, "stopped accepting");
}

/// The two ends of an accepted connection, for PROXY protocol headers. The
/// local address is asked of the kernel (`getsockname`) only when the bind
/// is a wildcard; a specific bind address is the connection's own.
fn peers(stream: &TcpStream, bind: SocketAddr, remote: SocketAddr) -> super::stream::Peers {
    let local = if bind.ip().is_unspecified() {
        stream.local_addr().unwrap_or(bind)
    } else {
        bind
    };
    super::stream::Peers {
        client: remote,
        local,
    }
}

/// One connection's task. Its future's size is reserved for the whole
/// connection, so the stream relays (the largest legs) are boxed and an
/// HTTP connection does not pay for them.
async fn serve(
    ctx: Arc<ConnContext>,
    bind: SocketAddr,
    stream: TcpStream,
    remote: SocketAddr,
    (_permit, open): (OwnedSemaphorePermit, OpenConnection),
    drain: watch::Receiver<()>,
) {
    let protocol = ctx.dataplane.load().bind(bind).map(|b| b.protocol);
    match protocol {
        None | Some(BindProtocol::Udp) => tracing::debug!("socket no longer configured; closing"),
        Some(BindProtocol::Tcp) => {
            // A TCP socket has one listener (its hostname is ignored, so a
            // second one conflicts) holding at most one TCPRoute.
            let dataplane = ctx.dataplane.load_full();
            let listener = dataplane
                .bind(bind)
                .and_then(|b| b.listeners.first())
                .and_then(|l| Some((l, l.streams.as_ref()?)));
            match listener {
                Some((listener, streams)) => {
                    let _counted = ctx
                        .metrics
                        .traffic()
                        .listener(&dataplane, listener)
                        .connection();
                    let peers = peers(&stream, bind, remote);
                    let relay = Box::pin(super::stream::forward(
                        stream,
                        Vec::new(),
                        &streams.table,
                        None,
                        StreamMode::Plain,
                        peers,
                        Some(&listener.key.gateway),
                    ));
                    let failure = relay.await;
                    record(&ctx, failure);
                }
                None => tracing::debug!("TCP socket without route; closing"),
            }
        }
        Some(BindProtocol::Http) => {
            // A plain socket's connection belongs to a listener only when the
            // socket has one (otherwise each request's Host decides).
            let dataplane = ctx.dataplane.load_full();
            let _counted = dataplane
                .bind(bind)
                .filter(|b| b.listeners.len() == 1)
                .and_then(|b| b.listeners.first())
                .map(|l| ctx.metrics.traffic().listener(&dataplane, l).connection());
            drop(dataplane);
            let info = Arc::new(ConnInfo::new(bind, remote, None));
            super::http_conn::serve(&ctx.http, ctx.proxy.clone(), stream, info, false, drain).await;
        }
        Some(BindProtocol::Https) => {
            serve_tls(ctx, bind, stream, remote, open, drain).await;
        }
    }
}

/// An HTTPS socket's connection: the front reads the ClientHello itself
/// and decides on it ([`super::front::decide`]) before rustls sees it, so
/// no listener means a handshake_failure alert, and a client that never
/// finishes its hello is cut off.
async fn serve_tls(
    ctx: Arc<ConnContext>,
    bind: SocketAddr,
    mut stream: TcpStream,
    remote: SocketAddr,
    open: OpenConnection,
    drain: watch::Receiver<()>,
) {
    let read = Box::pin(tokio::time::timeout(
        ctx.handshake_timeout,
        super::hello::read(&mut stream),
    ));
    let (bytes, hello) = match read.await {
        Ok(Ok(h)) => h,
        Ok(Err(error)) => {
            tracing::debug!(%error, "no usable ClientHello");
            if matches!(error, super::hello::Error::Parse(_)) {
                open.socket().handshake_failed(HandshakeFailure::Protocol);
                super::hello::refuse(&mut stream).await;
            } else {
                open.socket()
                    .handshake_failed(HandshakeFailure::ClientClosed);
            }
            return;
        }
        Err(_) => {
            tracing::debug!("ClientHello timed out");
            open.socket().handshake_failed(HandshakeFailure::Timeout);
            return;
        }
    };
    let dataplane = ctx.dataplane.load();
    let front = super::front::decide(&dataplane, bind, &hello);
    let sni = hello.server_name;
    let (listener, config) = match front {
        Front::Challenge(challenge) => {
            drop(dataplane);
            let answer = Box::pin(super::front::answer_tls_alpn01(
                ctx.handshake_timeout,
                stream,
                bytes,
                &challenge,
            ));
            answer.await;
            return;
        }
        Front::NoListener { alert } => {
            tracing::debug!(
                sni = sni.as_deref().unwrap_or("-"),
                passthrough_only = !alert,
                "no listener for SNI"
            );
            open.socket().handshake_failed(HandshakeFailure::NoListener);
            drop(dataplane);
            if alert {
                super::hello::refuse(&mut stream).await;
            }
            return;
        }
        Front::Unconfigured(listener) => {
            drop(dataplane);
            tracing::debug!(listener = %listener.key, "listener has no TLS configuration");
            super::hello::refuse(&mut stream).await;
            return;
        }
        Front::Passthrough(listener) => (listener, None),
        Front::Terminate(listener, config) => (listener, Some(config)),
    };
    let handshakes = ctx.metrics.traffic().listener(&dataplane, &listener);
    let _counted = handshakes.connection();
    drop(dataplane);
    let Some(config) = config else {
        handshakes.passed_through();
        let Some(streams) = listener.streams.as_ref() else {
            return;
        };
        let peers = peers(&stream, bind, remote);
        let relay = Box::pin(super::stream::forward(
            stream,
            bytes,
            &streams.table,
            sni.as_deref(),
            StreamMode::Passthrough,
            peers,
            Some(&listener.key.gateway),
        ));
        record(&ctx, relay.await);
        return;
    };
    // Only stream routes send PROXY protocol headers.
    let stream_peers = listener
        .streams
        .as_ref()
        .map(|_| peers(&stream, bind, remote));
    let stream = super::hello::Prefixed::new(bytes, stream);
    let acceptor = TlsAcceptor::from(config);
    // Boxed (and bound first, so no temporary keeps the unboxed
    // future's storage across the await): the handshake state would
    // otherwise size the task for the connection's whole life.
    let handshake = Box::pin(tokio::time::timeout(
        ctx.handshake_timeout,
        acceptor.accept(stream),
    ));
    // The established stream is boxed at once: a local holding it
    // would keep its 1.2 KiB in the task across every later await.
    let stream = match handshake.await {
        Ok(Ok(s)) => {
            handshakes.terminated(s.get_ref().1.protocol_version());
            Box::new(s)
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            handshakes.failed();
            open.socket().handshake_failed(HandshakeFailure::Protocol);
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            handshakes.failed();
            open.socket().handshake_failed(HandshakeFailure::Timeout);
            return;
        }
    };
    tracing::debug!(sni = sni.as_deref().unwrap_or("-"), listener = %listener.key, "TLS established");
    if let (Some(streams), Some(peers)) = (&listener.streams, stream_peers) {
        // A TLS listener in Terminate mode: the decrypted bytes go
        // to the TLSRoute backend as a plain (or re-encrypted) stream.
        let relay = Box::pin(super::stream::forward(
            stream,
            Vec::new(),
            &streams.table,
            sni.as_deref(),
            streams.mode,
            peers,
            Some(&listener.key.gateway),
        ));
        record(&ctx, relay.await);
        return;
    }
    let client_cert = match (
        &listener.client_auth,
        stream.get_ref().1.peer_certificates(),
    ) {
        (Some(auth), Some(chain)) => auth.identity(chain),
        _ => None,
    };
    let info = Arc::new(ConnInfo::new(
        bind,
        remote,
        Some(TlsInfo {
            sni,
            listener: listener.key.clone(),
            client_cert,
        }),
    ));
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    super::http_conn::serve(&ctx.http, ctx.proxy.clone(), stream, info, h2, drain).await;
}

/// Counts a stream whose backend failed.
fn record(ctx: &ConnContext, failure: Option<StreamFailure>) {
    if let Some(f) = failure {
        ctx.metrics.traffic().stream_failed(&f.upstream, f.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_address_comes_from_the_kernel_only_for_wildcard_binds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (stream, remote) = listener.accept().await.expect("accept");
        assert_eq!(remote, client.local_addr().expect("client address"));
        let wildcard = SocketAddr::from(([0, 0, 0, 0], addr.port()));
        let asked = peers(&stream, wildcard, remote);
        assert_eq!((asked.client, asked.local), (remote, addr));
        // A specific bind is taken as it is (no system call).
        let specific = SocketAddr::from(([127, 0, 0, 2], addr.port()));
        assert_eq!(peers(&stream, specific, remote).local, specific);
    }

    /// A connection's task is allocated once at the size of its largest
    /// state and kept for the connection's life, idle or not. The handshake,
    /// the TLS stream, HTTP/2 and stream relays are boxed so that this stays
    /// small; an unboxed TLS stream laid out in nested futures made it
    /// 12.8 KiB.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let dataplane = Arc::new(ArcSwap::from_pointee(Dataplane::default()));
        let proxy = Proxy::new(dataplane.clone());
        let ctx = Arc::new(ConnContext::new(dataplane.clone(), proxy, 1));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, remote) = listener.accept().await.expect("accept");
        let permit = ctx.limit.clone().acquire_owned().await.expect("permit");
        let open = ctx
            .metrics
            .traffic()
            .socket(&dataplane.load_full(), addr)
            .opened();
        let task = serve(
            ctx.clone(),
            addr,
            stream,
            remote,
            (permit, open),
            ctx.drain.subscribe(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 3 * 1024, "connection future is {size} bytes");
    }
}
