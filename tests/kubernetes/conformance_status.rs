//! The conformance status checks against what portcullis writes through the
//! API server: one control plane, one replica, and for each case whose status
//! checks are encoded in `support::status_checks` (every case of
//! status-only.json and the cases.json cases with `status_checks`), its
//! manifests applied through the API, then the same `status_checks::check`
//! the standalone harness runs on `GET /status`, here on the status the API
//! server holds (`support::api_status`), polled until it passes with every
//! condition at the object's current generation. Each case's objects are
//! deleted before the next case. The multi-step cases (the
//! `*ObservedGenerationBump`s and `GatewayModifyListeners`) edit their objects
//! through the API, where the API server bumps `metadata.generation` itself;
//! `BackendTLSPolicy` also runs its reconcile sub-test (the policy pointed at
//! a missing CA ConfigMap, which is then created, emptied and restored).
//!
//! The environment is the standalone harness's (`support::env::Cluster`):
//! the class name substituted, a loopback address of a block per case
//! injected into every Gateway (portcullis binds it), the suite's generated
//! Secrets and ConfigMaps. Not applied: Deployments and EndpointSlices
//! (nothing here sends traffic, a route's refs resolve on the Service, and
//! the API refuses loopback endpoint addresses). Namespaces are created once
//! up front and never deleted: without kube-controller-manager a deleted
//! namespace stays Terminating.
//!
//! Besides the checks, the API status of the case's objects must say what
//! the replica's own `/status` says (`api_status::differences`: conditions,
//! listeners, attached counts, route parents), and, for the single-step
//! cases, what a standalone portcullis given the same manifests in a config
//! directory says on its `/status`. On a failure, each failing case is
//! reported with the check's error, the same check on the replica's
//! `/status` (passing there and failing on the API means the status writing
//! lost something), the differences, and the API status of the objects the
//! error names.
//!
//! Left out of status-only.json, with why:
//! - `GatewayInfrastructure` (reads the per-Gateway Service that
//!   `--per-gateway-service` makes: `gateway_services` and the upstream
//!   suite check it) and `GatewayStaticAddresses` (needs usable and
//!   unusable addresses the implementation names): not encoded in
//!   `status_checks` (the standalone harness does not run them either).
//!
//! `GatewayOptionalAddressValue`, not encoded either (its address is not on
//! `/status`), is checked here on the API status as its summary says.
//! - `TLSRouteListenerTerminateNotSupported`,
//!   `TLSRouteListenerMixedTerminationNotSupported`: only for implementations
//!   without those features; portcullis supports them.

#[path = "conformance_status/steps.rs"]
mod steps;

use crate::support::api_status::{self, ApiStatusReader, Key};
use crate::support::control_plane::{ApplyError, ControlPlane};
use crate::support::env::{identity, Cluster, Layout, CONTROLLER_NAME};
use crate::support::kube_mode::{install_crds, KubeGateway, KubeOptions};
use crate::support::portcullis::{Portcullis, ServeOptions};
use crate::support::{conformance_dir, pki, status_checks};
use anyhow::{bail, Context, Result};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use steps::{bump, edit_listeners, find_doc, reconcile, RECONCILE_CA};

const CLASS_NAME: &str = "portcullis";
const BASE_MANIFEST: &str = "conformance/base/manifests.yaml";
/// How long a case's status may take to settle.
const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);

/// What a case does after its manifests are applied.
#[derive(Debug, Clone, Copy)]
enum Steps {
    /// `status_checks::check` once the status settles.
    Check,
    /// Edit the object's spec, then `status_checks::observed_generation`.
    GenerationBump(&'static str, &'static str, &'static str),
    /// Add a listener to one Gateway and remove one from another.
    ModifyListeners,
    /// [`Steps::Check`], then the BackendTLSPolicy reconcile sub-test.
    CheckThenReconcile,
    /// `GatewayOptionalAddressValue`, which only the API can show (`/status`
    /// has no addresses): an address entry without a value is handled, the
    /// conditions at the current generation and an address in status.
    AddressAssigned,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    manifests: Vec<String>,
    steps: Steps,
}

const INFRA: &str = "gateway-conformance-infra";

fn steps_of(name: &str) -> Option<Steps> {
    Some(match name {
        "GatewayObservedGenerationBump" => {
            Steps::GenerationBump("Gateway", INFRA, "gateway-observed-generation-bump")
        }
        "HTTPRouteObservedGenerationBump" => {
            Steps::GenerationBump("HTTPRoute", INFRA, "observed-generation-bump")
        }
        "BackendTLSPolicyObservedGenerationBump" => {
            Steps::GenerationBump("BackendTLSPolicy", INFRA, "observed-generation-bump")
        }
        "GatewayClassObservedGenerationBump" => {
            Steps::GenerationBump("GatewayClass", "", "gatewayclass-observed-generation-bump")
        }
        "GatewayModifyListeners" => Steps::ModifyListeners,
        "BackendTLSPolicy" => Steps::CheckThenReconcile,
        "GatewayOptionalAddressValue" => Steps::AddressAssigned,
        _ => {
            return status_checks::check(name, &serde_json::json!({"objects": []}))
                .map(|_| Steps::Check)
        }
    })
}

/// The cases of both files whose status checks are encoded.
fn load_cases() -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for file in ["status-only.json", "cases.json"] {
        let path = conformance_dir().join(file);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let list: Vec<Value> = serde_json::from_str(&text).context("conformance JSON")?;
        for c in list {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let status_checked = file == "status-only.json" || c["status_checks"].is_string();
            let Some(steps) = steps_of(&name).filter(|_| status_checked) else {
                continue;
            };
            let manifests = c["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect();
            out.push(Case {
                name,
                manifests,
                steps,
            });
        }
    }
    Ok(out)
}

/// Block `n` of 127.0.0.0/8 after a random `base`, like the standalone harness.
fn layout(base: u32, n: u32, port_offset: u16) -> Layout {
    let block = |n: u32| {
        let n = base + n;
        [127, (1 + (n / 256) % 250) as u8, (n % 256) as u8]
    };
    Layout {
        gateway_block: block(n * 2),
        pod_block: block(n * 2 + 1),
        port_offset,
        class_name: CLASS_NAME.into(),
    }
}

fn read_manifest(path: &str) -> Result<String> {
    let full = conformance_dir().join("manifests").join(path);
    std::fs::read_to_string(&full).with_context(|| format!("read {}", full.display()))
}

/// (file name in the Cluster, manifest path), base first.
fn named(manifests: &[String]) -> Vec<(String, String)> {
    manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let base = m.rsplit('/').next().unwrap_or(m);
            (format!("{:02}-{base}", 10 + i), m.clone())
        })
        .collect()
}

/// Kinds that are not applied (see the module documentation).
fn applied(doc: &serde_yaml::Value) -> bool {
    !matches!(
        identity(doc).0.as_str(),
        "Deployment" | "EndpointSlice" | "Namespace"
    )
}

/// The control plane, the replica and what the cases share.
struct Rig {
    cp: ControlPlane,
    reader: ApiStatusReader,
    gateway: KubeGateway,
    kinds: HashMap<(String, String), (ApiResource, bool)>,
    /// The objects of the base manifests and the GatewayClass, compared
    /// with `/status` in every case too (routes attach to base Gateways).
    shared_keys: BTreeSet<Key>,
    base: u32,
    port_offset: u16,
}

impl Rig {
    async fn apply_doc(&self, doc: &serde_yaml::Value) -> Result<Option<i64>> {
        let stored = self.cp.apply_yaml(&serde_yaml::to_string(doc)?).await?;
        Ok(stored.first().and_then(|o| o.metadata.generation))
    }

    /// Applies `docs` in order; the refusals as text.
    async fn apply_all(&self, docs: &[serde_yaml::Value]) -> Result<Vec<String>> {
        let mut refused = Vec::new();
        for doc in docs {
            match self.apply_doc(doc).await {
                Ok(_) => {}
                Err(e) => match e.downcast_ref::<ApplyError>() {
                    Some(a) => refused.push(a.to_string()),
                    None => return Err(e),
                },
            }
        }
        Ok(refused)
    }

    async fn api_of(&mut self, doc: &serde_yaml::Value) -> Result<Api<DynamicObject>> {
        let api_version = doc
            .get("apiVersion")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (kind, ns, _) = identity(doc);
        let key = (api_version.clone(), kind.clone());
        if !self.kinds.contains_key(&key) {
            let (group, version) = api_version
                .rsplit_once('/')
                .unwrap_or(("", api_version.as_str()));
            let (ar, caps) = pinned_kind(
                &self.cp.client(),
                &GroupVersionKind::gvk(group, version, &kind),
            )
            .await
            .with_context(|| format!("discover {api_version} {kind}"))?;
            self.kinds
                .insert(key.clone(), (ar, caps.scope == Scope::Namespaced));
        }
        let (ar, namespaced) = self.kinds.get(&key).context("kind just discovered")?;
        Ok(if *namespaced {
            Api::namespaced_with(self.cp.client(), &ns, ar)
        } else {
            Api::all_with(self.cp.client(), ar)
        })
    }

    /// Deletes `docs` (last first); a missing object is fine.
    async fn delete_all(&mut self, docs: &[serde_yaml::Value]) -> Result<()> {
        for doc in docs.iter().rev() {
            let api = self.api_of(doc).await?;
            let name = identity(doc).2;
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e).with_context(|| format!("delete {name}")),
            }
        }
        Ok(())
    }

    /// Polls until `check` passes on the API status, no condition of the
    /// `keys` objects is of an older generation, and their API status says
    /// what the replica's own `/status` says ([`api_status::differences`]),
    /// for at most [`SETTLE`].
    async fn settle(
        &self,
        keys: &BTreeSet<Key>,
        check: &dyn Fn(&Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let objects = self.reader.objects().await.map_err(|e| format!("{e:#}"))?;
            let doc = api_status::to_status_document(&objects, CONTROLLER_NAME);
            let ours: Vec<Value> = objects
                .iter()
                .filter(|o| keys.contains(&key_of(o)))
                .cloned()
                .collect();
            let stale = api_status::stale(&ours, CONTROLLER_NAME);
            let replica = self.gateway.status().await.map_err(|e| format!("{e:#}"));
            let differences = match &replica {
                Ok(r) => api_status::differences(&doc, r, keys),
                Err(e) => vec![format!("the replica's /status: {e}")],
            };
            let checked = check(&doc);
            if stale.is_empty() && differences.is_empty() && checked.is_ok() {
                return Ok(());
            }
            if start.elapsed() > SETTLE {
                let on_replica = replica.map(|r| check(&r));
                return Err(explain(checked, on_replica, &stale, &differences, &ours));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The failure report of a case: the check's error on the API status, the
/// same check on the replica's `/status` (passing there and failing on the
/// API means the status writing lost something), stale conditions, where the
/// two differ, and the API status of the objects the error or a difference
/// names (all compared objects when none).
fn explain(
    checked: Result<(), String>,
    on_replica: Result<Result<(), String>, String>,
    stale: &[String],
    differences: &[String],
    ours: &[Value],
) -> String {
    let mut out = match &checked {
        Ok(()) => "the check passes on the API status, which did not settle".to_string(),
        Err(e) => format!("on the API status: {e}"),
    };
    let replica = match on_replica {
        Ok(Ok(())) => "passes".to_string(),
        Ok(Err(e)) => format!("fails too: {e}"),
        Err(e) => format!("unreadable: {e}"),
    };
    out.push_str(&format!("\n    on the replica's /status: {replica}"));
    if !stale.is_empty() {
        out.push_str(&format!("\n    stale: {}", stale.join("; ")));
    }
    for d in differences {
        out.push_str(&format!("\n    API vs /status: {d}"));
    }
    let error = checked.err().unwrap_or_default();
    let named: Vec<&Value> = ours
        .iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| error.contains(n) || differences.iter().any(|d| d.contains(n)))
        })
        .collect();
    let shown = if named.is_empty() {
        ours.iter().collect()
    } else {
        named
    };
    for o in shown {
        let (kind, ns, name) = key_of(o);
        let st: String = o["status"].to_string().chars().take(2000).collect();
        out.push_str(&format!("\n    {kind} {ns}/{name} status: {st}"));
    }
    out
}

fn key_of(o: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_written_through_the_api_meets_the_conformance_checks() -> Result<()> {
    let started = Instant::now();
    let cases = load_cases()?;
    let pki = pki::suite();
    let (base, port_offset) = {
        use rand::Rng;
        let mut rng = rand::rng();
        (
            rng.random_range(0..40_000u32),
            20_000 + rng.random_range(0..100u16) * 100,
        )
    };
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;

    // Every namespace of every case first, then the base manifests with the
    // suite's Secrets and ConfigMaps and the GatewayClass.
    let base_layout = layout(base, 0, port_offset);
    let base_cluster = Cluster::build(
        &[("10-manifests.yaml".into(), read_manifest(BASE_MANIFEST)?)],
        &base_layout,
        pki,
    )?;
    let mut namespaces = Vec::new();
    let mut seen = BTreeSet::new();
    let all_manifests: BTreeSet<&String> = cases.iter().flat_map(|c| &c.manifests).collect();
    for m in all_manifests {
        for doc in crate::support::env::parse_docs(&read_manifest(m)?)? {
            let (kind, _, name) = identity(&doc);
            if kind == "Namespace" && seen.insert(name) {
                namespaces.push(serde_yaml::to_string(&doc)?);
            }
        }
    }
    namespaces
        .push("apiVersion: v1\nkind: Namespace\nmetadata: {name: portcullis-system}\n".into());
    cp.apply_yaml(&namespaces.join("---\n")).await?;
    let shared: Vec<serde_yaml::Value> = base_cluster
        .documents()
        .filter(|d| applied(d))
        .cloned()
        .collect();
    let gateway = KubeGateway::spawn(&KubeOptions {
        listen_address: base_layout.listen_address(),
        port_offset,
        ..KubeOptions::admin(&cp, "portcullis-system", "replica-a")
    })?;
    let reader = ApiStatusReader::discover(&cp.client()).await?;
    let mut rig = Rig {
        cp,
        reader,
        gateway,
        kinds: HashMap::new(),
        shared_keys: shared.iter().map(identity).collect(),
        base,
        port_offset,
    };
    let refused = rig.apply_all(&shared).await?;
    if !refused.is_empty() {
        bail!("the base manifests were refused: {}", refused.join("; "));
    }
    rig.gateway.wait_ready(SETTLE).await?;
    let setup = started.elapsed();

    let mut results: Vec<(String, Result<(), String>, Duration)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let t = Instant::now();
        let outcome = run_case(&mut rig, i as u32 + 1, case).await?;
        results.push((case.name.clone(), outcome, t.elapsed()));
    }

    let mut report = format!(
        "{} cases through the API in {:.1}s (setup {:.1}s; kinds not served: {:?})\n",
        results.len(),
        started.elapsed().as_secs_f64(),
        setup.as_secs_f64(),
        rig.reader.not_served
    );
    let mut failed = 0;
    for (name, outcome, took) in &results {
        let line = match outcome {
            Ok(()) => "pass".to_string(),
            Err(e) => {
                failed += 1;
                format!("FAIL {e}")
            }
        };
        report.push_str(&format!("  {name} ({:.1}s): {line}\n", took.as_secs_f64()));
    }
    println!("{report}");
    if failed > 0 {
        // The control plane's directory goes with it: keep the replica's log.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let kept = target.join("conformance-status-replica.log");
        let log = match std::fs::copy(rig.gateway.log_path(), &kept) {
            Ok(_) => kept.display().to_string(),
            Err(e) => format!("not kept: {e}"),
        };
        bail!("{failed} case(s) failed on the status in the API; replica log {log}\n{report}");
    }
    Ok(())
}

/// Applies the case's objects, runs its steps, deletes its objects. Errors
/// of the rig come back as `Err`, the case's outcome as the `Ok` value.
async fn run_case(rig: &mut Rig, n: u32, case: &Case) -> Result<Result<(), String>> {
    let mut manifests = Vec::new();
    let named = named(&case.manifests);
    for (file, path) in &named {
        manifests.push((file.clone(), read_manifest(path)?));
    }
    let cluster = Cluster::build(
        &manifests,
        &layout(rig.base, n, rig.port_offset),
        pki::suite(),
    )?;
    let own_files: BTreeSet<&String> = named
        .iter()
        .filter(|(_, path)| path != BASE_MANIFEST)
        .map(|(file, _)| file)
        .collect();
    let docs: Vec<serde_yaml::Value> = cluster
        .files
        .iter()
        .filter(|(file, _)| own_files.contains(file))
        .flat_map(|(_, docs)| docs)
        .filter(|d| applied(d))
        .cloned()
        .collect();
    let mut keys: BTreeSet<Key> = docs.iter().map(identity).collect();
    keys.extend(rig.shared_keys.iter().cloned());
    let refused = rig.apply_all(&docs).await?;
    let outcome = if refused.is_empty() {
        run_steps(rig, n, case, &docs, &keys).await?
    } else {
        Err(format!("manifests refused: {}", refused.join("; ")))
    };
    rig.delete_all(&docs).await?;
    Ok(outcome)
}

async fn run_steps(
    rig: &mut Rig,
    n: u32,
    case: &Case,
    docs: &[serde_yaml::Value],
    keys: &BTreeSet<Key>,
) -> Result<Result<(), String>> {
    let name = case.name.clone();
    match case.steps {
        Steps::Check | Steps::CheckThenReconcile => {
            let check = move |st: &Value| match status_checks::check(&name, st) {
                Some(r) => r,
                None => Err("status checks not encoded".into()),
            };
            let checked = rig.settle(keys, &check).await;
            if checked.is_err() {
                return Ok(checked);
            }
            if let Err(e) = compare_standalone(rig, case, n, keys).await? {
                return Ok(Err(e));
            }
            if matches!(case.steps, Steps::Check) {
                return Ok(checked);
            }
            let reconciled = reconcile(rig, docs, keys).await;
            let config_map = crate::support::env::doc(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": RECONCILE_CA, "namespace": INFRA},
            }));
            rig.delete_all(&[config_map]).await?;
            Ok(reconciled)
        }
        Steps::AddressAssigned => {
            const GATEWAY: &str = "gateway-without-address-value";
            let generation = rig
                .reader
                .objects()
                .await?
                .iter()
                .find(|o| key_of(o) == ("Gateway".into(), INFRA.into(), GATEWAY.into()))
                .and_then(|o| o["metadata"]["generation"].as_i64());
            let Some(generation) = generation else {
                return Ok(Err(format!("Gateway {INFRA}/{GATEWAY} not in the API")));
            };
            let client = rig.cp.client();
            let check = move |st: &Value| -> Result<(), String> {
                let g = st["objects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|o| o["kind"] == "Gateway" && o["name"] == GATEWAY)
                    .ok_or(format!("Gateway {GATEWAY} missing from status"))?;
                let conditions = g["conditions"].as_array().cloned().unwrap_or_default();
                if conditions.is_empty()
                    || conditions
                        .iter()
                        .any(|c| c["observedGeneration"].as_i64() != Some(generation))
                {
                    return Err(format!(
                        "Gateway {GATEWAY}: conditions not all at generation {generation}: {}",
                        g["conditions"]
                    ));
                }
                Ok(())
            };
            if let Err(e) = rig.settle(keys, &check).await {
                return Ok(Err(e));
            }
            let gateway = crate::support::kube_mode::get_object(
                &client,
                "gateway.networking.k8s.io/v1",
                "Gateway",
                Some(INFRA),
                GATEWAY,
            )
            .await?;
            let addresses = gateway
                .as_ref()
                .and_then(|g| g["status"]["addresses"].as_array())
                .cloned()
                .unwrap_or_default();
            if addresses.is_empty()
                || addresses
                    .iter()
                    .any(|a| a["value"].as_str().is_none_or(str::is_empty))
            {
                return Ok(Err(format!(
                    "Gateway {GATEWAY}: no address assigned in status: {}",
                    gateway.map(|g| g["status"].clone()).unwrap_or_default()
                )));
            }
            Ok(Ok(()))
        }
        Steps::GenerationBump(kind, ns, obj) => {
            let Some(mut doc) = find_doc(docs, kind, ns, obj) else {
                return Ok(Err(format!("{kind} {ns}/{obj} not in the manifests")));
            };
            bump(kind, &mut doc);
            let Some(generation) = rig.apply_doc(&doc).await? else {
                return Ok(Err(format!("{kind} {ns}/{obj} has no generation")));
            };
            let check =
                move |st: &Value| status_checks::observed_generation(st, kind, ns, obj, generation);
            Ok(rig.settle(keys, &check).await)
        }
        Steps::ModifyListeners => {
            for (gw, add, expected) in [
                ("gateway-add-listener", true, &["https", "http"][..]),
                ("gateway-remove-listener", false, &["https"][..]),
            ] {
                let Some(mut doc) = find_doc(docs, "Gateway", INFRA, gw) else {
                    return Ok(Err(format!("Gateway {gw} not in the manifests")));
                };
                edit_listeners(&mut doc, add);
                let Some(generation) = rig.apply_doc(&doc).await? else {
                    return Ok(Err(format!("Gateway {gw} has no generation")));
                };
                let check = move |st: &Value| {
                    status_checks::observed_generation(st, "Gateway", INFRA, gw, generation)
                        .and_then(|()| status_checks::listeners_exactly(st, INFRA, gw, expected))
                };
                if let Err(e) = rig.settle(keys, &check).await {
                    return Ok(Err(format!("{gw}: {e}")));
                }
            }
            Ok(Ok(()))
        }
    }
}

/// The same manifests run by a standalone portcullis (config directory,
/// addresses of another block): its `/status` must say what the API says
/// about every compared object ([`api_status::differences`]).
async fn compare_standalone(
    rig: &Rig,
    case: &Case,
    n: u32,
    keys: &BTreeSet<Key>,
) -> Result<Result<(), String>> {
    let mut manifests = Vec::new();
    for (file, path) in named(&case.manifests) {
        manifests.push((file, read_manifest(&path)?));
    }
    let layout = layout(rig.base, n + STANDALONE_BLOCKS, rig.port_offset);
    let cluster = Cluster::build(&manifests, &layout, pki::suite())?;
    let tmp = tempfile::tempdir()?;
    let (config_dir, state_dir) = (tmp.path().join("config"), tmp.path().join("state"));
    std::fs::create_dir_all(&config_dir)?;
    std::fs::create_dir_all(&state_dir)?;
    cluster.write_all(&config_dir)?;
    let mut standalone = Portcullis::spawn(&ServeOptions {
        config_dir,
        state_dir,
        listen_address: layout.listen_address(),
        port_offset: layout.port_offset,
        log_file: tmp.path().join("portcullis.log"),
    })?;
    standalone.wait_ready(SETTLE).await?;
    let standalone_status = standalone.status().await?;
    let api = rig.reader.status_document(CONTROLLER_NAME).await?;
    let differences = api_status::differences(&api, &standalone_status, keys);
    if differences.is_empty() {
        return Ok(Ok(()));
    }
    Ok(Err(format!(
        "the API status differs from a standalone portcullis's /status:\n    {}",
        differences.join("\n    ")
    )))
}

/// Blocks after a case's own for its standalone run's addresses.
const STANDALONE_BLOCKS: u32 = 1000;
