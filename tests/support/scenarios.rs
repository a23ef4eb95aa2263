//! Multi-step status scenarios some conformance cases run after their
//! traffic checks: edit or create objects in the config directory, then wait
//! for portcullis's `/status` to follow.

use super::env::{doc, Cluster};
use super::portcullis::Portcullis;
use super::status_checks::policy_conditions;
use std::path::Path;
use std::time::{Duration, Instant};

const NS: &str = "gateway-conformance-infra";
const POLICY: &str = "reconcile-test";
const CONFIG_MAP: &str = "backendtlspolicy-reconcile-ca";
const FILE: &str = "90-harness-reconcile.yaml";

type StatusCheck<'a> = dyn Fn(&serde_json::Value) -> Result<(), String> + 'a;

/// Polls `/status` until `check` passes or `window` ends (last error then).
pub async fn wait_for_status(
    gateway: &Portcullis,
    window: Duration,
    check: impl Fn(&serde_json::Value) -> Result<(), String>,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let status = gateway
            .status()
            .await
            .map_err(|e| format!("fetching /status: {e:#}"))?;
        match check(&status) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > window => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The BackendTLSPolicy reconcile sub-test: point `reconcile-test` at a
/// missing ConfigMap (Accepted=False/NoValidCACertificate,
/// ResolvedRefs=False/InvalidCACertificateRef), create it (True), empty its
/// `ca.crt` (False again), restore it (True).
pub async fn backend_tls_reconcile(
    cluster: &mut Cluster,
    dir: &Path,
    gateway: &Portcullis,
    ca_pem: &str,
    window: Duration,
) -> Result<(), String> {
    let invalid = |st: &serde_json::Value| {
        policy_conditions(
            st,
            NS,
            POLICY,
            ("False", "NoValidCACertificate"),
            ("False", "InvalidCACertificateRef"),
        )
    };
    let valid = |st: &serde_json::Value| {
        policy_conditions(
            st,
            NS,
            POLICY,
            ("True", "Accepted"),
            ("True", "ResolvedRefs"),
        )
    };
    let config_map = |ca: &str| {
        doc(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "namespace": NS},
            "data": {"ca.crt": ca},
        }))
    };
    let found = cluster
        .modify(dir, "BackendTLSPolicy", NS, POLICY, |d| {
            name_ca_refs(d, CONFIG_MAP)
        })
        .map_err(|e| format!("{e:#}"))?;
    if found.is_none() {
        return Err(format!(
            "BackendTLSPolicy {NS}/{POLICY} not in the manifests"
        ));
    }
    wait_for_status(gateway, window, invalid)
        .await
        .map_err(|e| format!("reconcile, ConfigMap missing: {e}"))?;
    let steps: [(&str, &str, &StatusCheck<'_>); 3] = [
        ("ConfigMap created", ca_pem, &valid),
        ("ca.crt emptied", "", &invalid),
        ("ca.crt restored", ca_pem, &valid),
    ];
    for (what, ca, check) in steps {
        cluster
            .upsert(dir, FILE, config_map(ca))
            .map_err(|e| format!("{e:#}"))?;
        wait_for_status(gateway, window, check)
            .await
            .map_err(|e| format!("reconcile, {what}: {e}"))?;
    }
    Ok(())
}

/// Points every `caCertificateRefs` entry of BackendTLSPolicy `policy` at
/// ConfigMap `name`.
pub fn name_ca_refs(policy: &mut serde_yaml::Value, name: &str) {
    if let Some(refs) = policy
        .get_mut("spec")
        .and_then(|s| s.get_mut("validation"))
        .and_then(|v| v.get_mut("caCertificateRefs"))
        .and_then(serde_yaml::Value::as_sequence_mut)
    {
        for r in refs
            .iter_mut()
            .filter_map(serde_yaml::Value::as_mapping_mut)
        {
            r.insert("name".into(), name.into());
        }
    }
}
