//! The real `portcullis serve` binary for the ACME end-to-end tests: its
//! own config and state directories (the state survives restarts and
//! `kill -9`), a port offset, an admin address, and its log.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Path of the binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A `portcullis serve` that can be killed and started again on the same
/// directories and ports.
pub struct Gateway {
    child: Option<Child>,
    /// The config directory (manifests).
    pub config: PathBuf,
    /// The state directory.
    pub state: PathBuf,
    /// Added to every listener port.
    pub offset: u16,
    /// Admin address.
    pub admin: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    /// Starts serving `config` with state in `state`.
    pub async fn start(config: &Path, state: &Path, offset: u16) -> Result<Gateway> {
        let mut gw = Gateway {
            child: None,
            config: config.to_owned(),
            state: state.to_owned(),
            offset,
            admin: SocketAddr::from(([127, 0, 0, 1], crate::ports::for_child()?)),
            log: state.with_extension("log"),
        };
        gw.spawn().await?;
        Ok(gw)
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--state")
            .arg(&self.state)
            .arg("--admin-addr")
            .arg(self.admin.to_string())
            .arg("--listen-address")
            .arg("127.0.0.1")
            .arg("--port-offset")
            .arg(self.offset.to_string())
            .env("RUST_LOG", "portcullis=debug,info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn portcullis")?;
        self.child = Some(child);
        for _ in 0..200 {
            if let Ok(status) = self.status().await {
                if status.is_object() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("portcullis did not start; log:\n{}", self.log())
    }

    /// SIGKILL, as a crash would.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Starts again on the same directories and ports.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9().await?;
        self.spawn().await
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Result<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3"])
            .arg(format!("http://{}/status", self.admin))
            .output()
            .await?;
        if !out.status.success() {
            bail!("status: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3"])
            .arg(format!("http://{}/metrics", self.admin))
            .output()
            .await?;
        if !out.status.success() {
            bail!("metrics: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The `/status` entry of the certificate kept in Secret `secret`
    /// (`namespace/name`).
    pub async fn certificate(&self, secret: &str) -> Result<Option<serde_json::Value>> {
        let status = self.status().await?;
        Ok(status["certificates"]
            .as_array()
            .and_then(|certs| certs.iter().find(|c| c["secret"] == secret).cloned()))
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
