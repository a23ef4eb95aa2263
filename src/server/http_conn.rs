//! Serving HTTP on one established connection (cleartext, or after TLS):
//! HTTP/2 when ALPN chose it or the client opens with the HTTP/2 preface,
//! HTTP/1.1 otherwise, until the client is done or shutdown drains it.
//!
//! An HTTP/1.1 connection that has answered its requests and then waits
//! [`PARK_AFTER`] for the next one (no bytes, nothing in flight, nothing
//! unflushed) is *parked*: hyper's connection state and its read and write
//! buffers (8 KiB each) are dropped, and only the stream waits for the
//! client's next bytes, which start a fresh hyper connection. An idle
//! keep-alive connection then costs its TLS state and little else, as in
//! HAProxy and NGINX, which hold no buffers for an idle connection either.
//! The short delay keeps a busy connection (a request every few
//! milliseconds) in one hyper connection; the check costs a timer at most
//! once per period, and none while a request is in flight.
//!
//! Because the loop owns the stream between hyper connections, it also hands
//! the stream of a WebSocket handshake to the proxy after the `101`
//! ([`crate::proxy::Handoff`]).

use crate::proxy::{ClientStream, ConnInfo, Handoff, Proxy, ProxyBody};
use crate::server::cork::{self, OnTcp};
use crate::server::hello::Prefixed;
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{oneshot, watch};

/// How long an HTTP/1.1 connection waits for its next request before it is
/// parked (one to two periods after its last bytes).
pub const PARK_AFTER: Duration = Duration::from_millis(10);

/// How long a connection may wait for a request (its first, or the next
/// one on a keep-alive connection) before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an HTTP/1.1 connection with nothing in flight may go without a
/// new request once its bytes have started arriving: a request head
/// trickled in (slowloris), or a request body still arriving this long
/// after its response was sent, closes the connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long closing a connection (TLS close_notify, FIN) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes read by a parked connection before hyper takes over (the
/// rest stays in the socket or TLS buffer for hyper to read).
const WAKE_READ: usize = 2048;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP settings shared by every connection.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// HTTP/1.1 connections (no timer: the serving loop bounds head
    /// reading, [`HEAD_TIMEOUT`]).
    pub http1: http1::Builder,
    /// HTTP/2 connections.
    pub http2: http2::Builder<TokioExecutor>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        let mut http1 = http1::Builder::new();
        // hyper's own header read timeout costs an allocation and a timer
        // entry per request; the serving loop checks the same thing on the
        // timer it already runs (`serve_h1`).
        http1.header_read_timeout(None);
        // Extended CONNECT (RFC 8441) is not advertised: the proxy carries
        // WebSocket over HTTP/1.1 only, so clients must not try it over h2.
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        Self { http1, http2 }
    }
}

/// What one connection's exchanges share with its serving loop; the
/// counters are written by the service, bodies and stream wrapper (some on
/// other tasks) and read at each idle check.
#[derive(Default)]
struct Activity {
    /// Requests whose response has not been completely handed to hyper.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// Bytes were read since the last idle check.
    read: AtomicBool,
    /// The last read found no bytes.
    waiting: AtomicBool,
    /// Something was written and not yet flushed.
    unflushed: AtomicBool,
    /// The response about to be written is the connection's last and its
    /// size is known and small: cork the socket before writing it
    /// ([`crate::server::cork`]).
    cork: AtomicBool,
    /// Where the stream of a WebSocket handshake in flight goes.
    upgrade: Mutex<Option<oneshot::Sender<ClientStream>>>,
}

impl Activity {
    /// Whether the connection waits for the client with nothing under way:
    /// no request in flight, everything flushed, and the last read found
    /// no bytes.
    fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.unflushed.load(Ordering::Relaxed)
    }

    /// Whether bytes were read since the last call.
    fn read_since_last_check(&self) -> bool {
        self.read.swap(false, Ordering::Relaxed)
    }

    /// The sender of a WebSocket hand-off whose receiver is still waiting.
    fn take_upgrade(&self) -> Option<oneshot::Sender<ClientStream>> {
        let tx = self.upgrade.lock().ok()?.take()?;
        (!tx.is_closed()).then_some(tx)
    }
}

/// Marks one request as in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until hyper drops it
/// (after writing its last frame, or on a broken connection).
struct TrackedBody {
    inner: ProxyBody,
    _in_flight: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = crate::proxy::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The future of one request: the proxy's boxed future, then the response
/// with its body tracked.
struct Exchange {
    response: Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>,
    in_flight: Option<InFlight>,
    /// The client asked to close the connection after this exchange.
    last: bool,
}

impl Future for Exchange {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = std::task::ready!(self.response.as_mut().poll(cx));
        let in_flight = self
            .in_flight
            .take()
            .expect("a future is not polled after it completed");
        if self.last
            && response
                .body()
                .size_hint()
                .exact()
                .is_some_and(|n| n <= cork::CORK_LIMIT)
        {
            in_flight.0.cork.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

/// The hyper service of one connection: every request goes to the proxy.
#[derive(Clone)]
struct ConnService {
    proxy: Arc<Proxy>,
    info: Arc<ConnInfo>,
    activity: Arc<Activity>,
    /// Whether WebSocket handshakes get a [`Handoff`] (HTTP/1.1 connections
    /// served by this loop; hyper never sees the upgrade).
    handoff: bool,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Exchange;

    fn call(&self, mut req: Request<Incoming>) -> Exchange {
        let in_flight = InFlight::start(&self.activity);
        if self.handoff && crate::proxy::is_websocket_upgrade(req.version(), req.headers()) {
            let (handoff, tx) = Handoff::new();
            req.extensions_mut().insert(handoff);
            if let Ok(mut slot) = self.activity.upgrade.lock() {
                *slot = Some(tx);
            }
        }
        let last = crate::proxy::closes_connection(req.version(), req.headers());
        Exchange {
            response: self.proxy.clone().handle(req, self.info.clone()),
            in_flight: Some(in_flight),
            last,
        }
    }
}

/// A stream that records reads and unflushed writes in [`Activity`], and
/// corks its socket for the connection's last response when asked.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// The socket is corked.
    corked: bool,
}

impl<S: OnTcp> Watched<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            corked: false,
        }
    }

    /// Corks the socket if the response about to be written asked for it.
    fn cork_if_asked(&mut self) {
        if self.activity.cork.load(Ordering::Relaxed) {
            self.activity.cork.store(false, Ordering::Relaxed);
            if let Some(tcp) = self.inner.tcp() {
                self.corked = cork::set(tcp, true);
            }
        }
    }
}

impl<S: AsyncRead + OnTcp + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.corked {
            // The connection goes on after all: what is held goes now.
            self.corked = false;
            if let Some(tcp) = self.inner.tcp() {
                cork::set(tcp, false);
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_pending() {
            self.activity.waiting.store(true, Ordering::Relaxed);
        } else if buf.filled().len() > before {
            self.activity.waiting.store(false, Ordering::Relaxed);
            self.activity.read.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + OnTcp + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.cork_if_asked();
        // Marked before the write: hyper may hold bytes it could not write.
        self.activity.unflushed.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.cork_if_asked();
        self.activity.unflushed.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.activity.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How an HTTP/1.1 serving phase ended.
enum Ended<S> {
    /// Idle: the stream waits for the client's next bytes (`prefix` holds
    /// any hyper had read already).
    Parked(Prefixed<S>),
    /// The exchange is over for good: close the stream.
    Close(Prefixed<S>),
    /// The stream went to a WebSocket relay, or broke.
    Gone,
}

/// Serves HTTP on `stream` until the client is done, or, once shutdown
/// starts, until in-flight requests finish. `h2` is ALPN's choice; without
/// it the client's first bytes decide between HTTP/2 (prior knowledge) and
/// HTTP/1.1.
pub async fn serve<S>(
    settings: &HttpSettings,
    proxy: Arc<Proxy>,
    stream: S,
    info: Arc<ConnInfo>,
    h2: bool,
    mut drain: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + OnTcp + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let mut service = ConnService {
        proxy,
        info,
        activity,
        handoff: !h2,
    };
    // HTTP/2 connections are boxed, so their state does not size the task
    // of every connection (parked HTTP/1.1 ones included). Bound first: a
    // temporary would keep its storage, the whole future, across the await.
    if h2 {
        let h2 = Box::pin(serve_h2(
            settings,
            Prefixed::new(Bytes::new(), stream),
            service,
            drain,
        ));
        h2.await;
        return;
    }
    let mut stream = stream;
    let Some(first) = first_bytes(&mut stream, &mut drain).await else {
        close(stream).await;
        return;
    };
    let mut io = Prefixed::new(first, stream);
    if io_starts_with_preface(&io) {
        service.handoff = false;
        let h2 = Box::pin(serve_h2(settings, io, service, drain));
        h2.await;
        return;
    }
    loop {
        let phase = Box::pin(serve_h1(settings, io, service.clone(), &mut drain));
        match phase.await {
            Ended::Gone => return,
            Ended::Close(io) => {
                close(io).await;
                return;
            }
            Ended::Parked(parked) => {
                let (prefix, mut stream) = parked.into_parts();
                if !prefix.is_empty() {
                    // Part of the next request head had arrived: serve it
                    // at once (the head deadline starts again, so a client
                    // trickling a head gets at most two HEAD_TIMEOUTs).
                    io = Prefixed::new(prefix, stream);
                    continue;
                }
                match next_bytes(&mut stream, &mut drain).await {
                    Some(bytes) => io = Prefixed::new(bytes, stream),
                    None => {
                        close(stream).await;
                        return;
                    }
                }
            }
        }
    }
}

/// The first bytes of a connection, enough to tell the HTTP/2 preface from
/// HTTP/1.1; `None` when the client closed, stayed silent for
/// [`IDLE_TIMEOUT`] or shutdown began.
async fn first_bytes<S: AsyncRead + Unpin>(
    stream: &mut S,
    drain: &mut watch::Receiver<()>,
) -> Option<Bytes> {
    let mut got = next_bytes(stream, drain).await?;
    while got.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&got) {
        let more = next_bytes(stream, drain).await?;
        let mut joined = BytesMut::with_capacity(got.len() + more.len());
        joined.extend_from_slice(&got);
        joined.extend_from_slice(&more);
        got = joined.freeze();
    }
    Some(got)
}

/// Whether the replayed bytes open with the HTTP/2 preface.
fn io_starts_with_preface<S>(io: &Prefixed<S>) -> bool {
    io.prefix().starts_with(H2_PREFACE)
}

/// Waits for a quiet connection's next bytes: `None` when the client closed
/// or failed, stayed silent for [`IDLE_TIMEOUT`], or shutdown began.
async fn next_bytes<S: AsyncRead + Unpin>(
    stream: &mut S,
    drain: &mut watch::Receiver<()>,
) -> Option<Bytes> {
    let read = poll_fn(|cx| {
        // A stack buffer, so a waiting connection holds none.
        let mut buf = [0u8; WAKE_READ];
        let mut filled = ReadBuf::new(&mut buf);
        match Pin::new(&mut *stream).poll_read(cx, &mut filled) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Bytes::copy_from_slice(filled.filled()))),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    });
    tokio::select! {
        biased;
        _ = drain.changed() => None,
        read = tokio::time::timeout(IDLE_TIMEOUT, read) => match read {
            Ok(Ok(bytes)) if !bytes.is_empty() => Some(bytes),
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                tracing::debug!(%error, "reading from an idle connection failed");
                None
            }
            Err(_) => {
                tracing::debug!("idle connection timed out");
                None
            }
        },
    }
}

/// Closes a stream the way hyper would: flush, TLS close_notify, FIN.
async fn close<S: AsyncWrite + Unpin>(mut stream: S) {
    if let Ok(Err(error)) = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await {
        tracing::debug!(%error, "closing the connection failed");
    }
}

/// Serves HTTP/2 until the client is done or shutdown drains it.
async fn serve_h2<S>(
    settings: &HttpSettings,
    io: Prefixed<S>,
    service: ConnService,
    mut drain: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = settings.http2.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP/2 connection ended with an error");
    }
}

/// What a serving phase is doing about its end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Serving.
    No,
    /// Shutdown began: hyper finishes the exchange in flight and stops.
    Drain,
    /// Parking was asked while hyper was mid-exchange: it closes after it.
    Closing,
    /// Parked.
    Parked,
    /// No new request for [`HEAD_TIMEOUT`] with bytes arriving: closed.
    TimedOut,
}

/// What the serving loop's one timer is armed for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// The connection waits between exchanges: park it if it stays quiet
    /// for [`PARK_AFTER`].
    Park,
    /// A request head may be arriving: the [`HEAD_TIMEOUT`] deadline.
    Head,
}

/// One HTTP/1.1 serving phase on `io`: a hyper connection until the client
/// or shutdown ends it, an upgrade takes the stream, or, once it has served
/// a request (hyper parks only between exchanges), it has been idle for a
/// whole [`PARK_AFTER`] period. With nothing in flight, a new request must
/// start within [`HEAD_TIMEOUT`] of the last sign of progress (a request
/// started, or one ended), checked whenever the timer fires.
async fn serve_h1<S>(
    settings: &HttpSettings,
    io: Prefixed<S>,
    service: ConnService,
    drain: &mut watch::Receiver<()>,
) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + OnTcp + Unpin + Send + 'static,
{
    let activity = service.activity.clone();
    let requests_before = activity.requests.load(Ordering::Relaxed);
    let watched = Watched::new(io, activity.clone());
    let mut conn = settings
        .http1
        .serve_connection(TokioIo::new(watched), service);
    // One timer, armed for parking when the connection starts waiting
    // between exchanges, or for the head deadline when it has nothing in
    // flight otherwise (a head arriving); every firing also notes progress.
    // A busy connection re-arms it once per park period, not per request.
    let tick = tokio::time::sleep(PARK_AFTER);
    tokio::pin!(tick);
    let mut armed: Option<Armed> = None;
    // The request count at the last progress seen, and when it was seen.
    let mut progress = (requests_before, tokio::time::Instant::now());
    // A request was in flight since progress was last noted.
    let mut was_busy = false;
    // `drained`, once polled, stays registered and wakes the task when
    // shutdown begins; polling it again on every wake-up of a busy
    // connection re-checks the channel and the waker, so a second receiver
    // tells first, with one atomic load, whether there is news.
    let probe = drain.clone();
    let drained = drain.changed();
    tokio::pin!(drained);
    let mut registered = false;
    let mut ending = Ending::No;
    let result = poll_fn(|cx| loop {
        if ending == Ending::No
            && (!registered || probe.has_changed().unwrap_or(true))
            && drained.as_mut().poll(cx).is_ready()
        {
            ending = Ending::Drain;
            Pin::new(&mut conn).graceful_shutdown();
        }
        registered = true;
        if let Poll::Ready(result) = conn.poll_without_shutdown(cx) {
            return Poll::Ready(result);
        }
        if ending != Ending::No {
            return Poll::Pending;
        }
        let requests = activity.requests.load(Ordering::Relaxed);
        let in_flight = activity.in_flight.load(Ordering::Acquire) > 0;
        was_busy |= in_flight;
        // Parking waits for a served request: before it, hyper is not
        // between exchanges (a head still arriving has its deadline).
        let waiting = activity.waiting() && requests > requests_before;
        match armed {
            Some(Armed::Park) => {}
            Some(Armed::Head) if !waiting => {}
            None if in_flight => return Poll::Pending,
            None if !waiting => {
                if was_busy {
                    // A request just ended: the deadline starts now.
                    progress = (requests, tokio::time::Instant::now());
                    was_busy = false;
                }
                tick.as_mut().reset(progress.1 + HEAD_TIMEOUT);
                armed = Some(Armed::Head);
            }
            _ => {
                activity.read_since_last_check();
                tick.as_mut()
                    .reset(tokio::time::Instant::now() + PARK_AFTER);
                armed = Some(Armed::Park);
            }
        }
        if tick.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        armed = None;
        let now = tokio::time::Instant::now();
        if requests != progress.0 || in_flight || was_busy {
            progress = (requests, now);
            was_busy = false;
        } else if now >= progress.1 + HEAD_TIMEOUT {
            tracing::debug!(
                timeout = ?HEAD_TIMEOUT,
                "no new request on an HTTP/1.1 connection in time; closing it"
            );
            ending = Ending::TimedOut;
            return Poll::Ready(Ok(()));
        }
        if waiting && !activity.read_since_last_check() {
            // Idle, hyper closes at once and gives the stream back; in the
            // middle of an exchange (a request body still arriving after
            // its response) it closes the connection after that exchange.
            Pin::new(&mut conn).graceful_shutdown();
            return match conn.poll_without_shutdown(cx) {
                Poll::Ready(result) => {
                    ending = Ending::Parked;
                    Poll::Ready(result)
                }
                Poll::Pending => {
                    ending = Ending::Closing;
                    Poll::Pending
                }
            };
        }
    })
    .await;
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
        return Ended::Gone;
    }
    let parts = conn.into_parts();
    let (rest, stream) = parts.io.into_inner().inner.into_parts();
    // hyper read `read_buf` out of the stream before `rest`.
    // (`Prefixed::new` drops an empty `read_buf`, which still owns hyper's
    // 8 KiB read buffer.)
    let unread = if rest.is_empty() {
        parts.read_buf
    } else if parts.read_buf.is_empty() {
        rest
    } else {
        let mut joined = BytesMut::with_capacity(parts.read_buf.len() + rest.len());
        joined.extend_from_slice(&parts.read_buf);
        joined.extend_from_slice(&rest);
        joined.freeze()
    };
    let io = Prefixed::new(unread, stream);
    if let Some(tx) = activity.take_upgrade() {
        // The `101` is written; the WebSocket relay owns the stream now.
        let _ = tx.send(Box::new(io));
        return Ended::Gone;
    }
    match ending {
        Ending::Parked => {
            tracing::debug!(
                buffered = io.prefix().len(),
                "idle HTTP/1.1 connection parked"
            );
            Ended::Parked(io)
        }
        _ => Ended::Close(io),
    }
}

#[cfg(test)]
mod tests;
