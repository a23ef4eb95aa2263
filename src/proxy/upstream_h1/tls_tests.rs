//! The HTTP/1.1 pool over TLS against a real tokio-rustls backend on
//! loopback: connections are reused, and a pooled connection the backend
//! closed is passed over or the request sent again.

use super::*;
use crate::dataplane::UpstreamTls;
use crate::model::ObjectKey;
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// What the backend does with a connection after its first answer.
#[derive(Clone, Copy)]
enum AfterFirst {
    /// Keeps answering.
    KeepAlive,
    /// Closes it (close_notify, then FIN) while it idles.
    CloseWhenIdle,
    /// Reads the next request and drops the connection without a word.
    DropOnNext,
}

struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    tls: UpstreamTls,
}

async fn backend(after: AfterFirst) -> Backend {
    let (server, client) = crate::tls::provider::test_configs("backend.test");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut answered = 0;
                while read_request(&mut tls).await {
                    match after {
                        AfterFirst::DropOnNext if answered > 0 => return,
                        _ => {}
                    }
                    if tls.write_all(OK).await.is_err() {
                        return;
                    }
                    answered += 1;
                    if let AfterFirst::CloseWhenIdle = after {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    let tls = UpstreamTls {
        policy: ObjectKey::new("default", "policy"),
        server_name: ServerName::try_from("backend.test").expect("name"),
        config: Arc::new(client),
        gateway_configs: Default::default(),
    };
    Backend {
        addr,
        accepted,
        tls,
    }
}

/// Reads one bodiless request head; `false` at the end of the stream.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

async fn get(pool: &H1Pool<TlsStream<TcpStream>>, b: &Backend) -> Result<Vec<u8>, Error> {
    let head = OutboundHead {
        method: http::Method::GET,
        path_and_query: http::uri::PathAndQuery::from_static("/"),
        host: None,
        headers: http::HeaderMap::new(),
    };
    let tls = Some((&b.tls, &b.tls.config));
    let resp = pool
        .send("t/svc:443", b.addr, tls, &head, proxy_body::empty())
        .await?;
    let body = resp.into_body().collect().await.expect("body");
    Ok(body.to_bytes().to_vec())
}

#[tokio::test]
async fn sequential_tls_requests_reuse_one_connection() {
    let b = backend(AfterFirst::KeepAlive).await;
    let pool = H1Pool::default();
    for i in 0..5 {
        let body = get(&pool, &b)
            .await
            .unwrap_or_else(|e| panic!("GET {i}: {e}"));
        assert_eq!(body, b"ok");
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// Two GETs, the backend acting as `after` says on the first one's
/// connection: both are answered, the second on a new connection.
async fn survives_a_closed_connection(after: AfterFirst, idle: Duration) {
    let b = backend(after).await;
    let pool = H1Pool::default();
    assert_eq!(get(&pool, &b).await.expect("first GET"), b"ok");
    tokio::time::sleep(idle).await;
    assert_eq!(get(&pool, &b).await.expect("second GET"), b"ok");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_tls_connection_the_backend_closed_while_idle_is_not_used() {
    survives_a_closed_connection(AfterFirst::CloseWhenIdle, Duration::from_millis(200)).await;
}

/// The pooled connection looks fine; the backend drops it on the request,
/// which goes out again on a new one.
#[tokio::test]
async fn a_tls_connection_closed_as_it_is_reused_is_retried() {
    survives_a_closed_connection(AfterFirst::DropOnNext, Duration::ZERO).await;
}
