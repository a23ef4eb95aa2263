//! TLS passthrough: a connection whose SNI selected a `TLS` listener in
//! `Passthrough` mode is forwarded unterminated to a backend of the TLSRoute
//! matching its SNI. The ClientHello bytes already read are written to the
//! backend first, then bytes are copied both ways until both sides close or
//! the connection idles out.
//!
//! Entry and backend choice ([`choose`]) is pure; [`forward`] does the I/O.

use crate::dataplane::{BackendTarget, StreamTable};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest a backend may take to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with no byte in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a passthrough connection was not forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No TLSRoute hostname matches the SNI.
    #[error("no TLSRoute matches the SNI")]
    NoRoute,
    /// The chosen backend is invalid or has no ready endpoint.
    #[error("no usable backend endpoint")]
    NoEndpoint,
}

/// The endpoint a connection with `sni` (normalised) goes to: the most
/// specific matching entry, a backend by weight (`weight_sample`), an
/// endpoint of it (`endpoint_sample`).
pub fn choose(
    table: &StreamTable,
    sni: Option<&str>,
    weight_sample: u32,
    endpoint_sample: usize,
) -> Result<(SocketAddr, String), Refusal> {
    let entry = table.select(sni).ok_or(Refusal::NoRoute)?;
    let backend = crate::dataplane::filter::pick_weighted(&entry.backends, weight_sample)
        .ok_or(Refusal::NoEndpoint)?;
    match &backend.target {
        BackendTarget::Service(u) if !u.endpoints.is_empty() => Ok((
            u.endpoints[endpoint_sample % u.endpoints.len()],
            u.name.clone(),
        )),
        _ => Err(Refusal::NoEndpoint),
    }
}

/// Forwards `client` (whose `hello` bytes were already read) through the
/// passthrough `table`. Closes the client when no route or endpoint fits, or
/// the backend cannot be reached.
pub async fn forward<S>(mut client: S, hello: Vec<u8>, table: &StreamTable, sni: Option<&str>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = sni.and_then(crate::hostname::normalize_host);
    let choice = choose(
        table,
        host.as_deref(),
        rand::random::<u32>(),
        rand::random::<u32>() as usize,
    );
    let (addr, upstream) = match choice {
        Ok(c) => c,
        Err(refusal) => {
            tracing::debug!(sni = sni.unwrap_or("-"), %refusal, "passthrough refused");
            if refusal == Refusal::NoRoute {
                super::hello::refuse(&mut client).await;
            }
            return;
        }
    };
    let backend = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            tracing::warn!(%upstream, %addr, %error, "passthrough backend connect failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%upstream, %addr, "passthrough backend connect timed out");
            return;
        }
    };
    if let Err(error) = backend.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let mut backend = backend;
    if let Err(error) = backend.write_all(&hello).await {
        tracing::warn!(%upstream, %addr, %error, "passthrough backend write failed");
        return;
    }
    tracing::debug!(sni = sni.unwrap_or("-"), %upstream, %addr, "passthrough established");
    let activity = Activity::new();
    let mut client = Idle::new(client, activity.clone());
    let mut backend = Idle::new(backend, activity.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    let result = loop {
        tokio::select! {
            r = copy.as_mut() => break Some(r),
            _ = tokio::time::sleep_until(activity.last() + IDLE_TIMEOUT) => {
                if activity.last() + IDLE_TIMEOUT <= tokio::time::Instant::now() {
                    break None;
                }
            }
        }
    };
    match result {
        Some(Ok((up, down))) => tracing::debug!(%upstream, up, down, "passthrough closed"),
        Some(Err(error)) => tracing::debug!(%upstream, %error, "passthrough ended with an error"),
        None => tracing::debug!(%upstream, "passthrough idle timeout"),
    }
}

/// When a connection last moved a byte, shared by both of its streams.
#[derive(Clone)]
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: Default::default(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        let ms = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start + Duration::from_millis(ms)
    }
}

/// A stream that records in [`Activity`] when it reads or writes a byte.
struct Idle<S> {
    inner: S,
    activity: Activity,
}

impl<S> Idle<S> {
    fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{StreamEntry, Upstream, UpstreamProtocol, WeightedBackend};
    use crate::model::ObjectKey;
    use std::sync::Arc;

    fn entry(host: Option<&str>, port: u16) -> StreamEntry {
        StreamEntry {
            hostname: host.map(str::to_string),
            route: ObjectKey::new("default", "r"),
            order: Default::default(),
            backends: vec![WeightedBackend {
                weight: 1,
                target: BackendTarget::Service(Arc::new(Upstream {
                    name: format!("default/s:{port}"),
                    endpoints: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                    protocol: UpstreamProtocol::Http1,
                })),
                filters: Vec::new(),
            }],
        }
    }

    #[test]
    fn exact_beats_longer_wildcard_beats_shorter() {
        let t = StreamTable::new(vec![
            entry(Some("*.example.test"), 1),
            entry(Some("a.b.example.test"), 2),
            entry(Some("*.b.example.test"), 3),
        ]);
        let port = |sni| choose(&t, Some(sni), 0, 0).map(|(a, _)| a.port());
        assert_eq!(port("a.b.example.test"), Ok(2));
        assert_eq!(port("c.b.example.test"), Ok(3));
        assert_eq!(port("c.example.test"), Ok(1));
        assert_eq!(port("other.test"), Err(Refusal::NoRoute));
    }

    #[test]
    fn no_sni_matches_only_a_route_without_hostname() {
        let t = StreamTable::new(vec![entry(Some("a.test"), 1)]);
        assert_eq!(choose(&t, None, 0, 0), Err(Refusal::NoRoute));
        let t = StreamTable::new(vec![entry(Some("a.test"), 1), entry(None, 2)]);
        assert_eq!(choose(&t, None, 0, 0).map(|(a, _)| a.port()), Ok(2));
        assert_eq!(
            choose(&t, Some("a.test"), 0, 0).map(|(a, _)| a.port()),
            Ok(1)
        );
    }

    #[test]
    fn invalid_or_empty_backends_refuse() {
        let mut e = entry(Some("a.test"), 1);
        e.backends[0].target = BackendTarget::Invalid;
        let t = StreamTable::new(vec![e]);
        assert_eq!(choose(&t, Some("a.test"), 0, 0), Err(Refusal::NoEndpoint));
    }
}
