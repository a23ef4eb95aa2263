//! Running the real `portcullis serve --kubernetes` against a
//! [`ControlPlane`](super::control_plane::ControlPlane): the process under a
//! guard that kills it on drop ([`KubeGateway`]), the pod network backends
//! listen on ([`pod_ip`]), portcullis's own CRDs ([`install_crds`]), and
//! polling the API until something holds ([`eventually`]).
//!
//! Backends cannot listen on loopback: the API server refuses EndpointSlice
//! addresses in 127.0.0.0/8. [`pod_ip`] hands out addresses of
//! 198.18.0.0/16 (RFC 2544's benchmarking range, never routed), made local
//! to this host with one `ip route add local ... dev lo` (needs root, as CI
//! runs; scripts/test.sh adds the same route): every address of the range is
//! bindable and reachable here, like 127.0.0.0/8, and admitted in
//! EndpointSlices.

use super::control_plane::ControlPlane;
use super::portcullis::{admin_get, binary};
use super::ports;
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The pod network: a /16 made local to this host.
pub const POD_NETWORK: &str = "198.18.0.0/16";

/// Makes [`POD_NETWORK`] local (once per process; idempotent).
fn ensure_pod_network() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let shown = Command::new("ip")
            .args(["route", "show", "table", "local", POD_NETWORK])
            .output()
            .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
        if !String::from_utf8_lossy(&shown.stdout).trim().is_empty() {
            return Ok(());
        }
        let added = Command::new("ip")
            .args(["route", "add", "local", POD_NETWORK, "dev", "lo"])
            .output()
            .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
        if added.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot make {POD_NETWORK} local (`ip route add local {POD_NETWORK} dev lo` needs root): {}",
                String::from_utf8_lossy(&added.stderr).trim()
            ))
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A fresh address of the pod network, unique in this process (one per
/// backend "pod"; each can bind any port).
pub fn pod_ip() -> Result<Ipv4Addr> {
    ensure_pod_network()?;
    static NEXT: AtomicU32 = AtomicU32::new(1);
    // Spread by process too, so two test binaries never share addresses.
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 200) * 256;
    let [_, _, c, d] = n.to_be_bytes();
    Ok(Ipv4Addr::new(198, 18, c, d.max(1)))
}

/// Installs portcullis's own CRDs (`portcullis crds`) into `cp`.
pub async fn install_crds(cp: &ControlPlane) -> Result<()> {
    let out = Command::new(binary())
        .arg("crds")
        .output()
        .context("run portcullis crds")?;
    if !out.status.success() {
        bail!(
            "portcullis crds failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cp.apply_yaml(&String::from_utf8_lossy(&out.stdout))
        .await
        .context("apply portcullis crds")?;
    Ok(())
}

/// How to run one replica.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// `--namespace` (the controller namespace; must exist).
    pub namespace: String,
    /// `--identity`.
    pub identity: String,
    /// `KUBECONFIG`: whom the replica acts as.
    pub kubeconfig: PathBuf,
    /// `--listen-address`.
    pub listen_address: Ipv4Addr,
    /// `--port-offset`.
    pub port_offset: u16,
    /// More arguments (`--lease-duration 6`, `--gateway-address ...`).
    pub extra_args: Vec<String>,
    /// File receiving the process's output.
    pub log_file: PathBuf,
}

impl KubeOptions {
    /// A replica `identity` acting as the control plane's admin, logging
    /// into the control plane's directory.
    pub fn admin(cp: &ControlPlane, namespace: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            kubeconfig: cp.kubeconfig_path().to_path_buf(),
            listen_address: Ipv4Addr::LOCALHOST,
            port_offset: 0,
            extra_args: Vec::new(),
            log_file: cp.dir().join(format!("portcullis-{identity}.log")),
        }
    }
}

/// A running `portcullis serve --kubernetes`; killed (and reaped) on drop.
pub struct KubeGateway {
    child: Child,
    /// Admin address.
    pub admin: SocketAddr,
    log_file: PathBuf,
    /// The replica's identity.
    pub identity: String,
}

impl Drop for KubeGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KubeGateway {
    /// Starts a replica.
    pub fn spawn(opts: &KubeOptions) -> Result<Self> {
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, ports::for_child()?));
        let log = std::fs::File::create(&opts.log_file)
            .with_context(|| format!("create {}", opts.log_file.display()))?;
        let child = Command::new(binary())
            .arg("serve")
            .arg("--kubernetes")
            .args(["--namespace", &opts.namespace])
            .args(["--identity", &opts.identity])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--listen-address", &opts.listen_address.to_string()])
            .args(["--port-offset", &opts.port_offset.to_string()])
            .args(&opts.extra_args)
            .env("KUBECONFIG", &opts.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG")
                    .unwrap_or_else(|_| "info,portcullis::cluster=debug".into()),
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
            identity: opts.identity.clone(),
        })
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` answers 200 (the cluster was listed and the
    /// first configuration programmed).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("no answer");
        while start.elapsed() < timeout {
            if !self.is_running() {
                bail!("portcullis exited early; log tail:\n{}", self.log_tail(30));
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
            self.log_tail(30)
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

    /// SIGKILL: the process dies without releasing anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit; true when it exited.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Where the output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_file
    }
}

/// Polls `check` every 100 ms until it returns `Ok(Some(value))`, for at
/// most `timeout`; the last error (or "still None") is in the failure.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("not yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() >= timeout {
            bail!("{what}: not within {timeout:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An object's JSON as the API serves it (`None` when it does not exist),
/// through discovery of `api_version`/`kind`.
pub async fn get_object(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<serde_json::Value>> {
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discover {api_version} {kind}"))?;
    let api: kube::Api<kube::api::DynamicObject> = match namespace {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    };
    let got = api
        .get_opt(name)
        .await
        .with_context(|| format!("get {kind} {name}"))?;
    Ok(got.map(|o| serde_json::to_value(o).unwrap_or_default()))
}

/// The condition `type` of a conditions list (`status.conditions`, a
/// listener's or a parent's).
pub fn condition<'a>(
    conditions: &'a serde_json::Value,
    kind: &str,
) -> Option<&'a serde_json::Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == kind)
}
