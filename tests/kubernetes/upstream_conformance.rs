//! The upstream Gateway API conformance suite (sigs.k8s.io/gateway-api/
//! conformance, unmodified, built by scripts/k8s-rig.sh as
//! `bin/conformance.test` from tests/k8s/rig/conformance) run against
//! `portcullis serve --kubernetes` in the test control plane, with the
//! controllers and the node agent running the suite's echo backends.
//!
//! Part of the README test command; alone:
//! `cargo test --test kubernetes upstream_conformance -- --nocapture`.
//! `PORTCULLIS_UPSTREAM_PROFILES` (default: the five GATEWAY profiles) picks
//! the profiles, `PORTCULLIS_UPSTREAM_RUN_TEST` one test. The suite's log,
//! its ConformanceReport and portcullis's and the node agent's logs go to
//! `target/upstream-conformance/`; the committed report is
//! conformance/reports/v1.6.1/portcullis/.
//!
//! The suite's Gateways share ports without hostnames (the base manifests
//! have three on port 80): portcullis gives each one an address of its own
//! from `--gateway-address-pool` ([`GATEWAY_POOL`]). Each Gateway also gets
//! its Service (`--per-gateway-service`), which `GatewayInfrastructure`
//! reads.

use crate::fixtures::CONTROLLER;
use crate::support::control_plane::ControlPlane;
use crate::support::kube_mode::{install_crds, KubeGateway, KubeOptions};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where each Gateway gets its address, binds its listeners on the suite's
/// real ports and says so in `status.addresses`: loopback addresses, local
/// on Linux without setup, of a /24 no other test uses.
const GATEWAY_POOL: &str = "127.0.81.0/24";

/// `GatewayStaticAddresses`: an address portcullis can bind (loopback,
/// outside the pool and every other test's addresses) and one it cannot
/// (TEST-NET-1, RFC 5737, on no interface).
const USABLE_ADDRESS: &str = "127.0.85.1";
const UNUSABLE_ADDRESS: &str = "192.0.2.201";

/// The features portcullis implements (README "How manifests map to
/// behaviour", its own conformance harness), for every profile: the suite
/// takes from the list what each profile it runs defines.
const SUPPORTED_FEATURES: &[&str] = &[
    "TLSRoute",
    "TLSRouteModeTerminate",
    "TLSRouteModeMixed",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "TCPRoute",
    "UDPRoute",
    "Gateway",
    "GatewayStaticAddresses",
    "GatewayInfrastructurePropagation",
    "HTTPRoute",
    "ReferenceGrant",
    "GatewayPort8080",
    "GatewayHTTPListenerIsolation",
    "ListenerSet",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRoutePortRedirect",
    "HTTPRouteSchemeRedirect",
    "HTTPRoutePathRedirect",
    "HTTPRouteHostRewrite",
    "HTTPRoutePathRewrite",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteBackendTimeout",
    "HTTPRouteParentRefPort",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteCORS",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayBackendClientCertificate",
    "GatewayAddressEmpty",
];

/// Every profile the suite defines for Gateways.
const PROFILES: &str = "GATEWAY-HTTP,GATEWAY-TLS,GATEWAY-GRPC,GATEWAY-TCP,GATEWAY-UDP";

#[tokio::test]
async fn upstream_conformance_suite() -> Result<()> {
    let began = Instant::now();
    let cp = ControlPlane::start().await?;
    cp.start_controllers().await?;
    let agent = cp.start_node_agent().await?;
    let suite = cp.rig_dir().join("bin/conformance.test");
    if !suite.exists() {
        bail!(
            "{} is missing: rebuild the rig with scripts/k8s-rig.sh",
            suite.display()
        );
    }
    install_crds(&cp).await?;
    cp.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: portcullis-system}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: {CONTROLLER}}}
"#
    ))
    .await?;
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/upstream-conformance");
    std::fs::create_dir_all(&out_dir)?;
    let profiles =
        std::env::var("PORTCULLIS_UPSTREAM_PROFILES").unwrap_or_else(|_| PROFILES.into());
    let mut options = KubeOptions::admin(&cp, "portcullis-system", "replica-a");
    options.extra_args = vec![
        "--gateway-address-pool".into(),
        GATEWAY_POOL.into(),
        // GatewayInfrastructurePropagation: each Gateway's Service carries
        // its spec.infrastructure (the selector matches no pod here: the
        // suite's traffic goes to the pool addresses).
        "--per-gateway-service".into(),
        "ClusterIP".into(),
        "--per-gateway-service-selector".into(),
        "app.kubernetes.io/name=portcullis".into(),
    ];
    // Kept after the run, as the node agent's (the control plane's
    // directory is removed).
    options.log_file = out_dir.join(format!("{profiles}-portcullis.log"));
    let mut gateway = KubeGateway::spawn(&options)?;
    gateway.wait_ready(Duration::from_secs(60)).await?;
    eprintln!(
        "control plane, controllers, node agent {} and portcullis up after {:?}",
        agent.node_name(),
        began.elapsed()
    );

    let log_path = out_dir.join(format!("{profiles}.log"));
    let report_path = out_dir.join(format!("{profiles}-report.yaml"));
    let mut args = vec![
        "-test.v".to_string(),
        "-test.run=TestConformance".to_string(),
        "-test.timeout=90m".to_string(),
        "-gateway-class=portcullis".to_string(),
        format!("-conformance-profiles={profiles}"),
        format!("-supported-features={}", SUPPORTED_FEATURES.join(",")),
        format!("-usable-address={USABLE_ADDRESS}"),
        format!("-unusable-address={UNUSABLE_ADDRESS}"),
        format!("-report-output={}", report_path.display()),
        "-organization=portcullis".to_string(),
        "-project=portcullis".to_string(),
        "-url=https://portcullis.dev".to_string(),
        format!("-version=v{}", env!("CARGO_PKG_VERSION")),
        "-contact=portcullis maintainers".to_string(),
    ];
    if let Ok(test) = std::env::var("PORTCULLIS_UPSTREAM_RUN_TEST") {
        args.push(format!("-run-test={test}"));
    }
    let log = std::fs::File::create(&log_path)?;
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(&suite)
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
    })
    .await?
    .context("run the conformance suite")?;
    // The node agent's log says which pod held which address when.
    let agent_log = cp.dir().join(format!("node-agent-{}.log", agent.bridge()));
    if let Err(error) = std::fs::copy(
        &agent_log,
        out_dir.join(format!("{profiles}-node-agent.log")),
    ) {
        eprintln!("cannot keep {}: {error}", agent_log.display());
    }
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let failed: Vec<&str> = output
        .lines()
        .filter(|line| line.trim_start().starts_with("--- FAIL"))
        .collect();
    eprintln!(
        "suite {status} after {:?}; log {}, report {}; {} failed:\n{}",
        began.elapsed(),
        log_path.display(),
        report_path.display(),
        failed.len(),
        failed.join("\n")
    );
    if !status.success() {
        bail!(
            "the conformance suite failed ({status}); portcullis log tail:\n{}",
            gateway.log_tail(20)
        );
    }
    Ok(())
}
