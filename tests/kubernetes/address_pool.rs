//! Gateways given addresses of their own from `--gateway-address-pool`:
//! two Gateways with a port-80 listener and no hostname (on one shared
//! address they would conflict) are both Accepted and Programmed, each
//! reports its own address from its first status on and serves its own
//! route there (curl); a third finds the pool empty
//! (`Programmed=False/AddressNotAssigned`) and takes the address a deleted
//! one leaves; a restarted replica keeps every address where it was.

use crate::fixtures::{backend, is_true, namespaces_and_class, GATEWAY_API, WAIT};
use crate::support::control_plane::ControlPlane;
use crate::support::kube_mode::{
    condition, eventually, get_object, install_crds, KubeGateway, KubeOptions,
};
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::process::Command;

/// Loopback addresses bind on Linux without any setup. A /30 hands out
/// two addresses, .1 and .2.
const POOL: &str = "127.0.82.0/30";

fn gateway(name: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: apps}}
spec:
  gatewayClassName: portcullis
  listeners: [{{name: http, protocol: HTTP, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: apps}}
spec:
  parentRefs: [{{name: {name}}}]
  rules: [{{backendRefs: [{{name: {name}, port: 80}}]}}]
"#
    )
}

/// Gateway `apps/name` as the API holds it.
pub(crate) async fn live_gateway(client: &kube::Client, name: &str) -> Result<Value> {
    get_object(client, GATEWAY_API, "Gateway", Some("apps"), name)
        .await?
        .with_context(|| format!("Gateway {name}"))
}

/// The address Gateway `name` reports once it is Accepted and Programmed.
/// Every status seen on the way that has conditions must carry an address
/// already: the conformance suite reads it once, at the first Accepted.
async fn programmed_address(client: &kube::Client, name: &str) -> Result<String> {
    eventually(&format!("Gateway {name} programmed"), WAIT, || async {
        let st = live_gateway(client, name).await?["status"].clone();
        let address = st["addresses"][0]["value"].as_str().map(str::to_owned);
        let accepted =
            condition(&st["conditions"], "Accepted").is_some_and(|c| c["reason"] != "Pending");
        ensure!(
            !accepted || address.is_some(),
            "a status without an address: {st}"
        );
        Ok(
            (is_true(&st["conditions"], "Accepted") && is_true(&st["conditions"], "Programmed"))
                .then_some(address)
                .flatten(),
        )
    })
    .await
}

/// `curl http://address/`: the pod that answered.
fn curl_pod(address: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{address}/"))
        .output()
        .context("run curl")?;
    ensure!(
        out.status.success(),
        "curl http://{address}/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("echo answer: {}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(body["pod"].as_str().unwrap_or_default().to_string())
}

/// Polls until `address` is served by a pod of `deployment`.
pub(crate) async fn served_by(address: &str, deployment: &str) -> Result<()> {
    eventually(
        &format!("{address} served by {deployment}"),
        WAIT,
        || async {
            Ok(curl_pod(address)?
                .starts_with(&format!("{deployment}-"))
                .then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_one_port_get_addresses_of_their_own_from_the_pool() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    cp.apply_yaml(&format!(
        "{}{}{}",
        namespaces_and_class(),
        gateway("one"),
        gateway("two")
    ))
    .await?;
    let _one = backend(&cp, "apps", "one").await?;
    let _two = backend(&cp, "apps", "two").await?;
    let mut options = KubeOptions::admin(&cp, "portcullis-system", "replica-a");
    options.extra_args = vec!["--gateway-address-pool".into(), POOL.into()];
    let mut gw = KubeGateway::spawn(&options)?;
    gw.wait_ready(WAIT).await?;

    // Created in one apply (one second): the older by name gets .1.
    let one = programmed_address(&client, "one").await?;
    let two = programmed_address(&client, "two").await?;
    ensure!(
        (one.as_str(), two.as_str()) == ("127.0.82.1", "127.0.82.2"),
        "{one} {two}"
    );
    for name in ["one", "two"] {
        let st = live_gateway(&client, name).await?["status"].clone();
        ensure!(st["addresses"][0]["type"] == "IPAddress", "{st}");
        let listener = &st["listeners"][0];
        ensure!(
            is_true(&listener["conditions"], "Programmed")
                && !is_true(&listener["conditions"], "Conflicted"),
            "{st}"
        );
    }
    served_by(&one, "one").await?;
    served_by(&two, "two").await?;

    // The pool is empty: a third Gateway waits for an address.
    cp.apply_yaml(&gateway("three")).await?;
    let _three = backend(&cp, "apps", "three").await?;
    let st = eventually("Gateway three not programmed", WAIT, || async {
        let st = live_gateway(&client, "three").await?["status"].clone();
        Ok(condition(&st["conditions"], "Programmed")
            .is_some_and(|c| c["status"] == "False")
            .then_some(st))
    })
    .await?;
    ensure!(
        condition(&st["conditions"], "Programmed")
            .is_some_and(|c| c["reason"] == "AddressNotAssigned")
            && is_true(&st["conditions"], "Accepted")
            && st["addresses"].is_null(),
        "{st}"
    );

    // A deleted Gateway's address goes to the one waiting; the other keeps
    // its own.
    crate::fixtures::gateways(&client)
        .delete("one", &Default::default())
        .await?;
    let three = programmed_address(&client, "three").await?;
    ensure!(three == one, "three got {three}, not the freed {one}");
    served_by(&three, "three").await?;
    served_by(&two, "two").await?;

    // Another replica after a restart decides alike.
    drop(gw);
    let mut again = KubeGateway::spawn(&KubeOptions {
        identity: "replica-b".into(),
        log_file: cp.dir().join("portcullis-replica-b.log"),
        ..options
    })?;
    again.wait_ready(WAIT).await?;
    served_by(&three, "three").await?;
    served_by(&two, "two").await?;
    for (name, address) in [("two", &two), ("three", &three)] {
        let st = live_gateway(&client, name).await?["status"].clone();
        ensure!(st["addresses"][0]["value"] == address.as_str(), "{st}");
    }
    Ok(())
}
