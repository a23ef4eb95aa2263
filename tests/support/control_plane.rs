//! A real Kubernetes control plane for a test: etcd and kube-apiserver built by
//! scripts/k8s-rig.sh, started on free loopback ports with their data, keys
//! and logs in a temporary directory, authentication by client certificate,
//! `--authorization-mode=RBAC`, and the Gateway API CRDs of the experimental
//! channel (a superset of standard) installed and served.
//!
//! Each test may start its own: ports and directories are unique, and every
//! process dies with the [`ControlPlane`] (or with the test process, see
//! `process`). By default no controllers run (no kube-controller-manager, no
//! scheduler, no ServiceAccount admission): what the test writes is what the
//! API holds. [`ControlPlane::start_controllers`] adds kube-controller-manager
//! and kube-scheduler (`controllers`), and [`ControlPlane::start_node_agent`]
//! a stand-in kubelet that runs the conformance echo image (`node_agent`), for
//! tests that need Deployments to become pods that answer.
//!
//! Where the binaries come from: `$PORTCULLIS_K8S_RIG` (scripts/test.sh
//! exports it), else scripts/k8s-rig.sh is run once per test process and its
//! last line of output is taken, so `cargo test --test kubernetes` works alone.

mod apply;
mod controllers;
mod node_agent;
mod pki;
mod process;

// Every test crate compiles this module; those that apply nothing would
// call these re-exports unused.
#[allow(unused_imports)]
pub use apply::{apply_independent_with, apply_yaml_with, ApplyError, ApplyOptions};
#[allow(unused_imports)]
pub use node_agent::{remove_stale_node_networks, NodeAgent, ECHO_IMAGE};

use anyhow::{anyhow, bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use pki::Pki;
use process::Process;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The field manager of [`ControlPlane::apply_yaml`].
pub const TEST_FIELD_MANAGER: &str = "portcullis-test";

/// How long etcd and kube-apiserver may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a start is tried again when a port picked for it was taken
/// before the process could bind it.
const BIND_ATTEMPTS: usize = 5;

/// Extra settings of [`ControlPlane::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// Flags appended to kube-apiserver's command line (a later flag wins),
    /// e.g. `--etcd-compaction-interval=1s` to provoke `410 Gone` on watches.
    pub apiserver_args: Vec<String>,
}

/// A client certificate user: the client, and a kubeconfig file for a process
/// (`KUBECONFIG=...`).
#[derive(Clone)]
pub struct UserClient {
    /// The user name (the certificate's CN).
    pub user: String,
    /// The groups (one O each), besides `system:authenticated` which the API
    /// server adds to every authenticated user.
    pub groups: Vec<String>,
    /// A kubeconfig file carrying the certificate and key.
    pub kubeconfig_path: PathBuf,
    /// A client authenticated as the user.
    pub client: Client,
}

/// A running etcd + kube-apiserver; both are killed when it drops.
pub struct ControlPlane {
    // Field order is drop order: the controllers go first, then the API
    // server, the directory last.
    controllers: Mutex<Option<controllers::Controllers>>,
    apiserver: Mutex<Option<Process>>,
    etcd: Process,
    etcd_url: String,
    apiserver_port: u16,
    apiserver_args: Vec<String>,
    rig: PathBuf,
    pki: Pki,
    server_url: String,
    kubeconfig_path: PathBuf,
    client: Client,
    started_in: Duration,
    kubeconfigs: AtomicUsize,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, waits for `/readyz`, installs the
    /// Gateway API CRDs (experimental channel) and waits until they are served.
    pub async fn start() -> Result<ControlPlane> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    /// [`ControlPlane::start`] with extra settings.
    pub async fn start_with(options: ControlPlaneOptions) -> Result<ControlPlane> {
        super::install_crypto_provider();
        let began = Instant::now();
        let rig = rig_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-k8s-")
            .tempdir()
            .context("create the control plane's directory")?;
        let pki = Pki::generate().context("generate the control plane's certificates")?;
        write_pki(dir.path(), &pki)?;

        let (etcd, etcd_url) = start_etcd(&rig, dir.path()).await?;

        let mut attempt = 0;
        let (apiserver, apiserver_port, client) = loop {
            attempt += 1;
            let port = super::ports::for_child()?;
            let args = apiserver_args(dir.path(), &etcd_url, port, &options.apiserver_args);
            let mut apiserver = Process::spawn(
                "kube-apiserver",
                &rig.join("bin/kube-apiserver"),
                &args,
                &dir.path().join("kube-apiserver.log"),
            )?;
            let url = server_url(port);
            let admin = pki.client_cert("admin", &["system:masters"])?;
            let client = client_from_kubeconfig(&pki::kubeconfig_yaml(
                &url,
                &pki.serving_ca_pem,
                "admin",
                &admin,
            ))
            .await?;
            match wait_apiserver_ready(&client, || apiserver.check_running()).await {
                Ok(()) => {
                    std::fs::write(
                        dir.path().join("admin.kubeconfig"),
                        pki::kubeconfig_yaml(&url, &pki.serving_ca_pem, "admin", &admin),
                    )?;
                    break (apiserver, port, client);
                }
                Err(_) if apiserver.failed_to_bind() && attempt < BIND_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        };

        let mut control_plane = ControlPlane {
            controllers: Mutex::new(None),
            apiserver: Mutex::new(Some(apiserver)),
            etcd,
            etcd_url,
            apiserver_port,
            apiserver_args: options.apiserver_args,
            rig,
            server_url: server_url(apiserver_port),
            kubeconfig_path: dir.path().join("admin.kubeconfig"),
            pki,
            client,
            started_in: Duration::ZERO,
            kubeconfigs: AtomicUsize::new(0),
            dir,
        };
        control_plane
            .install_gateway_api_crds()
            .await
            .context("install the Gateway API CRDs")?;
        control_plane.started_in = began.elapsed();
        Ok(control_plane)
    }

    /// Starts kube-controller-manager (the controllers of
    /// `controllers::CONTROLLERS`) and kube-scheduler, and waits until the
    /// controllers act; they stop with the control plane. Separate from
    /// [`ControlPlane::start`] because they add a second or two and most
    /// tests want only the API.
    pub async fn start_controllers(&self) -> Result<()> {
        if self.lock_controllers().is_some() {
            bail!("the controllers are already running");
        }
        let started = controllers::start(&self.rig, self.dir.path(), &self.client)
            .await
            .context("start kube-controller-manager and kube-scheduler")?;
        *self.lock_controllers() = Some(started);
        Ok(())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// An admin kubeconfig file (client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A client with the admin's kubeconfig.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The temporary directory holding the data, keys, kubeconfigs and the
    /// logs (`etcd.log`, `kube-apiserver.log`, and when they run
    /// `kube-controller-manager.log`, `kube-scheduler.log`,
    /// `node-agent-<bridge>.log`); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The rig directory the binaries and CRDs came from.
    pub fn rig_dir(&self) -> &Path {
        &self.rig
    }

    /// How long [`ControlPlane::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The process ids of etcd, (when running) kube-apiserver, and (when
    /// started) kube-controller-manager and kube-scheduler.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.etcd.pid()];
        if let Some(apiserver) = self.lock_apiserver().as_ref() {
            pids.push(apiserver.pid());
        }
        if let Some(controllers) = self.lock_controllers().as_ref() {
            pids.extend(controllers.pids());
        }
        pids
    }

    /// The last `lines` lines of kube-apiserver's log (all its runs).
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.dir.path().join("kube-apiserver.log"), lines)
    }

    /// The last `lines` lines of the log `<name>.log` in [`ControlPlane::dir`]
    /// (e.g. `kube-controller-manager`, `kube-scheduler`).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        process::log_tail(&self.dir.path().join(format!("{name}.log")), lines)
    }

    /// The last `lines` lines of etcd's log.
    pub fn etcd_log_tail(&self, lines: usize) -> String {
        self.etcd.log_tail(lines)
    }

    /// A client and a kubeconfig file for `user` in `groups`, authenticated by
    /// a client certificate the API server's client CA signed (CN=user, one
    /// O per group).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<UserClient> {
        let cert = self.pki.client_cert(user, groups)?;
        let yaml = pki::kubeconfig_yaml(&self.server_url, &self.pki.serving_ca_pem, user, &cert);
        let index = self.kubeconfigs.fetch_add(1, Ordering::Relaxed);
        let safe: String = user
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let kubeconfig_path = self
            .dir
            .path()
            .join(format!("user-{index}-{safe}.kubeconfig"));
        std::fs::write(&kubeconfig_path, &yaml)
            .with_context(|| format!("write {}", kubeconfig_path.display()))?;
        Ok(UserClient {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            kubeconfig_path,
            client: client_from_kubeconfig(&yaml).await?,
        })
    }

    /// [`ControlPlane::client_as`] the ServiceAccount `namespace/name`, with the
    /// user name and groups the API server gives its tokens
    /// (`system:serviceaccount:NS:NAME`; `system:serviceaccounts`,
    /// `system:serviceaccounts:NS`, `system:authenticated`), so RBAC bindings
    /// to the ServiceAccount or its groups apply.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<UserClient> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let namespace_group = format!("system:serviceaccounts:{namespace}");
        self.client_as(
            &user,
            &[
                "system:serviceaccounts",
                &namespace_group,
                "system:authenticated",
            ],
        )
        .await
    }

    /// Server-side apply of multi-document YAML as the admin, field manager
    /// [`TEST_FIELD_MANAGER`], without forcing conflicts (see
    /// [`apply_yaml_with`] for other clients and managers).
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<kube::api::DynamicObject>> {
        apply_yaml_with(&self.client, yaml, &self.apply_options()).await
    }

    /// Kills kube-apiserver (SIGKILL) and waits until it is gone; etcd keeps
    /// running. Requests fail until [`ControlPlane::start_apiserver`].
    pub fn stop_apiserver(&self) {
        let stopped = self.lock_apiserver().take();
        drop(stopped);
    }

    /// Starts kube-apiserver again on the same port, with the same etcd and
    /// certificates, and waits for `/readyz`. Clients made before keep working:
    /// they reconnect.
    pub async fn start_apiserver(&self) -> Result<()> {
        if self.lock_apiserver().is_some() {
            bail!("kube-apiserver is already running");
        }
        let args = apiserver_args(
            self.dir.path(),
            &self.etcd_url,
            self.apiserver_port,
            &self.apiserver_args,
        );
        let log = self.dir.path().join("kube-apiserver.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut apiserver = Process::spawn(
                "kube-apiserver",
                &self.rig.join("bin/kube-apiserver"),
                &args,
                &log,
            )?;
            match wait_apiserver_ready(&self.client, || apiserver.check_running()).await {
                Ok(()) => {
                    *self.lock_apiserver() = Some(apiserver);
                    return Ok(());
                }
                // The port is fixed now; something else bound it meanwhile.
                Err(_) if apiserver.failed_to_bind() && attempt < BIND_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`ControlPlane::stop_apiserver`] then [`ControlPlane::start_apiserver`].
    pub async fn restart_apiserver(&self) -> Result<()> {
        self.stop_apiserver();
        self.start_apiserver().await
    }

    async fn install_gateway_api_crds(&self) -> Result<()> {
        let dir = self.rig.join("crds/experimental");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|path| path.extension().is_some_and(|ext| ext == "yaml"));
        files.sort();
        if files.is_empty() {
            bail!("no CRDs in {}", dir.display());
        }
        let streams = files
            .iter()
            .map(|file| {
                std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        apply_independent_with(&self.client, &streams, &self.apply_options()).await
    }

    fn apply_options(&self) -> ApplyOptions {
        ApplyOptions {
            field_manager: TEST_FIELD_MANAGER.to_string(),
            force: false,
        }
    }

    fn lock_controllers(&self) -> std::sync::MutexGuard<'_, Option<controllers::Controllers>> {
        // A panic while holding this lock leaves a valid Option behind.
        self.controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_apiserver(&self) -> std::sync::MutexGuard<'_, Option<Process>> {
        // A panic while holding this lock leaves a valid Option behind.
        self.apiserver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn server_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// A TCP port on 127.0.0.1 that was free a moment ago. The process it is for
/// binds it later, so a start that finds it taken is tried again.
fn write_pki(dir: &Path, pki: &Pki) -> Result<()> {
    for (name, pem) in [
        ("serving-ca.crt", &pki.serving_ca_pem),
        ("apiserver.crt", &pki.serving_cert_pem),
        ("apiserver.key", &pki.serving_key_pem),
        ("client-ca.crt", &pki.client_ca_pem),
        ("service-account.key", &pki.service_account_key_pem),
        ("service-account.pub", &pki.service_account_public_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Starts etcd on free ports and waits for its `/health`; (process, client URL).
async fn start_etcd(rig: &Path, dir: &Path) -> Result<(Process, String)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (client_port, peer_port) = (super::ports::for_child()?, super::ports::for_child()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let args: Vec<String> = [
            "--name=rig".to_string(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=rig={peer_url}"),
            // Test data: losing it on a power cut costs nothing, fsync costs time.
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ]
        .into();
        let mut etcd = Process::spawn("etcd", &rig.join("bin/etcd"), &args, &dir.join("etcd.log"))?;
        let health = SocketAddr::from(([127, 0, 0, 1], client_port));
        match wait_etcd_healthy(health, &mut etcd).await {
            Ok(()) => return Ok((etcd, client_url)),
            Err(_) if etcd.failed_to_bind() && attempt < BIND_ATTEMPTS => {
                drop(etcd);
                let _ = std::fs::remove_dir_all(dir.join("etcd"));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn wait_etcd_healthy(addr: SocketAddr, etcd: &mut Process) -> Result<()> {
    use super::client::{send, HttpRequest, Protocol};
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        etcd.check_running()?;
        let request = HttpRequest {
            addr,
            tls: None,
            protocol: Protocol::Http1,
            method: "GET".into(),
            path: "/health".into(),
            host: addr.to_string(),
            headers: vec![],
            timeout: Duration::from_secs(2),
        };
        let last = match send(&request).await {
            Ok(response) if response.status == 200 => return Ok(()),
            Ok(response) => format!(
                "{} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "etcd not healthy after {READY_TIMEOUT:?} (last: {last}); log tail:\n{}",
                etcd.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// kube-apiserver's flags: the minimal set controller-runtime's envtest uses,
/// with certificates from [`Pki`], then `extra`.
fn apiserver_args(dir: &Path, etcd_url: &str, port: u16, extra: &[String]) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", path("apiserver-certs")),
        format!("--tls-cert-file={}", path("apiserver.crt")),
        format!("--tls-private-key-file={}", path("apiserver.key")),
        format!("--client-ca-file={}", path("client-ca.crt")),
        "--authorization-mode=RBAC".to_string(),
        format!("--service-account-issuer=https://127.0.0.1:{port}"),
        format!("--service-account-key-file={}", path("service-account.pub")),
        format!(
            "--service-account-signing-key-file={}",
            path("service-account.key")
        ),
        "--service-cluster-ip-range=10.0.0.0/16".to_string(),
        // Published in the `kubernetes` Service's endpoints only; set so the
        // API server need not look for a default route (machines without one
        // exist), and not loopback, which endpoints refuse. TEST-NET-1.
        "--advertise-address=192.0.2.1".to_string(),
        "--allow-privileged=true".to_string(),
        // No kube-controller-manager creates default ServiceAccounts, and the
        // admission plugin would refuse pods without one.
        "--disable-admission-plugins=ServiceAccount".to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// Polls `/readyz` with `client` until it answers 200; `check_running` fails
/// the wait early when the process has exited.
async fn wait_apiserver_ready(
    client: &Client,
    mut check_running: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        check_running()?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a GET of a constant path is a valid request");
        let last = match client.request_text(request).await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            check_running()?;
            bail!("kube-apiserver not ready after {READY_TIMEOUT:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client_from_kubeconfig(yaml: &str) -> Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).context("parse a generated kubeconfig")?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("load a generated kubeconfig")?;
    Client::try_from(config).context("build a kube client")
}

/// The rig directory (bin/, crds/): `$PORTCULLIS_K8S_RIG`, else what
/// scripts/k8s-rig.sh prints last (built or found in its cache), once per
/// process.
fn rig_dir() -> Result<PathBuf> {
    static RIG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    RIG.get_or_init(|| locate_rig().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_rig() -> Result<PathBuf> {
    let dir = match std::env::var_os("PORTCULLIS_K8S_RIG") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-rig.sh");
            // Its progress (stderr) shows on the terminal: a cold build takes minutes.
            let output = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("run {}", script.display()))?;
            if !output.status.success() {
                bail!(
                    "{} failed ({}); its output is above",
                    script.display(),
                    output.status
                );
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            let last = stdout
                .lines()
                .last()
                .ok_or_else(|| anyhow!("{} printed no directory", script.display()))?;
            PathBuf::from(last.trim())
        }
    };
    for needed in ["bin/kube-apiserver", "bin/etcd", "crds/experimental"] {
        if !dir.join(needed).exists() {
            bail!(
                "the Kubernetes test rig {} has no {needed} (PORTCULLIS_K8S_RIG or scripts/k8s-rig.sh)",
                dir.display()
            );
        }
    }
    Ok(dir)
}
