//! In-process stand-in for the upstream echo's TCP mode (`TCP_ECHO_SERVER=1`,
//! the `tcp-backend` Deployment): a line protocol on port 3000 in the clear
//! and on port 8443 inside TLS with the Deployment's serving certificate.
//!
//! On connect the server sends `Gateway API Test TCP Server\n`; then, per
//! line: `PING` → `PONG`, `IS_TLS` → `true`/`false`, `TEST` → one JSON line
//! `{"namespace","pod","isTLS","tls":{"serverName"}}`; anything else is echoed
//! back. Every accepted connection is recorded as a [`TcpSession`] (port, TLS
//! or not, the SNI received) so the harness can tell which pod answered and
//! what the gateway sent it.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Plain TCP line-protocol port.
pub const TCP_PLAIN_PORT: u16 = 3000;
/// TLS-wrapped line-protocol port (only with a serving certificate).
pub const TCP_TLS_PORT: u16 = 8443;
/// The greeting sent on every new connection.
pub const GREETING: &str = "Gateway API Test TCP Server";

/// One connection the TCP echo accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSession {
    /// Local port it arrived on.
    pub port: u16,
    /// Whether it was TLS.
    pub is_tls: bool,
    /// SNI received in the ClientHello (TLS only).
    pub sni: Option<String>,
}

/// Identity and session log of one TCP echo pod.
#[derive(Debug, Default)]
pub struct TcpEcho {
    /// Pod name reported by `TEST`.
    pub pod: String,
    /// Namespace reported by `TEST`.
    pub namespace: String,
    sessions: Mutex<Vec<TcpSession>>,
}

impl TcpEcho {
    /// A TCP echo identity with an empty session log.
    pub fn new(pod: &str, namespace: &str) -> Self {
        Self {
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            sessions: Mutex::new(Vec::new()),
        }
    }

    /// A copy of every session accepted so far.
    pub fn sessions(&self) -> Vec<TcpSession> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, s: TcpSession) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// The answer to one request line (without the trailing newline).
    pub fn answer(&self, line: &str, session: &TcpSession) -> String {
        match line.trim() {
            "PING" => "PONG".to_string(),
            "IS_TLS" => session.is_tls.to_string(),
            "TEST" => test_report(&self.namespace, &self.pod, session).to_string(),
            other => other.to_string(),
        }
    }
}

/// The JSON line answering `TEST`.
pub fn test_report(namespace: &str, pod: &str, session: &TcpSession) -> Value {
    json!({
        "namespace": namespace,
        "pod": pod,
        "isTLS": session.is_tls,
        "tls": {"serverName": session.sni.clone().unwrap_or_default()},
    })
}

/// Binds the TCP echo ports of a pod at `ip` and starts serving them.
pub async fn start(
    ip: Ipv4Addr,
    echo: Arc<TcpEcho>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let plain = SocketAddr::from((ip, TCP_PLAIN_PORT));
    let l = TcpListener::bind(plain)
        .await
        .with_context(|| format!("tcp echo {} bind {plain}", echo.pod))?;
    tasks.push(tokio::spawn(accept_loop(l, echo.clone(), None)));
    if let Some(acceptor) = tls {
        let addr = SocketAddr::from((ip, TCP_TLS_PORT));
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("tcp echo {} bind {addr}", echo.pod))?;
        tasks.push(tokio::spawn(accept_loop(l, echo, Some(acceptor))));
    }
    Ok(tasks)
}

async fn accept_loop(
    listener: TcpListener,
    echo: Arc<TcpEcho>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let port = stream.local_addr().map(|a| a.port()).unwrap_or_default();
                let echo = echo.clone();
                match tls.clone() {
                    None => {
                        conns.spawn(async move {
                            let session = TcpSession { port, is_tls: false, sni: None };
                            echo.record(session.clone());
                            let _ = serve(stream, &echo, &session).await;
                        });
                    }
                    Some(acceptor) => {
                        conns.spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let sni = stream.get_ref().1.server_name().map(str::to_string);
                            let session = TcpSession { port, is_tls: true, sni };
                            echo.record(session.clone());
                            let _ = serve(stream, &echo, &session).await;
                        });
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    echo: &TcpEcho,
    session: &TcpSession,
) -> std::io::Result<()> {
    let (r, mut w) = tokio::io::split(stream);
    w.write_all(format!("{GREETING}\n").as_bytes()).await?;
    w.flush().await?;
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = echo.answer(&line, session);
        w.write_all(format!("{answer}\n").as_bytes()).await?;
        w.flush().await?;
    }
    let _ = w.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_line_reports_identity_and_sni() {
        let echo = TcpEcho::new("tcp-backend-abcde-0", "ns");
        let s = TcpSession {
            port: TCP_TLS_PORT,
            is_tls: true,
            sni: Some("abc.example.com".into()),
        };
        let v: Value = serde_json::from_str(&echo.answer("TEST", &s)).expect("json");
        assert_eq!(v["pod"], "tcp-backend-abcde-0");
        assert_eq!(v["isTLS"], true);
        assert_eq!(v["tls"]["serverName"], "abc.example.com");
        assert_eq!(echo.answer("PING", &s), "PONG");
        assert_eq!(echo.answer("IS_TLS", &s), "true");
    }
}
