//! The HTTP/1.1 upstream pool against real backends on loopback: reuse,
//! framing, stale connections, early answers.

use super::*;
use crate::proxy::h1_wire::Decoded;
use crate::proxy::{body, BoxError};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, StreamBody};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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

impl H1Pool<TcpStream> {
    async fn send_req(
        &self,
        name: &str,
        addr: SocketAddr,
        (head, body): Req,
    ) -> Result<Response<ProxyBody>, Error> {
        self.send(name, addr, None, &head, body).await
    }
}

/// Sends `n` GETs one after the other, each answered `ok`.
async fn gets_answered_ok(pool: &H1Pool<TcpStream>, addr: SocketAddr, n: usize) {
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
    let pool = H1Pool::<TcpStream>::default();
    gets_answered_ok(&pool, b.addr, 20).await;
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.held(b.addr), 1);
    assert!(seen(&b, 0).starts_with(&format!("GET / HTTP/1.1\r\nhost: {}\r\n", b.addr)));
}

#[tokio::test]
async fn a_pooled_connection_reads_its_next_response_into_the_same_buffer() {
    let b = backend(|_| answer(OK)).await;
    let pool = H1Pool::<TcpStream>::default();
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
    let b = backend(|_| in_two("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok", 200, "ok")).await;
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
    let pool = H1Pool::<TcpStream>::default();
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
        let pool = H1Pool::<TcpStream>::default();
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
    let err = H1Pool::<TcpStream>::default()
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
    let resp = H1Pool::<TcpStream>::default()
        .send_req("t/svc:80", b.addr, get(b.addr))
        .await
        .expect("head arrived");
    assert!(resp.into_body().collect().await.is_err());
}

#[tokio::test]
async fn request_bodies_are_framed_from_the_body_not_from_headers() {
    let b = backend(|_| answer(OK)).await;
    let pool = H1Pool::<TcpStream>::default();
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
        raw.ends_with(
            "transfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-sum: 11\r\n\r\n"
        ),
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
    let err = H1Pool::<TcpStream>::default()
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
    let pool = H1Pool::<TcpStream>::default();
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
        ..answer("HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    })
    .await;
    // An endless upload: more than the socket buffers hold.
    let endless = futures_util::stream::repeat_with(|| {
        Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
    });
    let req = request(Method::POST, b.addr, body::boxed(StreamBody::new(endless)));
    let pool = H1Pool::<TcpStream>::default();
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
