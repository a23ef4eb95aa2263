//! Static addresses (`GatewayStaticAddresses`), the upstream test's three
//! steps through the API server: a Gateway naming an address of a type
//! portcullis does not support is `Accepted=False/UnsupportedAddress`;
//! naming one this node cannot bind (TEST-NET-1) beside one it can
//! (loopback) is `Accepted=True`, `Programmed=False/AddressNotUsable`;
//! naming only the usable one, it is Programmed, reports exactly that
//! address and serves its route there (curl).

use crate::address_pool::{live_gateway, served_by};
use crate::fixtures::{backend, is_true, namespaces_and_class, WAIT};
use crate::support::control_plane::ControlPlane;
use crate::support::kube_mode::{condition, eventually, install_crds, KubeGateway, KubeOptions};
use anyhow::{ensure, Result};
use serde_json::Value;

/// Loopback binds on Linux without setup; `address_pool` uses 127.0.82.x.
const USABLE: &str = "127.0.83.1";
/// TEST-NET-1 (RFC 5737): assigned to no interface, so it cannot be bound.
const UNUSABLE: &str = "192.0.2.200";
const PORT: u16 = 8080;

/// Gateway `apps/static` naming `addresses` (YAML flow entries), and its
/// route to the `static` backend.
fn gateway(addresses: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: static, namespace: apps}}
spec:
  gatewayClassName: portcullis
  addresses: [{addresses}]
  listeners: [{{name: http, protocol: HTTP, port: {PORT}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: static, namespace: apps}}
spec:
  parentRefs: [{{name: static}}]
  rules: [{{backendRefs: [{{name: static, port: 80}}]}}]
"#
    )
}

/// The Gateway's status once its `type` condition has `status` and
/// `reason` for the current generation.
async fn status_with(
    client: &kube::Client,
    kind: &str,
    status: &str,
    reason: &str,
) -> Result<Value> {
    eventually(
        &format!("Gateway {kind}={status}/{reason}"),
        WAIT,
        || async {
            let gw = live_gateway(client, "static").await?;
            let generation = gw["metadata"]["generation"].clone();
            let st = gw["status"].clone();
            let matches = condition(&st["conditions"], kind).is_some_and(|c| {
                c["status"] == status
                    && c["reason"] == reason
                    && c["observedGeneration"] == generation
            });
            Ok(matches.then_some(st))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_addresses_unsupported_then_unusable_then_bound() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let invalid = r#"{type: test/fake-invalid-type, value: "fake address"}"#;
    let unusable = format!("{{type: IPAddress, value: {UNUSABLE}}}");
    let usable = format!("{{type: IPAddress, value: {USABLE}}}");
    cp.apply_yaml(&format!(
        "{}---{}",
        namespaces_and_class(),
        gateway(&format!("{invalid}, {unusable}, {usable}"))
    ))
    .await?;
    let _backend = backend(&cp, "apps", "static").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;

    status_with(&client, "Accepted", "False", "UnsupportedAddress").await?;

    cp.apply_yaml(&gateway(&format!("{unusable}, {usable}")))
        .await?;
    let st = status_with(&client, "Programmed", "False", "AddressNotUsable").await?;
    ensure!(is_true(&st["conditions"], "Accepted"), "{st}");
    let message = condition(&st["conditions"], "Programmed")
        .map(|c| c["message"].to_string())
        .unwrap_or_default();
    ensure!(message.contains(UNUSABLE), "{st}");

    cp.apply_yaml(&gateway(&usable)).await?;
    let st = status_with(&client, "Programmed", "True", "Programmed").await?;
    ensure!(is_true(&st["conditions"], "Accepted"), "{st}");
    let addresses = st["addresses"].as_array().cloned().unwrap_or_default();
    ensure!(
        addresses.len() == 1
            && addresses[0]["value"] == USABLE
            && addresses[0]["type"] == "IPAddress",
        "{st}"
    );
    served_by(&format!("{USABLE}:{PORT}"), "static").await?;
    Ok(())
}

/// Also TEST-NET-1, unassigned until the test below assigns it.
const LATE: &str = "192.0.2.210";

/// Removes an address from `lo` when dropped.
struct AssignedToLo(&'static str);

impl AssignedToLo {
    fn add(ip: &'static str) -> Result<Self> {
        let status = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()?;
        ensure!(status.success(), "ip addr add {ip}/32 dev lo: {status}");
        Ok(Self(ip))
    }
}

impl Drop for AssignedToLo {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

/// An address that becomes local after the Gateway named it is bound by
/// the runtime's periodic re-check, with no change to any object (the
/// snapshots that follow bring only status, which alone compiles nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_turns_local_is_bound_without_a_change() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let late = format!("{{type: IPAddress, value: {LATE}}}");
    cp.apply_yaml(&format!("{}---{}", namespaces_and_class(), gateway(&late)))
        .await?;
    let _backend = backend(&cp, "apps", "static").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    status_with(&client, "Programmed", "False", "AddressNotUsable").await?;

    let _assigned = AssignedToLo::add(LATE)?;
    let st = status_with(&client, "Programmed", "True", "Programmed").await?;
    let addresses = st["addresses"].as_array().cloned().unwrap_or_default();
    ensure!(
        addresses.len() == 1 && addresses[0]["value"] == LATE,
        "{st}"
    );
    served_by(&format!("{LATE}:{PORT}"), "static").await?;
    Ok(())
}
