//! Real clients: curl and `openssl s_client` run as processes, and hyper over
//! TCP or tokio-rustls in process. Every call is bounded by [`super::WAIT`].

use super::WAIT;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::process::Command;

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOut {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CmdOut {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs `program args...` with stdin closed; panics if it takes over `WAIT`.
pub async fn run<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> CmdOut {
    run_with_input(program, args, None).await
}

/// Runs `program args...` with `input` written to its stdin, which is then
/// closed (or with stdin closed from the start when `input` is `None`);
/// panics if it takes over `WAIT`.
pub async fn run_with_input<S: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: &[S],
    input: Option<&[u8]>,
) -> CmdOut {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let fut = async {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input).await?;
        }
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    CmdOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Runs curl with `-sS --max-time 15` and `args`.
pub async fn curl<S: AsRef<str>>(args: &[S]) -> CmdOut {
    let mut all: Vec<String> = vec!["-sS".into(), "--max-time".into(), "15".into()];
    all.extend(args.iter().map(|a| a.as_ref().to_string()));
    run("curl", &all).await
}

/// `openssl s_client -connect 127.0.0.1:PORT args...` with stdin closed, so it
/// handshakes, prints what it saw and exits.
pub async fn s_client<S: AsRef<str>>(port: u16, args: &[S]) -> CmdOut {
    let mut all: Vec<String> = vec![
        "s_client".into(),
        "-connect".into(),
        format!("127.0.0.1:{port}"),
    ];
    all.extend(args.iter().map(|a| a.as_ref().to_string()));
    run("openssl", &all).await
}

/// The subject line of the leaf certificate in s_client output
/// (`0 s:CN = ...`), or `None` if no certificate was received.
pub fn served_subject(out: &CmdOut) -> Option<String> {
    out.stdout
        .lines()
        .find(|l| l.trim_start().starts_with("0 s:"))
        .map(|l| l.trim().to_string())
}

/// One plain HTTP/1.1 GET on a fresh connection: `(status, headers, body)`.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, HeaderMap, Bytes), String> {
    let fut = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, body))
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("GET {path} timed out"))?
}

/// A pooled keep-alive HTTP client (hyper-util's legacy client).
pub type PooledClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A keep-alive HTTP/1.1 client.
pub fn pooled_client() -> PooledClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// GET `http://addr/path` with `Host: host` through `client`:
/// `(status, body)`.
pub async fn pooled_get(
    client: &PooledClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let fut = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("GET {path} timed out"))?
}

/// A rustls client config trusting only `ca_pem`, offering `alpn`.
pub fn tls_config(ca_pem: &str, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("test CA PEM parses"))
            .expect("test CA is a valid trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Every connection does a full handshake, so it sees the certificate
    // served now (a resumed session reports the original one).
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// What a TLS request saw.
#[derive(Debug, Clone)]
pub struct TlsResponse {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The served leaf certificate (DER).
    pub leaf: Vec<u8>,
}

/// Connects with SNI `sni`, then sends `GET path` with authority `host` over
/// h2 or HTTP/1.1 (whichever ALPN picked).
pub async fn tls_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
    host: &str,
    path: &str,
) -> Result<TlsResponse, String> {
    let fut = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).to_string());
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let resp = if alpn.as_deref() == Some("h2") {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = hyper::Request::get(format!("https://{host}{path}"))
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            send.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = hyper::Request::get(path)
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            send.send_request(req).await.map_err(|e| e.to_string())?
        };
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(TlsResponse {
            status,
            body,
            alpn,
            leaf,
        })
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("TLS GET {path} timed out"))?
}

/// Parses a backend's JSON answer.
pub fn echo(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "backend answer is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}
