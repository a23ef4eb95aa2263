//! Running the real `portcullis` binary: `serve` under a guard that kills it on
//! drop, readiness and `/status` over the admin address, and `check`.

use anyhow::{anyhow, bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports;

/// How many times [`Portcullis::wait_ready`] starts portcullis again when its
/// admin port was taken first.
const ADDR_IN_USE_RETRIES: u32 = 3;

/// Path of the binary under test: `$PORTCULLIS_BIN` when set (to test a copy
/// built elsewhere), else the one cargo built for this test.
pub fn binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")))
}

/// Arguments of `portcullis serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--config`.
    pub config_dir: PathBuf,
    /// `--state`.
    pub state_dir: PathBuf,
    /// `--listen-address`.
    pub listen_address: Ipv4Addr,
    /// `--port-offset`.
    pub port_offset: u16,
    /// File receiving the process's stdout and stderr.
    pub log_file: PathBuf,
}

/// A running `portcullis serve`; killed (and reaped) on drop.
pub struct Portcullis {
    child: Child,
    /// Admin address.
    pub admin: SocketAddr,
    log_file: PathBuf,
    /// What it was started with, to start it again on a new admin port.
    opts: ServeOptions,
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released), in 3000..10000:
/// below Linux's ephemeral range (32768 and up), so an outgoing connection's
/// source port cannot take it before the process it is meant for binds it.
impl Portcullis {
    /// Starts `portcullis serve`.
    pub fn spawn(opts: &ServeOptions) -> Result<Self> {
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, ports::for_child()?));
        let log = std::fs::File::create(&opts.log_file)
            .with_context(|| format!("create {}", opts.log_file.display()))?;
        let child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(&opts.config_dir)
            .arg("--state")
            .arg(&opts.state_dir)
            .arg("--admin-addr")
            .arg(admin.to_string())
            .arg("--listen-address")
            .arg(opts.listen_address.to_string())
            .arg("--port-offset")
            .arg(opts.port_offset.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", binary().display()))?;
        Ok(Self {
            child,
            admin,
            log_file: opts.log_file.clone(),
            opts: opts.clone(),
        })
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `GET /readyz` answers 200. When the admin port was taken
    /// before portcullis bound it, starts it again on a new one (up to
    /// [`ADDR_IN_USE_RETRIES`] times; see [`ports`]).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("no answer");
        let mut retries = 0;
        while start.elapsed() < timeout {
            if !self.is_running() {
                if retries < ADDR_IN_USE_RETRIES && ports::is_addr_in_use(&self.log_tail(20)) {
                    retries += 1;
                    *self = Self::spawn(&self.opts)?;
                    continue;
                }
                bail!("portcullis exited early; log tail:\n{}", self.log_tail(20));
            }
            match admin_get(self.admin, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => last = format!("{code} {}", String::from_utf8_lossy(&body)),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "not ready after {timeout:?} (last: {last}); log tail:\n{}",
            self.log_tail(20)
        )
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Result<serde_json::Value> {
        let (code, body) = admin_get(self.admin, "/status").await?;
        if code != 200 {
            bail!("/status answered {code}");
        }
        serde_json::from_slice(&body).context("/status is not JSON")
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        let (code, body) = admin_get(self.admin, "/metrics").await?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// GET on the admin address; (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, bytes::Bytes)> {
    let resp = super::client::send(&super::client::HttpRequest {
        addr: admin,
        tls: None,
        protocol: super::client::Protocol::Http1,
        method: "GET".into(),
        path: path.into(),
        host: admin.to_string(),
        headers: vec![],
        timeout: Duration::from_secs(3),
    })
    .await
    .map_err(|e| anyhow!("{e}"))?;
    Ok((resp.status, resp.body))
}

/// Runs `portcullis check --config DIR`: (exit success, stdout + stderr).
pub fn check(config_dir: &Path) -> Result<(bool, String)> {
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(config_dir)
        .output()?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}
