//! The objects of the Kubernetes-mode scale benchmark, as server-side apply
//! bodies: namespaces, TLS Secrets (one self-signed ECDSA P-256 certificate
//! each, generated here), Services with their EndpointSlices, Gateways and
//! HTTPRoutes.
//!
//! Layout: Gateway `g{i}` lives in namespace `bench-{i / 10}` and has three
//! listeners on the shared ports 80 and 443, told apart by hostname:
//! `http` and `https` for `*.g{i}.bench` and `https-alt` for
//! `alt.g{i}.bench`, each HTTPS listener with its own Secret (so two
//! Secrets per Gateway). HTTPRoute `r{j}` attaches to Gateway `g{j % G}`
//! with hostname `r{j}.g{j % G}.bench` and sends everything to Service
//! `svc-{j % 10}` of its namespace; even Services' EndpointSlices point at
//! backend pod A, odd ones at pod B, so moving a route to the Service of the
//! other parity changes who answers.

use anyhow::{Context, Result};
use base64::Engine as _;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// Gateways per namespace.
pub const GATEWAYS_PER_NAMESPACE: usize = 10;
/// Services (and EndpointSlices) per namespace.
pub const SERVICES_PER_NAMESPACE: usize = 10;
/// The port the backend pods listen on (the echo pods' HTTP port).
pub const BACKEND_PORT: u16 = super::support::echo::HTTP_PORT;
/// The controller namespace (the Lease).
pub const CONTROLLER_NAMESPACE: &str = "portcullis-system";

/// One object to apply.
pub struct Object {
    pub resource: ApiResource,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub body: Value,
}

/// How many of each.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub gateways: usize,
    pub routes: usize,
}

impl Scale {
    pub fn namespaces(&self) -> usize {
        self.gateways.div_ceil(GATEWAYS_PER_NAMESPACE)
    }
    pub fn secrets(&self) -> usize {
        self.gateways * 2
    }
    pub fn services(&self) -> usize {
        self.namespaces() * SERVICES_PER_NAMESPACE
    }
}

pub fn namespace_of_gateway(gateway: usize) -> String {
    format!("bench-{}", gateway / GATEWAYS_PER_NAMESPACE)
}

/// Route `route`'s (namespace, gateway index).
pub fn route_home(scale: Scale, route: usize) -> (String, usize) {
    let gateway = route % scale.gateways;
    (namespace_of_gateway(gateway), gateway)
}

pub fn route_hostname(scale: Scale, route: usize) -> String {
    let (_, gateway) = route_home(scale, route);
    format!("r{route}.g{gateway}.bench")
}

/// The Service a route sends to at first (index into the namespace's).
pub fn initial_service(route: usize) -> usize {
    route % SERVICES_PER_NAMESPACE
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn namespace_resource() -> ApiResource {
    resource("", "v1", "Namespace", "namespaces")
}
pub fn secret_resource() -> ApiResource {
    resource("", "v1", "Secret", "secrets")
}
pub fn service_resource() -> ApiResource {
    resource("", "v1", "Service", "services")
}
pub fn slice_resource() -> ApiResource {
    resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
}
pub fn class_resource() -> ApiResource {
    resource(
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
        "gatewayclasses",
    )
}
pub fn gateway_resource() -> ApiResource {
    resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways")
}
pub fn route_resource() -> ApiResource {
    resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
}

fn object(resource: ApiResource, namespace: &str, name: &str, body: Value) -> Object {
    Object {
        resource,
        namespace: namespace.to_string(),
        name: name.to_string(),
        body,
    }
}

/// The namespaces (the controller's included) and the GatewayClass.
pub fn cluster_objects(scale: Scale, controller_name: &str) -> Vec<Object> {
    let mut out: Vec<Object> = std::iter::once(CONTROLLER_NAMESPACE.to_string())
        .chain((0..scale.namespaces()).map(|n| format!("bench-{n}")))
        .map(|ns| {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            object(namespace_resource(), "", &ns, body)
        })
        .collect();
    out.push(object(
        class_resource(),
        "",
        "portcullis",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "portcullis"},
            "spec": {"controllerName": controller_name},
        }),
    ));
    out
}

/// Two TLS Secrets per Gateway, each with its own key and certificate.
pub fn secrets(scale: Scale) -> Result<Vec<Object>> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out = Vec::with_capacity(scale.secrets());
    for gateway in 0..scale.gateways {
        let ns = namespace_of_gateway(gateway);
        for (suffix, host) in [
            ("wild", format!("*.g{gateway}.bench")),
            ("alt", format!("alt.g{gateway}.bench")),
        ] {
            let certified =
                rcgen::generate_simple_self_signed(vec![host]).context("generate a certificate")?;
            let name = format!("g{gateway}-{suffix}");
            let body = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": ns},
                "type": "kubernetes.io/tls",
                "data": {
                    "tls.crt": b64(&certified.cert.pem()),
                    "tls.key": b64(&certified.signing_key.serialize_pem()),
                },
            });
            out.push(object(secret_resource(), &ns, &name, body));
        }
    }
    Ok(out)
}

/// Services `svc-0..9` in every namespace and one EndpointSlice each: even
/// ones to `pod_a`, odd ones to `pod_b`.
pub fn services(scale: Scale, pod_a: Ipv4Addr, pod_b: Ipv4Addr) -> Vec<Object> {
    let mut out = Vec::with_capacity(scale.services() * 2);
    for n in 0..scale.namespaces() {
        let ns = format!("bench-{n}");
        for s in 0..SERVICES_PER_NAMESPACE {
            let name = format!("svc-{s}");
            let ip = if s % 2 == 0 { pod_a } else { pod_b };
            out.push(object(
                service_resource(),
                &ns,
                &name,
                json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": BACKEND_PORT}]},
                }),
            ));
            let slice = format!("{name}-1");
            out.push(object(
                slice_resource(),
                &ns,
                &slice,
                json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": slice,
                        "namespace": ns,
                        "labels": {"kubernetes.io/service-name": name},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
                    "ports": [{"name": "http", "port": BACKEND_PORT}],
                }),
            ));
        }
    }
    out
}

pub fn gateways(scale: Scale) -> Vec<Object> {
    (0..scale.gateways)
        .map(|g| {
            let ns = namespace_of_gateway(g);
            let name = format!("g{g}");
            let wild = format!("*.g{g}.bench");
            let body = json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "gatewayClassName": "portcullis",
                    "listeners": [
                        {"name": "http", "protocol": "HTTP", "port": 80, "hostname": wild},
                        {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": wild,
                         "tls": {"mode": "Terminate", "certificateRefs": [{"name": format!("g{g}-wild")}]}},
                        {"name": "https-alt", "protocol": "HTTPS", "port": 443,
                         "hostname": format!("alt.g{g}.bench"),
                         "tls": {"mode": "Terminate", "certificateRefs": [{"name": format!("g{g}-alt")}]}},
                    ],
                },
            });
            object(gateway_resource(), &ns, &name, body)
        })
        .collect()
}

/// Route `route` sending to `svc-{service}` of its namespace.
pub fn route(scale: Scale, route: usize, service: usize) -> Object {
    let (ns, gateway) = route_home(scale, route);
    let name = format!("r{route}");
    let body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": format!("g{gateway}")}],
            "hostnames": [route_hostname(scale, route)],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": format!("svc-{service}"), "port": 80}],
            }],
        },
    });
    object(route_resource(), &ns, &name, body)
}

pub fn routes(scale: Scale) -> Vec<Object> {
    (0..scale.routes)
        .map(|r| route(scale, r, initial_service(r)))
        .collect()
}
