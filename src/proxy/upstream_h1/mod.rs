//! Pooled HTTP/1.1 keep-alive connections to backends, cleartext or TLS
//! (BackendTLSPolicy), driven by the request's own task.
//!
//! The task serving the client writes the request and reads the response
//! itself: no connection task, no channel hand-off and no wake-up of another
//! task per request, which is what hyper's client spends on each. A
//! response whose body arrived with its head puts the connection back in
//! the pool at once and answers with the bytes in hand; a longer body is read
//! from the connection as the client takes it ([`body::H1Body`]), and the
//! connection goes back when the body ends. The bytes on the wire are
//! [`super::h1_wire`]'s; the pool is generic over the stream ([`Conn`]: a
//! `TcpStream`, or a tokio-rustls client stream over one).
//!
//! A connection is reused only when the response allows it, its end was
//! unambiguous and nothing followed it. A pooled connection the backend has
//! closed or written to since is passed over at checkout ([`Conn`] says how
//! each stream is asked), always asking the socket for a request with a body
//! or a non-idempotent method. A pooled connection keeps its read buffer,
//! which the next response reuses once the last one's bytes are dropped (no
//! allocation per request). If a pooled connection still turns out closed,
//! cleanly and before any byte of an answer, a request that is safe to send
//! again (no body, idempotent method) goes out once more on a new
//! connection, as Go's client does; a reset is a failure of the attempt
//! (retry policies count it).
//!
//! Idle connections are listed per endpoint and client configuration
//! ([`PoolKey`]), each list behind its own mutex taken only to push or pop;
//! the lists are found through a copy-on-write map that only a first use
//! (or the sweep of expired connections) replaces, so requests to
//! different endpoints share no lock.

mod body;
mod conn;
mod exchange;

pub use conn::{Conn, Tls};

use super::errors::Error;
use super::h1_wire::{self, BodyFraming, ChunkedDecoder, ResponseHead};
use super::upstream::OutboundHead;
use super::{body as proxy_body, ProxyBody};
use crate::hashing::FastMap;
use arc_swap::ArcSwap;
use body::{Delimit, H1Body};
use bytes::{Bytes, BytesMut};
use exchange::{prepare, read_head, send_with_body, Failed, Outgoing, Prepared};
use http::Response;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// How long a pooled connection may sit unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per endpoint and client configuration.
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

/// One endpoint under one client configuration (by identity; 0 for
/// cleartext). The list holds the configuration ([`Endpoint`]), so its
/// address is not reused while the key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    addr: SocketAddr,
    config: usize,
}

impl PoolKey {
    /// The key of connections to `addr` through `tls`.
    pub fn new(addr: SocketAddr, tls: Option<Tls<'_>>) -> Self {
        PoolKey {
            addr,
            config: tls.map_or(0, |(_, config)| Arc::as_ptr(config) as usize),
        }
    }
}

/// A connection waiting for its next request, with its read buffer.
struct Idle<S> {
    stream: S,
    buf: BytesMut,
    since: Instant,
}

/// The idle connections to one [`PoolKey`].
struct Endpoint<S> {
    idle: Mutex<Vec<Idle<S>>>,
    /// Keeps the key's client configuration (and so its identity) alive.
    _config: Option<Arc<rustls::ClientConfig>>,
}

impl<S> Endpoint<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle<S>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every clone of a pool shares.
struct Shared<S> {
    endpoints: ArcSwap<FastMap<PoolKey, Arc<Endpoint<S>>>>,
    /// Time base of `next_sweep`.
    epoch: Instant,
    /// When expired connections of every endpoint are dropped next, in
    /// milliseconds since `epoch`.
    next_sweep: AtomicU64,
}

/// Every idle HTTP/1.1 connection of one stream type to every backend
/// endpoint. Cloning shares the pool (a streamed response body holds a
/// clone to give its connection back).
pub struct H1Pool<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for H1Pool<S> {
    fn clone(&self) -> Self {
        H1Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<S> Default for H1Pool<S> {
    fn default() -> Self {
        H1Pool {
            shared: Arc::new(Shared {
                endpoints: ArcSwap::from_pointee(FastMap::default()),
                epoch: Instant::now(),
                next_sweep: AtomicU64::new(IDLE_TIMEOUT.as_millis() as u64),
            }),
        }
    }
}

impl<S: Conn> H1Pool<S> {
    /// Sends the request `head` with `body` to endpoint `addr` of upstream
    /// `name` on a pooled connection, or a new one reached through `tls`
    /// (nothing for cleartext). The head is encoded straight from the
    /// filters' result (no `http::Request` in between); without a host of
    /// its own the endpoint address is sent as `Host`.
    pub async fn send(
        &self,
        name: &str,
        addr: SocketAddr,
        tls: Option<Tls<'_>>,
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
        let endpoint = self.endpoint(addr, tls);
        let out = Outgoing {
            name,
            addr,
            method,
            head: &bytes,
            framing,
        };
        if let Some((stream, buf)) = checkout(&endpoint, !replayable) {
            match self
                .exchange(&out, &endpoint, stream, buf, body.take())
                .await
            {
                Ok(resp) => return Ok(resp),
                // The backend had closed the pooled connection.
                Err(failed) if failed.closed_unanswered && replayable => {}
                Err(failed) => return Err(failed.error),
            }
        }
        // The rare path, boxed (and bound to a local, so no temporary keeps
        // its size) to keep every request's future small.
        let fresh = Box::pin(self.send_on_new_connection(&out, &endpoint, tls, body));
        fresh.await
    }

    /// Sends the request on a new connection to `out.addr`.
    async fn send_on_new_connection(
        &self,
        out: &Outgoing<'_>,
        endpoint: &Arc<Endpoint<S>>,
        tls: Option<Tls<'_>>,
        body: Option<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Error> {
        let stream = S::connect(out.name, out.addr, tls).await?;
        self.exchange(out, endpoint, stream, BytesMut::new(), body)
            .await
            .map_err(|f| f.error)
    }

    /// One request and the head of its response on `stream`, read into
    /// `buf` (empty; the connection's own when pooled); the body comes with
    /// the response, in hand or streamed from the connection.
    async fn exchange(
        &self,
        out: &Outgoing<'_>,
        endpoint: &Arc<Endpoint<S>>,
        mut stream: S,
        mut buf: BytesMut,
        body: Option<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Failed> {
        let answered_early = match body {
            None => {
                stream
                    .write_all(out.head)
                    .await
                    .map_err(|e| out.reset(e, false))?;
                // Nothing for a socket; a TLS stream may hold the record.
                stream.flush().await.map_err(|e| out.reset(e, false))?;
                false
            }
            Some(body) => {
                // Boxed: most requests have no body, and every request's
                // future would otherwise reserve this one's size.
                let send = Box::pin(send_with_body(out, &mut stream, body, &mut buf));
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
                self.release(endpoint, stream, buf, reusable);
                proxy_body::full(bytes)
            }
            None => {
                let delimit = match framing.body {
                    BodyFraming::Length(n) => Delimit::Length(n),
                    BodyFraming::Chunked => Delimit::Chunked(ChunkedDecoder::default()),
                    _ => Delimit::UntilClose,
                };
                proxy_body::boxed(H1Body {
                    conn: Some((stream, buf)),
                    delimit,
                    reusable,
                    pool: self.clone(),
                    endpoint: endpoint.clone(),
                })
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        *resp.headers_mut() = headers;
        Ok(resp)
    }

    /// The idle list of `addr` under `tls`, made at its first use.
    fn endpoint(&self, addr: SocketAddr, tls: Option<Tls<'_>>) -> Arc<Endpoint<S>> {
        let key = PoolKey::new(addr, tls);
        if let Some(endpoint) = self.shared.endpoints.load().get(&key) {
            return endpoint.clone();
        }
        let made = Arc::new(Endpoint {
            idle: Mutex::new(Vec::new()),
            _config: tls.map(|(_, config)| config.clone()),
        });
        let mut found = None;
        self.shared.endpoints.rcu(|map| {
            if let Some(endpoint) = map.get(&key) {
                found = Some(endpoint.clone());
                return Arc::clone(map);
            }
            found = None;
            let mut map = FastMap::clone(map);
            map.insert(key, made.clone());
            Arc::new(map)
        });
        found.unwrap_or(made)
    }

    /// Puts `stream` back in `endpoint`'s list when the response allowed
    /// it and nothing followed the response (`rest` is what was read after
    /// it, and the buffer the next response is read into).
    fn release(&self, endpoint: &Endpoint<S>, stream: S, rest: BytesMut, reusable: bool) {
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
        let mut list = endpoint.lock();
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
        drop(list);
        // Closed after the lock is released.
        drop(refused);
        self.sweep_if_due(now);
    }

    /// Drops the expired connections of every endpoint, and the lists left
    /// empty, at most once per [`IDLE_TIMEOUT`]: endpoints that are no
    /// longer used would otherwise keep theirs.
    fn sweep_if_due(&self, now: Instant) {
        let shared = &*self.shared;
        let now_ms = now.duration_since(shared.epoch).as_millis() as u64;
        let due = shared.next_sweep.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms + IDLE_TIMEOUT.as_millis() as u64;
        if shared
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another task sweeps.
            return;
        }
        let mut emptied = Vec::new();
        for (key, endpoint) in shared.endpoints.load().iter() {
            let expired: Vec<Idle<S>> = {
                let mut list = endpoint.lock();
                let (keep, old) = std::mem::take(&mut *list)
                    .into_iter()
                    .partition(|i| now.duration_since(i.since) < IDLE_TIMEOUT);
                *list = keep;
                if list.is_empty() {
                    emptied.push(*key);
                }
                old
            };
            drop(expired);
        }
        if emptied.is_empty() {
            return;
        }
        // A connection pushed to a list after it was found empty goes with
        // the list: one connection closed, not a leak.
        shared.endpoints.rcu(|map| {
            let mut map = FastMap::clone(map);
            for key in &emptied {
                if map.get(key).is_some_and(|e| e.lock().is_empty()) {
                    map.remove(key);
                }
            }
            map
        });
    }

    /// The idle list of `addr` (tests).
    #[cfg(test)]
    fn list(&self, addr: SocketAddr) -> Option<Arc<Endpoint<S>>> {
        let map = self.shared.endpoints.load();
        map.iter()
            .find(|(key, _)| key.addr == addr)
            .map(|(_, endpoint)| endpoint.clone())
    }

    /// Room left in the read buffer of the newest idle connection to
    /// `addr` (tests).
    #[cfg(test)]
    fn idle_buffer_room(&self, addr: SocketAddr) -> usize {
        let endpoint = self.list(addr);
        let list = endpoint.as_ref().map(|e| e.lock());
        let newest = list.as_ref().and_then(|list| list.last());
        newest.map_or(0, |idle| idle.buf.capacity())
    }

    /// Idle connections held for `addr` (tests).
    #[cfg(test)]
    fn held(&self, addr: SocketAddr) -> usize {
        self.list(addr).map_or(0, |e| e.lock().len())
    }
}

/// A connection from `endpoint`'s list for a request; expired ones, and
/// ones the backend has closed or written to, are dropped on the way. With
/// `verify` (a request that cannot be sent twice) the socket itself is
/// asked about each candidate; without it, what is cheap ([`Conn`]).
fn checkout<S: Conn>(endpoint: &Endpoint<S>, verify: bool) -> Option<(S, BytesMut)> {
    let now = Instant::now();
    loop {
        // Taken under the lock, closed (dropped) outside it.
        let newest = {
            let mut list = endpoint.lock();
            match list.last() {
                None => return None,
                // The newest has expired, so has every older one.
                Some(newest) if now.duration_since(newest.since) >= IDLE_TIMEOUT => {
                    Err(std::mem::take(&mut *list))
                }
                Some(_) => list.pop().ok_or_else(Vec::new),
            }
        };
        match newest {
            Ok(mut idle) => {
                let usable = if verify {
                    idle.stream.is_quiet(&mut idle.buf)
                } else {
                    idle.stream.seems_quiet(&mut idle.buf)
                };
                if usable {
                    return Some((idle.stream, idle.buf));
                }
            }
            Err(_expired) => return None,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
