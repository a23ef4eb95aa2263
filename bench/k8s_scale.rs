//! Kubernetes mode at scale, through a real API server (etcd and
//! kube-apiserver of the test rig, scripts/k8s-rig.sh): creates Gateways,
//! HTTPRoutes, TLS Secrets, Services and EndpointSlices, starts the release
//! `portcullis serve --kubernetes`, and measures
//!
//! 1. the time from its start until every HTTPRoute shows Accepted and every
//!    Gateway Programmed (for the current generation), seen by watches;
//! 2. its writes to the API server (`portcullis_kubernetes_writes_total`)
//!    per object with status, and the writes in two 10 s idle windows after;
//! 3. the memory (VmRSS, VmHWM) of portcullis, kube-apiserver and etcd;
//! 4. from one route change (server-side apply moving a route to a Service
//!    whose endpoints are another pod) to the new pod answering through
//!    portcullis, and to the route's status carrying the new generation,
//!    repeated sequentially.
//!
//! ```sh
//! cargo build --release --bin portcullis
//! # 500 Gateways, 5,000 HTTPRoutes, 1,000 Secrets; the harness in the test
//! # profile, portcullis the release build (as the README's figures were made):
//! PORTCULLIS_BIN=$PWD/target/release/portcullis cargo test --bench k8s_scale -- --bench
//! # smaller, elsewhere:
//! PORTCULLIS_BIN=... cargo test --bench k8s_scale -- --bench --gateways 50 --routes 500 --changes 20 --out /tmp/k8s.json
//! ```
//!
//! (`cargo bench --bench k8s_scale` runs it too, with everything built in
//! the release profile.)
//!
//! Needs root (the backend pods' addresses, see tests/support/kube_mode.rs)
//! and the rig (`PORTCULLIS_K8S_RIG`, else scripts/k8s-rig.sh is run).
//! `cargo test --all-targets` runs bench targets without `--bench`; then
//! this prints one line and exits.

// The tests' support: the control plane, `portcullis serve --kubernetes`
// under a guard, echo pods. Its unit tests' imports go unused here (a
// `harness = false` target is not built with --test).
#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "k8s_scale/measure.rs"]
mod measure;
#[path = "k8s_scale/objects.rs"]
mod objects;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use measure::{lock, Progress, Shared};
use objects::{Object, Scale};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::control_plane::{ControlPlane, ControlPlaneOptions};
use support::echo::{EchoPod, PodSpec, RetryCounters};
use support::kube_mode::{install_crds, pod_ip, KubeGateway, KubeOptions};

const CONTROLLER: &str = "portcullis.dev/gateway-controller";
const FIELD_MANAGER: &str = "portcullis-bench";
/// Applies in flight while creating objects.
const FAN_OUT: usize = 32;
/// The idle windows after convergence.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Longest wait for one change to show.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

struct Args {
    scale: Scale,
    changes: usize,
    converge_timeout: Duration,
    out: PathBuf,
}

fn parse_args() -> Result<Option<Args>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut args = Args {
        scale: Scale {
            gateways: 500,
            routes: 5000,
        },
        changes: 60,
        converge_timeout: Duration::from_secs(900),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("bench/results-{}-k8s.json", today())),
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next().with_context(|| format!("{name} needs a value"))
        };
        let number = |s: String, name: &str| -> Result<usize> {
            s.parse()
                .with_context(|| format!("{name}: not a number: {s}"))
        };
        match flag.as_str() {
            "--bench" => {}
            "--gateways" => args.scale.gateways = number(value(&flag)?, &flag)?,
            "--routes" => args.scale.routes = number(value(&flag)?, &flag)?,
            "--changes" => args.changes = number(value(&flag)?, &flag)?,
            "--timeout" => {
                args.converge_timeout = Duration::from_secs(number(value(&flag)?, &flag)? as u64)
            }
            "--out" => args.out = PathBuf::from(value(&flag)?),
            other => bail!("unknown argument {other}"),
        }
    }
    if args.scale.gateways == 0 || args.scale.routes == 0 {
        bail!("--gateways and --routes must be at least 1");
    }
    Ok(Some(args))
}

fn main() -> Result<()> {
    let Some(args) = parse_args()? else {
        println!("k8s_scale: skipped (a benchmark: cargo bench --bench k8s_scale)");
        return Ok(());
    };
    // portcullis's own log: info only (debug logs every write).
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "info");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn log(started: Instant, message: &str) {
    println!("[{:7.1}s] {message}", started.elapsed().as_secs_f64());
}

async fn run(args: Args) -> Result<()> {
    let began = Instant::now();
    let scale = args.scale;
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        // 10 Services a namespace do not fit the rig's /24.
        apiserver_args: vec!["--service-cluster-ip-range=10.0.0.0/16".into()],
    })
    .await
    .context("start the control plane")?;
    install_crds(&cp).await?;
    let client = cp.client();
    log(began, &format!("control plane up in {:?}", cp.started_in()));

    let retry = Arc::new(RetryCounters::default());
    let pod = |name: &str, ip| PodSpec {
        kind: Default::default(),
        name: format!("{name}-pod-0"),
        namespace: "backends".into(),
        deployment: name.into(),
        ip,
        tls: None,
    };
    let (ip_a, ip_b) = (pod_ip()?, pod_ip()?);
    let _pod_a = EchoPod::start(pod("a", ip_a), retry.clone()).await?;
    let _pod_b = EchoPod::start(pod("b", ip_b), retry.clone()).await?;

    // Create everything before portcullis starts: its start is the cold
    // start of a replica in a populated cluster.
    let created = Instant::now();
    apply_all(&client, objects::cluster_objects(scale, CONTROLLER)).await?;
    let secrets = objects::secrets(scale)?;
    let wild_pem = secret_cert(&secrets[0])?;
    log(began, &format!("generated {} certificates", secrets.len()));
    let mut batch = secrets;
    batch.extend(objects::services(scale, ip_a, ip_b));
    apply_all(&client, batch).await?;
    apply_all(&client, objects::gateways(scale)).await?;
    apply_all(&client, objects::routes(scale)).await?;
    let create_seconds = created.elapsed().as_secs_f64();
    let created_objects = 1
        + scale.namespaces()
        + 1
        + scale.secrets()
        + 2 * scale.services()
        + scale.gateways
        + scale.routes;
    log(
        began,
        &format!("created {created_objects} objects in {create_seconds:.1}s"),
    );

    let routes_progress: Shared = Arc::new(std::sync::Mutex::new(Progress {
        expected: scale.routes,
        ..Default::default()
    }));
    let gateways_progress: Shared = Arc::new(std::sync::Mutex::new(Progress {
        expected: scale.gateways,
        ..Default::default()
    }));
    let watches = [
        measure::watch(
            client.clone(),
            objects::route_resource(),
            CONTROLLER,
            measure::route_accepted,
            routes_progress.clone(),
        ),
        measure::watch(
            client.clone(),
            objects::gateway_resource(),
            CONTROLLER,
            measure::gateway_programmed,
            gateways_progress.clone(),
        ),
    ];

    let port_offset = free_port_offset()?;
    let mut options = KubeOptions::admin(&cp, objects::CONTROLLER_NAMESPACE, "bench");
    options.port_offset = port_offset;
    let started = Instant::now();
    let mut gw = KubeGateway::spawn(&options)?;
    let pid = gw.pid();
    gw.wait_ready(args.converge_timeout).await?;
    let ready_seconds = started.elapsed().as_secs_f64();
    log(
        began,
        &format!("portcullis ready after {ready_seconds:.2}s"),
    );

    // Until every route is Accepted and every Gateway Programmed.
    let mut last_report = Instant::now();
    let (routes_at, gateways_at) = loop {
        let r = lock(&routes_progress).all_done_at;
        let g = lock(&gateways_progress).all_done_at;
        if let (Some(r), Some(g)) = (r, g) {
            break (r, g);
        }
        if !gw.is_running() {
            bail!("portcullis exited; log tail:\n{}", gw.log_tail(30));
        }
        if started.elapsed() > args.converge_timeout {
            bail!(
                "not converged within {:?}: {} of {} routes, {} of {} gateways",
                args.converge_timeout,
                lock(&routes_progress).done.len(),
                scale.routes,
                lock(&gateways_progress).done.len(),
                scale.gateways
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            log(
                began,
                &format!(
                    "{} routes accepted, {} gateways programmed",
                    lock(&routes_progress).done.len(),
                    lock(&gateways_progress).done.len()
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let converged_at = routes_at.max(gateways_at);
    let cpu_converged = measure::cpu_time(pid)?;
    let seconds = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    log(
        began,
        &format!(
            "all routes accepted after {:.2}s, all gateways programmed after {:.2}s",
            seconds(routes_at),
            seconds(gateways_at)
        ),
    );
    let writes_converged = measure::writes(&gw.metrics().await?);
    tokio::time::sleep(IDLE_WINDOW).await;
    let writes_idle1 = measure::writes(&gw.metrics().await?);
    tokio::time::sleep(IDLE_WINDOW).await;
    let writes_idle2 = measure::writes(&gw.metrics().await?);
    let (rss, hwm) = measure::memory_kib(pid)?;
    let cpu_idle = measure::cpu_time(pid)?;
    let control_plane_memory: Vec<Value> = cp
        .pids()
        .into_iter()
        .zip(["etcd", "kube-apiserver"])
        .map(|(pid, name)| {
            let (rss, hwm) = measure::memory_kib(pid).unwrap_or((0, 0));
            json!({"process": name, "rss_kib": rss, "hwm_kib": hwm})
        })
        .collect();
    log(
        began,
        &format!("converged: portcullis VmRSS {rss} KiB, VmHWM {hwm} KiB"),
    );

    let proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, 80 + port_offset));
    let tls_proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, 443 + port_offset));
    sanity(proxy, tls_proxy, scale, &wild_pem).await?;
    let changes = change_latencies(&client, scale, args.changes, proxy, began).await?;
    let (rss_after, hwm_after) = measure::memory_kib(pid)?;

    let objects_with_status = scale.gateways + scale.routes + 1;
    let written = measure::total(&writes_idle1, Some("written"));
    let all_writes = measure::total(&writes_idle1, None);
    let result = json!({
        "benchmark": "k8s_scale",
        "date": today(),
        "machine": machine(),
        "versions": versions(&cp),
        "scale": {
            "gateways": scale.gateways,
            "listeners_per_gateway": 3,
            "httproutes": scale.routes,
            "tls_secrets": scale.secrets(),
            "services": scale.services(),
            "endpointslices": scale.services(),
            "namespaces": scale.namespaces(),
            "objects_created": created_objects,
        },
        "create_seconds": round(create_seconds),
        "portcullis_ready_seconds": round(ready_seconds),
        "all_routes_accepted_seconds": round(seconds(routes_at)),
        "all_gateways_programmed_seconds": round(seconds(gateways_at)),
        "all_status_written_seconds": round(seconds(converged_at)),
        "portcullis_cpu_seconds_to_convergence": round(cpu_converged.as_secs_f64()),
        "portcullis_cpu_seconds_in_idle_windows": round((cpu_idle - cpu_converged).as_secs_f64()),
        "writes": {
            "objects_with_status": objects_with_status,
            "at_convergence": writes_converged,
            "after_first_idle_window": writes_idle1,
            "written_per_object": round(written as f64 / objects_with_status as f64),
            "all_per_object": round(all_writes as f64 / objects_with_status as f64),
            "in_first_idle_window": measure::total(&writes_idle1, None) - measure::total(&writes_converged, None),
            "in_second_idle_window": measure::total(&writes_idle2, None) - measure::total(&writes_idle1, None),
            "idle_window_seconds": IDLE_WINDOW.as_secs(),
        },
        "memory_kib": {
            "portcullis_rss_converged": rss,
            "portcullis_hwm_converged": hwm,
            "portcullis_rss_after_changes": rss_after,
            "portcullis_hwm_after_changes": hwm_after,
            "control_plane": control_plane_memory,
        },
        "change_to_programmed": measure::summary(&changes.programmed),
        "change_to_observed_generation": measure::summary(&changes.observed),
        "change_apply": measure::summary(&changes.apply),
        "change_failures": changes.failures,
        "method": "objects created by server-side apply (32 in flight) before portcullis starts; \
                   times from spawning portcullis, seen by watches of HTTPRoutes and Gateways; \
                   a change is a server-side apply moving one route (a different one each time) \
                   to a Service whose EndpointSlice is the other pod, timed from the API server's \
                   answer to the apply (the apply's own time is change_apply) until a GET through \
                   portcullis (polled every 2 ms, one connection each) answers from that pod, and \
                   until the route's Accepted condition carries the new generation (polled every \
                   10 ms)",
    });
    let text = serde_json::to_string_pretty(&result)?;
    std::fs::write(&args.out, format!("{text}\n"))
        .with_context(|| format!("write {}", args.out.display()))?;
    println!("{text}");
    log(began, &format!("wrote {}", args.out.display()));
    for w in watches {
        w.abort();
    }
    drop(gw);
    Ok(())
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Server-side applies `objects`, [`FAN_OUT`] at a time.
async fn apply_all(client: &kube::Client, objects: Vec<Object>) -> Result<()> {
    let results: Vec<Result<DynamicObject>> = futures_util::stream::iter(objects)
        .map(|o| async move { apply(client, &o).await })
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    results.into_iter().try_for_each(|r| r.map(drop))
}

async fn apply(client: &kube::Client, o: &Object) -> Result<DynamicObject> {
    let api: Api<DynamicObject> = if o.namespace.is_empty() {
        Api::all_with(client.clone(), &o.resource)
    } else {
        Api::namespaced_with(client.clone(), &o.namespace, &o.resource)
    };
    api.patch(
        &o.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&o.body),
    )
    .await
    .with_context(|| format!("apply {} {}/{}", o.resource.kind, o.namespace, o.name))
}

fn secret_cert(secret: &Object) -> Result<String> {
    use base64::Engine as _;
    let encoded = secret.body["data"]["tls.crt"]
        .as_str()
        .context("a Secret without tls.crt")?;
    let pem = base64::engine::general_purpose::STANDARD.decode(encoded)?;
    Ok(String::from_utf8(pem)?)
}

/// An offset that makes 80 and 443 free ports on 127.0.0.1.
fn free_port_offset() -> Result<u16> {
    let free = |port: u16| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    let seed = u16::try_from(std::process::id() % 1000).unwrap_or(0);
    (0..200u16)
        .map(|i| 30000 + (seed + i * 7) % 20000)
        .find(|&o| free(80 + o) && free(443 + o))
        .context("no free port offset")
}

/// GET `/` for `host`; (status, answering pod).
async fn get(
    addr: SocketAddr,
    host: &str,
    tls: Option<support::client::TlsOptions>,
) -> Result<(u16, String)> {
    let resp = support::client::send(&support::client::HttpRequest {
        addr,
        tls,
        protocol: support::client::Protocol::Http1,
        method: "GET".into(),
        path: "/".into(),
        host: host.into(),
        headers: vec![],
        timeout: Duration::from_secs(5),
    })
    .await
    .map_err(|e| anyhow::anyhow!("GET {host}: {e}"))?;
    let pod = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["pod"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok((resp.status, pod))
}

/// The first route answers over HTTP and HTTPS (its Gateway's wildcard
/// certificate) from the pod its Service points at.
async fn sanity(proxy: SocketAddr, tls_proxy: SocketAddr, scale: Scale, pem: &str) -> Result<()> {
    let host = objects::route_hostname(scale, 0);
    let expect = if objects::initial_service(0) % 2 == 0 {
        "a-"
    } else {
        "b-"
    };
    let (status, pod) = get(proxy, &host, None).await?;
    if status != 200 || !pod.starts_with(expect) {
        bail!("http://{host}/ answered {status} from {pod:?}");
    }
    let tls = support::client::TlsOptions {
        sni: host.clone(),
        trusted_pem: vec![pem.to_string()],
        ..Default::default()
    };
    let (status, pod) = get(tls_proxy, &host, Some(tls)).await?;
    if status != 200 || !pod.starts_with(expect) {
        bail!("https://{host}/ answered {status} from {pod:?}");
    }
    Ok(())
}

struct Changes {
    /// ms from the apply to the new pod answering.
    programmed: Vec<f64>,
    /// ms from the apply to the status carrying the new generation.
    observed: Vec<f64>,
    /// ms the apply itself took (API server).
    apply: Vec<f64>,
    failures: Vec<String>,
}

/// `n` sequential changes, each moving another route to the other pod.
async fn change_latencies(
    client: &kube::Client,
    scale: Scale,
    n: usize,
    proxy: SocketAddr,
    began: Instant,
) -> Result<Changes> {
    let mut out = Changes {
        programmed: Vec::new(),
        observed: Vec::new(),
        apply: Vec::new(),
        failures: Vec::new(),
    };
    for i in 0..n {
        // A different route each time, spread over Gateways and namespaces.
        let route = (i * 7919 + 13) % scale.routes;
        let current = objects::initial_service(route);
        let next = current ^ 1;
        let expect = if next % 2 == 0 { "a-" } else { "b-" };
        let host = objects::route_hostname(scale, route);
        let object = objects::route(scale, route, next);
        let sent = Instant::now();
        let applied = apply(client, &object).await?;
        // The change exists once the API server answered the apply.
        let t0 = Instant::now();
        out.apply.push((t0 - sent).as_secs_f64() * 1000.0);
        let generation = applied.metadata.generation;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &object.namespace, &object.resource);
        let programmed = async {
            while t0.elapsed() < CHANGE_TIMEOUT {
                if let Ok((200, pod)) = get(proxy, &host, None).await {
                    if pod.starts_with(expect) {
                        return Some(t0.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            None
        };
        let observed = async {
            while t0.elapsed() < CHANGE_TIMEOUT {
                if let Ok(route) = api.get(&object.name).await {
                    let mut value = serde_json::to_value(&route).unwrap_or_default();
                    value["metadata"]["generation"] = json!(generation);
                    if measure::route_accepted(&value, CONTROLLER) {
                        return Some(t0.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        };
        let (p, o) = tokio::join!(programmed, observed);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match p {
            Some(d) => out.programmed.push(ms(d)),
            None => out.failures.push(format!(
                "{host}: {expect} not answering after {CHANGE_TIMEOUT:?}"
            )),
        }
        match o {
            Some(d) => out.observed.push(ms(d)),
            None => out.failures.push(format!(
                "{host}: generation {generation:?} not observed after {CHANGE_TIMEOUT:?}"
            )),
        }
        if (i + 1) % 10 == 0 {
            log(began, &format!("{} changes measured", i + 1));
        }
        // Changes come one at a time, not in a burst the debounce merges.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(out)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn today() -> String {
    command_output("date", &["-u", "+%F"])
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0).round(),
        "kernel": command_output("uname", &["-r"]),
        "note": "shared VM: other jobs may have used the 2 cores during the run",
    })
}

fn versions(cp: &ControlPlane) -> Value {
    let bin = |name: &str| cp.rig_dir().join("bin").join(name).display().to_string();
    json!({
        "portcullis": command_output(&support::portcullis::binary().display().to_string(), &["--version"]),
        "portcullis_commit": command_output("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
        "kube_apiserver": command_output(&bin("kube-apiserver"), &["--version"]),
        "etcd": command_output(&bin("etcd"), &["--version"]).lines().next().unwrap_or_default(),
        "rustc": command_output("rustc", &["--version"]),
    })
}
