//! Pooled HTTP/1.1 keep-alive connections to cleartext backends, driven by
//! the request's own task.
//!
//! The task serving the client writes the request and reads the response
//! itself: no connection task, no channel hand-off and no wake-up of another
//! task per request, which is what hyper's client spends on each. A
//! response whose body arrived with its head puts the connection back in
//! the pool at once and answers with the bytes in hand; a longer body is read
//! from the connection as the client takes it ([`H1Body`]), and the
//! connection goes back when the body ends. The bytes on the wire are
//! [`super::h1_wire`]'s.
//!
//! A connection is reused only when the response allows it, its end was
//! unambiguous and nothing followed it. A pooled connection the backend has
//! closed or written to since is passed over at checkout: the socket is
//! asked (one `recv` with `MSG_PEEK`) when the I/O driver has recorded
//! readiness on it, and always for a request with a body or a
//! non-idempotent method. A pooled connection keeps its read buffer, which
//! the next response reuses once the last one's bytes are dropped (no
//! allocation per request). If a pooled connection still turns out closed,
//! cleanly and before any byte of an answer, a request that is safe to send
//! again (no body, idempotent method) goes out once more on a new
//! connection, as Go's client does; a reset is a failure of the attempt
//! (retry policies count it).

use super::errors::Error;
use super::h1_wire::{
    self, BodyFraming, ChunkedDecoder, Decoded, RequestFraming, ResponseHead, WireError,
};
use super::upstream::{FailureKind, OutboundHead};
use super::{body, BoxError, ProxyBody};
use crate::hashing::FastMap;
use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a pooled connection may sit unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per endpoint.
const MAX_PER_ENDPOINT: usize = 256;
/// Read buffer for a response head, grown up to [`h1_wire::MAX_HEAD`].
const HEAD_READ: usize = 4 * 1024;
/// Bytes read at a time from a response body.
const BODY_READ: usize = 16 * 1024;
/// Request body bytes gathered into one write (with the head, for a first
/// chunk that is ready at once).
const WRITE_BATCH: usize = 16 * 1024;

/// Largest read buffer an idle connection keeps for its next response.
const KEEP_BUFFER: usize = 2 * BODY_READ;

/// A connection waiting for its next request, with its read buffer.
struct Idle {
    stream: TcpStream,
    buf: BytesMut,
    since: Instant,
}

/// The idle connections of every endpoint.
struct Lists {
    idle: FastMap<SocketAddr, Vec<Idle>>,
    /// When expired connections of every endpoint are dropped next.
    next_sweep: Instant,
}

/// Every idle cleartext HTTP/1.1 connection to every backend endpoint.
/// Cloning shares the pool (a streamed response body holds a clone to give
/// its connection back).
#[derive(Clone)]
pub struct H1Pool {
    lists: Arc<Mutex<Lists>>,
}

impl Default for H1Pool {
    fn default() -> Self {
        H1Pool {
            lists: Arc::new(Mutex::new(Lists {
                idle: FastMap::default(),
                next_sweep: Instant::now() + IDLE_TIMEOUT,
            })),
        }
    }
}

/// A failed exchange, and whether the backend closed the connection
/// cleanly without a byte of an answer (so that a request safe to repeat may
/// go out again: the backend closed an idle connection as it was reused).
struct Failed {
    error: Error,
    closed_unanswered: bool,
}

impl H1Pool {
    /// Sends the request `head` with `body` to endpoint `addr` of upstream
    /// `name` on a pooled connection, or a new one. The head is encoded
    /// straight from the filters' result (no `http::Request` in between);
    /// without a host of its own the endpoint address is sent as `Host`.
    pub async fn send(
        &self,
        name: &str,
        addr: SocketAddr,
        head: &OutboundHead,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, Error> {
        let Prepared {
            bytes,
            framing,
            mut body,
        } = prepare(head, addr, body)?;
        let method = &head.method;
        let replayable = h1_wire::is_replayable(method, framing);
        // Let the other requests that are ready in this round of the
        // scheduler reach this point too, so that their writes go out
        // together: a backend woken by the first then finds the rest
        // waiting instead of being woken once per request (measured:
        // backend context switches per request 0.58 -> 0.12, and the
        // proxy's own CPU per request at a fixed rate -6 %). `yield_now`
        // defers this task until the scheduler has polled the others and
        // the I/O driver, whose news (a backend's FIN) checkout then sees.
        tokio::task::yield_now().await;
        let out = Outgoing {
            name,
            addr,
            method,
            head: &bytes,
            framing,
        };
        if let Some((stream, buf)) = self.checkout(addr, !replayable) {
            match self.exchange(&out, stream, buf, body.take()).await {
                Ok(resp) => return Ok(resp),
                // The backend had closed the pooled connection.
                Err(failed) if failed.closed_unanswered && replayable => {}
                Err(failed) => return Err(failed.error),
            }
        }
        // The rare path, boxed (and bound to a local, so no temporary keeps
        // its size) to keep every request's future small.
        let fresh = Box::pin(self.send_on_new_connection(&out, body));
        fresh.await
    }

    /// Sends the request on a new connection to `out.addr`.
    async fn send_on_new_connection(
        &self,
        out: &Outgoing<'_>,
        body: Option<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Error> {
        let stream = super::connect::tcp_for(out.name, out.addr).await?;
        self.exchange(out, stream, BytesMut::new(), body)
            .await
            .map_err(|f| f.error)
    }

    /// One request and the head of its response on `stream`, read into
    /// `buf` (empty; the connection's own when pooled); the body comes with
    /// the response, in hand or streamed from the connection.
    async fn exchange(
        &self,
        out: &Outgoing<'_>,
        mut stream: TcpStream,
        mut buf: BytesMut,
        body: Option<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Failed> {
        let answered_early = match body {
            None => {
                stream
                    .write_all(out.head)
                    .await
                    .map_err(|e| out.reset(e, false))?;
                false
            }
            Some(body) => {
                // Boxed: most requests have no body, and every request's
                // future would otherwise reserve this one's size.
                let send = Box::pin(send_with_body(out, &stream, body, &mut buf));
                send.await?
            }
        };
        let mut head = read_head(out, &mut stream, &mut buf).await?;
        let framing =
            h1_wire::response_framing(out.method, &mut head).map_err(|e| out.protocol(e))?;
        let reusable = framing.reusable && !answered_early;
        let ResponseHead {
            status,
            version,
            headers,
        } = head;
        let in_hand = match framing.body {
            BodyFraming::None => Some(Bytes::new()),
            BodyFraming::Length(n) if n <= buf.len() as u64 => {
                Some(buf.split_to(n as usize).freeze())
            }
            _ => None,
        };
        let body = match in_hand {
            Some(bytes) => {
                self.release(out.addr, stream, buf, reusable);
                body::full(bytes)
            }
            None => {
                let delimit = match framing.body {
                    BodyFraming::Length(n) => Delimit::Length(n),
                    BodyFraming::Chunked => Delimit::Chunked(ChunkedDecoder::default()),
                    _ => Delimit::UntilClose,
                };
                body::boxed(H1Body {
                    conn: Some((stream, buf)),
                    delimit,
                    reusable,
                    pool: self.clone(),
                    addr: out.addr,
                })
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        *resp.headers_mut() = headers;
        Ok(resp)
    }

    /// A connection to `addr` for a request; expired ones, and ones the
    /// backend has closed or written to, are dropped on the way. With
    /// `verify` (a request that cannot be sent twice) the socket itself is
    /// asked about each candidate; without it, only when the I/O driver has
    /// recorded readiness on it.
    fn checkout(&self, addr: SocketAddr, verify: bool) -> Option<(TcpStream, BytesMut)> {
        let now = Instant::now();
        loop {
            // Taken under the lock, closed (dropped) outside it.
            let newest = {
                let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
                let list = lists.idle.get_mut(&addr)?;
                match list.last() {
                    None => return None,
                    // The newest has expired, so has every older one.
                    Some(newest) if now.duration_since(newest.since) >= IDLE_TIMEOUT => {
                        Err(std::mem::take(list))
                    }
                    Some(_) => list.pop().ok_or_else(Vec::new),
                }
            };
            match newest {
                Ok(idle) => {
                    let usable = if verify {
                        is_quiet(&idle.stream)
                    } else {
                        seems_quiet(&idle.stream)
                    };
                    if usable {
                        return Some((idle.stream, idle.buf));
                    }
                }
                Err(_expired) => return None,
            }
        }
    }

    /// Puts `stream` back for `addr` when the response allowed it and
    /// nothing followed the response (`rest` is what was read after it, and
    /// the buffer the next response is read into).
    fn release(&self, addr: SocketAddr, stream: TcpStream, rest: BytesMut, reusable: bool) {
        if !reusable || !rest.is_empty() {
            return;
        }
        // The rest of the allocation the response was read into: reused by
        // the next response once the bytes cut from it are dropped.
        let buf = if rest.capacity() <= KEEP_BUFFER {
            rest
        } else {
            BytesMut::new()
        };
        let now = Instant::now();
        // What is closed here is dropped after the lock is released.
        let mut expired = Vec::new();
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        if now >= lists.next_sweep {
            for list in lists.idle.values_mut() {
                let (keep, old) = std::mem::take(list)
                    .into_iter()
                    .partition(|i: &Idle| now.duration_since(i.since) < IDLE_TIMEOUT);
                *list = keep;
                expired.extend(old);
            }
            lists.idle.retain(|_, list| !list.is_empty());
            lists.next_sweep = now + IDLE_TIMEOUT;
        }
        let list = lists.idle.entry(addr).or_default();
        let refused = if list.len() < MAX_PER_ENDPOINT {
            list.push(Idle {
                stream,
                buf,
                since: now,
            });
            None
        } else {
            Some(stream)
        };
        drop(lists);
        drop((expired, refused));
    }

    /// Room left in the read buffer of the newest idle connection to
    /// `addr` (tests).
    #[cfg(test)]
    fn idle_buffer_room(&self, addr: SocketAddr) -> usize {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let newest = lists.idle.get(&addr).and_then(|list| list.last());
        newest.map_or(0, |idle| idle.buf.capacity())
    }

    /// Idle connections held for `addr` (tests).
    #[cfg(test)]
    fn held(&self, addr: SocketAddr) -> usize {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.idle.get(&addr).map_or(0, Vec::len)
    }
}

/// A request turned into bytes: its head, and its body unless it has none.
struct Prepared {
    bytes: Vec<u8>,
    framing: RequestFraming,
    body: Option<ProxyBody>,
}

/// Encodes `head` for endpoint `addr` (outside the async code, so that its
/// temporaries take no room in every request's future).
fn prepare(head: &OutboundHead, addr: SocketAddr, body: ProxyBody) -> Result<Prepared, Error> {
    let framing = RequestFraming::for_body(
        &head.method,
        &head.headers,
        body.is_end_stream(),
        body.size_hint().exact(),
    );
    let endpoint;
    let host = match &head.host {
        Some(host) => host.to_str().map_err(|e| Error::BuildRequest(e.into()))?,
        None => {
            endpoint = addr.to_string();
            endpoint.as_str()
        }
    };
    let mut bytes = Vec::with_capacity(512);
    h1_wire::encode_request_head(
        &mut bytes,
        &head.method,
        head.path_and_query.as_str(),
        host,
        &head.headers,
        framing,
    )
    .map_err(|e| Error::BuildRequest(e.into()))?;
    Ok(Prepared {
        bytes,
        framing,
        body: match framing {
            RequestFraming::Empty { .. } => None,
            _ => Some(body),
        },
    })
}

/// What one attempt sends, and where.
struct Outgoing<'a> {
    name: &'a str,
    addr: SocketAddr,
    method: &'a Method,
    head: &'a [u8],
    framing: RequestFraming,
}

impl Outgoing<'_> {
    fn reset(&self, source: impl Into<BoxError>, closed_unanswered: bool) -> Failed {
        Failed {
            error: FailureKind::Reset.into_error(self.name, self.addr, source.into()),
            closed_unanswered,
        }
    }

    fn protocol(&self, source: impl Into<BoxError>) -> Failed {
        Failed {
            error: FailureKind::Protocol.into_error(self.name, self.addr, source.into()),
            closed_unanswered: false,
        }
    }
}

/// Whether an idle connection has nothing to read, as far as the I/O
/// driver knows: a system call only when it has recorded readiness since
/// the connection's last read, which is either something new (stray bytes,
/// the backend's close) or stale (the last read filled its buffer exactly,
/// or read with `try_read`); a stale readiness is cleared by the look.
fn seems_quiet(stream: &TcpStream) -> bool {
    quiet(stream.try_io(Interest::READABLE, || peek(stream)))
}

/// Whether an idle connection has nothing to read: not closed by the
/// backend, no stray bytes. Asks the socket itself (tokio's readiness may
/// not have seen a close yet).
fn is_quiet(stream: &TcpStream) -> bool {
    quiet(peek(stream))
}

/// Whether a [`peek`] found nothing: neither bytes nor a close (nor an
/// error, which makes the connection unusable too).
fn quiet(peeked: io::Result<usize>) -> bool {
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Peeks at one byte of `stream` without blocking: `Ok(0)` when the
/// backend has closed, `Ok(1)` when it has written, `WouldBlock` when
/// neither.
fn peek(stream: &TcpStream) -> io::Result<usize> {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    socket2::SockRef::from(stream).peek(&mut probe)
}

/// Writes the head and `body` framed as `out.framing` says, gathering what
/// is ready into few writes. Stops early when the backend answers (or
/// closes) before the body is sent, returning `true`: the answer is read
/// next, and the connection is not reused.
async fn send_with_body(
    out: &Outgoing<'_>,
    stream: &TcpStream,
    mut body: ProxyBody,
    buf: &mut BytesMut,
) -> Result<bool, Failed> {
    let mut pending = Vec::with_capacity(out.head.len() + WRITE_BATCH);
    pending.extend_from_slice(out.head);
    let mut sent: u64 = 0;
    let mut ended = false;
    loop {
        while !ended && pending.len() < WRITE_BATCH {
            let frame = if pending.is_empty() {
                // Nothing to write: wait for the client, or the backend's answer.
                let next = poll_fn(|cx| {
                    if answered(stream, buf, cx) {
                        return Poll::Ready(None);
                    }
                    Pin::new(&mut body).poll_frame(cx).map(Some)
                })
                .await;
                match next {
                    Some(frame) => frame,
                    None => return Ok(true),
                }
            } else {
                // Something to write: take only what is ready now.
                match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => break,
                }
            };
            match frame {
                None => {
                    ended = true;
                    match out.framing {
                        RequestFraming::Chunked => h1_wire::chunked_end(&mut pending, None),
                        RequestFraming::Length(n) if sent != n => {
                            return Err(body_error(format!(
                                "request body ended after {sent} of {n} bytes"
                            )));
                        }
                        _ => {}
                    }
                }
                Some(Err(e)) => {
                    return Err(Failed {
                        error: Error::RequestBody(e),
                        closed_unanswered: false,
                    })
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        sent = sent.saturating_add(data.len() as u64);
                        match out.framing {
                            RequestFraming::Length(n) if sent > n => {
                                return Err(body_error(format!(
                                    "request body longer than its {n} bytes"
                                )));
                            }
                            RequestFraming::Chunked => {
                                h1_wire::chunk_size_line(&mut pending, data.len());
                                pending.extend_from_slice(&data);
                                pending.extend_from_slice(b"\r\n");
                            }
                            _ => pending.extend_from_slice(&data),
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body; only chunked framing carries them.
                        if let (Ok(trailers), RequestFraming::Chunked) =
                            (frame.into_trailers(), out.framing)
                        {
                            h1_wire::chunked_end(&mut pending, Some(&trailers));
                            ended = true;
                        }
                    }
                },
            }
        }
        if !pending.is_empty() {
            if write_unless_answered(stream, &pending, buf)
                .await
                .map_err(|e| out.reset(e, false))?
            {
                return Ok(true);
            }
            pending.clear();
        }
        if ended {
            return Ok(false);
        }
    }
}

fn body_error(message: String) -> Failed {
    Failed {
        error: Error::RequestBody(message.into()),
        closed_unanswered: false,
    }
}

/// Writes all of `data`, unless the backend answers while the socket is
/// full (then `true`: the answer is read next).
async fn write_unless_answered(
    stream: &TcpStream,
    data: &[u8],
    buf: &mut BytesMut,
) -> io::Result<bool> {
    let mut written = 0;
    poll_fn(|cx| loop {
        let Some(rest) = data.get(written..).filter(|r| !r.is_empty()) else {
            return Poll::Ready(Ok(false));
        };
        match stream.try_write(rest) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if answered(stream, buf, cx) {
                    return Poll::Ready(Ok(true));
                }
                ready!(stream.poll_write_ready(cx))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    })
    .await
}

/// Whether the backend has sent bytes (read into `buf`) or closed, before
/// the request is complete; registers for the answer otherwise.
fn answered(stream: &TcpStream, buf: &mut BytesMut, cx: &mut Context<'_>) -> bool {
    loop {
        match stream.poll_read_ready(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => {}
        }
        buf.reserve(HEAD_READ);
        match stream.try_read_buf(buf) {
            // Stale readiness, now cleared: register again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Interim answers (`100 Continue`) do not stop the upload.
            Ok(n) if n > 0 && !h1_wire::final_answer_started(buf) => {}
            // A final answer, the end of the stream or an error: the reader
            // sees it.
            _ => return true,
        }
    }
}

/// Reads until a final response head is parsed, skipping informational
/// ones (`100 Continue`, `103 Early Hints`).
async fn read_head(
    out: &Outgoing<'_>,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<ResponseHead, Failed> {
    let mut received = !buf.is_empty();
    loop {
        if !buf.is_empty() {
            match h1_wire::parse_response_head(buf) {
                Ok(Some(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(out.protocol(WireError::UnrequestedSwitch));
                }
                Ok(Some(head)) if h1_wire::is_interim(head.status.as_u16()) => continue,
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(out.protocol(e)),
            }
        }
        buf.reserve(HEAD_READ);
        match stream.read_buf(buf).await {
            Ok(0) => {
                return Err(out.reset(
                    "connection closed before a complete response head",
                    !received,
                ))
            }
            Ok(_) => received = true,
            Err(e) => return Err(out.reset(e, false)),
        }
    }
}

/// How the rest of a streamed response body is delimited.
enum Delimit {
    /// This many bytes left.
    Length(u64),
    /// Chunked, decoded as it arrives.
    Chunked(ChunkedDecoder),
    /// Until the backend closes.
    UntilClose,
}

/// A response body read from its connection as the client takes it; the
/// connection goes back to the pool when the body ends (and is closed if
/// the body is dropped before).
struct H1Body {
    /// The connection and the bytes read past the head; `None` once the
    /// body has ended.
    conn: Option<(TcpStream, BytesMut)>,
    delimit: Delimit,
    reusable: bool,
    pool: H1Pool,
    addr: SocketAddr,
}

impl H1Body {
    /// The body has ended: the connection goes back or is closed.
    fn finish(&mut self) {
        if let Some((stream, rest)) = self.conn.take() {
            self.pool.release(self.addr, stream, rest, self.reusable);
        }
    }

    /// The next frame from the bytes in hand, if they make one.
    fn frame_in_hand(&mut self) -> Result<Option<Frame<Bytes>>, WireError> {
        let Some((_, buf)) = self.conn.as_mut() else {
            return Ok(None);
        };
        match &mut self.delimit {
            Delimit::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(take).freeze();
                *left -= take as u64;
                if *left == 0 {
                    self.finish();
                }
                Ok(Some(Frame::data(data)))
            }
            Delimit::Chunked(decoder) => match decoder.decode(buf)? {
                Decoded::Data(data) => Ok(Some(Frame::data(data))),
                Decoded::End(trailers) => {
                    self.finish();
                    Ok(trailers.map(Frame::trailers))
                }
                Decoded::NeedMore => Ok(None),
            },
            Delimit::UntilClose => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Frame::data(buf.split().freeze())))
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.frame_in_hand() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            let Some((stream, buf)) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            buf.reserve(BODY_READ);
            // Through `poll_read`, which clears the driver's readiness after
            // a short read: the idle check at checkout relies on it.
            let read = ready!(tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf));
            match read {
                Ok(0) if matches!(this.delimit, Delimit::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(
                        "backend closed the connection inside the response body".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.delimit) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Delimit::Length(left)) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the test backend writes for one request: pieces with a pause
    /// before each, then whether it closes the connection.
    struct Answer {
        pieces: Vec<(u64, Vec<u8>)>,
        close: bool,
        /// Answer after the head without reading the request body.
        skip_body: bool,
        /// Reset the connection (SO_LINGER 0) instead of answering.
        reset: bool,
        /// Written after the request head, before the body is read.
        interim: Option<&'static str>,
    }

    fn answer(bytes: &str) -> Answer {
        Answer {
            pieces: vec![(0, bytes.as_bytes().to_vec())],
            close: false,
            skip_body: false,
            reset: false,
            interim: None,
        }
    }

    /// `first`, then `second` after `pause_ms`.
    fn in_two(first: &str, pause_ms: u64, second: &str) -> Answer {
        Answer {
            pieces: vec![
                (0, first.as_bytes().to_vec()),
                (pause_ms, second.as_bytes().to_vec()),
            ],
            ..answer("")
        }
    }

    impl Answer {
        /// This answer, or a plain `ok` when `plain`.
        fn unless(self, plain: bool) -> Answer {
            if plain {
                answer(OK)
            } else {
                self
            }
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// A backend on loopback answering each request as `script` says
    /// (given the request's index over all connections); counts accepted
    /// connections and keeps every request it read, raw.
    struct Backend {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    async fn backend(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let script = Arc::new(script);
        let (count, seen) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(request) = read_request(&mut s, &mut buf, &*script, &seen).await
                        else {
                            return;
                        };
                        if request.reset {
                            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                            return;
                        }
                        for (pause, bytes) in &request.pieces {
                            tokio::time::sleep(Duration::from_millis(*pause)).await;
                            if s.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        if request.close {
                            if request.skip_body {
                                // Linger so that the unread request body does
                                // not turn the close into a reset that loses
                                // the answer.
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            return;
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            accepted,
            requests,
        }
    }

    /// Reads one request (head, then a Content-Length or chunked body unless
    /// the answer skips it), records it and returns its answer.
    async fn read_request(
        s: &mut TcpStream,
        buf: &mut Vec<u8>,
        script: &(impl Fn(usize) -> Answer + ?Sized),
        seen: &Mutex<Vec<Vec<u8>>>,
    ) -> Option<Answer> {
        let mut chunk = vec![0u8; 64 * 1024];
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        };
        let index = seen.lock().map(|s| s.len()).unwrap_or(0);
        let answer = script(index);
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        if let Some(interim) = answer.interim {
            s.write_all(interim.as_bytes()).await.ok()?;
        }
        let end = match (answer.skip_body, length, chunked) {
            (true, _, _) | (false, None, false) => head_end,
            (false, Some(n), _) => {
                while buf.len() < head_end + n {
                    let got = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
                    buf.extend_from_slice(&chunk[..got]);
                }
                head_end + n
            }
            (false, None, true) => {
                // The proxy's own decoder finds the end; `wire` is always
                // the undecoded tail of `buf`.
                let mut decoder = h1_wire::ChunkedDecoder::default();
                let mut wire = BytesMut::from(&buf[head_end..]);
                loop {
                    match decoder.decode(&mut wire).ok()? {
                        Decoded::Data(_) => {}
                        Decoded::End(_) => break buf.len() - wire.len(),
                        Decoded::NeedMore => {
                            let got = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
                            buf.extend_from_slice(&chunk[..got]);
                            wire.extend_from_slice(&chunk[..got]);
                        }
                    }
                }
            }
        };
        let request: Vec<u8> = buf.drain(..end).collect();
        if let Ok(mut seen) = seen.lock() {
            seen.push(request);
        }
        Some(answer)
    }

    /// A request for `/` (sent with the endpoint as its host).
    type Req = (OutboundHead, ProxyBody);

    fn request(method: Method, _addr: SocketAddr, body: ProxyBody) -> Req {
        let head = OutboundHead {
            method,
            path_and_query: http::uri::PathAndQuery::from_static("/"),
            host: None,
            headers: http::HeaderMap::new(),
        };
        (head, body)
    }

    fn get(addr: SocketAddr) -> Req {
        request(Method::GET, addr, body::empty())
    }

    impl H1Pool {
        async fn send_req(
            &self,
            name: &str,
            addr: SocketAddr,
            (head, body): Req,
        ) -> Result<Response<ProxyBody>, Error> {
            self.send(name, addr, &head, body).await
        }
    }

    /// Sends `n` GETs one after the other, each answered `ok`.
    async fn gets_answered_ok(pool: &H1Pool, addr: SocketAddr, n: usize) {
        for i in 0..n {
            let resp = pool
                .send_req("t/svc:80", addr, get(addr))
                .await
                .unwrap_or_else(|e| panic!("GET {i} failed: {e}"));
            assert_eq!(body(resp).await, b"ok", "GET {i}");
        }
    }

    async fn body(resp: Response<ProxyBody>) -> Vec<u8> {
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec()
    }

    fn seen(b: &Backend, i: usize) -> String {
        let requests = b.requests.lock().expect("not poisoned");
        String::from_utf8_lossy(requests.get(i).expect("request was read")).into_owned()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let b = backend(|_| answer(OK)).await;
        let pool = H1Pool::default();
        gets_answered_ok(&pool, b.addr, 20).await;
        assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.held(b.addr), 1);
        assert!(seen(&b, 0).starts_with(&format!("GET / HTTP/1.1\r\nhost: {}\r\n", b.addr)));
    }

    #[tokio::test]
    async fn a_pooled_connection_reads_its_next_response_into_the_same_buffer() {
        let b = backend(|_| answer(OK)).await;
        let pool = H1Pool::default();
        let mut seen_at = Vec::new();
        for _ in 0..3 {
            let resp = pool
                .send_req("t/svc:80", b.addr, get(b.addr))
                .await
                .expect("200");
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&bytes[..], b"ok");
            seen_at.push(bytes.as_ptr() as usize);
        }
        // Each body was cut from the same place, and the buffer it was read
        // into stays with the connection for the next response.
        assert_eq!(seen_at[0], seen_at[1]);
        assert_eq!(seen_at[1], seen_at[2]);
        assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
        assert!(
            pool.idle_buffer_room(b.addr) >= HEAD_READ - OK.len(),
            "the idle connection keeps the rest of its buffer"
        );
    }

    #[tokio::test]
    async fn a_connection_still_reading_a_body_is_not_handed_out() {
        let b =
            backend(|_| in_two("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok", 200, "ok")).await;
        let pool = H1Pool::default();
        let first = pool
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect("200");
        assert_eq!(
            first.body().size_hint().exact(),
            Some(4),
            "the body is still whole"
        );
        // `first`'s body is still arriving: a second request needs a second
        // connection.
        let second = pool
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect("200");
        assert_eq!(body(second).await, b"okok");
        assert_eq!(body(first).await, b"okok");
        assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
        // Both went back when their bodies ended.
        assert_eq!(pool.held(b.addr), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_by_the_backend_is_replaced() {
        let b = backend(|_| Answer {
            close: true,
            ..answer(OK)
        })
        .await;
        let pool = H1Pool::default();
        gets_answered_ok(&pool, b.addr, 5).await;
        assert_eq!(b.accepted.load(Ordering::SeqCst), 5);
    }

    /// A backend that closes a reused connection cleanly after reading the
    /// request, without a byte of an answer (as one closing an idle
    /// connection at that moment does): a GET goes out once more on a new
    /// connection; a POST, which may have been acted on, fails.
    #[tokio::test]
    async fn a_clean_close_without_an_answer_resends_only_what_is_safe_to_repeat() {
        let b = backend(|i| {
            Answer {
                pieces: Vec::new(),
                close: true,
                ..answer(OK)
            }
            .unless(i != 1 && i != 4)
        })
        .await;
        let pool = H1Pool::default();
        gets_answered_ok(&pool, b.addr, 2).await;
        assert_eq!(
            b.accepted.load(Ordering::SeqCst),
            2,
            "sent again on a new connection"
        );
        assert_eq!(b.requests.lock().map(|r| r.len()).unwrap_or(0), 3);

        let post = request(Method::POST, b.addr, body::full(Bytes::from_static(b"x")));
        let resp = pool
            .send_req("t/svc:80", b.addr, post)
            .await
            .expect("answered");
        assert_eq!(body(resp).await, b"ok");
        let post = request(Method::POST, b.addr, body::full(Bytes::from_static(b"x")));
        let err = pool
            .send_req("t/svc:80", b.addr, post)
            .await
            .expect_err("a POST is not sent twice");
        assert!(matches!(err, Error::Reset { .. }), "{err}");
        assert_eq!(b.accepted.load(Ordering::SeqCst), 2, "not sent again");
    }

    /// A reset after the request is a failed attempt, not a closed idle
    /// connection: sending it again would be a retry the route's policy did
    /// not ask for (Gateway API `HTTPRouteRetryConnectionError`).
    #[tokio::test]
    async fn a_reset_after_the_request_is_not_sent_again() {
        let b = backend(|i| Answer {
            reset: i > 0,
            ..answer(OK)
        })
        .await;
        let pool = H1Pool::default();
        let resp = pool
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect("200");
        assert_eq!(body(resp).await, b"ok");
        let err = pool
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect_err("the backend reset the connection");
        assert!(matches!(err, Error::Reset { .. }), "{err}");
        assert_eq!(b.accepted.load(Ordering::SeqCst), 1, "not sent again");
    }

    #[tokio::test]
    async fn a_request_with_a_body_never_goes_out_on_a_closed_connection() {
        let b = backend(|_| Answer {
            close: true,
            ..answer(OK)
        })
        .await;
        let pool = H1Pool::default();
        for _ in 0..3 {
            let req = request(Method::POST, b.addr, body::full(Bytes::from_static(b"x")));
            let resp = pool
                .send_req("t/svc:80", b.addr, req)
                .await
                .expect("answered");
            assert_eq!(body(resp).await, b"ok");
            // The backend's close reaches this side's socket.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.accepted.load(Ordering::SeqCst), 3);
        assert!(
            seen(&b, 2).ends_with("content-length: 1\r\n\r\nx"),
            "{}",
            seen(&b, 2)
        );
    }

    #[tokio::test]
    async fn a_chunked_response_streams_with_its_trailers_and_then_the_connection_is_reused() {
        let b = backend(|_| {
            in_two(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
                30,
                "2;ext=1\r\nde\r\n0\r\nx-sum: 5\r\n\r\n",
            )
        })
        .await;
        let pool = H1Pool::default();
        for _ in 0..2 {
            let resp = pool
                .send_req("t/svc:80", b.addr, get(b.addr))
                .await
                .expect("200");
            let collected = resp.into_body().collect().await.expect("body");
            let trailers = collected.trailers().cloned().expect("trailers");
            assert_eq!(trailers["x-sum"], "5");
            assert_eq!(collected.to_bytes(), "abcde");
        }
        assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_delimited_by_close_is_read_to_the_end_and_the_connection_dropped() {
        let b = backend(|_| Answer {
            close: true,
            ..answer("HTTP/1.1 200 OK\r\n\r\nhello")
        })
        .await;
        let pool = H1Pool::default();
        let resp = pool
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect("200");
        assert_eq!(body(resp).await, b"hello");
        assert_eq!(pool.held(b.addr), 0);
    }

    /// The guard against handing one client's bytes to the next: anything
    /// after a response keeps its connection out of the pool.
    #[tokio::test]
    async fn bytes_after_a_response_keep_its_connection_out_of_the_pool() {
        let b = backend(|i| match i {
            0 => answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"),
            _ => answer(OK),
        })
        .await;
        let pool = H1Pool::default();
        gets_answered_ok(&pool, b.addr, 2).await;
        assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    }

    /// Bytes a backend writes on a connection while it idles in the pool
    /// (here a whole second response) must not answer the next request,
    /// even one that could be sent twice and so skips asking the socket.
    #[tokio::test]
    async fn bytes_written_to_an_idle_connection_keep_it_out_of_use() {
        const STRAY: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray";
        let b = backend(|i| in_two(OK, 50, STRAY).unless(i > 0)).await;
        let pool = H1Pool::default();
        gets_answered_ok(&pool, b.addr, 1).await;
        assert_eq!(pool.held(b.addr), 1, "the first connection went back");
        tokio::time::sleep(Duration::from_millis(300)).await;
        gets_answered_ok(&pool, b.addr, 3).await;
        assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn informational_responses_are_skipped() {
        let b = backend(|_| {
            answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
        })
        .await;
        let pool = H1Pool::default();
        let resp = pool
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect("201");
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert!(resp.headers().get("link").is_none());
        assert_eq!(body(resp).await, b"ok");
        assert_eq!(pool.held(b.addr), 1);
    }

    #[tokio::test]
    async fn the_answer_to_head_has_no_body_whatever_its_length_says() {
        let b = backend(|_| answer("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")).await;
        let pool = H1Pool::default();
        for _ in 0..2 {
            let req = request(Method::HEAD, b.addr, body::empty());
            let resp = pool.send_req("t/svc:80", b.addr, req).await.expect("200");
            assert_eq!(resp.headers()["content-length"], "5");
            assert!(body(resp).await.is_empty());
        }
        assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn responses_that_cannot_be_framed_are_protocol_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        ] {
            let b = backend(move |_| answer(bad)).await;
            let pool = H1Pool::default();
            let err = pool
                .send_req("t/svc:80", b.addr, get(b.addr))
                .await
                .expect_err("refused");
            assert!(matches!(err, Error::Protocol { .. }), "{bad:?}: {err}");
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(pool.held(b.addr), 0);
        }
    }

    #[tokio::test]
    async fn a_head_that_never_ends_is_refused() {
        let endless = format!("HTTP/1.1 200 OK\r\nx-pad: {}", "a".repeat(80 * 1024));
        let b = backend(move |_| answer(&endless)).await;
        let err = H1Pool::default()
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[tokio::test]
    async fn a_body_cut_short_by_the_backend_ends_in_an_error() {
        let b = backend(|_| Answer {
            close: true,
            ..answer("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        })
        .await;
        let resp = H1Pool::default()
            .send_req("t/svc:80", b.addr, get(b.addr))
            .await
            .expect("head arrived");
        assert!(resp.into_body().collect().await.is_err());
    }

    #[tokio::test]
    async fn request_bodies_are_framed_from_the_body_not_from_headers() {
        let b = backend(|_| answer(OK)).await;
        let pool = H1Pool::default();
        // A header filter set a length and a coding; the body is 3 bytes.
        let mut req = request(Method::POST, b.addr, body::full(Bytes::from_static(b"abc")));
        req.0
            .headers
            .insert("content-length", http::HeaderValue::from_static("100"));
        req.0.headers.insert(
            "transfer-encoding",
            http::HeaderValue::from_static("chunked"),
        );
        let resp = pool.send_req("t/svc:80", b.addr, req).await.expect("200");
        assert_eq!(body(resp).await, b"ok");
        let raw = seen(&b, 0);
        assert!(raw.ends_with("\r\ncontent-length: 3\r\n\r\nabc"), "{raw}");
        assert!(!raw.contains("transfer-encoding"), "{raw}");
        assert!(!raw.contains("100"), "{raw}");

        // A body of unknown length goes chunked, with its trailers.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let streamed = body::boxed(StreamBody::new(tokio_stream_from(rx)));
        let sending = tokio::spawn({
            let pool = pool.clone();
            let addr = b.addr;
            async move {
                pool.send_req("t/svc:80", addr, request(Method::PUT, addr, streamed))
                    .await
            }
        });
        tx.send(Ok(Frame::data(Bytes::from_static(b"hello "))))
            .await
            .expect("open");
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"world"))))
            .await
            .expect("open");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("11"));
        tx.send(Ok(Frame::trailers(trailers))).await.expect("open");
        drop(tx);
        let resp = sending.await.expect("task").expect("200");
        assert_eq!(body(resp).await, b"ok");
        let raw = seen(&b, 1);
        assert!(raw.starts_with("PUT / HTTP/1.1\r\n"), "{raw}");
        assert!(
            raw.ends_with("transfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-sum: 11\r\n\r\n"),
            "{raw}"
        );
        assert_eq!(
            b.accepted.load(Ordering::SeqCst),
            1,
            "both on one connection"
        );
    }

    /// A channel receiver as a stream of frames.
    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// A body whose length hint promises more than it has.
    struct Short;

    impl Body for Short {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(None)
        }
        fn is_end_stream(&self) -> bool {
            false
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(10)
        }
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_length_fails_the_request() {
        let b = backend(|_| answer(OK)).await;
        let req = request(Method::POST, b.addr, body::boxed(Short));
        let err = H1Pool::default()
            .send_req("t/svc:80", b.addr, req)
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::RequestBody(_)), "{err}");
    }

    /// `100 Continue` while the body is still going up is not the answer:
    /// the upload goes on and the final answer is relayed.
    #[tokio::test]
    async fn an_interim_answer_does_not_stop_the_upload() {
        let b = backend(|_| Answer {
            interim: Some("HTTP/1.1 100 Continue\r\n\r\n"),
            ..answer(OK)
        })
        .await;
        // Four MiB in 64 KiB frames: more than the socket buffers hold, so
        // the upload waits on the backend after its 100.
        let frames = futures_util::stream::iter(
            (0..64).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))),
        );
        let req = request(Method::POST, b.addr, body::boxed(StreamBody::new(frames)));
        let pool = H1Pool::default();
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            pool.send_req("t/svc:80", b.addr, req),
        )
        .await
        .expect("answered")
        .expect("200");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, b"ok");
        assert!(
            seen(&b, 0).len() > 4 * 1024 * 1024,
            "the whole body went up"
        );
        assert_eq!(pool.held(b.addr), 1, "and the connection is reusable");
    }

    #[tokio::test]
    async fn an_answer_before_the_upload_ends_is_relayed_and_the_upload_stopped() {
        let b = backend(|_| Answer {
            close: true,
            skip_body: true,
            ..answer(
                "HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
        })
        .await;
        // An endless upload: more than the socket buffers hold.
        let endless = futures_util::stream::repeat_with(|| {
            Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
        });
        let req = request(Method::POST, b.addr, body::boxed(StreamBody::new(endless)));
        let pool = H1Pool::default();
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            pool.send_req("t/svc:80", b.addr, req),
        )
        .await
        .expect("the answer arrives while the upload is blocked")
        .expect("413");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(pool.held(b.addr), 0);
    }
}
