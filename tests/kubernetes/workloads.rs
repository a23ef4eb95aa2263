//! Workloads on the test control plane: kube-controller-manager,
//! kube-scheduler and the stand-in kubelet (the node agent) turn a Deployment
//! of the Gateway API conformance echo image into echo-basic processes, each
//! in its own network namespace, that the host reaches at their pod IPs and
//! the EndpointSlice controller publishes and whose logs the API server
//! serves (pods/log); deleting the Deployment stops them and removes their
//! namespaces. This is the ground the upstream conformance
//! suite needs (its backends are such Deployments).

use crate::rig::{is_running, kill_and_wait_gone};
use crate::support::control_plane::{
    remove_stale_node_networks, ControlPlane, NodeAgent, ECHO_IMAGE,
};
use crate::support::kube_mode::eventually;
use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "echo";

/// Pods scheduled, started (echo-basic listening) and reported Ready; the
/// controllers act within a second or two, echo-basic starts in milliseconds.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);

/// The manifests of the test: the suite's own backend shape
/// (conformance/base/manifests.yaml's infra-backend-v1: echo-basic with its
/// pod name and namespace from fieldRefs, port 3000 behind a Service).
fn manifests(image_tag: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NAMESPACE}}}
spec:
  selector: {{app: echo}}
  ports: [{{protocol: TCP, port: 8080, targetPort: 3000}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo, namespace: {NAMESPACE}, labels: {{app: echo}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: echo
        image: {ECHO_IMAGE}:{image_tag}
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: NAMESPACE
          valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
        resources: {{requests: {{cpu: 10m}}}}
"#
    )
}

/// A pod's IP and the pid of its echo-basic (the agent's container ID is
/// `nodeagent://PID`), once it is Running and Ready.
fn running(pod: &Pod) -> Option<(String, u32)> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if status.phase.as_deref() != Some("Running") || !ready {
        return None;
    }
    let id = status
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .as_ref()?;
    let pid = id.strip_prefix("nodeagent://")?.parse().ok()?;
    Some((status.pod_ip.clone()?, pid))
}

/// What says why pods did not come or go: the namespace's pods and events,
/// and the logs of the agent and the controllers.
async fn diagnose(cp: &ControlPlane, agent: &NodeAgent) -> String {
    let pods: Api<Pod> = Api::namespaced(cp.client(), NAMESPACE);
    let pods = match pods.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|pod| {
                let status = pod.status.clone().unwrap_or_default();
                format!(
                    "{} node={:?} phase={:?} ip={:?} deleting={}",
                    pod.metadata.name.clone().unwrap_or_default(),
                    pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    status.phase,
                    status.pod_ip,
                    pod.metadata.deletion_timestamp.is_some()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("cannot list pods: {e}"),
    };
    let events: Api<Event> = Api::namespaced(cp.client(), NAMESPACE);
    let events = match events.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|e| {
                format!(
                    "{:?} {:?} {:?}: {:?}",
                    e.involved_object.name, e.type_, e.reason, e.message
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("cannot list events: {e}"),
    };
    format!(
        "pods:\n{pods}\nevents:\n{events}\nnode agent log:\n{}\nkube-scheduler log:\n{}\nkube-controller-manager log:\n{}",
        agent.log_tail(30),
        cp.log_tail("kube-scheduler", 20),
        cp.log_tail("kube-controller-manager", 30)
    )
}

/// GET / on the pod's echo-basic, from the host: its JSON answer.
async fn echo(ip: &str) -> Result<serde_json::Value> {
    use crate::support::client::{send, HttpRequest, Protocol};
    let ip: IpAddr = ip.parse().context("pod IP")?;
    let addr = SocketAddr::new(ip, 3000);
    let response = send(&HttpRequest {
        addr,
        tls: None,
        protocol: Protocol::Http1,
        method: "GET".into(),
        path: "/hello".into(),
        host: "echo.example".into(),
        headers: vec![],
        timeout: Duration::from_secs(5),
    })
    .await
    .with_context(|| format!("GET http://{addr}/hello"))?;
    ensure!(
        response.status == 200,
        "{addr} answered {}",
        response.status
    );
    serde_json::from_slice(&response.body).with_context(|| {
        format!(
            "{addr} answered no JSON: {}",
            String::from_utf8_lossy(&response.body)
        )
    })
}

#[tokio::test]
async fn a_deployment_of_the_echo_image_runs_in_pod_namespaces_and_goes_with_its_deletion(
) -> Result<()> {
    let began = Instant::now();
    let cp = ControlPlane::start().await?;
    cp.start_controllers().await?;
    let agent = cp.start_node_agent().await?;
    eprintln!(
        "control plane in {:?}, controllers and node agent {} ({}) after {:?}",
        cp.started_in(),
        agent.node_name(),
        agent.pod_cidr(),
        began.elapsed()
    );
    let client = cp.client();
    // A tag the suite's manifests use; any tag of the image runs echo-basic.
    cp.apply_yaml(&manifests("v1.5.1", 2)).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let running_pods = eventually("two echo pods Running and Ready", RUNNING_TIMEOUT, || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels("app=echo")).await?;
            let running: Vec<(String, String, u32)> = list
                .items
                .iter()
                .filter_map(|pod| {
                    let (ip, pid) = running(pod)?;
                    Some((pod.metadata.name.clone()?, ip, pid))
                })
                .collect();
            Ok((list.items.len() == 2 && running.len() == 2).then_some(running))
        }
    })
    .await;
    let running_pods = match running_pods {
        Ok(pods) => pods,
        Err(e) => return Err(e.context(diagnose(&cp, &agent).await)),
    };
    eprintln!("pods running after {:?}: {running_pods:?}", began.elapsed());

    let ips: BTreeSet<String> = running_pods.iter().map(|(_, ip, _)| ip.clone()).collect();
    ensure!(ips.len() == 2, "the two pods share an address: {ips:?}");
    for (name, ip, pid) in &running_pods {
        ensure!(
            agent.owns_pod_ip(ip),
            "pod {name} has {ip}, not an address of the agent's {}",
            agent.pod_cidr()
        );
        ensure!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "pod {name}'s process {pid} is not running"
        );
    }
    ensure!(
        agent.namespaces().len() == 2,
        "want one network namespace per pod, have {:?}",
        agent.namespaces()
    );

    // The EndpointSlice controller publishes exactly the pods' addresses,
    // ready: it skips pods whose Node does not exist, so this also proves
    // the agent's Node is a real one.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        "the Service's EndpointSlice holds both pod IPs, ready",
        RUNNING_TIMEOUT,
        || {
            let (slices, ips) = (slices.clone(), ips.clone());
            async move {
                let list = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=echo"))
                    .await?;
                let ready: BTreeSet<String> = list
                    .items
                    .iter()
                    .flat_map(|slice| slice.endpoints.iter().flatten())
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .flat_map(|e| e.addresses.iter().cloned())
                    .collect();
                Ok((ready == ips).then_some(()))
            }
        },
    )
    .await?;

    // Each pod's echo-basic answers from its own address, naming itself:
    // two processes listening on the same port, apart only by namespace.
    for (name, ip, _) in &running_pods {
        let answer = echo(ip).await?;
        ensure!(
            answer["pod"] == name.as_str() && answer["namespace"] == NAMESPACE,
            "{ip} answered for another pod: {answer}"
        );
        ensure!(answer["path"] == "/hello", "{ip} echoed {answer}");
        // pods/log, proxied by the API server to the agent's logs endpoint
        // as to a kubelet's: what the suite's mirror tests read.
        let logs = pods
            .logs(
                name,
                &LogParams {
                    container: Some("echo".into()),
                    since_seconds: Some(300),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("read pod {name}'s logs"))?;
        ensure!(
            logs.contains("Echoing back request made to /hello to client"),
            "pod {name}'s logs do not show the request:\n{logs}"
        );
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments
        .delete("echo", &DeleteParams::background())
        .await
        .context("delete the Deployment")?;
    let gone = eventually(
        "the garbage collector and the node agent remove both pods",
        RUNNING_TIMEOUT,
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default().labels("app=echo")).await?;
                Ok(list.items.is_empty().then_some(()))
            }
        },
    )
    .await;
    if let Err(e) = gone {
        return Err(e.context(diagnose(&cp, &agent).await));
    }
    for (name, _, pid) in &running_pods {
        ensure!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pod {name} is gone but its process {pid} still runs"
        );
    }
    ensure!(
        agent.namespaces().is_empty(),
        "pods are gone but their namespaces remain: {:?}",
        agent.namespaces()
    );
    eprintln!("deployment gone after {:?}", began.elapsed());
    Ok(())
}

/// Set in the helper process [`a_killed_test_leaves_no_process_and_the_next_agent_removes_its_network`] starts.
const WORKLOAD_HELPER: &str = "PORTCULLIS_WORKLOAD_HELPER";

#[tokio::test]
async fn a_killed_test_leaves_no_process_and_the_next_agent_removes_its_network() -> Result<()> {
    // This test binary, running only `workload_helper`: a control plane with
    // controllers and a node agent running one echo pod; it prints what runs
    // and waits to be killed. SIGKILL runs no destructor: the parent-death
    // signals must take every process down (the agent's children included),
    // and the network the agent made must be recognisable as stale.
    let mut helper = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "workloads::workload_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKLOAD_HELPER, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = helper.stdout.take().expect("stdout was piped");
    let read = tokio::task::spawn_blocking(move || -> Result<(PathBuf, String, Vec<u32>)> {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some((_, rest)) = line.split_once("workload:") {
                let mut words = rest.split_whitespace();
                let dir = PathBuf::from(words.next().context("the helper's directory")?);
                let bridge = words.next().context("the bridge")?.to_string();
                let pids = words
                    .map(|p| p.parse().context("a pid"))
                    .collect::<Result<_>>()?;
                return Ok((dir, bridge, pids));
            }
        }
        bail!("the helper ended without printing its workload")
    });
    let (dir, bridge, pids) = match tokio::time::timeout(Duration::from_secs(900), read).await {
        Ok(Ok(Ok(started))) => started,
        outcome => {
            let _ = helper.kill();
            let _ = helper.wait();
            bail!("the helper printed no workload: {outcome:?}");
        }
    };
    // etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the
    // agent, echo-basic.
    ensure!(pids.len() == 6, "six processes: {pids:?}");
    ensure!(
        pids.iter().all(|&p| is_running(p)),
        "all run before the kill"
    );

    kill_and_wait_gone(&mut helper, &pids).await?;
    ensure!(
        bridge_exists(&bridge),
        "the killed agent could not remove its bridge {bridge}, yet it is gone"
    );
    remove_stale_node_networks();
    ensure!(
        !bridge_exists(&bridge),
        "the stale bridge {bridge} was kept"
    );
    let leftover: Vec<String> = namespaces_named(&format!("{bridge}-"));
    ensure!(leftover.is_empty(), "stale namespaces kept: {leftover:?}");
    // The killed helper could not remove its directory.
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    Ok(())
}

/// Not a test on its own: the body of the process that
/// [`a_killed_test_leaves_no_process_and_the_next_agent_removes_its_network`]
/// starts and kills (selected by `WORKLOAD_HELPER`; otherwise it returns at
/// once).
#[tokio::test]
async fn workload_helper() -> Result<()> {
    if std::env::var_os(WORKLOAD_HELPER).is_none() {
        return Ok(());
    }
    let cp = ControlPlane::start().await?;
    cp.start_controllers().await?;
    let agent = cp.start_node_agent().await?;
    cp.apply_yaml(&manifests("v1.5.1", 1)).await?;
    let pods: Api<Pod> = Api::namespaced(cp.client(), NAMESPACE);
    let pid = eventually("the echo pod Running", RUNNING_TIMEOUT, || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels("app=echo")).await?;
            Ok(list.items.iter().find_map(running).map(|(_, pid)| pid))
        }
    })
    .await?;
    let mut pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
    pids.push(agent.pid().context("the agent runs")?.to_string());
    pids.push(pid.to_string());
    println!(
        "workload: {} {} {}",
        cp.dir().display(),
        agent.bridge(),
        pids.join(" ")
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    bail!("the helper was not killed within 10 minutes")
}

fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn namespaces_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
