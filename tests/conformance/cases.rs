//! Conformance cases: reading `cases.json` and `status-only.json`, deciding
//! which are in scope for this run, and the address layout each case gets.
//! Running a case is [`crate::run`]'s job.

use serde_json::Value;

use crate::support;
use crate::support::env::Layout;

/// In-scope cases expected to fail for now: (case name, reason seen).
pub(crate) const KNOWN_FAILING: &[(&str, &str)] = &[];

/// Features a case may declare (besides any `HTTPRoute*`) to be in scope now.
pub(crate) const IN_SCOPE_FEATURES: &[&str] = &[
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
pub(crate) const PREPARED_FEATURES: &[&str] = &[];

/// Cases whose checks only apply when a feature is NOT supported; portcullis
/// supports it, so they are out of scope whatever their declared features.
pub(crate) const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "TLSRouteListenerTerminateNotSupported",
        "only for implementations without TLSRouteModeTerminate; portcullis supports it",
    ),
    (
        "TLSRouteListenerMixedTerminationNotSupported",
        "only for implementations without TLSRouteModeMixed; portcullis supports it",
    ),
];

pub(crate) const CLASS_NAME: &str = "portcullis";

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) features: Vec<String>,
    pub(crate) manifests: Vec<String>,
    pub(crate) gateway: Option<(String, String)>,
    pub(crate) requests: Vec<Value>,
    pub(crate) has_status_checks: bool,
    pub(crate) status_only: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Passed,
    Failed(String),
    /// Why the case is not run.
    NotInScope(String),
}

/// The features in scope for this run: [`IN_SCOPE_FEATURES`] plus those named
/// in `PORTCULLIS_CONFORMANCE_FEATURES`.
pub(crate) fn scope_features() -> Vec<String> {
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
pub(crate) fn scope(case: &Case, in_scope: &[String]) -> Result<(), String> {
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

pub(crate) fn load_cases() -> Vec<Case> {
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

pub(crate) fn gateway_ref(v: &Value) -> Option<(String, String)> {
    Some((
        v["namespace"].as_str()?.to_string(),
        v["name"].as_str()?.to_string(),
    ))
}

/// Random 127.x.y.0/24 blocks: two per case (gateways, pods), consecutive.
pub(crate) fn layout_for(base: u32, index: u32, port_offset: u16) -> Layout {
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
