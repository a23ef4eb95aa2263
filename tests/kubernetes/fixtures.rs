//! What the Kubernetes-mode tests share (`faults`, `chart_rbac`, `routing`,
//! `address_pool`): echo backends behind a Service and EndpointSlice, plain
//! HTTP requests by Host, polling a route's status, and the manifests most
//! tests start from.

use crate::support::control_plane::ControlPlane;
use crate::support::echo::{EchoPod, PodSpec, RetryCounters, HTTP_PORT};
use crate::support::kube_mode::{condition, eventually, get_object, pod_ip};
use anyhow::{anyhow, Result};
use kube::api::{Api, DynamicObject};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const WAIT: Duration = Duration::from_secs(30);
pub(crate) const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
pub(crate) const CONTROLLER: &str = "portcullis.dev/gateway-controller";

/// An echo pod of `deployment` in `namespace`, and the Service and
/// EndpointSlice that make it reachable as `deployment:80`.
pub(crate) async fn backend(
    cp: &ControlPlane,
    namespace: &str,
    deployment: &str,
) -> Result<EchoPod> {
    let ip = pod_ip()?;
    let pod = EchoPod::start(
        PodSpec {
            kind: Default::default(),
            name: format!("{deployment}-pod-0"),
            namespace: namespace.into(),
            deployment: deployment.into(),
            ip,
            tls: None,
        },
        Arc::new(RetryCounters::default()),
    )
    .await?;
    cp.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: {deployment}, namespace: {namespace}}}
spec: {{ports: [{{name: http, port: 80, targetPort: {HTTP_PORT}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {deployment}-1
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {deployment}}}
addressType: IPv4
endpoints: [{{addresses: ["{ip}"], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {HTTP_PORT}}}]
"#
    ))
    .await?;
    Ok(pod)
}

/// GET `path` on `addr` for `host`; (status, the answering pod's name).
pub(crate) async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String)> {
    get_with(addr, host, path, &[]).await
}

/// [`get`] with request `headers`.
pub(crate) async fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let resp = crate::support::client::send(&crate::support::client::HttpRequest {
        addr,
        tls: None,
        protocol: crate::support::client::Protocol::Http1,
        method: "GET".into(),
        path: path.into(),
        host: host.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timeout: Duration::from_secs(5),
    })
    .await
    .map_err(|e| anyhow!("{e}"))?;
    let pod = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["pod"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok((resp.status, pod))
}

/// Polls until `host` answers `status` (and, for 200, from a pod of
/// `deployment`).
pub(crate) async fn wait_routed(
    addr: SocketAddr,
    host: &str,
    status: u16,
    deployment: &str,
) -> Result<()> {
    eventually(&format!("{host} answers {status}"), WAIT, || async {
        let (got, pod) = get(addr, host, "/").await?;
        Ok((got == status && (status != 200 || pod.starts_with(deployment))).then_some(()))
    })
    .await
}

/// The route's `status.parents` entry for Gateway `gateway`.
pub(crate) fn parent<'a>(route: &'a Value, gateway: &str) -> Option<&'a Value> {
    route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["parentRef"]["name"] == gateway)
}

pub(crate) fn is_true(conditions: &Value, kind: &str) -> bool {
    condition(conditions, kind).is_some_and(|c| c["status"] == "True")
}

/// Polls HTTPRoute `namespace/name` until `check` holds for it.
pub(crate) async fn wait_route(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually(what, WAIT, || async {
        let r = get_object(client, GATEWAY_API, "HTTPRoute", Some(namespace), name).await?;
        Ok(r.filter(|r| check(r)))
    })
    .await
}

/// Whether the route's entry for `gateway` is ours and Accepted.
pub(crate) fn accepted_by_us(route: &Value, gateway: &str) -> bool {
    parent(route, gateway)
        .is_some_and(|p| p["controllerName"] == CONTROLLER && is_true(&p["conditions"], "Accepted"))
}

/// Namespaces `portcullis-system` and `apps`, and our GatewayClass.
pub(crate) fn namespaces_and_class() -> String {
    format!(
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
spec: {{controllerName: {CONTROLLER}}}
"#
    )
}

/// [`namespaces_and_class`], and Gateway `apps/web` with an HTTP listener
/// on `port`.
pub(crate) fn base(port: u16) -> String {
    format!(
        r#"{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: apps}}
spec:
  gatewayClassName: portcullis
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
"#,
        namespaces_and_class()
    )
}

/// An HTTPRoute `apps/name` for `host` on Gateway `web` to Service `service`.
pub(crate) fn route(name: &str, host: &str, service: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: apps}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [{host}]
  rules: [{{backendRefs: [{{name: {service}, port: 80}}]}}]
"#
    )
}

/// The Gateways of namespace `apps`.
pub(crate) fn gateways(client: &kube::Client) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
    ));
    Api::namespaced_with(client.clone(), "apps", &ar)
}

pub(crate) fn http_routes(client: &kube::Client) -> Result<Api<DynamicObject>> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    Ok(Api::namespaced_with(client.clone(), "apps", &ar))
}
