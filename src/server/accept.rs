//! One listening socket: the accept loop (connection limit, accept-error
//! back-off, stop signal) and the task serving each connection (TLS
//! handshake when the bind is HTTPS, then HTTP/1.1 or HTTP/2 through the
//! proxy, with graceful shutdown; or, for a TLS passthrough listener, the
//! unterminated connection handed to `super::passthrough`).
//!
//! The bind's protocol is read from the current dataplane at each accept, so
//! a socket survives reloads that keep its address; the TLS acceptor is built
//! once per socket and resolves certificates from the current dataplane.

use crate::dataplane::{BindProtocol, Dataplane, StreamMode};
use crate::proxy::{ConnInfo, Proxy, TlsInfo};
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// How long to wait before accepting again after an accept error (EMFILE,
/// ENFILE, ENOBUFS...), so the loop does not spin while resources are short.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    pub http: auto::Builder<TokioExecutor>,
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
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1().timer(TokioTimer::new());
        // Extended CONNECT (RFC 8441) is not advertised: the proxy carries
        // WebSocket over HTTP/1.1 only, so clients must not try it over h2.
        http.http2().timer(TokioTimer::new());
        let (drain, _) = watch::channel(());
        Self {
            dataplane,
            proxy,
            limit: Arc::new(Semaphore::new(max_connections)),
            drain,
            http,
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
    tls: TlsAcceptor,
    mut stop: watch::Receiver<()>,
) {
    loop {
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
        tokio::spawn(
            serve(
                ctx.clone(),
                bind,
                tls.clone(),
                stream,
                remote,
                permit,
                drain,
            )
            .instrument(span),
        );
    }
    tracing::info!(%bind, "stopped accepting");
}

async fn serve(
    ctx: Arc<ConnContext>,
    bind: SocketAddr,
    tls: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
    drain: watch::Receiver<()>,
) {
    let protocol = ctx.dataplane.load().bind(bind).map(|b| b.protocol);
    match protocol {
        None => tracing::debug!("socket no longer configured; closing"),
        Some(BindProtocol::Http) => {
            let info = Arc::new(ConnInfo {
                local: bind,
                remote,
                tls: None,
            });
            serve_http(&ctx, stream, info, drain).await;
        }
        Some(BindProtocol::Https) => {
            let mut stream = stream;
            // The front reads the ClientHello itself and decides on its SNI
            // before rustls sees it: no listener means a handshake_failure
            // alert, and a client that never finishes its hello is cut off.
            let read = tokio::time::timeout(HANDSHAKE_TIMEOUT, super::hello::read(&mut stream));
            let (bytes, hello) = match read.await {
                Ok(Ok(h)) => h,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "no usable ClientHello");
                    if matches!(error, super::hello::Error::Parse(_)) {
                        super::hello::refuse(&mut stream).await;
                    }
                    return;
                }
                Err(_) => {
                    tracing::debug!("ClientHello timed out");
                    return;
                }
            };
            let sni = hello.server_name;
            let listener =
                crate::tls::resolver::select_listener(&ctx.dataplane.load(), bind, sni.as_deref());
            let Some(listener) = listener else {
                tracing::debug!(sni = sni.as_deref().unwrap_or("-"), "no listener for SNI");
                super::hello::refuse(&mut stream).await;
                return;
            };
            if let Some(streams) = listener
                .streams
                .as_ref()
                .filter(|s| s.mode == StreamMode::Passthrough)
            {
                super::stream::forward(stream, bytes, &streams.table, sni.as_deref()).await;
                return;
            }
            let stream = super::hello::Prefixed::new(bytes, stream);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            tracing::debug!(sni = sni.as_deref().unwrap_or("-"), listener = %listener.key, "TLS established");
            if let Some(streams) = &listener.streams {
                // A TLS listener in Terminate mode: the decrypted bytes go
                // to the TLSRoute backend as a plain (or re-encrypted) stream.
                super::stream::forward(stream, Vec::new(), &streams.table, sni.as_deref()).await;
                return;
            }
            let info = Arc::new(ConnInfo {
                local: bind,
                remote,
                tls: Some(TlsInfo {
                    sni,
                    listener: listener.key.clone(),
                }),
            });
            serve_http(&ctx, stream, info, drain).await;
        }
    }
}

/// Serves HTTP on an established stream until the client is done, or, once
/// shutdown starts, until in-flight requests finish.
async fn serve_http<S>(
    ctx: &ConnContext,
    stream: S,
    info: Arc<ConnInfo>,
    mut drain: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let proxy = ctx.proxy.clone();
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, info).await) }
    });
    let conn = ctx
        .http
        .serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
