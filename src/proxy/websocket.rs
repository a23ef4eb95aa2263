//! WebSocket (RFC 6455) over HTTP/1.1: the handshake is forwarded on a fresh,
//! unpooled connection with the upgrade headers kept; once the backend answers
//! `101 Switching Protocols`, both upgraded streams are spliced together with
//! `copy_bidirectional` until either side closes.
//!
//! WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is not supported: such a
//! request is proxied as an ordinary request.

use super::errors::Error;
use super::upstream::{classify, CONNECT_TIMEOUT};
use super::{body, ProxyBody};
use crate::dataplane::Upstream;
use crate::model::ObjectKey;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// A backend byte stream, cleartext or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

/// Sends the handshake `req` (origin-form URI, Host and upgrade headers set)
/// to `addr`, and when the backend switches protocols, splices the client's
/// upgraded connection (`client`) to the backend's in a spawned task.
pub async fn forward(
    target: &Upstream,
    gateway: Option<&ObjectKey>,
    addr: SocketAddr,
    req: Request<ProxyBody>,
    client: OnUpgrade,
) -> Result<Response<ProxyBody>, Error> {
    let upstream = target.name.as_str();
    let connect_error = |source: super::BoxError| Error::Connect {
        upstream: upstream.to_string(),
        addr,
        source,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|e| connect_error(e.into()))?
        .map_err(|e| connect_error(e.into()))?;
    // Nagle only delays small frames; failing to disable it is harmless.
    let _ = stream.set_nodelay(true);
    let stream: Box<dyn Stream> = match &target.tls {
        None => Box::new(stream),
        Some(tls) => {
            let config = tls.config_for(gateway).clone();
            let tls_stream = super::upstream_tls::handshake(stream, tls.server_name.clone(), config)
                .await
                .map_err(|source| {
                    tracing::warn!(%upstream, %addr, policy = %tls.policy, error = %source, "backend TLS handshake failed");
                    Error::BackendTls {
                        upstream: upstream.to_string(),
                        addr,
                        source,
                    }
                })?;
            Box::new(tls_stream)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(stream))
        .await
        .map_err(|e| connect_error(e.into()))?;
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
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(upstream = %name, %addr, %error, "websocket upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
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
