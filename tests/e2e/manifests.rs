//! Manifest builders for the tests: small functions returning YAML text, so a
//! test reads as the configuration it serves.

use super::certs::Leaf;

/// The GatewayClass every test Gateway uses (`portcullis`).
pub const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portcullis
spec:
  controllerName: portcullis.dev/gateway-controller
";

/// A Gateway `name` in `default` with the given listener YAML snippets.
pub fn gateway(name: &str, listeners: &[String]) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: default
spec:
  gatewayClassName: portcullis
  listeners:
{}",
        listeners.concat()
    )
}

/// An HTTP listener.
pub fn http_listener(name: &str, port: u16, hostname: Option<&str>) -> String {
    let host = hostname
        .map(|h| format!("      hostname: \"{h}\"\n"))
        .unwrap_or_default();
    format!("    - name: {name}\n      protocol: HTTP\n      port: {port}\n{host}")
}

/// An HTTPS listener terminating TLS with the named Secrets.
pub fn https_listener(name: &str, port: u16, hostname: Option<&str>, secrets: &[&str]) -> String {
    let host = hostname
        .map(|h| format!("      hostname: \"{h}\"\n"))
        .unwrap_or_default();
    let refs: String = secrets
        .iter()
        .map(|s| format!("          - kind: Secret\n            name: {s}\n"))
        .collect();
    format!(
        "    - name: {name}\n      protocol: HTTPS\n      port: {port}\n{host}      tls:\n        mode: Terminate\n        certificateRefs:\n{refs}"
    )
}

/// A `kubernetes.io/tls` Secret from raw PEM text (which may be deliberately
/// broken).
pub fn tls_secret_raw(name: &str, cert_pem: &str, key_pem: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: default
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}
  tls.key: |
{}
",
        indent(cert_pem, 4),
        indent(key_pem, 4)
    )
}

/// A `kubernetes.io/tls` Secret holding `leaf`.
pub fn tls_secret(name: &str, leaf: &Leaf) -> String {
    tls_secret_raw(name, &leaf.cert_pem, &leaf.key_pem)
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.trim_end()
        .lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Service `name` (port 8080 named `http`, optional appProtocol) and an
/// EndpointSlice sending it to 127.0.0.1:`port`.
pub fn service(name: &str, port: u16, app_protocol: Option<&str>) -> String {
    format!(
        "{}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
endpoints:
  - addresses: [\"127.0.0.1\"]
    conditions:
      ready: true
ports:
  - name: http
    port: {port}
    protocol: TCP
",
        service_only(name, app_protocol)
    )
}

/// A Service with no EndpointSlice: it has no endpoints.
pub fn service_only(name: &str, app_protocol: Option<&str>) -> String {
    let app = app_protocol
        .map(|a| format!("      appProtocol: {a}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  ports:
    - name: http
      port: 8080
      protocol: TCP
{app}"
    )
}

/// A `portcullis.dev/v1alpha1` StaticResponse answering 200 with `body`.
pub fn static_response(name: &str, body: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata:
  name: {name}
  namespace: default
spec:
  status: 200
  contentType: text/plain
  body: \"{body}\"
"
    )
}

/// A backendRef to a Service on port 8080 with a weight.
pub fn backend_ref(service: &str, weight: u32) -> String {
    format!("        - name: {service}\n          port: 8080\n          weight: {weight}\n")
}

/// A backendRef to a StaticResponse.
pub fn static_ref(name: &str) -> String {
    format!(
        "        - group: portcullis.dev\n          kind: StaticResponse\n          name: {name}\n"
    )
}

/// An HTTPRoute `name` attached to Gateway `gateway` (every listener), for
/// `hostnames`, with one rule per `(path prefix, backendRefs YAML)`.
pub fn http_route(
    name: &str,
    gateway: &str,
    hostnames: &[&str],
    rules: &[(&str, String)],
) -> String {
    let hosts = if hostnames.is_empty() {
        String::new()
    } else {
        let list: String = hostnames
            .iter()
            .map(|h| format!("    - \"{h}\"\n"))
            .collect();
        format!("  hostnames:\n{list}")
    };
    let rules: String = rules
        .iter()
        .map(|(prefix, refs)| {
            format!(
                "    - matches:\n        - path:\n            type: PathPrefix\n            value: {prefix}\n      backendRefs:\n{refs}"
            )
        })
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: default
spec:
  parentRefs:
    - name: {gateway}
{hosts}  rules:
{rules}"
    )
}

/// A ConfigMap `name` in `default` holding `pem` under `ca.crt` (the shape
/// BackendTLSPolicy and frontend validation read trust anchors from).
pub fn ca_config_map(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  ca.crt: |\n{indented}"
    )
}

/// Joins manifests into one multi-document file.
pub fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}
