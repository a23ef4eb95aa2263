//! kube-controller-manager and kube-scheduler for a [`ControlPlane`]
//! (`ControlPlane::start_controllers`): what turns a Deployment into pods
//! on a Node and a Service into EndpointSlices, as in a cluster.
//!
//! Both act as the control plane's admin (its kubeconfig), serve no port of
//! their own (`--secure-port=0`: parallel tests would fight over the default
//! ports, and nothing scrapes them) and run without leader election. The
//! controller manager runs only the controllers a test cluster's workloads
//! need; in particular no node-lifecycle controller, so a Node is never
//! tainted or its pods evicted when its heartbeat is late, and no IPAM or
//! cloud controllers.
//!
//! [`ControlPlane`]: super::ControlPlane

use super::process::Process;
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::Client;
use std::path::Path;
use std::time::{Duration, Instant};

/// The controllers kube-controller-manager runs (names of its
/// `--controllers` flag as of v1.36): Deployments and ReplicaSets make pods,
/// EndpointSlices follow Services and ready pods (and the mirroring
/// controller covers selector-less Services' Endpoints), namespaces are
/// emptied on deletion, owned objects are collected with their owner,
/// ServiceAccounts (`default` per namespace) and their legacy token Secrets
/// exist, the root CA is published as `kube-root-ca.crt`, and pods of a
/// deleted Node are collected.
pub const CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
];

/// How long kube-controller-manager may take to show it works (the `default`
/// ServiceAccount of namespace `default` appears).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The running controllers; killed on drop.
pub(super) struct Controllers {
    // Field order is drop order: stop placing pods before their controllers.
    scheduler: Process,
    controller_manager: Process,
}

impl Controllers {
    /// The process ids of kube-controller-manager and kube-scheduler.
    pub(super) fn pids(&self) -> Vec<u32> {
        vec![self.controller_manager.pid(), self.scheduler.pid()]
    }
}

/// Starts kube-controller-manager and kube-scheduler with the binaries of
/// `rig`, the admin kubeconfig and the keys under `dir`, and waits until the
/// controller manager's ServiceAccount controller has made `default/default`.
pub(super) async fn start(rig: &Path, dir: &Path, client: &Client) -> Result<Controllers> {
    let path = |name: &str| dir.join(name).display().to_string();
    let binary = |name: &str| -> Result<std::path::PathBuf> {
        let binary = rig.join("bin").join(name);
        if !binary.exists() {
            bail!(
                "the Kubernetes test rig {} has no bin/{name}: rebuild it with scripts/k8s-rig.sh",
                rig.display()
            );
        }
        Ok(binary)
    };
    let kubeconfig = format!("--kubeconfig={}", path("admin.kubeconfig"));
    let controller_manager_args = vec![
        kubeconfig.clone(),
        "--leader-elect=false".to_string(),
        "--secure-port=0".to_string(),
        format!("--controllers={}", CONTROLLERS.join(",")),
        // Signs the tokens of legacy ServiceAccount token Secrets; the API
        // server verifies them with the public half.
        format!(
            "--service-account-private-key-file={}",
            path("service-account.key")
        ),
        // Goes into token Secrets and kube-root-ca.crt: what pods trust the
        // API server with.
        format!("--root-ca-file={}", path("serving-ca.crt")),
        "--use-service-account-credentials=false".to_string(),
        "--v=1".to_string(),
    ];
    let mut controller_manager = Process::spawn(
        "kube-controller-manager",
        &binary("kube-controller-manager")?,
        &controller_manager_args,
        &dir.join("kube-controller-manager.log"),
    )?;
    let scheduler_args = vec![
        kubeconfig,
        "--leader-elect=false".to_string(),
        "--secure-port=0".to_string(),
        "--v=1".to_string(),
    ];
    let mut scheduler = Process::spawn(
        "kube-scheduler",
        &binary("kube-scheduler")?,
        &scheduler_args,
        &dir.join("kube-scheduler.log"),
    )?;

    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        controller_manager.check_running()?;
        scheduler.check_running()?;
        if accounts
            .get_opt("default")
            .await
            .context("read ServiceAccount default/default")?
            .is_some()
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "kube-controller-manager made no default ServiceAccount in {READY_TIMEOUT:?}; log tail:\n{}",
                controller_manager.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Controllers {
        scheduler,
        controller_manager,
    })
}
