//! Gateway API conformance harness: runs the real `portcullis` binary against
//! in-process echo backends for every case of the shared conformance data
//! (`cases.json`, `status-only.json`) that is in scope, checks each request
//! entry's expectations and the encoded status checks, prints a pass table
//! (also written to `target/conformance.md`) and fails on any in-scope case
//! that fails and is not listed in [`KNOWN_FAILING`].
//!
//! `PORTCULLIS_CONFORMANCE_CASES=Name1,Name2` runs a subset;
//! `PORTCULLIS_CONFORMANCE_FEATURES=F1,F2` puts more features in scope for
//! this run (`prepared` stands for every feature of [`PREPARED_FEATURES`]);
//! `PORTCULLIS_CONFORMANCE_JOBS` sets how many cases run at once (default 2);
//! `PORTCULLIS_SHARED` points at the shared directory (default `../shared`).

mod support;

use futures_util::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::client::{
    self, ClientError, HttpRequest, HttpResponse, Protocol, TlsOptions, WsFrame,
};
use support::echo::{EchoPod, RetryCounters};
use support::env::{Cluster, Layout};
use support::expect::{self, PodDirectory};
use support::portcullis::{Portcullis, ServeOptions};

/// In-scope cases expected to fail for now: (case name, reason seen).
const KNOWN_FAILING: &[(&str, &str)] = &[];

/// Features a case may declare (besides any `HTTPRoute*`) to be in scope now.
const IN_SCOPE_FEATURES: &[&str] = &[
    "Gateway",
    "ReferenceGrant",
    "ListenerSet",
    "GatewayPort8080",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "TLSRoute",
    "TLSRouteModeTerminate",
    "TLSRouteModeMixed",
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayBackendClientCertificate",
];

/// Features whose cases the harness can run (tls-stream traffic, status
/// checks encoded) but that wait for gateway work before joining
/// [`IN_SCOPE_FEATURES`]; `PORTCULLIS_CONFORMANCE_FEATURES=prepared` tries them.
const PREPARED_FEATURES: &[&str] = &[];

/// Cases whose checks only apply when a feature is NOT supported; portcullis
/// supports it, so they are out of scope whatever their declared features.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "TLSRouteListenerTerminateNotSupported",
        "only for implementations without TLSRouteModeTerminate; portcullis supports it",
    ),
    (
        "TLSRouteListenerMixedTerminationNotSupported",
        "only for implementations without TLSRouteModeMixed; portcullis supports it",
    ),
];

const CLASS_NAME: &str = "portcullis";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
const RETRY_WINDOW: Duration = Duration::from_secs(3);
const READY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Case {
    name: String,
    features: Vec<String>,
    manifests: Vec<String>,
    gateway: Option<(String, String)>,
    requests: Vec<Value>,
    has_status_checks: bool,
    status_only: bool,
}

#[derive(Debug, Clone)]
enum Outcome {
    Passed,
    Failed(String),
    /// Why the case is not run.
    NotInScope(String),
}

/// The features in scope for this run: [`IN_SCOPE_FEATURES`] plus those named
/// in `PORTCULLIS_CONFORMANCE_FEATURES`.
fn scope_features() -> Vec<String> {
    let mut out: Vec<String> = IN_SCOPE_FEATURES.iter().map(|f| f.to_string()).collect();
    let extra = std::env::var("PORTCULLIS_CONFORMANCE_FEATURES").unwrap_or_default();
    for f in extra.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if f == "prepared" {
            out.extend(PREPARED_FEATURES.iter().map(|f| f.to_string()));
        } else {
            out.push(f.to_string());
        }
    }
    out
}

/// Ok when the case runs, else why not.
fn scope(case: &Case, in_scope: &[String]) -> Result<(), String> {
    if let Some((_, why)) = NOT_APPLICABLE.iter().find(|(n, _)| *n == case.name) {
        return Err((*why).to_string());
    }
    let missing: Vec<&str> = case
        .features
        .iter()
        .filter(|f| !f.starts_with("HTTPRoute") && !in_scope.contains(f))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("needs {}", missing.join(", ")))
    }
}

fn load_cases() -> Vec<Case> {
    let dir = support::conformance_dir();
    let mut out = Vec::new();
    for (file, status_only) in [("cases.json", false), ("status-only.json", true)] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let list: Vec<Value> = serde_json::from_str(&text).expect("conformance JSON parses");
        for c in list {
            let strs = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            };
            out.push(Case {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                features: strs(&c["features"]),
                manifests: strs(&c["manifests"]),
                gateway: gateway_ref(&c["gateway"]),
                requests: c["requests"].as_array().cloned().unwrap_or_default(),
                has_status_checks: status_only || c["status_checks"].is_string(),
                status_only,
            });
        }
    }
    out
}

fn gateway_ref(v: &Value) -> Option<(String, String)> {
    Some((
        v["namespace"].as_str()?.to_string(),
        v["name"].as_str()?.to_string(),
    ))
}

/// Random 127.x.y.0/24 blocks: two per case (gateways, pods), consecutive.
fn layout_for(base: u32, index: u32, port_offset: u16) -> Layout {
    let block = |n: u32| {
        let n = base + n;
        [127, (1 + (n / 256) % 250) as u8, (n % 256) as u8]
    };
    Layout {
        gateway_block: block(index * 2),
        pod_block: block(index * 2 + 1),
        port_offset,
        class_name: CLASS_NAME.into(),
    }
}

#[test]
fn gateway_api_conformance() {
    support::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    rt.block_on(run_all());
}

async fn run_all() {
    let filter: Option<Vec<String>> = std::env::var("PORTCULLIS_CONFORMANCE_CASES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
    let jobs: usize = std::env::var("PORTCULLIS_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2)
        .max(1);
    let cases: Vec<Case> = load_cases()
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| f.contains(&c.name)))
        .collect();
    if let Some(f) = &filter {
        for name in f {
            assert!(cases.iter().any(|c| &c.name == name), "unknown case {name}");
        }
    }
    let pki = support::pki::suite();
    let (base, port_offset) = {
        use rand::Rng;
        let mut rng = rand::rng();
        (
            rng.random_range(0..40_000u32),
            20_000 + rng.random_range(0..100u16) * 100,
        )
    };
    let in_scope = scope_features();
    let in_scope = &in_scope;
    let started = Instant::now();
    let results: Vec<(Case, Outcome, Duration)> =
        futures_util::stream::iter(cases.into_iter().enumerate())
            .map(|(i, case)| async move {
                let t = Instant::now();
                let outcome = match scope(&case, in_scope) {
                    Ok(()) => {
                        let layout = layout_for(base, i as u32, port_offset);
                        match run_case(&case, &layout, pki).await {
                            Ok(()) => Outcome::Passed,
                            Err(e) => Outcome::Failed(e),
                        }
                    }
                    Err(why) => Outcome::NotInScope(why),
                };
                (case, outcome, t.elapsed())
            })
            .buffered(jobs)
            .collect()
            .await;
    let report = render_report(&results, started.elapsed());
    println!("{report}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("conformance.md"), &report);

    let known: BTreeMap<&str, &str> = KNOWN_FAILING.iter().copied().collect();
    let mut unexpected = Vec::new();
    for (case, outcome, _) in &results {
        match outcome {
            Outcome::Failed(reason) if !known.contains_key(case.name.as_str()) => {
                unexpected.push(format!("{}: {reason}", case.name));
            }
            Outcome::Passed if known.contains_key(case.name.as_str()) => {
                println!("{} now passing, remove from KNOWN_FAILING", case.name);
            }
            _ => {}
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} in-scope conformance case(s) failed that are not in KNOWN_FAILING:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

fn render_report(results: &[(Case, Outcome, Duration)], total: Duration) -> String {
    // feature -> (passed, failed, not in scope)
    let mut by_feature: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (case, outcome, _) in results {
        for f in &case.features {
            let e = by_feature.entry(f.as_str()).or_default();
            match outcome {
                Outcome::Passed => e.0 += 1,
                Outcome::Failed(_) => e.1 += 1,
                Outcome::NotInScope(_) => e.2 += 1,
            }
        }
    }
    let passed = results
        .iter()
        .filter(|r| matches!(r.1, Outcome::Passed))
        .count();
    let scoped = results
        .iter()
        .filter(|r| !matches!(r.1, Outcome::NotInScope(_)))
        .count();
    let mut out = format!(
        "# Gateway API conformance\n\n{passed}/{scoped} in-scope cases passed ({} not in scope), {:.1}s\n\n| feature | passed | failed | not in scope |\n| --- | --- | --- | --- |\n",
        results.len() - scoped,
        total.as_secs_f64()
    );
    for (f, (p, x, n)) in &by_feature {
        out.push_str(&format!("| {f} | {p} | {x} | {n} |\n"));
    }
    out.push_str("\n| case | result | time | first failure / why not in scope |\n| --- | --- | --- | --- |\n");
    for (case, outcome, took) in results {
        let (result, reason) = match outcome {
            Outcome::Passed => ("pass", String::new()),
            Outcome::Failed(r) => ("FAIL", r.replace('|', "\\|").replace('\n', " ")),
            Outcome::NotInScope(why) => ("not in scope", why.clone()),
        };
        let reason: String = reason.chars().take(300).collect();
        let kind = if case.status_only {
            " (status only)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {}{kind} | {result} | {:.1}s | {reason} |\n",
            case.name,
            took.as_secs_f64()
        ));
    }
    out
}

/// Everything a running case needs.
struct CaseEnv<'a> {
    case: &'a Case,
    layout: &'a Layout,
    pki: &'a support::pki::SuitePki,
    cluster: Cluster,
    config_dir: std::path::PathBuf,
    pods: Vec<EchoPod>,
    gateway: Portcullis,
}

impl PodDirectory for CaseEnv<'_> {
    fn deployment_of(&self, pod: &str) -> Option<String> {
        self.pods
            .iter()
            .find(|p| p.spec().name == pod)
            .map(|p| p.spec().deployment.clone())
    }

    fn secret_cert_pem(&self, secret: &str) -> Option<String> {
        self.pki.secret(secret).ok().map(|p| p.cert_pem.clone())
    }
}

impl CaseEnv<'_> {
    fn total_requests(&self) -> usize {
        self.pods.iter().map(EchoPod::request_count).sum()
    }

    fn gateway_ip(&self, entry: &Value) -> Result<Ipv4Addr, String> {
        let (ns, name) = gateway_ref(&entry["gateway"])
            .or_else(|| self.case.gateway.clone())
            .ok_or("no gateway for the request")?;
        self.cluster
            .gateways
            .get(&format!("{ns}/{name}"))
            .copied()
            .ok_or_else(|| format!("Gateway {ns}/{name} has no harness address"))
    }

    fn tls_options(&self, tls: &Value, fallback_sni: &str) -> Result<TlsOptions, String> {
        let mut trusted = Vec::new();
        let t = &tls["trusted_server_cert"];
        if let Some(secret) = t["secret"].as_str() {
            trusted.push(
                self.pki
                    .secret(secret)
                    .map_err(|e| e.to_string())?
                    .cert_pem
                    .clone(),
            );
        }
        if let Some(cm) = t["configmap"].as_str() {
            trusted.push(
                self.pki
                    .config_map(cm)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            );
        }
        let client_cert = match tls["client_cert"]["secret"].as_str() {
            Some(secret) => {
                let pair = self.pki.secret(secret).map_err(|e| e.to_string())?;
                Some((pair.cert_pem.clone(), pair.key_pem.clone()))
            }
            None => None,
        };
        let alpn = match &tls["alpn"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        };
        Ok(TlsOptions {
            sni: tls["sni"].as_str().unwrap_or(fallback_sni).to_string(),
            trusted_pem: trusted,
            client_cert,
            alpn,
        })
    }
}

async fn run_case(
    case: &Case,
    layout: &Layout,
    pki: &support::pki::SuitePki,
) -> Result<(), String> {
    let dir = support::conformance_dir().join("manifests");
    let mut manifests = Vec::new();
    for (i, m) in case.manifests.iter().enumerate() {
        let text = std::fs::read_to_string(dir.join(m)).map_err(|e| format!("reading {m}: {e}"))?;
        let base = m.rsplit('/').next().unwrap_or(m);
        manifests.push((format!("{:02}-{base}", 10 + i), text));
    }
    let cluster = Cluster::build(&manifests, layout, pki)
        .map_err(|e| format!("building environment: {e:#}"))?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config_dir = tmp.path().join("config");
    let state_dir = tmp.path().join("state");
    std::fs::create_dir_all(&config_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&state_dir).map_err(|e| e.to_string())?;
    cluster
        .write_all(&config_dir)
        .map_err(|e| format!("writing config: {e:#}"))?;

    let retry = Arc::new(RetryCounters::default());
    let mut pods = Vec::new();
    for spec in cluster.pod_specs(pki).map_err(|e| format!("{e:#}"))? {
        pods.push(
            EchoPod::start(spec, retry.clone())
                .await
                .map_err(|e| format!("{e:#}"))?,
        );
    }
    let mut gateway = Portcullis::spawn(&ServeOptions {
        config_dir: config_dir.clone(),
        state_dir,
        listen_address: layout.listen_address(),
        port_offset: layout.port_offset,
        log_file: tmp.path().join("portcullis.log"),
    })
    .map_err(|e| format!("{e:#}"))?;
    gateway
        .wait_ready(READY_TIMEOUT)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut env = CaseEnv {
        case,
        layout,
        pki,
        cluster,
        config_dir,
        pods,
        gateway,
    };
    let result = run_entries(&mut env).await;
    if std::env::var_os("PORTCULLIS_CONFORMANCE_KEEP").is_some() {
        let kept = tmp.keep();
        println!("{}: kept {}", case.name, kept.display());
    }
    result
}

async fn run_entries(env: &mut CaseEnv<'_>) -> Result<(), String> {
    let requests = env.case.requests.clone();
    for (i, entry) in requests.iter().enumerate() {
        let label = entry["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "request {} {}",
                    i + 1,
                    entry["request"]["path"].as_str().unwrap_or("")
                )
            });
        let mut window = RETRY_WINDOW;
        if let Some(mutations) = entry["mutate_before"].as_array() {
            apply_mutations(env, mutations)
                .await
                .map_err(|e| format!("{label}: {e}"))?;
            window = RETRY_WINDOW * 2;
        }
        run_entry(env, entry, window)
            .await
            .map_err(|e| format!("{label}: {e}"))?;
    }
    if let Some(result) = generation_bump(env).await {
        return result;
    }
    if env.case.name == "GatewayModifyListeners" {
        return modify_listeners(env).await;
    }
    if env.case.has_status_checks {
        let status = env
            .gateway
            .status()
            .await
            .map_err(|e| format!("fetching /status: {e:#}"))?;
        match support::status_checks::check(&env.case.name, &status) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("status: {e}")),
            None => return Err("status checks not encoded".into()),
        }
    }
    if env.case.name == "BackendTLSPolicy" {
        let ca = env
            .pki
            .config_map("gateway-conformance-infra/tls-checks-ca-certificate")
            .map_err(|e| e.to_string())?;
        support::scenarios::backend_tls_reconcile(
            &mut env.cluster,
            &env.config_dir,
            &env.gateway,
            ca,
            RETRY_WINDOW * 2,
        )
        .await
        .map_err(|e| format!("status: {e}"))?;
    }
    Ok(())
}

async fn apply_mutations(env: &mut CaseEnv<'_>, mutations: &[Value]) -> Result<(), String> {
    let before = env.gateway.status().await.ok();
    for m in mutations {
        match m["op"].as_str() {
            Some("delete") => {
                let (kind, ns, name) = (
                    m["kind"].as_str().unwrap_or_default(),
                    m["namespace"].as_str().unwrap_or_default(),
                    m["name"].as_str().unwrap_or_default(),
                );
                let found = env
                    .cluster
                    .delete(&env.config_dir, kind, ns, name)
                    .map_err(|e| format!("{e:#}"))?;
                if !found {
                    return Err(format!("mutation: {kind} {ns}/{name} not found"));
                }
            }
            other => return Err(format!("unsupported mutation {other:?}")),
        }
    }
    // Wait until the status reflects the change (or ~2 s).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = env.gateway.status().await.ok();
        if now.is_some() && now != before {
            break;
        }
    }
    Ok(())
}

/// The `*ObservedGenerationBump` cases: edit the object's spec (bumping
/// `metadata.generation` like the API server) and check that its conditions
/// follow to the new generation and stay healthy.
async fn generation_bump(env: &mut CaseEnv<'_>) -> Option<Result<(), String>> {
    let (kind, ns, name): (&str, &str, &str) = match env.case.name.as_str() {
        "GatewayObservedGenerationBump" => (
            "Gateway",
            "gateway-conformance-infra",
            "gateway-observed-generation-bump",
        ),
        "HTTPRouteObservedGenerationBump" => (
            "HTTPRoute",
            "gateway-conformance-infra",
            "observed-generation-bump",
        ),
        "BackendTLSPolicyObservedGenerationBump" => (
            "BackendTLSPolicy",
            "gateway-conformance-infra",
            "observed-generation-bump",
        ),
        "GatewayClassObservedGenerationBump" => {
            ("GatewayClass", "", "gatewayclass-observed-generation-bump")
        }
        _ => return None,
    };
    let edit = |doc: &mut serde_yaml::Value| {
        let add = |doc: &mut serde_yaml::Value, key: &str, item: serde_json::Value| {
            if let Some(seq) = doc
                .get_mut("spec")
                .and_then(|s| s.get_mut(key))
                .and_then(serde_yaml::Value::as_sequence_mut)
            {
                seq.push(support::env::doc(item));
            }
        };
        match kind {
            "Gateway" => add(
                doc,
                "listeners",
                serde_json::json!({"name": "http-bump", "port": 8080, "protocol": "HTTP", "hostname": "bump.com"}),
            ),
            "HTTPRoute" => add(
                doc,
                "rules",
                serde_json::json!({"matches": [{"path": {"type": "PathPrefix", "value": "/bump"}}], "backendRefs": [{"name": "infra-backend-v1", "port": 8080}]}),
            ),
            "BackendTLSPolicy" => {
                if let Some(v) = doc
                    .get_mut("spec")
                    .and_then(|s| s.get_mut("validation"))
                    .and_then(serde_yaml::Value::as_mapping_mut)
                {
                    v.insert("hostname".into(), "other.example.com".into());
                }
            }
            _ => {
                if let Some(spec) = doc
                    .get_mut("spec")
                    .and_then(serde_yaml::Value::as_mapping_mut)
                {
                    spec.insert(
                        "description".into(),
                        "bumped by the conformance harness".into(),
                    );
                }
            }
        }
    };
    let result = async {
        let generation = env
            .cluster
            .modify(&env.config_dir, kind, ns, name, edit)
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| format!("{kind} {ns}/{name} not in the manifests"))?;
        let start = Instant::now();
        loop {
            let status = env
                .gateway
                .status()
                .await
                .map_err(|e| format!("fetching /status: {e:#}"))?;
            let check =
                support::status_checks::observed_generation(&status, kind, ns, name, generation);
            match check {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > RETRY_WINDOW * 2 => return Err(format!("status: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    Some(result.await)
}

/// `GatewayModifyListeners`: adding a listener makes it appear in status
/// healthy with its route attached; removing one makes it disappear; both with
/// the Gateway's new observedGeneration.
async fn modify_listeners(env: &mut CaseEnv<'_>) -> Result<(), String> {
    const NS: &str = "gateway-conformance-infra";
    let add = |doc: &mut serde_yaml::Value| {
        if let Some(seq) = doc
            .get_mut("spec")
            .and_then(|s| s.get_mut("listeners"))
            .and_then(serde_yaml::Value::as_sequence_mut)
        {
            seq.push(support::env::doc(serde_json::json!({
                "name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}}
            })));
        }
    };
    let remove = |doc: &mut serde_yaml::Value| {
        if let Some(seq) = doc
            .get_mut("spec")
            .and_then(|s| s.get_mut("listeners"))
            .and_then(serde_yaml::Value::as_sequence_mut)
        {
            seq.retain(|l| l.get("name").and_then(|n| n.as_str()) != Some("http"));
        }
    };
    type Edit<'a> = &'a dyn Fn(&mut serde_yaml::Value);
    let steps: [(&str, Edit<'_>, &[&str]); 2] = [
        ("gateway-add-listener", &add, &["https", "http"]),
        ("gateway-remove-listener", &remove, &["https"]),
    ];
    for (name, edit, expected) in steps {
        let generation = env
            .cluster
            .modify(&env.config_dir, "Gateway", NS, name, edit)
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| format!("Gateway {name} not in the manifests"))?;
        let start = Instant::now();
        loop {
            let status = env
                .gateway
                .status()
                .await
                .map_err(|e| format!("fetching /status: {e:#}"))?;
            let check = support::status_checks::observed_generation(
                &status, "Gateway", NS, name, generation,
            )
            .and_then(|()| support::status_checks::listeners_exactly(&status, NS, name, expected));
            match check {
                Ok(()) => break,
                Err(e) if start.elapsed() > RETRY_WINDOW * 2 => return Err(format!("{name}: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

fn new_uuid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn placeholder_mode(entry: &Value) -> Option<&str> {
    entry["request"]["placeholders"]["uuid"].as_str()
}

async fn run_entry(env: &CaseEnv<'_>, entry: &Value, window: Duration) -> Result<(), String> {
    let expect = &entry["expect"];
    if expect.get("weights").is_some() {
        return check_weights(env, entry).await;
    }
    if expect.get("mirror_check").is_some() {
        return check_percentage_mirror(env, entry).await;
    }
    let fresh_each_attempt = placeholder_mode(entry).is_some_and(|m| m.contains("every attempt"));
    let entry_uuid = new_uuid();
    let deadline = Instant::now() + window;
    loop {
        let uuid = if fresh_each_attempt {
            new_uuid()
        } else {
            entry_uuid.clone()
        };
        let result = attempt(env, entry, &uuid).await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A request entry resolved against the environment.
struct Prepared {
    addr: SocketAddr,
    gateway_ip: Ipv4Addr,
    scheme: String,
    tls: Option<TlsOptions>,
    protocol: Protocol,
    method: String,
    path: String,
    host: String,
    headers: Vec<(String, String)>,
    follow: bool,
}

fn prepare(env: &CaseEnv<'_>, entry: &Value, uuid: &str) -> Result<Prepared, String> {
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
async fn exchange(
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
async fn stream_attempt(env: &CaseEnv<'_>, entry: &Value) -> Result<(), String> {
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

async fn attempt(env: &CaseEnv<'_>, entry: &Value, uuid: &str) -> Result<(), String> {
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

fn mirror_hits(env: &CaseEnv<'_>, backend: &str, namespace: &str, path: &str) -> usize {
    env.pods
        .iter()
        .filter(|pod| pod.spec().deployment == backend && pod.spec().namespace == namespace)
        .map(|pod| pod.requests().iter().filter(|r| r.uri == path).count())
        .sum()
}

async fn check_mirrors(
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

async fn websocket_attempt(env: &CaseEnv<'_>, entry: &Value, p: &Prepared) -> Result<(), String> {
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

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Sends `total` copies of a request, `concurrency` at a time; returns the
/// answering Deployment of each (Err on any failed or non-echo answer).
async fn burst(
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

async fn check_weights(env: &CaseEnv<'_>, entry: &Value) -> Result<(), String> {
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

async fn check_percentage_mirror(env: &CaseEnv<'_>, entry: &Value) -> Result<(), String> {
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

/// Checks the harness itself without the gateway: certificates, every echo
/// port and feature, and that every case's config directory builds.
#[test]
fn harness_self_check() {
    support::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    rt.block_on(async {
        let pki = support::pki::suite();
        let (base, _) = {
            use rand::Rng;
            (rand::rng().random_range(0..40_000u32), 0)
        };
        let layout = layout_for(base, 0, 20_000);
        let ip = Ipv4Addr::new(
            layout.pod_block[0],
            layout.pod_block[1],
            layout.pod_block[2],
            7,
        );
        let cert = pki
            .secret("gateway-conformance-infra/tls-checks-certificate")
            .expect("generated");
        let ca = pki
            .config_map("gateway-conformance-infra/tls-checks-ca-certificate")
            .expect("generated");
        let pod = EchoPod::start(
            support::echo::PodSpec {
                kind: support::echo::EchoKind::Http,
                name: "echo-abcde-0".into(),
                namespace: "ns".into(),
                deployment: "echo".into(),
                ip,
                tls: Some(support::echo::ServerTls {
                    cert_pem: cert.cert_pem.clone(),
                    key_pem: cert.key_pem.clone(),
                    client_ca_pem: None,
                }),
            },
            Arc::new(RetryCounters::default()),
        )
        .await
        .expect("echo starts");
        let base_req =
            |port: u16, protocol: Protocol, tls: Option<TlsOptions>, path: &str| HttpRequest {
                addr: SocketAddr::from((ip, port)),
                tls,
                protocol,
                method: "GET".into(),
                path: path.into(),
                host: "abc.example.com".into(),
                headers: vec![("X-Echo-Set-Header".into(), "X-Foo:bar".into())],
                timeout: Duration::from_secs(5),
            };
        // HTTP/1.1 on 3000.
        let r = client::send(&base_req(3000, Protocol::Http1, None, "/a?b=c"))
            .await
            .expect("h1 echo");
        let echo: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(echo["path"], "/a?b=c");
        assert_eq!(echo["host"], "abc.example.com");
        assert_eq!(echo["pod"], "echo-abcde-0");
        assert_eq!(r.header("x-foo").as_deref(), Some("bar"));
        // h2c on 3001.
        let r = client::send(&base_req(3001, Protocol::H2cPriorKnowledge, None, "/h2c"))
            .await
            .expect("h2c echo");
        let echo: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(echo["proto"], "HTTP/2.0");
        // HTTPS on 8443 trusting the CA, h2 and http/1.1.
        let tls = TlsOptions {
            sni: "abc.example.com".into(),
            trusted_pem: vec![ca.to_string()],
            ..TlsOptions::default()
        };
        for proto in [Protocol::H2, Protocol::Http1] {
            let r = client::send(&base_req(8443, proto, Some(tls.clone()), "/tls"))
                .await
                .expect("tls echo");
            let echo: Value = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(echo["tls"]["serverName"], "abc.example.com");
        }
        // Self-signed server certificate trusted directly.
        let ss = pki
            .secret("gateway-conformance-infra/tls-validity-checks-certificate")
            .expect("generated");
        assert!(ss.cert_pem.contains("BEGIN CERTIFICATE"));
        if pki.rsa {
            assert!(cert.key_pem.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1 key");
        }
        // /status/NNN, delay, retry with code and with reset.
        let r = client::send(&base_req(3000, Protocol::Http1, None, "/status/418"))
            .await
            .expect("status");
        assert_eq!(r.status, 418);
        let t = Instant::now();
        client::send(&base_req(3000, Protocol::Http1, None, "/d?delay=300ms"))
            .await
            .expect("delay");
        assert!(t.elapsed() >= Duration::from_millis(300));
        let r = client::send(&base_req(
            3000,
            Protocol::Http1,
            None,
            "/retry/x?uuid=u1&succeedAfter=1&responseCode=503",
        ))
        .await
        .expect("retry");
        assert_eq!(r.status, 503);
        let r = client::send(&base_req(
            3000,
            Protocol::Http1,
            None,
            "/retry/x?uuid=u1&succeedAfter=1&responseCode=503",
        ))
        .await
        .expect("retry");
        assert_eq!(r.status, 200);
        let e = client::send(&base_req(
            3000,
            Protocol::Http1,
            None,
            "/retry/x?uuid=u2&succeedAfter=1",
        ))
        .await;
        assert!(e.is_err(), "connection reset expected, got {e:?}");
        // WebSocket echo.
        let frames = vec![WsFrame::Text("hi".into()), WsFrame::Binary(vec![1, 2, 3])];
        let (status, replies) = client::websocket(
            SocketAddr::from((ip, 3000)),
            None,
            "abc.example.com",
            "/ws",
            &[],
            &frames,
            Duration::from_secs(5),
        )
        .await
        .expect("websocket");
        assert_eq!(status, 101);
        assert_eq!(replies, frames);
        assert!(pod.request_count() >= 8);

        // TCP echo: TLS port with the passthrough certificate, SNI recorded.
        let tcp_ip = Ipv4Addr::new(
            layout.pod_block[0],
            layout.pod_block[1],
            layout.pod_block[2],
            8,
        );
        let pt = pki
            .secret("gateway-conformance-infra/tls-passthrough-checks-certificate")
            .expect("generated");
        let tcp_pod = EchoPod::start(
            support::echo::PodSpec {
                kind: support::echo::EchoKind::Tcp,
                name: "tcp-backend-abcde-0".into(),
                namespace: "ns".into(),
                deployment: "tcp-backend".into(),
                ip: tcp_ip,
                tls: Some(support::echo::ServerTls {
                    cert_pem: pt.cert_pem.clone(),
                    key_pem: pt.key_pem.clone(),
                    client_ca_pem: None,
                }),
            },
            Arc::new(RetryCounters::default()),
        )
        .await
        .expect("tcp echo starts");
        let tls = TlsOptions {
            sni: "abc.example.com".into(),
            trusted_pem: vec![ca.to_string()],
            ..TlsOptions::default()
        };
        let report = client::tls_stream(
            SocketAddr::from((tcp_ip, support::tcp_echo::TCP_TLS_PORT)),
            &tls,
            Duration::from_secs(5),
        )
        .await
        .expect("tls stream");
        assert_eq!(report.greeting, support::tcp_echo::GREETING);
        assert_eq!(report.test["pod"], "tcp-backend-abcde-0");
        assert_eq!(report.test["isTLS"], true);
        assert_eq!(report.test["tls"]["serverName"], "abc.example.com");
        assert_eq!(tcp_pod.tcp_sessions().len(), 1);
        // Nothing trusted: a certificate error, not a rejection.
        let untrusted = TlsOptions {
            trusted_pem: vec![],
            ..tls.clone()
        };
        let e = client::tls_stream(
            SocketAddr::from((tcp_ip, support::tcp_echo::TCP_TLS_PORT)),
            &untrusted,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(e, Err(ClientError::Tls(_))), "got {e:?}");
        // The leaf itself trusted (Go root-pool semantics).
        let pinned = TlsOptions {
            trusted_pem: vec![pt.cert_pem.clone()],
            ..tls
        };
        client::tls_stream(
            SocketAddr::from((tcp_ip, support::tcp_echo::TCP_TLS_PORT)),
            &pinned,
            Duration::from_secs(5),
        )
        .await
        .expect("pinned leaf trusted");

        // Every case's environment builds and is accepted by `portcullis check`
        // (when the binary implements it).
        let check_binary = std::env::var_os("PORTCULLIS_CONFORMANCE_CHECK").is_some();
        for (i, case) in load_cases().iter().enumerate() {
            let dir = support::conformance_dir().join("manifests");
            let manifests: Vec<(String, String)> = case
                .manifests
                .iter()
                .map(|m| {
                    (
                        m.rsplit('/').next().unwrap_or(m).to_string(),
                        std::fs::read_to_string(dir.join(m)).expect("manifest readable"),
                    )
                })
                .collect();
            let layout = layout_for(base, 1 + i as u32, 20_000);
            let cluster = Cluster::build(&manifests, &layout, pki).expect("environment builds");
            cluster.pod_specs(pki).expect("pod TLS material resolves");
            if let Some((ns, name)) = &case.gateway {
                assert!(
                    cluster.gateways.contains_key(&format!("{ns}/{name}")),
                    "{}: gateway {ns}/{name} gets an address",
                    case.name
                );
            }
            if check_binary {
                let tmp = tempfile::tempdir().expect("tempdir");
                cluster.write_all(tmp.path()).expect("written");
                let (ok, out) = support::portcullis::check(tmp.path()).expect("check runs");
                println!("{}: portcullis check ok={ok}\n{out}", case.name);
            }
        }
    });
}
