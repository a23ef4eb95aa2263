//! Pooled HTTP/1.1 keep-alive connections to cleartext backends.
//!
//! A connection goes back on its endpoint's idle list as soon as the response
//! head has arrived; while its body is still being read, hyper reports it not
//! ready and checkout passes over it. So no task is spawned per request to
//! wait for the body, and a checkout is one short critical section on a
//! mutex that only this module takes (never a reload). A pooled connection
//! the backend has closed meanwhile hands the unsent request back
//! (`try_send_request`), which then goes out on a fresh connection.

use super::errors::Error;
use super::upstream::{classify, FailureKind, CONNECT_TIMEOUT};
use super::ProxyBody;
use crate::hashing::FastMap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a pooled connection may sit unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Connections kept per endpoint (idle or finishing a response body).
const MAX_PER_ENDPOINT: usize = 256;

/// A pooled connection and when it last carried a request.
struct Pooled {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

/// Every cleartext HTTP/1.1 connection to every backend endpoint.
#[derive(Default)]
pub struct H1Pool {
    conns: Mutex<FastMap<SocketAddr, Vec<Pooled>>>,
}

impl H1Pool {
    /// Sends `req` (origin-form, Host set) to endpoint `addr` of upstream
    /// `name` on a pooled connection, or a new one.
    pub async fn send(
        &self,
        name: &str,
        addr: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, Error> {
        let mut req = req;
        if let Some(mut sender) = self.checkout(addr) {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(addr, sender);
                    return Ok(resp);
                }
                Err(mut failed) => match failed.take_message() {
                    // Never written: the backend closed the idle connection.
                    Some(unsent) => req = unsent,
                    None => {
                        let e = failed.into_error();
                        return Err(classify(&e).into_error(name, addr, e.into()));
                    }
                },
            }
        }
        // The rare path, boxed (and bound to a local, so no temporary keeps
        // its size) to keep every request's future small.
        let fresh = Box::pin(self.send_on_new_connection(name, addr, req));
        fresh.await
    }

    /// Sends `req` on a new connection to `addr`, which then joins the pool.
    async fn send_on_new_connection(
        &self,
        name: &str,
        addr: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, Error> {
        let mut sender = connect(name, addr).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| classify(&e).into_error(name, addr, e.into()))?;
        self.checkin(addr, sender);
        Ok(resp)
    }

    /// A connection to `addr` ready for a request; closed and expired ones
    /// are dropped on the way.
    fn checkout(&self, addr: SocketAddr) -> Option<http1::SendRequest<ProxyBody>> {
        let mut map = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(&addr)?;
        let now = Instant::now();
        list.retain(|p| !p.sender.is_closed() && now.duration_since(p.since) < IDLE_TIMEOUT);
        let ready = list.iter().rposition(|p| p.sender.is_ready())?;
        Some(list.swap_remove(ready).sender)
    }

    /// Returns `sender` to `addr`'s list (its response body may still be in
    /// flight); past the bound it is dropped and closes after that body.
    fn checkin(&self, addr: SocketAddr, sender: http1::SendRequest<ProxyBody>) {
        let mut map = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(addr).or_default();
        if list.len() < MAX_PER_ENDPOINT {
            list.push(Pooled {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Connections held for `addr` (tests).
    #[cfg(test)]
    fn held(&self, addr: SocketAddr) -> usize {
        let map = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&addr).map_or(0, Vec::len)
    }
}

/// A new HTTP/1.1 connection to `addr` (upgrades enabled, for WebSocket).
async fn connect(name: &str, addr: SocketAddr) -> Result<http1::SendRequest<ProxyBody>, Error> {
    let failed = |source: super::BoxError| FailureKind::Connect.into_error(name, addr, source);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|e| failed(e.into()))?
        .map_err(|e| failed(e.into()))?;
    // Nagle only delays small requests; failing to disable it is harmless.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.into()))?;
    let upstream = name.to_string();
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%upstream, %addr, %error, "upstream connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How the test backend answers.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// `ok`, keep-alive.
        KeepAlive,
        /// `ok`, then closes the connection.
        CloseAfterOne,
        /// `okok`, the second half 200 ms after the head.
        SlowBody,
    }

    /// A backend answering every request on a connection as `mode` says;
    /// counts the connections it accepted.
    async fn backend(mode: Mode) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer: &[u8] = if mode == Mode::SlowBody {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok"
                            } else {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            };
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                            if mode == Mode::SlowBody {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                if s.write_all(b"ok").await.is_err() {
                                    return;
                                }
                            }
                            if mode == Mode::CloseAfterOne {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> Request<ProxyBody> {
        let mut req = Request::new(super::super::body::empty());
        *req.uri_mut() = http::Uri::from_static("/");
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(&addr.to_string()).expect("address is a valid host"),
        );
        req
    }

    async fn body(resp: Response<Incoming>) -> Vec<u8> {
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = backend(Mode::KeepAlive).await;
        let pool = H1Pool::default();
        for _ in 0..20 {
            let resp = pool.send("t/svc:80", addr, get(addr)).await.expect("200");
            assert_eq!(body(resp).await, b"ok");
            // Let the connection task see the end of the body.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.held(addr), 1);
    }

    #[tokio::test]
    async fn a_connection_still_reading_a_body_is_not_handed_out() {
        let (addr, accepted) = backend(Mode::SlowBody).await;
        let pool = H1Pool::default();
        let first = pool.send("t/svc:80", addr, get(addr)).await.expect("200");
        // `first`'s body is still arriving: a second request needs a second
        // connection.
        let second = pool.send("t/svc:80", addr, get(addr)).await.expect("200");
        assert_eq!(body(second).await, b"okok");
        assert_eq!(body(first).await, b"okok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_by_the_backend_is_replaced() {
        let (addr, accepted) = backend(Mode::CloseAfterOne).await;
        let pool = H1Pool::default();
        for _ in 0..5 {
            let resp = pool
                .send("t/svc:80", addr, get(addr))
                .await
                .expect("a closed pooled connection never fails the request");
            assert_eq!(body(resp).await, b"ok");
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    /// The new-connection path is boxed where it starts: inline, the pooled
    /// path's future (part of every request's) would be at least its size.
    #[test]
    fn a_new_connection_does_not_grow_every_request() {
        let pool = H1Pool::default();
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let pooled = pool.send("t", addr, get(addr));
        let fresh = pool.send_on_new_connection("t", addr, get(addr));
        assert!(
            std::mem::size_of_val(&pooled) < std::mem::size_of_val(&fresh),
            "send is {} bytes, a new connection {}",
            std::mem::size_of_val(&pooled),
            std::mem::size_of_val(&fresh)
        );
    }
}
