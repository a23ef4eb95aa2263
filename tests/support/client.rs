//! A minimal test client: one fresh connection per exchange, over TCP or TLS
//! (SNI, trusted roots, optional client certificate, ALPN), speaking HTTP/1.1,
//! HTTP/2 over TLS or h2c with prior knowledge; plus WebSocket exchanges and
//! raw TLS streams speaking the TCP echo line protocol ([`tls_stream`]).

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Wire protocol of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (over TCP or TLS).
    Http1,
    /// HTTP/2 over TLS (ALPN h2).
    H2,
    /// Cleartext HTTP/2 with prior knowledge.
    H2cPriorKnowledge,
}

/// Client-side TLS settings.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Server name sent in the ClientHello.
    pub sni: String,
    /// PEM certificates to trust (server certificate or its CA). Empty: trust nothing.
    pub trusted_pem: Vec<String>,
    /// Client certificate and key (PEM) to present when asked.
    pub client_cert: Option<(String, String)>,
    /// ALPN protocols to offer (filled from the HTTP protocol when empty).
    pub alpn: Vec<String>,
}

/// One HTTP exchange.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Where to connect.
    pub addr: SocketAddr,
    /// TLS, for https.
    pub tls: Option<TlsOptions>,
    /// Protocol.
    pub protocol: Protocol,
    /// Method.
    pub method: String,
    /// Path and query, sent as is.
    pub path: String,
    /// Host header / :authority.
    pub host: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Whole-exchange timeout.
    pub timeout: Duration,
}

/// The answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
    /// Whether the server asked for a client certificate.
    pub client_cert_requested: bool,
}

impl HttpResponse {
    /// All values of a header joined with `,` (None when absent).
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The TLS handshake ended with EOF or a reset (the server refused us).
    #[error("tls handshake rejected: {0}")]
    TlsRejected(String),
    /// Any other TLS handshake failure (certificate errors, alerts).
    #[error("tls handshake: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
    /// The exchange did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The request could not be built.
    #[error("bad request: {0}")]
    Build(String),
    /// The TCP echo line protocol failed after the handshake.
    #[error("stream: {0}")]
    Stream(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug)]
struct RecordingResolver {
    requested: AtomicBool,
    key: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::client::ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.requested.store(true, Ordering::SeqCst);
        self.key.clone()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn client_config(
    opts: &TlsOptions,
    protocol: Protocol,
) -> Result<(rustls::ClientConfig, Arc<RecordingResolver>), ClientError> {
    super::install_crypto_provider();
    let bad = |e: &dyn std::fmt::Display| ClientError::Build(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    let mut pinned = Vec::new();
    for pem in &opts.trusted_pem {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let c = c.map_err(|e| bad(&e))?;
            pinned.push(c.clone().into_owned());
            roots.add(c).map_err(|e| bad(&e))?;
        }
    }
    let key = match &opts.client_cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad(&e))?;
            let provider = rustls::crypto::ring::default_provider();
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| bad(&e))?;
            Some(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)))
        }
        None => None,
    };
    let resolver = Arc::new(RecordingResolver {
        requested: AtomicBool::new(false),
        key,
    });
    // No trusted certificate: a verifier that rejects every server
    // certificate (webpki refuses an empty root store).
    let inner = if roots.is_empty() {
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| bad(&e))?,
        )
    };
    let mut cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(GoStyleVerifier { inner, pinned }))
        .with_client_cert_resolver(resolver.clone());
    cfg.alpn_protocols = if opts.alpn.is_empty() {
        match protocol {
            Protocol::H2 => vec![b"h2".to_vec()],
            _ => vec![b"http/1.1".to_vec()],
        }
    } else {
        opts.alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
    };
    Ok((cfg, resolver))
}

fn is_rejection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Connects (TCP, then TLS when asked). Returns the stream and, for TLS, a flag
/// telling whether a client certificate was requested.
async fn connect(
    addr: SocketAddr,
    tls: Option<&TlsOptions>,
    protocol: Protocol,
) -> Result<(Box<dyn Io>, Option<Arc<RecordingResolver>>), ClientError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let Some(opts) = tls else {
        return Ok((Box::new(tcp), None));
    };
    let (cfg, resolver) = client_config(opts, protocol)?;
    let stream = handshake(tcp, opts, cfg).await?;
    Ok((Box::new(stream), Some(resolver)))
}

async fn handshake(
    tcp: TcpStream,
    opts: &TlsOptions,
    cfg: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let name =
        ServerName::try_from(opts.sni.clone()).map_err(|e| ClientError::Build(e.to_string()))?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            if is_rejection(&e) {
                ClientError::TlsRejected(e.to_string())
            } else {
                ClientError::Tls(e.to_string())
            }
        })
}

/// What a TCP echo reported over a [`tls_stream`].
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// The first line the server sent.
    pub greeting: String,
    /// The parsed answer to `TEST`.
    pub test: serde_json::Value,
    /// Whether the server asked for a client certificate.
    pub client_cert_requested: bool,
}

/// Opens TCP to `addr`, completes TLS (no ALPN unless `opts.alpn` lists some),
/// reads the TCP echo greeting, sends `TEST` and parses the JSON answer.
pub async fn tls_stream(
    addr: SocketAddr,
    opts: &TlsOptions,
    timeout: Duration,
) -> Result<StreamReport, ClientError> {
    let fut = async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (mut cfg, resolver) = client_config(opts, Protocol::Http1)?;
        if opts.alpn.is_empty() {
            cfg.alpn_protocols.clear();
        }
        let stream = handshake(tcp, opts, cfg).await?;
        let stream_err =
            |what: &str, e: &dyn std::fmt::Display| ClientError::Stream(format!("{what}: {e}"));
        let mut stream = BufReader::new(stream);
        let mut greeting = String::new();
        let n = stream
            .read_line(&mut greeting)
            .await
            .map_err(|e| stream_err("reading the greeting", &e))?;
        if n == 0 {
            return Err(ClientError::Stream(
                "connection closed before the greeting".into(),
            ));
        }
        stream
            .get_mut()
            .write_all(b"TEST\n")
            .await
            .map_err(|e| stream_err("sending TEST", &e))?;
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .await
            .map_err(|e| stream_err("reading the TEST answer", &e))?;
        let test = serde_json::from_str(line.trim())
            .map_err(|e| stream_err(&format!("TEST answer {line:?} is not JSON"), &e))?;
        let _ = stream.get_mut().shutdown().await;
        Ok(StreamReport {
            greeting: greeting.trim_end().to_string(),
            test,
            client_cert_requested: resolver.requested.load(Ordering::SeqCst),
        })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout),
    }
}

/// Sends one request on a fresh connection.
pub async fn send(req: &HttpRequest) -> Result<HttpResponse, ClientError> {
    match tokio::time::timeout(req.timeout, send_inner(req)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout),
    }
}

async fn send_inner(req: &HttpRequest) -> Result<HttpResponse, ClientError> {
    let (io, resolver) = connect(req.addr, req.tls.as_ref(), req.protocol).await?;
    let http_err = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
    let scheme = if req.tls.is_some() { "https" } else { "http" };
    let mut builder = Request::builder().method(req.method.as_str());
    builder = match req.protocol {
        Protocol::Http1 => builder
            .uri(req.path.as_str())
            .header(http::header::HOST, req.host.as_str()),
        Protocol::H2 | Protocol::H2cPriorKnowledge => {
            builder.uri(format!("{scheme}://{}{}", req.host, req.path))
        }
    };
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::Build(e.to_string()))?;
    let io = TokioIo::new(io);
    let response = match req.protocol {
        Protocol::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| http_err(&e))?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| http_err(&e))?
        }
        Protocol::H2 | Protocol::H2cPriorKnowledge => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| http_err(&e))?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| http_err(&e))?
        }
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| http_err(&e))?
        .to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body,
        client_cert_requested: resolver.is_some_and(|r| r.requested.load(Ordering::SeqCst)),
    })
}

/// A WebSocket frame to send or expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    /// Text frame.
    Text(String),
    /// Binary frame.
    Binary(Vec<u8>),
}

/// Opens a WebSocket at `ws(s)://host/path` over a fresh connection, sends each
/// frame and collects one reply per frame. Returns the handshake status code and
/// the replies.
pub async fn websocket(
    addr: SocketAddr,
    tls: Option<&TlsOptions>,
    host: &str,
    path: &str,
    headers: &[(String, String)],
    frames: &[WsFrame],
    timeout: Duration,
) -> Result<(u16, Vec<WsFrame>), ClientError> {
    let fut = async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let (io, _) = connect(addr, tls, Protocol::Http1).await?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let mut request = format!("{scheme}://{host}{path}")
            .into_client_request()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        for (k, v) in headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                request.headers_mut().insert(name, value);
            }
        }
        let (mut ws, resp) = tokio_tungstenite::client_async(request, io)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let mut replies = Vec::new();
        for f in frames {
            let msg = match f {
                WsFrame::Text(t) => Message::Text(t.clone().into()),
                WsFrame::Binary(b) => Message::Binary(b.clone().into()),
            };
            ws.send(msg)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        replies.push(WsFrame::Text(t.to_string()));
                        break;
                    }
                    Some(Ok(Message::Binary(b))) => {
                        replies.push(WsFrame::Binary(b.to_vec()));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(ClientError::Http(e.to_string())),
                    None => return Err(ClientError::Http("websocket closed".into())),
                }
            }
        }
        let _ = ws.close(None).await;
        Ok((resp.status().as_u16(), replies))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout),
    }
}

/// WebPKI chain verification with Go's rules where they differ: Go's
/// crypto/x509 (which the upstream suite uses) accepts a wildcard over a single
/// remaining label (`*.org` for `example.org`), rustls-webpki does not; and Go
/// trusts a server certificate that is itself in the root pool even when it is
/// a CA-signed leaf (webpki only chains to it when it is self-signed).
/// `inner` None: nothing is trusted, every certificate is rejected.
#[derive(Debug)]
struct GoStyleVerifier {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// Every trusted certificate, DER.
    pinned: Vec<CertificateDer<'static>>,
}

/// Whether `host` matches DNS name `pattern` the way Go does (one leading `*`
/// label standing for exactly one label).
pub fn go_host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

fn dns_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return vec![];
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

impl rustls::client::danger::ServerCertVerifier for GoStyleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        let Some(inner) = &self.inner else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return match server_name {
                ServerName::DnsName(d)
                    if dns_sans(end_entity)
                        .iter()
                        .any(|p| go_host_matches(p, d.as_ref())) =>
                {
                    Ok(rustls::client::danger::ServerCertVerified::assertion())
                }
                _ => Err(rustls::Error::InvalidCertificate(NotValidForName)),
            };
        }
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the name last: the chain itself is valid here.
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) if matches!(server_name, ServerName::DnsName(d)
                    if dns_sans(end_entity).iter().any(|p| go_host_matches(p, d.as_ref()))) =>
            {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        signature_algorithms().supported_schemes()
    }
}

fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

#[cfg(test)]
mod tests {
    use super::go_host_matches;

    #[test]
    fn wildcards_match_one_label_like_go() {
        assert!(go_host_matches("*.org", "example.org"));
        assert!(go_host_matches("*.wildcard.org", "a.wildcard.org"));
        assert!(!go_host_matches("*.org", "a.b.org"));
        assert!(!go_host_matches("*.org", "org"));
        assert!(go_host_matches("Example.ORG", "example.org"));
    }
}
