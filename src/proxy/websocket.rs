//! WebSocket (RFC 6455) over HTTP/1.1: the handshake is forwarded on a fresh,
//! unpooled connection with the upgrade headers kept; once the backend answers
//! `101 Switching Protocols`, both upgraded streams are spliced together with
//! `copy_bidirectional` until either side closes.
//!
//! WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is not supported: such a
//! request is proxied as an ordinary request.
//!
//! The client's upgraded stream comes either from hyper (a connection served
//! with upgrades) or, when the server runs its own HTTP/1.1 connection loop
//! (`crate::server::http_conn`), through a [`Handoff`] the server put in the
//! request's extensions and fulfils once the `101` response is written.

use super::errors::Error;
use super::upstream::classify;
use super::{body, ProxyBody};
use crate::dataplane::Upstream;
use crate::model::ObjectKey;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A client byte stream after `101 Switching Protocols` (any bytes the
/// client sent after its handshake are replayed first).
pub type ClientStream = Box<dyn Stream + 'static>;

/// Request extension: the client's stream will be sent here by the
/// connection server after it writes the `101` response. Dropping it (when
/// the backend refuses the upgrade) tells the server the connection goes on
/// as HTTP.
#[derive(Clone)]
pub struct Handoff(Arc<Mutex<Option<oneshot::Receiver<ClientStream>>>>);

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").finish_non_exhaustive()
    }
}

impl Handoff {
    /// A hand-off and the sender the connection server keeps.
    pub fn new() -> (Self, oneshot::Sender<ClientStream>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(rx)))), tx)
    }

    fn take(&self) -> Option<oneshot::Receiver<ClientStream>> {
        // Poisoning would need a panic while holding this lock, which only
        // moves an Option out; treat it as taken.
        self.0.lock().ok()?.take()
    }
}

/// Where the client's upgraded stream will come from.
pub enum ClientUpgrade {
    /// hyper upgrades the connection itself.
    Hyper(OnUpgrade),
    /// The connection server hands the stream over.
    Handoff(oneshot::Receiver<ClientStream>),
}

impl ClientUpgrade {
    /// Takes the upgrade of `req`: the server's hand-off when it put one in
    /// the extensions, otherwise hyper's.
    pub fn take<B>(req: &mut Request<B>) -> Self {
        match req
            .extensions_mut()
            .remove::<Handoff>()
            .and_then(|h| h.take())
        {
            Some(rx) => Self::Handoff(rx),
            None => Self::Hyper(hyper::upgrade::on(req)),
        }
    }

    /// Waits for the upgraded stream.
    async fn stream(self) -> Result<ClientStream, super::BoxError> {
        match self {
            Self::Hyper(on) => Ok(Box::new(TokioIo::new(on.await?))),
            Self::Handoff(rx) => Ok(rx.await?),
        }
    }
}

/// A byte stream: a backend's (cleartext or TLS) or an upgraded client's.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

/// Sends the handshake `req` (origin-form URI, Host and upgrade headers set)
/// to `addr`, and when the backend switches protocols, splices the client's
/// upgraded connection (`client`) to the backend's in a spawned task.
pub async fn forward(
    target: &Upstream,
    gateway: Option<&ObjectKey>,
    addr: SocketAddr,
    req: Request<ProxyBody>,
    client: ClientUpgrade,
) -> Result<Response<ProxyBody>, Error> {
    let upstream = target.name.as_str();
    let stream = super::connect::tcp_for(upstream, addr).await?;
    let stream: Box<dyn Stream> = match &target.tls {
        None => Box::new(stream),
        Some(tls) => {
            let config = tls.config_for(gateway).clone();
            let tls_stream = super::connect::tls_for(upstream, addr, stream, tls, config).await?;
            Box::new(tls_stream)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(stream))
        .await
        .map_err(|e| super::connect::failed(upstream, addr, e.into()))?;
    let name = upstream.to_string();
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(upstream = %name, %addr, %error, "websocket upstream connection ended");
        }
    });
    let mut resp = sender.send_request(req).await.map_err(|e| {
        let kind = classify(&e);
        match kind {
            super::upstream::FailureKind::Protocol => Error::Protocol {
                upstream: upstream.to_string(),
                addr,
                source: e.into(),
            },
            _ => Error::Reset {
                upstream: upstream.to_string(),
                addr,
                source: e.into(),
            },
        }
    })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp.map(body::boxed));
    }
    let backend = hyper::upgrade::on(&mut resp);
    let name = upstream.to_string();
    tokio::spawn(async move {
        let backend = async { Ok::<_, super::BoxError>(backend.await?) };
        let (mut client, backend) = match tokio::try_join!(client.stream(), backend) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(upstream = %name, %addr, %error, "websocket upgrade failed");
                return;
            }
        };
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => {
                tracing::debug!(upstream = %name, %addr, up, down, "websocket closed");
            }
            Err(error) => {
                tracing::debug!(upstream = %name, %addr, %error, "websocket ended with error");
            }
        }
    });
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, body::empty()))
}
