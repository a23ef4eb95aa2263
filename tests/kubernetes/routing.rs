//! The seed's traffic exercises applied through the API server: weights,
//! header routing and mirroring, cross-namespace attachment with
//! `allowedRoutes` and a ReferenceGrant, to real echo backends that the
//! test's EndpointSlices point at; and the status portcullis writes back.

use crate::fixtures::{backend, get_with as get, is_true, parent};
use crate::support::control_plane::ControlPlane;
use crate::support::kube_mode::{
    condition, eventually, get_object, install_crds, KubeGateway, KubeOptions,
};
use crate::support::ports;
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_headers_and_mirrors_route_through_the_api_and_status_comes_back() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let port = ports::for_child()?;
    cp.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: portcullis-system}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: apps}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: apps}}
spec:
  gatewayClassName: portcullis
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: apps}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [shop.example]
  rules:
  - matches: [{{headers: [{{name: version, value: v2}}]}}]
    backendRefs: [{{name: v2, port: 80}}]
  - filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: shadow, port: 80}}}}}}]
    backendRefs: [{{name: v1, port: 80, weight: 80}}, {{name: v2, port: 80, weight: 20}}]
"#
    ))
    .await?;
    let v1 = backend(&cp, "apps", "v1").await?;
    let v2 = backend(&cp, "apps", "v2").await?;
    let shadow = backend(&cp, "apps", "shadow").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // Header routing.
    let (status, pod) = eventually("the v2 header reaches v2", WAIT, || async {
        let got = get(addr, "shop.example", "/", &[("version", "v2")]).await?;
        Ok((got.0 == 200).then_some(got))
    })
    .await?;
    ensure!(status == 200 && pod.starts_with("v2-"), "{status} {pod}");

    // 80/20 by weight, each request mirrored to the shadow.
    let mut by_pod: BTreeMap<String, u32> = BTreeMap::new();
    let total = 200;
    for _ in 0..total {
        let (status, pod) = get(addr, "shop.example", "/weights", &[]).await?;
        ensure!(status == 200, "status {status}");
        *by_pod
            .entry(pod.split("-pod").next().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let v1_share = f64::from(by_pod.get("v1").copied().unwrap_or(0)) / f64::from(total);
    ensure!(
        (0.68..=0.92).contains(&v1_share),
        "v1 got {v1_share:.2} of the requests (expected 0.8): {by_pod:?}"
    );
    ensure!(by_pod.keys().all(|k| k == "v1" || k == "v2"), "{by_pod:?}");
    let mirrored = eventually("mirrors arrive", WAIT, || async {
        let n = shadow
            .requests()
            .iter()
            .filter(|r| r.uri == "/weights")
            .count();
        Ok((n >= total as usize).then_some(n))
    })
    .await?;
    ensure!(mirrored == total as usize, "{mirrored} mirrored of {total}");
    ensure!(v1.request_count() + v2.request_count() >= total as usize);

    // Status written back by the leader, as the specification names it.
    let route = eventually("the route's status", WAIT, || async {
        let r = get_object(
            &client,
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("apps"),
            "shop",
        )
        .await?;
        Ok(r.filter(|r| parent(r, "web").is_some_and(|p| is_true(&p["conditions"], "Accepted"))))
    })
    .await?;
    let p = parent(&route, "web").context("parent web")?;
    ensure!(
        p["controllerName"] == "portcullis.dev/gateway-controller",
        "{p}"
    );
    ensure!(is_true(&p["conditions"], "ResolvedRefs"), "{p}");
    let gateway = get_object(
        &client,
        "gateway.networking.k8s.io/v1",
        "Gateway",
        Some("apps"),
        "web",
    )
    .await?
    .context("gateway")?;
    let st = &gateway["status"];
    ensure!(
        is_true(&st["conditions"], "Accepted") && is_true(&st["conditions"], "Programmed"),
        "{st}"
    );
    ensure!(st["listeners"][0]["attachedRoutes"] == 1, "{st}");
    ensure!(st["addresses"][0]["value"] == "127.0.0.1", "{st}");
    let class = get_object(
        &client,
        "gateway.networking.k8s.io/v1",
        "GatewayClass",
        None,
        "portcullis",
    )
    .await?
    .context("class")?;
    ensure!(
        is_true(&class["status"]["conditions"], "Accepted"),
        "{class}"
    );
    ensure!(
        class["status"]["supportedFeatures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["name"] == "HTTPRoute")),
        "{class}"
    );
    // What the alert rules read about Kubernetes mode is exported.
    let metrics = gw.metrics().await?;
    ensure!(
        metrics.contains("portcullis_kubernetes_leader{lease=\"portcullis-leader\"} 1"),
        "{metrics}"
    );
    ensure!(
        metrics
            .contains("portcullis_kubernetes_writes_total{kind=\"HTTPRoute\",outcome=\"written\"}"),
        "{metrics}"
    );
    let generation = gateway["metadata"]["generation"].as_i64();
    ensure!(
        condition(&st["conditions"], "Accepted").and_then(|c| c["observedGeneration"].as_i64())
            == generation,
        "observedGeneration: {st}"
    );
    drop(gw);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_another_namespace_attaches_as_allowed_and_crosses_namespaces_by_grant(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let port = ports::for_child()?;
    cp.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: portcullis-system}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-a, labels: {{shared-gateway: "true"}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-b}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: backends}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: shared, namespace: infra}}
spec:
  gatewayClassName: portcullis
  listeners:
  - name: http
    protocol: HTTP
    port: {port}
    allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchLabels: {{shared-gateway: "true"}}}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: a, namespace: team-a}}
spec:
  parentRefs: [{{name: shared, namespace: infra}}]
  hostnames: [a.example]
  rules: [{{backendRefs: [{{name: api, namespace: backends, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: b, namespace: team-b}}
spec:
  parentRefs: [{{name: shared, namespace: infra}}]
  hostnames: [b.example]
  rules: [{{backendRefs: [{{name: api, namespace: backends, port: 80}}]}}]
"#
    ))
    .await?;
    let _api = backend(&cp, "backends", "api").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // team-a is selected but has no grant into `backends`: attached,
    // refused its backend.
    let route_a = eventually("route a refused its backend", WAIT, || async {
        let r = get_object(
            &client,
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("team-a"),
            "a",
        )
        .await?;
        Ok(r.filter(|r| {
            parent(r, "shared").is_some_and(|p| {
                condition(&p["conditions"], "ResolvedRefs")
                    .is_some_and(|c| c["status"] == "False" && c["reason"] == "RefNotPermitted")
            })
        }))
    })
    .await?;
    ensure!(is_true(
        &parent(&route_a, "shared").context("parent")?["conditions"],
        "Accepted"
    ));
    let (status, _) = get(addr, "a.example", "/", &[]).await?;
    ensure!(
        status == 500,
        "a backend not permitted answers 500, got {status}"
    );
    // team-b is not selected: not accepted.
    let route_b = eventually("route b not allowed", WAIT, || async {
        let r = get_object(
            &client,
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("team-b"),
            "b",
        )
        .await?;
        Ok(r.filter(|r| {
            parent(r, "shared").is_some_and(|p| {
                condition(&p["conditions"], "Accepted").is_some_and(|c| {
                    c["status"] == "False" && c["reason"] == "NotAllowedByListeners"
                })
            })
        }))
    })
    .await?;
    ensure!(route_b["status"]["parents"].as_array().map(Vec::len) == Some(1));
    let (status, _) = get(addr, "b.example", "/", &[]).await?;
    ensure!(
        status == 404,
        "a route not attached serves nothing, got {status}"
    );

    // The grant lets team-a's route reach the backend; the status follows.
    cp.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: from-team-a, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-a}]
  to: [{group: "", kind: Service}]
"#,
    )
    .await?;
    let (status, pod) = eventually("the grant takes effect", WAIT, || async {
        let got = get(addr, "a.example", "/", &[]).await?;
        Ok((got.0 == 200).then_some(got))
    })
    .await?;
    ensure!(status == 200 && pod.starts_with("api-"), "{status} {pod}");
    eventually("route a's refs resolve", WAIT, || async {
        let r = get_object(
            &client,
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("team-a"),
            "a",
        )
        .await?;
        Ok(r.filter(|r| {
            parent(r, "shared").is_some_and(|p| is_true(&p["conditions"], "ResolvedRefs"))
        }))
    })
    .await?;
    let gateway = get_object(
        &client,
        "gateway.networking.k8s.io/v1",
        "Gateway",
        Some("infra"),
        "shared",
    )
    .await?
    .context("gateway")?;
    ensure!(
        gateway["status"]["listeners"][0]["attachedRoutes"] == 1,
        "{}",
        gateway["status"]
    );
    drop(gw);
    Ok(())
}
