//! The stand-in kubelet of the tests (tests/k8s/rig/nodeagent, built into the
//! rig by scripts/k8s-rig.sh) run for a [`ControlPlane`]: it registers a Ready
//! Node and runs the pods bound to it whose image is the Gateway API
//! conformance echo image as echo-basic processes (and those of the suite's
//! coredns image as a whoami DNS server of its own), each in its own network
//! namespace on a bridge of this host, and serves their logs (pods/log). [`NodeAgent`] is the guard: on drop the
//! agent is asked to stop (it stops every process and removes every namespace
//! and its bridge), then killed, then whatever it left is removed here, so a
//! failed test leaves no namespace, bridge or process behind.
//!
//! Addresses: each agent gets a /24 of 198.19.0.0/16, the half of RFC 2544's
//! benchmarking range 198.18.0.0/15 that the tests' other pod network
//! (198.18.0.0/16, made local on `lo` by `kube_mode::pod_ip` and
//! scripts/test.sh) leaves free. An address local on `lo` could not be a
//! pod's in another namespace, so the two halves never overlap: the bridge
//! holds the /24's first address, and the host reaches every pod through the
//! bridge's connected route.
//!
//! Names: bridge `pcna<pid><n>` (pid and a per-process counter in base 36, at
//! most 10 bytes), namespaces `<bridge>-<last octet>`. A bridge whose pid is
//! no longer running is a killed test's leftover and is removed at the next
//! start.
//!
//! [`ControlPlane`]: super::ControlPlane

use super::process::{log_tail, Process};
use super::ControlPlane;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The image repository the agent runs as echo-basic (any tag): the one the
/// conformance suite's manifests use.
pub const ECHO_IMAGE: &str = "registry.k8s.io/gateway-api/echo-basic";

/// The prefix of every bridge an agent makes.
const BRIDGE_PREFIX: &str = "pcna";

/// How long the agent may take to register its Node and sync its pods.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the agent gets to stop its pods and remove its network on drop
/// (it gives each process 3 s, in parallel).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running node agent; see the module documentation for what drop does.
pub struct NodeAgent {
    process: Option<Process>,
    node_name: String,
    bridge: String,
    pod_cidr: String,
    state_dir: PathBuf,
    log: PathBuf,
}

impl ControlPlane {
    /// Starts a node agent acting as the admin, and waits until its Node is
    /// registered and its pod watch has synced. Needs root and iproute2.
    pub async fn start_node_agent(&self) -> Result<NodeAgent> {
        self.start_node_agent_with(&[]).await
    }

    /// [`ControlPlane::start_node_agent`], also reporting pods of the image
    /// repositories `pretend_ready` Ready (with an address, nothing running):
    /// what a test does for pods it only needs to exist, e.g. the conformance
    /// suite's coredns, which its Setup waits for.
    pub async fn start_node_agent_with(&self, pretend_ready: &[&str]) -> Result<NodeAgent> {
        let binary = |name: &str| -> Result<PathBuf> {
            let path = self.rig.join("bin").join(name);
            if !path.exists() {
                bail!(
                    "the Kubernetes test rig {} has no bin/{name}: rebuild it with scripts/k8s-rig.sh",
                    self.rig.display()
                );
            }
            Ok(path)
        };
        let (agent_binary, echo_binary) = (binary("nodeagent")?, binary("echo-basic")?);
        remove_stale_node_networks();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let bridge = format!(
            "{BRIDGE_PREFIX}{}{}",
            base36(std::process::id()),
            base36(n % 36)
        );
        let pod_cidr = free_pod_cidr(n)?;
        let node_name = format!("node-{bridge}");
        let state_dir = self.dir().join(format!("node-agent-{bridge}"));
        let log = self.dir().join(format!("node-agent-{bridge}.log"));
        let mut args = vec![
            format!("--kubeconfig={}", self.kubeconfig_path().display()),
            format!("--node-name={node_name}"),
            format!("--pod-cidr={pod_cidr}"),
            format!("--bridge={bridge}"),
            format!("--echo-basic={}", echo_binary.display()),
            format!("--echo-image={ECHO_IMAGE}"),
            format!("--state-dir={}", state_dir.display()),
        ];
        args.extend(
            pretend_ready
                .iter()
                .map(|image| format!("--pretend-ready-image={image}")),
        );
        let process = Process::spawn("nodeagent", &agent_binary, &args, &log)?;
        let mut agent = NodeAgent {
            process: Some(process),
            node_name,
            bridge,
            pod_cidr,
            state_dir,
            log,
        };
        agent.wait_ready().await?;
        Ok(agent)
    }
}

impl NodeAgent {
    /// The Node it registered.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Its pods' prefix (`198.19.N.0/24`).
    pub fn pod_cidr(&self) -> &str {
        &self.pod_cidr
    }

    /// Whether `ip` is one of its pods' addresses (in its /24, not the bridge's).
    pub fn owns_pod_ip(&self, ip: &str) -> bool {
        let prefix = self.pod_cidr.trim_end_matches("0/24");
        ip.starts_with(prefix) && ip != format!("{prefix}1")
    }

    /// The agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Its bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The network namespaces of its pods that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        namespaces_of(&self.bridge)
    }

    /// Where pods' volumes and their processes' output go
    /// (`pods/<namespace>_<name>_<uid>/<container>.log`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The last `lines` lines of the agent's own log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let ready_line = format!("node {} ready", self.node_name);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(process) = self.process.as_mut() {
                process.check_running()?;
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(&ready_line) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the node agent was not ready after {READY_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(STOP_GRACE);
        }
        remove_network(&self.bridge);
    }
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// A /24 of 198.19.0.0/16 no interface of this host holds an address in,
/// starting from a place that differs per process and per agent.
fn free_pod_cidr(n: u32) -> Result<String> {
    let shown = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .context("run ip (iproute2)")?;
    let used = String::from_utf8_lossy(&shown.stdout);
    let start = std::process::id().wrapping_mul(7).wrapping_add(n * 31);
    for i in 0..254 {
        let third = (start.wrapping_add(i) % 254) + 1;
        let prefix = format!("198.19.{third}.");
        if !used.contains(&format!(" {prefix}")) {
            return Ok(format!("{prefix}0/24"));
        }
    }
    bail!("every /24 of 198.19.0.0/16 is in use on this host")
}

fn namespaces_of(bridge: &str) -> Vec<String> {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let text = listed
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let prefix = format!("{bridge}-");
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Kills every process in the bridge's namespaces, deletes them and the
/// bridge (what the agent does itself when it can stop cleanly).
fn remove_network(bridge: &str) {
    for netns in namespaces_of(bridge) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &netns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
    }
    let _ = Command::new("ip").args(["link", "del", bridge]).output();
}

/// Removes the networks of agents whose test process is gone (killed before
/// any guard could run); every agent's start does it first.
pub fn remove_stale_node_networks() {
    let Ok(out) = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "7: pcna2hwhs0: <BROADCAST,...> ..."
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let Some(digits) = name
            .strip_prefix(BRIDGE_PREFIX)
            .and_then(|rest| rest.get(..rest.len().saturating_sub(1)))
        else {
            continue;
        };
        let Ok(pid) = u32::from_str_radix(digits, 36) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_network(name);
        }
    }
}
