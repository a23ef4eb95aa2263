//! An echo backend: a hyper server (HTTP/1.1 and h2c) on `127.0.0.1:0` that
//! answers every request with JSON describing what it received.
//!
//! Paths: `/download/N` answers N bytes of [`super::pattern`]; `/slow/MS`
//! waits MS milliseconds first; anything else echoes. The JSON carries
//! `backend`, `method`, `path`, `host`, `version`, `headers`, `tls` (always
//! false: backends are plain), `body_len` and `body_fnv`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A running echo backend; stops when dropped.
pub struct Backend {
    /// Name echoed in every answer.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Starts a backend named `name`.
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral loopback port");
        let addr = listener.local_addr().expect("bound socket has an address");
        let hits = Arc::new(AtomicUsize::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, h) = (n.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (n, h) = (n.clone(), h.clone());
                        async move { Ok::<_, Infallible>(answer(&n, &h, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            task,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(name: &str, hits: &AtomicUsize, req: Request<Incoming>) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if let Some(n) = path.strip_prefix("/download/") {
        let len: usize = n.parse().unwrap_or(0);
        return Response::builder()
            .header("content-type", "application/octet-stream")
            .header("x-backend", name)
            .body(Full::new(Bytes::from(super::pattern(len))))
            .expect("static response parts are valid");
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(k.to_string(), v.into());
            }
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let json = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path,
        "host": host,
        "version": version,
        "headers": headers,
        "tls": false,
        "body_len": body.len(),
        "body_fnv": super::fnv1a(&body).to_string(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-backend", name)
        .body(Full::new(Bytes::from(json.to_string())))
        .expect("static response parts are valid")
}
