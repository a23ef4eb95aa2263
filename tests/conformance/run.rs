//! Running one case: starting the echo pods and the gateway for its
//! environment, then each request entry in order, with the mutations
//! (generation bumps, listener changes) some entries ask for. The traffic
//! each entry sends and checks is [`crate::traffic`]'s job.

use serde_json::Value;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cases::{gateway_ref, Case};
use crate::support;
use crate::support::client::TlsOptions;
use crate::support::echo::{EchoPod, RetryCounters};
use crate::support::env::{Cluster, Layout};
use crate::support::expect::PodDirectory;
use crate::support::portcullis::{Portcullis, ServeOptions};
use crate::traffic::{attempt, check_percentage_mirror, check_weights};

/// How long one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// How long an entry's expectations may take to hold after a change.
pub(crate) const RETRY_WINDOW: Duration = Duration::from_secs(3);
/// How long the gateway may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything a running case needs.
pub(crate) struct CaseEnv<'a> {
    pub(crate) case: &'a Case,
    pub(crate) layout: &'a Layout,
    pub(crate) pki: &'a support::pki::SuitePki,
    pub(crate) cluster: Cluster,
    pub(crate) config_dir: std::path::PathBuf,
    pub(crate) pods: Vec<EchoPod>,
    pub(crate) gateway: Portcullis,
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
    pub(crate) fn total_requests(&self) -> usize {
        self.pods.iter().map(EchoPod::request_count).sum()
    }

    pub(crate) fn gateway_ip(&self, entry: &Value) -> Result<Ipv4Addr, String> {
        let (ns, name) = gateway_ref(&entry["gateway"])
            .or_else(|| self.case.gateway.clone())
            .ok_or("no gateway for the request")?;
        self.cluster
            .gateways
            .get(&format!("{ns}/{name}"))
            .copied()
            .ok_or_else(|| format!("Gateway {ns}/{name} has no harness address"))
    }

    pub(crate) fn tls_options(
        &self,
        tls: &Value,
        fallback_sni: &str,
    ) -> Result<TlsOptions, String> {
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

pub(crate) async fn run_case(
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

pub(crate) async fn run_entries(env: &mut CaseEnv<'_>) -> Result<(), String> {
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

pub(crate) async fn apply_mutations(
    env: &mut CaseEnv<'_>,
    mutations: &[Value],
) -> Result<(), String> {
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
pub(crate) async fn generation_bump(env: &mut CaseEnv<'_>) -> Option<Result<(), String>> {
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
pub(crate) async fn modify_listeners(env: &mut CaseEnv<'_>) -> Result<(), String> {
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

pub(crate) fn new_uuid() -> String {
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

pub(crate) fn placeholder_mode(entry: &Value) -> Option<&str> {
    entry["request"]["placeholders"]["uuid"].as_str()
}

pub(crate) async fn run_entry(
    env: &CaseEnv<'_>,
    entry: &Value,
    window: Duration,
) -> Result<(), String> {
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
