//! The real programs of the observability test, each under a guard that
//! kills it on drop: portcullis, Prometheus, Alertmanager; plus two small
//! HTTP servers the test runs itself: the webhook Alertmanager notifies, and
//! an exporter serving the library's own `Metrics` with issuer state (the
//! issuer manager does not feed it yet).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A child process killed and reaped on drop, its output in a log file.
pub struct Process {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, output to `dir/<name>.log`.
    pub fn spawn(name: &'static str, program: &Path, args: &[String], dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (installed by scripts/test.sh)",
                    program.display()
                )
            })?;
        Ok(Self { child, name, log })
    }

    /// The last lines of its output.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited with {status}\n{}", self.name, self.tail());
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that refuses every connection for as long as the
/// returned socket lives: bound (without `SO_REUSEADDR`) but never listening,
/// so no other process or test server can take it and connects get a reset.
/// A port merely bound and released can be handed to the next `bind(0)`,
/// which turned a "dead backend" into a live one.
pub fn refused_port() -> Result<(u16, tokio::net::TcpSocket)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok((socket.local_addr()?.port(), socket))
}

/// `curl` GET (with `--data-urlencode` pairs); (HTTP status, body).
pub fn curl_get(url: &str, query: &[(&str, &str)]) -> Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "5", "-w", "\n%{http_code}"]);
    if !query.is_empty() {
        cmd.arg("--get");
        for (k, v) in query {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
    }
    let out = cmd.arg(url).output().context("curl")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// Polls `url` until it answers 200 or `timeout` passes.
pub fn wait_http_ok(url: &str, timeout: Duration, process: &mut Process) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        process.check_running()?;
        if matches!(curl_get(url, &[]), Ok((200, _))) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{url} not ready after {timeout:?}\n{}", process.tail())
}

/// One notification received by the webhook.
#[derive(Debug, Clone)]
pub struct Notification {
    /// `/pager` or `/ticket`.
    pub path: String,
    /// When it arrived.
    pub at: SystemTime,
    /// The Alertmanager webhook payload.
    pub body: serde_json::Value,
}

impl Notification {
    /// `(alertname, status, labels)` of each alert in the payload.
    pub fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a["status"].as_str().unwrap_or_default().to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }
}

/// Serves `answer(path)` on a loopback port; `record` sees every request.
async fn serve<F, R>(answer: F, record: R) -> Result<SocketAddr>
where
    F: Fn(&str) -> (String, &'static str) + Send + Sync + 'static,
    R: Fn(String, Bytes) + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let answer = Arc::new(answer);
    let record = Arc::new(record);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answer, record) = (answer.clone(), record.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (answer, record) = (answer.clone(), record.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        record(path.clone(), body);
                        let (text, content_type) = answer(&path);
                        let mut resp = http::Response::new(Full::new(Bytes::from(text)));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(content_type),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The webhook receiver: every POST is kept as a [`Notification`].
pub async fn webhook() -> Result<(SocketAddr, Arc<Mutex<Vec<Notification>>>)> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let addr = serve(
        |_| (String::new(), "text/plain"),
        move |path, body| {
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if let Ok(mut list) = sink.lock() {
                list.push(Notification {
                    path,
                    at: SystemTime::now(),
                    body,
                });
            }
        },
    )
    .await?;
    Ok((addr, received))
}

/// Serves `metrics.encode()` on `/metrics`.
pub async fn exporter(metrics: Arc<portcullis::metrics::Metrics>) -> Result<SocketAddr> {
    serve(
        move |_| (metrics.encode(), portcullis::metrics::CONTENT_TYPE),
        |_, _| {},
    )
    .await
}
