//! Fixed-rate HTTPS load generator for the benchmark harness (`bench/run.py`):
//! an open-loop client that schedules requests at a constant rate over a pool
//! of keep-alive HTTP/1.1 connections and measures each request from the
//! moment it is released at its scheduled time, before it waits for a free
//! connection (so a stalled server is not hidden by a client that waits — no
//! coordinated omission). The release is stamped when the timer has fired,
//! not at the ideal instant: tokio's timer wakes up to a millisecond late,
//! and that lateness is the generator's, not the server's (it is reported,
//! `release_lag_*`). Prints one JSON object.
//!
//! `loadgen --url https://127.0.0.1:PORT/path --sni NAME --cacert FILE
//!          --rate N --seconds S --connections C`

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

struct Args {
    addr: String,
    path: String,
    sni: String,
    cacert: String,
    rate: u64,
    seconds: u64,
    connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut sni = None;
    let mut cacert = None;
    let mut rate = 1000;
    let mut seconds = 10;
    let mut connections = 16;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => url = Some(value),
            "--sni" => sni = Some(value),
            "--cacert" => cacert = Some(value),
            "--rate" => rate = num(&value)?,
            "--seconds" => seconds = num(&value)?,
            "--connections" => connections = num(&value)? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("https://")
        .ok_or("--url must start with https://")?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    Ok(Args {
        addr,
        path,
        sni: sni.ok_or("--sni is required")?,
        cacert: cacert.ok_or("--cacert is required")?,
        rate: rate.max(1),
        seconds: seconds.max(1),
        connections: connections.max(1),
    })
}

async fn connect(
    args: &Args,
    config: Arc<rustls::ClientConfig>,
) -> Result<http1::SendRequest<Empty<Bytes>>, String> {
    let tcp = TcpStream::connect(&args.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", args.addr))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(args.sni.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let pem = std::fs::read(&args.cacert).unwrap_or_else(|e| {
        eprintln!("loadgen: reading {}: {e}", args.cacert);
        std::process::exit(2)
    });
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);

    let total = args.rate * args.seconds;
    let (tx, rx) = mpsc::channel::<Instant>(total as usize + 1);
    let rx = Arc::new(Mutex::new(rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<u64, String>>();
    for _ in 0..args.connections {
        let mut sender = match connect(&args, config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("loadgen: {e}");
                std::process::exit(1);
            }
        };
        let (rx, done, args, config) = (rx.clone(), done_tx.clone(), args.clone(), config.clone());
        tokio::spawn(async move {
            loop {
                let Some(released) = rx.lock().await.recv().await else {
                    return;
                };
                if sender.ready().await.is_err() {
                    match connect(&args, config.clone()).await {
                        Ok(s) => sender = s,
                        Err(e) => {
                            let _ = done.send(Err(e));
                            continue;
                        }
                    }
                }
                let req = hyper::Request::get(args.path.as_str())
                    .header("host", args.sni.as_str())
                    .body(Empty::<Bytes>::new())
                    .expect("static request parts are valid");
                let result = match sender.send_request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.into_body().collect().await;
                        Ok(released.elapsed().as_micros() as u64)
                    }
                    Ok(resp) => Err(format!("status {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                };
                let _ = done.send(result);
            }
        });
    }
    drop(done_tx);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut lags = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let released = Instant::now();
        lags.push(released.saturating_duration_since(at).as_micros() as u64);
        let _ = tx.send(released).await;
    }
    drop(tx);
    lags.sort_unstable();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0u64;
    let mut first_error = None;
    while let Some(r) = done_rx.recv().await {
        match r {
            Ok(us) => latencies.push(us),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
        if latencies.len() as u64 + errors == total {
            break;
        }
    }
    latencies.sort_unstable();
    let out = serde_json::json!({
        "scheduled": total,
        "ok": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "elapsed_s": start.elapsed().as_secs_f64(),
        "p50_us": percentile(&latencies, 0.50),
        "p90_us": percentile(&latencies, 0.90),
        "p99_us": percentile(&latencies, 0.99),
        "p999_us": percentile(&latencies, 0.999),
        "max_us": latencies.last().copied().unwrap_or(0),
        "release_lag_p50_us": percentile(&lags, 0.50),
        "release_lag_max_us": lags.last().copied().unwrap_or(0),
    });
    println!("{out}");
}
