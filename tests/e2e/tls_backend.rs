//! An HTTPS echo backend: hyper (HTTP/1.1 and h2 by ALPN) over tokio-rustls
//! on `127.0.0.1:0`, optionally requiring client certificates from one CA.
//! Every answer is JSON: `backend`, `path`, `host`, `headers`, `sni` (the
//! server name the gateway sent), `alpn` and `client_cn` (the common name of
//! the client certificate the gateway presented, or null).

use super::certs::Leaf;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What one TLS connection told the backend.
#[derive(Clone)]
struct Seen {
    sni: Option<String>,
    alpn: Option<String>,
    client_cn: Option<String>,
}

/// A running HTTPS echo backend; stops when dropped.
pub struct TlsBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsBackend {
    /// Starts a backend named `name` serving `leaf`; with `client_ca`, a
    /// client certificate signed by it is required.
    pub async fn start(name: &str, leaf: &Leaf, client_ca: Option<&str>) -> TlsBackend {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("leaf PEM parses");
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key parses");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("default versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.expect("CA PEM parses")).expect("CA is a root");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .expect("leaf and key match");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let name = name.to_string();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let conn = tls.get_ref().1;
                    let seen = Seen {
                        sni: conn.server_name().map(str::to_string),
                        alpn: conn
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).to_string()),
                        client_cn: conn
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| super::certs::cn_and_serial(c).0),
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let (name, seen) = (name.clone(), seen.clone());
                        async move { Ok::<_, Infallible>(answer(&name, &seen, req)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsBackend { addr, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(name: &str, seen: &Seen, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).to_string()),
            )
        })
        .collect();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let body = serde_json::json!({
        "backend": name,
        "path": req.uri().path(),
        "host": host,
        "headers": headers,
        "sni": seen.sni,
        "alpn": seen.alpn,
        "client_cn": seen.client_cn,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}
