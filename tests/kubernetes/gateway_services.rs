//! A Service per Gateway (`--per-gateway-service`) against the real API
//! server and kube-controller-manager: the Service is made with the
//! Gateway's `spec.infrastructure` labels and annotations, the
//! gateway-name label, one port per distinct listener port and an
//! ownerReference to the Gateway; its load balancer's ingress becomes the
//! Gateway's address; a label removed from the Gateway goes from the
//! Service; a converged Service is not written again when an
//! unrelated change brings a new snapshot (`portcullis_kubernetes_writes_total`);
//! a replica started without the flag deletes it; deleting the Gateway
//! removes it.

use crate::fixtures::{namespaces_and_class, GATEWAY_API, WAIT};
use crate::support::control_plane::ControlPlane;
use crate::support::kube_mode::{eventually, get_object, install_crds, KubeGateway, KubeOptions};
use crate::support::ports;
use anyhow::{ensure, Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::time::Duration;

const SERVICE: &str = "portcullis-web";
/// The ingress address given to the Service's load balancer (TEST-NET-3).
const LB_ADDRESS: &str = "203.0.113.40";
const SELECTOR: &str = "app.kubernetes.io/name=portcullis,app.kubernetes.io/instance=edge";

/// Gateway `apps/web`: two HTTP listeners on `http` (one Service port) and
/// a TCP listener on `tcp`, with `infrastructure`.
fn gateway(http: u16, tcp: u16, infrastructure: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: apps}}
spec:
  gatewayClassName: portcullis
  infrastructure: {infrastructure}
  listeners:
  - {{name: a, protocol: HTTP, port: {http}, hostname: a.test}}
  - {{name: b, protocol: HTTP, port: {http}, hostname: b.test}}
  - {{name: raw, protocol: TCP, port: {tcp}}}
"#
    )
}

/// The Service as the API holds it, if it exists.
async fn service(client: &kube::Client) -> Result<Option<Value>> {
    get_object(client, "v1", "Service", Some("apps"), SERVICE).await
}

/// Polls until the Service exists and `check` holds for it.
async fn service_where(
    client: &kube::Client,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually(what, WAIT, || async {
        Ok(service(client).await?.filter(|s| check(s)))
    })
    .await
}

/// Polls until the Service is gone.
async fn service_gone(client: &kube::Client, what: &str) -> Result<()> {
    eventually(what, WAIT, || async {
        Ok(service(client).await?.is_none().then_some(()))
    })
    .await
}

/// How many Service writes the replica made (applies and deletions).
async fn service_writes(gw: &KubeGateway) -> Result<u64> {
    let metrics = gw.metrics().await?;
    let prefix = "portcullis_kubernetes_writes_total{kind=\"Service\",outcome=\"written\"} ";
    Ok(metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|n| n.trim().parse::<f64>().unwrap_or_default() as u64)
        .unwrap_or_default())
}

fn replica(cp: &ControlPlane, identity: &str, per_gateway_service: bool) -> Result<KubeGateway> {
    let mut options = KubeOptions::admin(cp, "portcullis-system", identity);
    options.extra_args = vec!["--lease-duration".into(), "3".into()];
    if per_gateway_service {
        options.extra_args.extend([
            "--per-gateway-service".into(),
            "LoadBalancer".into(),
            "--per-gateway-service-selector".into(),
            SELECTOR.into(),
        ]);
    }
    KubeGateway::spawn(&options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_gets_a_service_carrying_its_infrastructure() -> Result<()> {
    let cp = ControlPlane::start().await?;
    cp.start_controllers().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let (http, tcp) = (ports::for_child()?, ports::for_child()?);
    cp.apply_yaml(&format!(
        "{}---{}",
        namespaces_and_class(),
        gateway(
            http,
            tcp,
            "{labels: {team: edge, tier: front}, annotations: {note: kept}}"
        )
    ))
    .await?;
    let mut gw = replica(&cp, "replica-a", true)?;
    gw.wait_ready(WAIT).await?;

    let svc = service_where(&client, "the Gateway's Service", |_| true).await?;
    let labels = &svc["metadata"]["labels"];
    ensure!(
        labels["team"] == "edge"
            && labels["tier"] == "front"
            && labels["gateway.networking.k8s.io/gateway-name"] == "web"
            && labels["app.kubernetes.io/managed-by"] == "portcullis",
        "{svc}"
    );
    ensure!(svc["metadata"]["annotations"]["note"] == "kept", "{svc}");
    let live_gw = get_object(&client, GATEWAY_API, "Gateway", Some("apps"), "web")
        .await?
        .context("Gateway web")?;
    let owner = &svc["metadata"]["ownerReferences"][0];
    ensure!(
        owner["kind"] == "Gateway"
            && owner["name"] == "web"
            && owner["uid"] == live_gw["metadata"]["uid"]
            && owner["controller"] == true
            && owner["blockOwnerDeletion"] == true,
        "{svc}"
    );
    let spec = &svc["spec"];
    ensure!(
        spec["type"] == "LoadBalancer"
            && spec["selector"]
                == json!({"app.kubernetes.io/name": "portcullis", "app.kubernetes.io/instance": "edge"}),
        "{svc}"
    );
    let mut ports: Vec<(u64, &str, u64)> = spec["ports"]
        .as_array()
        .context("ports")?
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or_default(),
                p["protocol"].as_str().unwrap_or_default(),
                p["targetPort"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    ports.sort();
    let mut want = vec![
        (http.into(), "TCP", http.into()),
        (tcp.into(), "TCP", tcp.into()),
    ];
    want.sort();
    ensure!(ports == want, "{ports:?} {svc}");

    // A label removed from the Gateway goes from the Service; another
    // owner's label stays.
    cp.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: {SERVICE}, namespace: apps, labels: {{someone-else: "yes"}}}}
"#
    ))
    .await?;
    cp.apply_yaml(&gateway(
        http,
        tcp,
        "{labels: {team: edge}, annotations: {note: changed}}",
    ))
    .await?;
    let svc = service_where(&client, "tier gone from the Service", |s| {
        s["metadata"]["labels"].get("tier").is_none()
            && s["metadata"]["annotations"]["note"] == "changed"
    })
    .await?;
    ensure!(
        svc["metadata"]["labels"]["team"] == "edge"
            && svc["metadata"]["labels"]["someone-else"] == "yes",
        "{svc}"
    );

    // Its load balancer's address (set here as a cloud controller would)
    // becomes the Gateway's.
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    services
        .patch_status(
            SERVICE,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": LB_ADDRESS}]}}})),
        )
        .await?;
    eventually(
        "the Gateway reports its Service's ingress",
        WAIT,
        || async {
            let g = get_object(&client, GATEWAY_API, "Gateway", Some("apps"), "web").await?;
            Ok(
                g.filter(|g| g["status"]["addresses"][0]["value"] == LB_ADDRESS)
                    .map(|_| ()),
            )
        },
    )
    .await?;

    // Converged: an unrelated change (a route, whose status is written)
    // brings new snapshots but no Service write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = service_writes(&gw).await?;
    ensure!(before >= 2, "create and update: {before}");
    cp.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: unrelated, namespace: apps}
spec:
  parentRefs: [{name: web, sectionName: a}]
  rules: [{backendRefs: [{name: nowhere, port: 80}]}]
"#,
    )
    .await?;
    eventually("the route's status written", WAIT, || async {
        let r = get_object(&client, GATEWAY_API, "HTTPRoute", Some("apps"), "unrelated").await?;
        Ok(r.filter(|r| !r["status"]["parents"].is_null()).map(|_| ()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = service_writes(&gw).await?;
    ensure!(
        after == before,
        "Service writes {before} -> {after} with nothing to change"
    );

    // A replica without the flag deletes the Services made earlier.
    gw.terminate(Duration::from_secs(10));
    drop(gw);
    let mut off = replica(&cp, "replica-b", false)?;
    off.wait_ready(WAIT).await?;
    service_gone(&client, "the Service deleted with the flag off").await?;
    off.terminate(Duration::from_secs(10));
    drop(off);

    // Back on, it is made again; deleting the Gateway removes it.
    let mut on = replica(&cp, "replica-c", true)?;
    on.wait_ready(WAIT).await?;
    service_where(&client, "the Service made again", |_| true).await?;
    crate::fixtures::gateways(&client)
        .delete("web", &Default::default())
        .await?;
    service_gone(&client, "the Service gone with its Gateway").await?;
    Ok(())
}
