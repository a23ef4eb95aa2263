//! HTTP/2 connections to backends, cleartext (h2c, prior knowledge) or TLS
//! (BackendTLSPolicy): one multiplexed connection per endpoint and client
//! configuration ([`PoolKey`]), cached in a copy-on-write map, so the
//! request path takes no lock; only a new connection replaces the map.
//!
//! hyper-util's pooled client is not used because it derives both the
//! connection target and `:authority` from the URI, while a gateway must
//! connect to the endpoint yet send the client's host as `:authority`.

use super::connect;
use super::errors::Error;
use super::upstream::classify;
use super::upstream_h1::{PoolKey, Tls};
use super::ProxyBody;
use crate::hashing::FastMap;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::either::Either;

/// A multiplexed connection, with the client configuration that keeps its
/// key unique (none for h2c).
#[derive(Clone)]
struct Entry {
    sender: http2::SendRequest<ProxyBody>,
    _config: Option<Arc<rustls::ClientConfig>>,
}

/// Every HTTP/2 connection to every backend endpoint.
#[derive(Default)]
pub struct H2Cache {
    conns: ArcSwap<FastMap<PoolKey, Entry>>,
}

impl H2Cache {
    /// Sends `req` (the authority in its URI) to endpoint `addr` of upstream
    /// `name`, over TLS through `tls` when there is one.
    pub async fn send(
        &self,
        name: &str,
        addr: SocketAddr,
        tls: Option<Tls<'_>>,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, Error> {
        let key = PoolKey::new(addr, tls);
        let cached = self
            .conns
            .load()
            .get(&key)
            .map(|e| &e.sender)
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match cached {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.connect(name, addr, tls).await?,
            },
            None => self.connect(name, addr, tls).await?,
        };
        sender
            .send_request(req)
            .await
            .map_err(|e| classify(&e).into_error(name, addr, e.into()))
    }

    /// A new connection to `addr`, cached in place of any other for its key.
    async fn connect(
        &self,
        name: &str,
        addr: SocketAddr,
        tls: Option<Tls<'_>>,
    ) -> Result<http2::SendRequest<ProxyBody>, Error> {
        let tcp = connect::tcp_for(name, addr).await?;
        let stream = match tls {
            Some((policy, config)) => {
                Either::Right(connect::tls_for(name, addr, tcp, policy, config.clone()).await?)
            }
            None => Either::Left(tcp),
        };
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect::failed(name, addr, e.into()))?;
        let upstream = name.to_string();
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%upstream, %addr, tls = is_tls, %error, "HTTP/2 upstream connection ended");
            }
        });
        let key = PoolKey::new(addr, tls);
        let config = tls.map(|(_, config)| config.clone());
        self.conns.rcu(|map| {
            let mut map = FastMap::clone(map);
            map.retain(|_, e| !e.sender.is_closed());
            map.insert(
                key,
                Entry {
                    sender: sender.clone(),
                    _config: config.clone(),
                },
            );
            map
        });
        Ok(sender)
    }
}
