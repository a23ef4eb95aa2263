//! Connections to backends over TLS (BackendTLSPolicy): TCP connect, a
//! tokio-rustls handshake with the policy's client configuration and SNI, then
//! HTTP/1.1 (pooled, one request at a time per connection) or HTTP/2 (one
//! multiplexed connection per endpoint and configuration) as ALPN decided.
//!
//! Connections are keyed by endpoint and client configuration, so two
//! policies (or two Gateways presenting different client certificates) never
//! share a connection. The idle HTTP/1.1 list sits behind a mutex that only
//! this module takes, for a push or pop; reloads never hold it.

use super::errors::Error;
use super::upstream::classify;
use super::ProxyBody;
use crate::dataplane::UpstreamTls;
use crate::hashing::FastMap;
use crate::model::ObjectKey;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per endpoint and configuration.
const MAX_IDLE_PER_KEY: usize = 32;

/// One endpoint under one client configuration (by identity: the pooled
/// entries hold the configuration, so its address is not reused while they
/// live).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    config: usize,
}

impl PoolKey {
    fn new(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Self {
        Self {
            addr,
            config: Arc::as_ptr(config) as usize,
        }
    }
}

/// A multiplexed HTTP/2 connection, with the configuration that keeps its
/// key unique.
type H2Entry = (Arc<rustls::ClientConfig>, http2::SendRequest<ProxyBody>);

/// An idle HTTP/1.1 connection.
struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
    /// Keeps the key's configuration alive.
    _config: Arc<rustls::ClientConfig>,
}

/// Every TLS connection to every backend.
#[derive(Default)]
pub struct TlsPool {
    idle: Arc<Mutex<FastMap<PoolKey, Vec<Idle>>>>,
    h2: ArcSwap<FastMap<PoolKey, H2Entry>>,
}

impl TlsPool {
    /// Sends `req` to endpoint `addr` of upstream `name` over TLS. The
    /// request must be origin-form with Host for HTTP/1.1, or carry the
    /// authority in its URI for HTTP/2.
    pub async fn send(
        &self,
        name: &str,
        tls: &UpstreamTls,
        gateway: Option<&ObjectKey>,
        addr: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, Error> {
        let config = tls.config_for(gateway).clone();
        let key = PoolKey::new(addr, &config);
        let wants_h2 = req.version() == http::Version::HTTP_2;
        if wants_h2 {
            return self.send_h2(name, tls, config, req, addr).await;
        }
        let mut sender = match self.checkout(&key) {
            Some(s) => s,
            None => {
                let stream = connect(name, tls, addr, config.clone()).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| connect_error(name, addr, e.into()))?;
                let upstream = name.to_string();
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(%upstream, %addr, %error, "TLS upstream connection ended");
                    }
                });
                sender
            }
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| classify(&e).into_error(name, addr, e.into()))?;
        // Back to the pool once the response body is read and the
        // connection can take the next request.
        let idle = self.idle.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let mut map = idle.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, v| {
                    v.retain(|i| i.since.elapsed() < IDLE_TIMEOUT && !i.sender.is_closed());
                    !v.is_empty()
                });
                let list = map.entry(key).or_default();
                if list.len() < MAX_IDLE_PER_KEY {
                    list.push(Idle {
                        sender,
                        since: Instant::now(),
                        _config: config,
                    });
                }
            }
        });
        Ok(resp)
    }

    /// A ready idle connection for `key`, if one is pooled.
    fn checkout(&self, key: &PoolKey) -> Option<http1::SendRequest<ProxyBody>> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(key)?;
        while let Some(idle) = list.pop() {
            if idle.since.elapsed() < IDLE_TIMEOUT && idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
        None
    }

    async fn send_h2(
        &self,
        name: &str,
        tls: &UpstreamTls,
        config: Arc<rustls::ClientConfig>,
        req: Request<ProxyBody>,
        addr: SocketAddr,
    ) -> Result<Response<Incoming>, Error> {
        let key = PoolKey::new(addr, &config);
        let cached = self
            .h2
            .load()
            .get(&key)
            .map(|(_, s)| s)
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match cached {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.connect_h2(name, tls, config, addr).await?,
            },
            None => self.connect_h2(name, tls, config, addr).await?,
        };
        sender
            .send_request(req)
            .await
            .map_err(|e| classify(&e).into_error(name, addr, e.into()))
    }

    async fn connect_h2(
        &self,
        name: &str,
        tls: &UpstreamTls,
        config: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
    ) -> Result<http2::SendRequest<ProxyBody>, Error> {
        let key = PoolKey::new(addr, &config);
        let stream = connect(name, tls, addr, config.clone()).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_error(name, addr, e.into()))?;
        let upstream = name.to_string();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%upstream, %addr, %error, "TLS h2 upstream connection ended");
            }
        });
        let fresh = sender.clone();
        self.h2.rcu(|map| {
            let mut map = FastMap::clone(map);
            map.retain(|_, (_, s)| !s.is_closed());
            map.insert(key, (config.clone(), fresh.clone()));
            map
        });
        Ok(sender)
    }
}

fn connect_error(name: &str, addr: SocketAddr, source: super::BoxError) -> Error {
    Error::Connect {
        upstream: name.to_string(),
        addr,
        source,
    }
}

/// A TLS connection to `addr` with SNI from `tls` and `config`.
async fn connect(
    name: &str,
    tls: &UpstreamTls,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, Error> {
    let tcp = super::connect::tcp_for(name, addr).await?;
    super::connect::tls_for(name, addr, tcp, tls, config).await
}
