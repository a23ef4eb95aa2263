//! The edits the multi-step conformance cases make through the API: the
//! `*ObservedGenerationBump` spec changes, `GatewayModifyListeners`' listener
//! edits, and the BackendTLSPolicy reconcile sub-test.

use super::{Key, Rig, INFRA};
use crate::support::env::identity;
use crate::support::{pki, status_checks};
use serde_json::Value;
use std::collections::BTreeSet;

pub(super) const RECONCILE_POLICY: &str = "reconcile-test";
pub(super) const RECONCILE_CA: &str = "backendtlspolicy-reconcile-ca";

/// The BackendTLSPolicy reconcile sub-test through the API: point
/// `reconcile-test` at a missing ConfigMap (Accepted=False/
/// NoValidCACertificate, ResolvedRefs=False/InvalidCACertificateRef), create
/// it (True), empty its `ca.crt` (False again), restore it (True).
pub(super) async fn reconcile(
    rig: &Rig,
    docs: &[serde_yaml::Value],
    keys: &BTreeSet<Key>,
) -> Result<(), String> {
    let fail = |e: anyhow::Error| format!("{e:#}");
    let mut policy =
        find_doc(docs, "BackendTLSPolicy", INFRA, RECONCILE_POLICY).ok_or_else(|| {
            format!("BackendTLSPolicy {INFRA}/{RECONCILE_POLICY} not in the manifests")
        })?;
    crate::support::scenarios::name_ca_refs(&mut policy, RECONCILE_CA);
    let ca = pki::suite()
        .config_map(&format!("{INFRA}/tls-checks-ca-certificate"))
        .map_err(fail)?;
    let valid = |st: &Value| {
        status_checks::policy_conditions(
            st,
            INFRA,
            RECONCILE_POLICY,
            ("True", "Accepted"),
            ("True", "ResolvedRefs"),
        )
    };
    let invalid = |st: &Value| {
        status_checks::policy_conditions(
            st,
            INFRA,
            RECONCILE_POLICY,
            ("False", "NoValidCACertificate"),
            ("False", "InvalidCACertificateRef"),
        )
    };
    rig.apply_doc(&policy).await.map_err(fail)?;
    rig.settle(keys, &invalid)
        .await
        .map_err(|e| format!("reconcile, ConfigMap missing: {e}"))?;
    type Check<'a> = &'a dyn Fn(&Value) -> Result<(), String>;
    let steps: [(&str, &str, Check<'_>); 3] = [
        ("ConfigMap created", ca, &valid),
        ("ca.crt emptied", "", &invalid),
        ("ca.crt restored", ca, &valid),
    ];
    for (what, pem, check) in steps {
        let config_map = crate::support::env::doc(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": RECONCILE_CA, "namespace": INFRA},
            "data": {"ca.crt": pem},
        }));
        rig.apply_doc(&config_map).await.map_err(fail)?;
        rig.settle(keys, check)
            .await
            .map_err(|e| format!("reconcile, {what}: {e}"))?;
    }
    Ok(())
}

pub(super) fn find_doc(
    docs: &[serde_yaml::Value],
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<serde_yaml::Value> {
    docs.iter()
        .find(|d| identity(d) == (kind.to_string(), ns.to_string(), name.to_string()))
        .cloned()
}

/// The spec change of a `*ObservedGenerationBump` case (as the standalone
/// harness makes it).
pub(super) fn bump(kind: &str, doc: &mut serde_yaml::Value) {
    use serde_json::json;
    let spec = doc.get_mut("spec");
    let push = |spec: Option<&mut serde_yaml::Value>, key: &str, item: Value| {
        if let Some(seq) = spec
            .and_then(|s| s.get_mut(key))
            .and_then(serde_yaml::Value::as_sequence_mut)
        {
            seq.push(crate::support::env::doc(item));
        }
    };
    match kind {
        "Gateway" => push(
            spec,
            "listeners",
            json!({"name": "http-bump", "port": 8080, "protocol": "HTTP", "hostname": "bump.com"}),
        ),
        "HTTPRoute" => push(
            spec,
            "rules",
            json!({"matches": [{"path": {"type": "PathPrefix", "value": "/bump"}}],
                   "backendRefs": [{"name": "infra-backend-v1", "port": 8080}]}),
        ),
        "BackendTLSPolicy" => {
            if let Some(v) = spec
                .and_then(|s| s.get_mut("validation"))
                .and_then(serde_yaml::Value::as_mapping_mut)
            {
                v.insert("hostname".into(), "other.example.com".into());
            }
        }
        _ => {
            if let Some(s) = spec.and_then(serde_yaml::Value::as_mapping_mut) {
                s.insert(
                    "description".into(),
                    "bumped by the conformance harness".into(),
                );
            }
        }
    }
}

/// Adds listener `http` (port 80, routes from all namespaces) or removes it.
pub(super) fn edit_listeners(doc: &mut serde_yaml::Value, add: bool) {
    let Some(seq) = doc
        .get_mut("spec")
        .and_then(|s| s.get_mut("listeners"))
        .and_then(serde_yaml::Value::as_sequence_mut)
    else {
        return;
    };
    if add {
        seq.push(crate::support::env::doc(serde_json::json!({
            "name": "http", "port": 80, "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}}
        })));
    } else {
        seq.retain(|l| l.get("name").and_then(|n| n.as_str()) != Some("http"));
    }
}
