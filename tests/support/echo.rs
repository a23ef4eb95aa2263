//! In-process stand-in for the upstream `echo-basic` conformance backend.
//!
//! One [`EchoPod`] listens on its own loopback IP: port 3000 (HTTP/1.1, with the
//! `/ws` WebSocket echo), port 3001 (cleartext HTTP/2 with prior knowledge) and,
//! when given a serving certificate, port 8443 (HTTPS, h2 or HTTP/1.1 by ALPN,
//! optionally requiring client certificates). Every request is answered with
//! the JSON description the conformance suite expects and recorded in the pod's
//! request log (the mirror checks read it).
//!
//! A pod of kind [`EchoKind::Tcp`] runs the TCP line protocol instead
//! (see [`super::tcp_echo`]).
//!
//! Extras as upstream: `X-Echo-Set-Header`, `?delay=<go duration>`,
//! `/status/NNN`, and `/retry/...?uuid=&succeedAfter=&responseCode=&delayRetry=`
//! (failures without `responseCode` reset the TCP connection).

use super::tcp_echo::{TcpEcho, TcpSession};
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// HTTP/1.1 echo port.
pub const HTTP_PORT: u16 = 3000;
/// h2c (prior knowledge) echo port.
pub const H2C_PORT: u16 = 3001;
/// HTTPS echo port (only with a serving certificate).
pub const HTTPS_PORT: u16 = 8443;

/// TLS settings of the HTTPS port.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Serving certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// When set, client certificates signed by this CA are required.
    pub client_ca_pem: Option<String>,
}

/// Which upstream echo mode a pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchoKind {
    /// The HTTP echo (ports 3000, 3001, 8443).
    #[default]
    Http,
    /// The TCP line-protocol echo (`TCP_ECHO_SERVER=1`: ports 3000, 8443).
    Tcp,
}

/// What one echo pod is.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Echo mode.
    pub kind: EchoKind,
    /// Pod name (`<deployment>-<random>-<i>`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Deployment the pod belongs to.
    pub deployment: String,
    /// Loopback IP the pod listens on.
    pub ip: Ipv4Addr,
    /// HTTPS port settings.
    pub tls: Option<ServerTls>,
}

/// One request as the echo received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Request URI (path and query).
    pub uri: String,
    /// Host / :authority.
    pub host: String,
    /// Headers, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
}

/// `/retry/` failure counters, shared by all pods of an environment (a retry may
/// land on another replica).
#[derive(Debug, Default)]
pub struct RetryCounters(Mutex<HashMap<String, u32>>);

impl RetryCounters {
    fn bump(&self, uuid: &str) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uuid.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

struct PodCtx {
    spec: PodSpec,
    tcp: Arc<TcpEcho>,
    log: Mutex<Vec<RecordedRequest>>,
    retry: Arc<RetryCounters>,
}

/// A running echo pod; its listeners stop when it is dropped.
pub struct EchoPod {
    ctx: Arc<PodCtx>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for EchoPod {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EchoPod {
    /// Binds the pod's ports and starts serving.
    pub async fn start(spec: PodSpec, retry: Arc<RetryCounters>) -> Result<Self> {
        let alpn = spec.kind == EchoKind::Http;
        let tls = match &spec.tls {
            Some(t) => Some(tls_acceptor(t, alpn)?),
            None => None,
        };
        let tcp = Arc::new(TcpEcho::new(&spec.name, &spec.namespace));
        let ctx = Arc::new(PodCtx {
            spec,
            tcp,
            log: Mutex::new(Vec::new()),
            retry,
        });
        if ctx.spec.kind == EchoKind::Tcp {
            let tasks = super::tcp_echo::start(ctx.spec.ip, ctx.tcp.clone(), tls).await?;
            return Ok(Self { ctx, tasks });
        }
        let mut tasks = Vec::new();
        for (port, mode) in [(HTTP_PORT, Mode::Http1), (H2C_PORT, Mode::H2c)] {
            let addr = SocketAddr::from((ctx.spec.ip, port));
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("echo {} bind {addr}", ctx.spec.name))?;
            tasks.push(tokio::spawn(accept_loop(l, ctx.clone(), mode)));
        }
        if let Some(acceptor) = tls {
            let addr = SocketAddr::from((ctx.spec.ip, HTTPS_PORT));
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("echo {} bind {addr}", ctx.spec.name))?;
            tasks.push(tokio::spawn(accept_loop(
                l,
                ctx.clone(),
                Mode::Tls(acceptor),
            )));
        }
        Ok(Self { ctx, tasks })
    }

    /// The pod's spec.
    pub fn spec(&self) -> &PodSpec {
        &self.ctx.spec
    }

    /// A copy of every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ctx
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests (HTTP requests and TCP echo connections) were
    /// received so far.
    pub fn request_count(&self) -> usize {
        self.ctx.log.lock().unwrap_or_else(|e| e.into_inner()).len() + self.tcp_sessions().len()
    }

    /// Connections the TCP echo accepted (empty for HTTP echo pods).
    pub fn tcp_sessions(&self) -> Vec<TcpSession> {
        self.ctx.tcp.sessions()
    }
}

#[derive(Clone)]
enum Mode {
    Http1,
    H2c,
    Tls(tokio_rustls::TlsAcceptor),
}

/// A TLS acceptor for the serving certificate; `alpn` offers h2 and http/1.1
/// (the HTTP echo), without it no ALPN is negotiated (the TCP echo).
fn tls_acceptor(t: &ServerTls, alpn: bool) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    super::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(t.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(t.key_pem.as_bytes())?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &t.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c?)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    if alpn {
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

async fn accept_loop(listener: TcpListener, ctx: Arc<PodCtx>, mode: Mode) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                conns.spawn(serve_conn(stream, ctx.clone(), mode.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A TCP stream that is reset (SO_LINGER 0) instead of closed when its flag is set.
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct ConnInfo {
    port: u16,
    tls: Option<Value>,
    reset: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("connection reset on purpose")]
struct ResetConnection;

async fn serve_conn(stream: TcpStream, ctx: Arc<PodCtx>, mode: Mode) {
    let port = stream.local_addr().map(|a| a.port()).unwrap_or_default();
    let reset = Arc::new(AtomicBool::new(false));
    let stream = ResettableStream {
        inner: stream,
        reset: reset.clone(),
    };
    match mode {
        Mode::Http1 => {
            let info = Arc::new(ConnInfo {
                port,
                tls: None,
                reset,
            });
            let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone(), info.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        }
        Mode::H2c => {
            let info = Arc::new(ConnInfo {
                port,
                tls: None,
                reset,
            });
            let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone(), info.clone()));
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
        Mode::Tls(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let info = Arc::new(ConnInfo {
                port,
                tls: Some(tls_info(tls.get_ref().1)),
                reset,
            });
            let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone(), info.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        }
    }
}

fn tls_info(conn: &rustls::ServerConnection) -> Value {
    use base64::Engine;
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => String::new(),
    };
    let peer: Vec<String> = conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|l| std::str::from_utf8(l).unwrap_or_default())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect();
    json!({
        "version": version,
        "serverName": conn.server_name().unwrap_or_default(),
        "negotiatedProtocol": conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).to_string()).unwrap_or_default(),
        "cipherSuite": conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
        "peerCertificates": peer,
    })
}

/// Go's canonical header form (`x-foo-bar` → `X-Foo-Bar`).
pub fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Parses a Go duration (`1s`, `500ms`, `1.5s`, `1m30s`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Parses `X-Echo-Set-Header: name:value,name2:value2`.
pub fn parse_set_headers(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .to_string()
        })
    })
}

fn response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

async fn handle(
    mut req: Request<Incoming>,
    ctx: Arc<PodCtx>,
    conn: Arc<ConnInfo>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    let method = req.method().as_str().to_string();
    ctx.log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RecordedRequest {
            method: method.clone(),
            uri: uri.clone(),
            host: host.clone(),
            headers: headers.clone(),
        });
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();

    if path == "/ws" && is_websocket_upgrade(&req) {
        return Ok(websocket_upgrade(&mut req));
    }
    // Drain the body so the connection stays usable.
    let _ = req.body_mut().collect().await;

    if let Some(d) = query_param(&query, "delay").and_then(|d| parse_go_duration(&d)) {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(response(status, Bytes::new()));
    }
    if path.starts_with("/retry") {
        let uuid = query_param(&query, "uuid").unwrap_or_default();
        let succeed_after: u32 = query_param(&query, "succeedAfter")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let n = ctx.retry.bump(&uuid);
        if n <= succeed_after {
            if let Some(d) = query_param(&query, "delayRetry").and_then(|d| parse_go_duration(&d)) {
                tokio::time::sleep(d).await;
            }
            match query_param(&query, "responseCode").and_then(|c| c.parse::<u16>().ok()) {
                Some(code) => {
                    let status =
                        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Ok(response(status, Bytes::new()));
                }
                None => {
                    conn.reset.store(true, Ordering::SeqCst);
                    return Err(ResetConnection);
                }
            }
        }
    }

    let mut header_map: Map<String, Value> = Map::new();
    for (k, v) in &headers {
        if k == "host" {
            continue;
        }
        let entry = header_map
            .entry(canonical_header_name(k))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.push(Value::String(v.clone()));
        }
    }
    let proto = match req.version() {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let mut body = json!({
        "path": uri,
        "host": host,
        "method": method,
        "proto": proto,
        "headers": header_map,
        "namespace": ctx.spec.namespace,
        "ingress": "",
        "service": "",
        "pod": ctx.spec.name,
        "httpPort": conn.port.to_string(),
    });
    if let Some(tls) = &conn.tls {
        body["tls"] = tls.clone();
    }
    let mut resp = response(StatusCode::OK, Bytes::from(body.to_string()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let set = headers
        .iter()
        .filter(|(k, _)| k == "x-echo-set-header")
        .flat_map(|(_, v)| parse_set_headers(v))
        .collect::<Vec<_>>();
    for (k, v) in set {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    Ok(resp)
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn websocket_upgrade(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{Message, Role};
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return response(StatusCode::BAD_REQUEST, Bytes::from_static(b"missing key"));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            let echo_back = matches!(msg, Message::Text(_) | Message::Binary(_));
            if matches!(msg, Message::Close(_)) || (echo_back && ws.send(msg).await.is_err()) {
                break;
            }
        }
    });
    let mut resp = response(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = resp.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("abc"), None);
    }

    #[test]
    fn set_header_values_split_on_commas() {
        assert_eq!(
            parse_set_headers("a:1, b: 2"),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn header_names_are_canonicalised_like_go() {
        assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
    }
}
