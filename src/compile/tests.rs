//! Compile tests over small YAML fixtures, named after the Gateway API rule
//! each one checks.

use super::*;
use crate::dataplane::{BackendTarget, BindProtocol, UpstreamProtocol};
use crate::model::load::parse_documents;
use crate::model::{Object, Secret};
use crate::status::{ConditionStatus, ConditionType, ObjectStatus, Reason};

mod backend_tls;
mod gateways;
mod l4;
mod pool;
mod routes;
mod tls;

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
";

/// A Gateway `gw` in `infra` with one HTTP listener per `(name, port, hostname)`.
fn gateway(listeners: &[(&str, u16, Option<&str>)], extra_spec: &str) -> String {
    let mut out = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\nspec:\n  gatewayClassName: pc\n{extra_spec}  listeners:\n"
    );
    for (name, port, host) in listeners {
        out.push_str(&format!("  - {{name: {name}, port: {port}, protocol: HTTP"));
        if let Some(h) = host {
            out.push_str(&format!(", hostname: \"{h}\""));
        }
        out.push_str(", allowedRoutes: {namespaces: {from: All}}}\n");
    }
    out
}

/// An HTTPRoute `name` in `ns` with the given parentRef body and a rule to `svc:80`.
fn route(ns: &str, name: &str, parent: &str, hostnames: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: {hostnames}\n  rules:\n  - backendRefs: [{{name: svc, port: 80}}]\n"
    )
}

fn service(ns: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc, namespace: {ns}}}\nspec:\n  ports: [{{port: 80}}]\n"
    )
}

fn load(yaml: &str) -> Resources {
    Resources::from_objects(
        parse_documents(yaml, "t.yaml")
            .expect("fixture parses")
            .objects,
    )
}

fn run(resources: &Resources) -> Compiled {
    compile(resources, &CompileOptions::default())
}

fn run_yaml(yaml: &str) -> Compiled {
    run(&load(yaml))
}

fn find<'a>(c: &'a Compiled, kind: &str, ns: &str, name: &str) -> &'a ObjectStatus {
    c.status
        .find(kind, ns, name)
        .unwrap_or_else(|| panic!("no status for {kind} {ns}/{name}: {:#?}", c.status))
}

fn cond(conditions: &[crate::status::Condition], kind: ConditionType) -> (bool, Reason) {
    let c = conditions
        .iter()
        .find(|c| c.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {conditions:#?}"));
    (c.status == ConditionStatus::True, c.reason)
}

fn object_cond(c: &Compiled, kind: &str, ns: &str, name: &str, t: ConditionType) -> (bool, Reason) {
    cond(&find(c, kind, ns, name).conditions, t)
}

fn listener<'a>(s: &'a ObjectStatus, name: &str) -> &'a crate::status::ListenerStatus {
    s.listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name} in {s:#?}"))
}

fn listener_cond(
    c: &Compiled,
    kind: &str,
    ns: &str,
    name: &str,
    l: &str,
    t: ConditionType,
) -> (bool, Reason) {
    cond(&listener(find(c, kind, ns, name), l).conditions, t)
}

fn attached(c: &Compiled, l: &str) -> u32 {
    listener(find(c, "Gateway", "infra", "gw"), l).attached_routes
}

/// The condition of an HTTPRoute for its `index`th parent of ours.
fn route_cond(
    c: &Compiled,
    ns: &str,
    name: &str,
    index: usize,
    t: ConditionType,
) -> (bool, Reason) {
    let s = find(c, "HTTPRoute", ns, name);
    cond(&s.parents[index].conditions, t)
}

/// A self-signed certificate and key for `host`, in PEM.
fn cert_pair(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key generation");
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .expect("valid name")
        .self_signed(&key)
        .expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

fn tls_secret(ns: &str, name: &str, cert: &str, key: &str) -> Object {
    let mut data = std::collections::BTreeMap::new();
    data.insert("tls.crt".to_string(), cert.as_bytes().to_vec());
    data.insert("tls.key".to_string(), key.as_bytes().to_vec());
    Object::Secret(std::sync::Arc::new(Secret {
        metadata: crate::model::ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        },
        kind: "kubernetes.io/tls".into(),
        data,
    }))
}

#[test]
fn gateway_class_of_our_controller_is_accepted_others_ignored() {
    let c = run_yaml(&format!(
        "{CLASS}---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: other}}\nspec: {{controllerName: example.com/x}}\n{}",
        gateway(&[("http", 80, None)], "").replace("gatewayClassName: pc", "gatewayClassName: other")
    ));
    assert_eq!(
        object_cond(&c, "GatewayClass", "", "pc", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert!(c.status.find("GatewayClass", "", "other").is_none());
    assert!(c.status.find("Gateway", "infra", "gw").is_none());
    assert!(c.dataplane.binds.is_empty());
}

#[test]
fn gateway_class_with_parameters_is_invalid_parameters() {
    let c = run_yaml(&CLASS.replace(
        "spec: {",
        "spec: {parametersRef: {group: g, kind: K, name: n}, ",
    ));
    assert_eq!(
        object_cond(&c, "GatewayClass", "", "pc", ConditionType::Accepted),
        (false, Reason::InvalidParameters)
    );
}

#[test]
fn conditions_carry_the_object_generation() {
    let yaml = format!("{CLASS}{}", gateway(&[("http", 80, None)], ""))
        .replace("namespace: infra}", "namespace: infra, generation: 7}");
    let c = run_yaml(&yaml);
    let gw = find(&c, "Gateway", "infra", "gw");
    assert!(gw.conditions.iter().all(|c| c.observed_generation == 7));
    assert!(gw.listeners[0]
        .conditions
        .iter()
        .all(|c| c.observed_generation == 7));
}

#[test]
fn backends_resolve_through_endpoint_slices_by_port_name() {
    let yaml = format!(
        "{CLASS}{}{}---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: infra}}
spec:
  ports:
  - {{name: web, port: 80, appProtocol: kubernetes.io/h2c}}
  - {{name: admin, port: 9000}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: infra, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: web, port: 3000}}, {{name: admin, port: 9090}}]
endpoints:
- addresses: [10.0.0.2]
- addresses: [10.0.0.1]
  conditions: {{ready: true}}
- addresses: [10.0.0.3]
  conditions: {{ready: false}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: other, namespace: infra, labels: {{kubernetes.io/service-name: not-svc}}}}
addressType: IPv4
ports: [{{name: web, port: 1}}]
endpoints: [{{addresses: [10.9.9.9]}}]
",
        gateway(&[("http", 80, None)], ""),
        route("infra", "r", "{name: gw}", "[]").replace(
            "backendRefs: [{name: svc, port: 80}]",
            "backendRefs: [{name: svc, port: 80}, {name: svc, port: 80, weight: 0}]"
        ),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    let bind = &c.dataplane.binds[0];
    let entry = &bind.listeners[0].routes.entries[0];
    assert_eq!(entry.rule.total_weight, 1);
    let (BackendTarget::Service(a), BackendTarget::Service(b)) = (
        &entry.rule.backends[0].target,
        &entry.rule.backends[1].target,
    ) else {
        panic!("expected services: {:?}", entry.rule.backends);
    };
    assert!(Arc::ptr_eq(a, b), "identical upstreams are shared");
    assert_eq!(a.name, "infra/svc:80");
    assert_eq!(a.protocol, UpstreamProtocol::H2c);
    let addrs: Vec<String> = a.endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(addrs, vec!["10.0.0.1:3000", "10.0.0.2:3000"]);
}

#[test]
fn unnamed_service_port_matches_unnamed_slice_port() {
    let yaml = format!(
        "{CLASS}{}{}{}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s, namespace: infra, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv6
ports: [{{port: 3000}}]
endpoints: [{{addresses: ['fd00::1']}}]
",
        gateway(&[("http", 80, None)], ""),
        route("infra", "r", "{name: gw}", "[]"),
        service("infra"),
    );
    let c = run_yaml(&yaml);
    let entry = &c.dataplane.binds[0].listeners[0].routes.entries[0];
    let BackendTarget::Service(u) = &entry.rule.backends[0].target else {
        panic!("expected a service");
    };
    assert_eq!(u.endpoints[0].to_string(), "[fd00::1]:3000");
    assert_eq!(u.protocol, UpstreamProtocol::Http1);
}

#[test]
fn tls_listener_serves_certificates_on_an_https_bind() {
    let (cert, key) = cert_pair("a.example.com");
    let yaml = format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: pc
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: a.example.com
    tls: {{certificateRefs: [{{name: cert}}]}}
"
    );
    let mut r = load(&yaml);
    r.push(tls_secret("infra", "cert", &cert, &key));
    let c = compile(
        &r,
        &CompileOptions {
            port_offset: 8000,
            ..Default::default()
        },
    );
    let bind = &c.dataplane.binds[0];
    assert_eq!(bind.addr.to_string(), "127.0.0.1:8443");
    assert_eq!(bind.protocol, BindProtocol::Https);
    assert_eq!(bind.listeners[0].port, 443);
    assert_eq!(bind.listeners[0].certificates.len(), 1);
    let l = listener(find(&c, "Gateway", "infra", "gw"), "https");
    assert_eq!(l.certificate_refs, vec!["infra/cert".to_string()]);
}
