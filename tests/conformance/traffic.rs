//! The traffic of one request entry: resolving it against the environment,
//! sending it (HTTP, TLS stream, WebSocket), and checking the response, mirror
//! hits and weight distributions it expects.

use futures_util::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::run::{new_uuid, CaseEnv, REQUEST_TIMEOUT};
use crate::support::client::{
    self, ClientError, HttpRequest, HttpResponse, Protocol, TlsOptions, WsFrame,
};
use crate::support::expect::{self, PodDirectory};

/// A request entry resolved against the environment.
pub(crate) struct Prepared {
    pub(crate) addr: SocketAddr,
    pub(crate) gateway_ip: Ipv4Addr,
    pub(crate) scheme: String,
    pub(crate) tls: Option<TlsOptions>,
    pub(crate) protocol: Protocol,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) host: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) follow: bool,
}

pub(crate) fn prepare(env: &CaseEnv<'_>, entry: &Value, uuid: &str) -> Result<Prepared, String> {
    let req = &entry["request"];
    let ip = env.gateway_ip(entry)?;
    let scheme = req["scheme"].as_str().unwrap_or("http").to_string();
    let port = req["port"]
        .as_u64()
        .unwrap_or(expect::default_port(&scheme) as u64) as u16;
    let host = match req["host"].as_str() {
        Some(h) => h.to_string(),
        None if port == expect::default_port(&scheme) => ip.to_string(),
        None => format!("{ip}:{port}"),
    };
    let tls = if scheme == "https" {
        let fallback = expect::split_authority(&host).0;
        Some(env.tls_options(&req["tls"], &fallback)?)
    } else {
        None
    };
    let protocol = match req["protocol"].as_str() {
        Some("h2") => Protocol::H2,
        Some("h2c-prior-knowledge") => Protocol::H2cPriorKnowledge,
        _ => Protocol::Http1,
    };
    let mut headers: Vec<(String, String)> = req["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().unwrap_or_default().replace("{uuid}", uuid),
            )
        })
        .collect();
    let set: Vec<String> = req["backend_set_response_headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
        .collect();
    if !set.is_empty() {
        headers.push(("X-Echo-Set-Header".into(), set.join(",")));
    }
    Ok(Prepared {
        addr: SocketAddr::from((ip, port + env.layout.port_offset)),
        gateway_ip: ip,
        scheme,
        tls,
        protocol,
        method: req["method"].as_str().unwrap_or("GET").to_string(),
        path: req["path"].as_str().unwrap_or("/").replace("{uuid}", uuid),
        host,
        headers,
        follow: req["follow_redirects"].as_bool().unwrap_or(true),
    })
}

/// Sends a prepared request, following redirects (to the same gateway) when asked.
/// Returns the final answer and the (scheme, authority) it was sent with.
pub(crate) async fn exchange(
    env: &CaseEnv<'_>,
    p: &Prepared,
) -> (Result<HttpResponse, ClientError>, String, String) {
    let mut req = HttpRequest {
        addr: p.addr,
        tls: p.tls.clone(),
        protocol: p.protocol,
        method: p.method.clone(),
        path: p.path.clone(),
        host: p.host.clone(),
        headers: p.headers.clone(),
        timeout: REQUEST_TIMEOUT,
    };
    let mut scheme = p.scheme.clone();
    for _ in 0..5 {
        let result = client::send(&req).await;
        let location = match &result {
            Ok(r) if p.follow && (300..400).contains(&r.status) => r.header("location"),
            _ => None,
        };
        let Some(loc) = location.and_then(|l| expect::parse_location(&l, &scheme, &req.host))
        else {
            return (result, scheme, req.host);
        };
        let port = loc.port.unwrap_or(expect::default_port(&loc.scheme));
        req.addr = SocketAddr::from((p.gateway_ip, port + env.layout.port_offset));
        req.host = match loc.port {
            Some(port) => format!("{}:{port}", loc.host),
            None => loc.host.clone(),
        };
        req.path = loc.path_and_query.clone();
        req.tls = if loc.scheme == "https" {
            let mut t = p.tls.clone().unwrap_or_default();
            t.sni = loc.host.clone();
            Some(t)
        } else {
            None
        };
        if req.protocol == Protocol::H2 && req.tls.is_none() {
            req.protocol = Protocol::Http1;
        }
        scheme = loc.scheme;
    }
    (
        Err(ClientError::Http("too many redirects".into())),
        scheme,
        req.host,
    )
}

/// One `tls-stream` exchange: TLS to the gateway port with the entry's SNI,
/// then the TCP echo protocol; checks the echo's report.
pub(crate) async fn stream_attempt(env: &CaseEnv<'_>, entry: &Value) -> Result<(), String> {
    let req = &entry["request"];
    let ip = env.gateway_ip(entry)?;
    let port = req["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("tls-stream entry without a port")?;
    let tls = env.tls_options(&req["tls"], &ip.to_string())?;
    let addr = SocketAddr::from((ip, port + env.layout.port_offset));
    let result = client::tls_stream(addr, &tls, REQUEST_TIMEOUT).await;
    expect::check_stream(&entry["expect"], &result, env)
}

pub(crate) async fn attempt(env: &CaseEnv<'_>, entry: &Value, uuid: &str) -> Result<(), String> {
    let expect = &entry["expect"];
    if entry["request"]["kind"] == "tls-stream" {
        return stream_attempt(env, entry).await;
    }
    let p = prepare(env, entry, uuid)?;
    let subst = |s: &str| s.replace("{uuid}", uuid);
    if entry["request"]["kind"] == "websocket" {
        return websocket_attempt(env, entry, &p).await;
    }
    let repeat = entry["request"]["repeat"].as_u64().unwrap_or(1).max(1);
    for n in 0..repeat {
        let before = env.total_requests();
        let (result, scheme, authority) = exchange(env, &p).await;
        let at = if repeat > 1 {
            format!(" (#{})", n + 1)
        } else {
            String::new()
        };
        let Some(resp) = expect::check_outcome(expect, &result).map_err(|e| format!("{e}{at}"))?
        else {
            continue;
        };
        expect::check_response(expect, resp, &scheme, &authority, &subst)
            .map_err(|e| format!("{e}{at}"))?;
        expect::check_backend(expect, resp, env, &subst).map_err(|e| format!("{e}{at}"))?;
        if expect["answered_by_gateway"].as_bool() == Some(true) {
            let after = env.total_requests();
            if after != before {
                return Err(format!(
                    "request reached a backend ({} request(s)) but must be answered by the gateway",
                    after - before
                ));
            }
        }
        if let Some(mirrors) = expect["mirrored_to"].as_array() {
            check_mirrors(env, mirrors, &subst).await?;
        }
    }
    Ok(())
}

pub(crate) fn mirror_hits(env: &CaseEnv<'_>, backend: &str, namespace: &str, path: &str) -> usize {
    env.pods
        .iter()
        .filter(|pod| pod.spec().deployment == backend && pod.spec().namespace == namespace)
        .map(|pod| pod.requests().iter().filter(|r| r.uri == path).count())
        .sum()
}

pub(crate) async fn check_mirrors(
    env: &CaseEnv<'_>,
    mirrors: &[Value],
    subst: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    for m in mirrors {
        let backend = m["backend"].as_str().unwrap_or_default();
        let ns = m["namespace"].as_str().unwrap_or_default();
        let path = subst(m["path"].as_str().unwrap_or_default());
        let start = Instant::now();
        loop {
            if mirror_hits(env, backend, ns, &path) > 0 {
                break;
            }
            if start.elapsed() > Duration::from_secs(3) {
                return Err(format!("request {path} was not mirrored to {ns}/{backend}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

pub(crate) async fn websocket_attempt(
    env: &CaseEnv<'_>,
    entry: &Value,
    p: &Prepared,
) -> Result<(), String> {
    let expect = &entry["expect"];
    let exchange = expect["websocket_exchange"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let frame = |v: &Value| -> WsFrame {
        match v["type"].as_str() {
            Some("binary") => {
                WsFrame::Binary(hex_decode(v["data_hex"].as_str().unwrap_or_default()))
            }
            _ => WsFrame::Text(v["data"].as_str().unwrap_or_default().to_string()),
        }
    };
    let sends: Vec<WsFrame> = exchange.iter().map(|e| frame(&e["send"])).collect();
    let wants: Vec<WsFrame> = exchange.iter().map(|e| frame(&e["expect_reply"])).collect();
    let (status, replies) = client::websocket(
        p.addr,
        p.tls.as_ref(),
        &p.host,
        &p.path,
        &p.headers,
        &sends,
        REQUEST_TIMEOUT,
    )
    .await
    .map_err(|e| format!("websocket: {e}"))?;
    if let Some(want) = expect["status"].as_u64() {
        if u64::from(status) != want {
            return Err(format!(
                "websocket handshake status {status}, expected {want}"
            ));
        }
    }
    let _ = env;
    if replies != wants {
        return Err(format!("websocket replies {replies:?}, expected {wants:?}"));
    }
    Ok(())
}

pub(crate) fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Sends `total` copies of a request, `concurrency` at a time; returns the
/// answering Deployment of each (Err on any failed or non-echo answer).
pub(crate) async fn burst(
    env: &CaseEnv<'_>,
    p: &Prepared,
    total: usize,
    concurrency: usize,
) -> Result<Vec<String>, String> {
    let results: Vec<Result<String, String>> = futures_util::stream::iter(0..total)
        .map(|_| async {
            let (result, _, _) = exchange(env, p).await;
            let resp = result.map_err(|e| format!("request failed: {e}"))?;
            if resp.status != 200 {
                return Err(format!("status {}", resp.status));
            }
            let echo: Value =
                serde_json::from_slice(&resp.body).map_err(|_| "not an echo answer".to_string())?;
            let pod = echo["pod"].as_str().unwrap_or_default();
            env.deployment_of(pod)
                .ok_or_else(|| format!("unknown pod {pod}"))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

pub(crate) async fn check_weights(env: &CaseEnv<'_>, entry: &Value) -> Result<(), String> {
    let expect = &entry["expect"];
    let wc = &expect["weights_check"];
    let total = wc["total_requests"].as_u64().unwrap_or(500) as usize;
    let concurrency = wc["concurrency"].as_u64().unwrap_or(10) as usize;
    let tolerance = wc["tolerance"].as_f64().unwrap_or(0.05);
    let attempts = wc["max_attempts"].as_u64().unwrap_or(3).min(3);
    let weights: Vec<(String, f64)> = expect["weights"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
        .collect();
    let mut last = String::new();
    for _ in 0..attempts {
        let p = prepare(env, entry, &new_uuid())?;
        let answers = match burst(env, &p, total, concurrency).await {
            Ok(a) => a,
            Err(e) => {
                last = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for a in &answers {
            *counts.entry(a.clone()).or_default() += 1;
        }
        let bad: Vec<String> = weights
            .iter()
            .filter_map(|(b, w)| {
                let got = *counts.get(b).unwrap_or(&0) as f64 / total as f64;
                let ok = if *w == 0.0 {
                    got == 0.0
                } else {
                    (got - w).abs() <= tolerance
                };
                (!ok).then(|| format!("{b}: {got:.3} (want {w})"))
            })
            .collect();
        if bad.is_empty() && counts.keys().all(|k| weights.iter().any(|(b, _)| b == k)) {
            return Ok(());
        }
        last = format!("traffic split off: {} (counts {counts:?})", bad.join(", "));
    }
    Err(last)
}

pub(crate) async fn check_percentage_mirror(
    env: &CaseEnv<'_>,
    entry: &Value,
) -> Result<(), String> {
    let expect = &entry["expect"];
    let mc = &expect["mirror_check"];
    let total = mc["total_requests"].as_u64().unwrap_or(500) as usize;
    let concurrency = mc["concurrency"].as_u64().unwrap_or(10) as usize;
    let attempts = mc["max_attempts"].as_u64().unwrap_or(3).min(3);
    let mirrors = expect["mirrored_to"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut last = String::new();
    for _ in 0..attempts {
        let uuid = new_uuid();
        let p = prepare(env, entry, &uuid)?;
        let answers = match burst(env, &p, total, concurrency).await {
            Ok(a) => a,
            Err(e) => {
                last = e;
                continue;
            }
        };
        if let Some(b) = expect["backend"].as_str() {
            if let Some(other) = answers.iter().find(|a| a.as_str() != b) {
                last = format!("answered by {other}, expected {b}");
                continue;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut failed = None;
        for m in &mirrors {
            let path = m["path"]
                .as_str()
                .unwrap_or_default()
                .replace("{uuid}", &uuid);
            let hits = mirror_hits(
                env,
                m["backend"].as_str().unwrap_or_default(),
                m["namespace"].as_str().unwrap_or_default(),
                &path,
            ) as f64;
            let fraction = m["fraction"].as_f64().unwrap_or(1.0);
            let n = total as f64;
            let mean = n * fraction;
            let sigma = (n * fraction * (1.0 - fraction)).sqrt();
            if (hits - mean).abs() > 3.0 * sigma + 0.5 {
                failed = Some(format!(
                    "mirrored {hits} of {total}, expected about {mean} (±{:.1})",
                    3.0 * sigma
                ));
            }
        }
        match failed {
            None => return Ok(()),
            Some(e) => last = e,
        }
    }
    Err(last)
}
