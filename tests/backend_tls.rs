//! End-to-end tests of re-encryption (BackendTLSPolicy) and of the client
//! certificate a Gateway presents to backends: curl speaks plain HTTP to
//! the real portcullis binary, which speaks TLS to a real HTTPS backend
//! (hyper over tokio-rustls) with its own CA.

mod e2e;

use e2e::certs::{Ca, Leaf, LeafSpec};
use e2e::clients::{curl, echo};
use e2e::gateway::{find_object, has_condition, Gateway};
use e2e::manifests::{
    backend_ref, ca_config_map, docs, gateway, http_listener, http_route, service, tls_secret_raw,
    CLASS,
};
use e2e::tls_backend::TlsBackend;

/// A BackendTLSPolicy `name` for Service `backend` (port `http`).
fn policy(name: &str, ca_map: &str, hostname: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata:
  name: {name}
  namespace: default
spec:
  targetRefs:
    - group: \"\"
      kind: Service
      name: backend
      sectionName: http
  validation:
    caCertificateRefs:
      - group: \"\"
        kind: ConfigMap
        name: {ca_map}
    hostname: {hostname}
"
    )
}

struct Setup {
    gw: Gateway,
    _backend: TlsBackend,
}

/// A Gateway `gw` (HTTP on 80, `extra_spec` after its listeners), a route
/// to Service `backend` → an HTTPS backend serving `leaf`, and `extra`
/// manifests.
async fn setup(leaf: &Leaf, client_ca: Option<&str>, extra_spec: &str, extra: &[String]) -> Setup {
    let backend = TlsBackend::start("tls-backend", leaf, client_ca).await;
    let gw = gateway("gw", &[http_listener("http", 80, None)]) + extra_spec;
    let mut parts = vec![
        CLASS.to_string(),
        gw,
        http_route("r", "gw", &[], &[("/", backend_ref("backend", 1))]),
        service("backend", backend.port(), None),
    ];
    parts.extend(extra.iter().cloned());
    let gw = Gateway::start(&[("all.yaml", docs(&parts))]).await;
    Setup {
        gw,
        _backend: backend,
    }
}

async fn get(gw: &Gateway) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}/hello", gw.port(80));
    let out = curl(&["-H", "Host: app.example.test", "-w", "\n%{http_code}", &url]).await;
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypts_with_the_policy_hostname_as_sni_and_verifies_the_backend() {
    let ca = Ca::new("backend-ca");
    let leaf = ca.issue(&LeafSpec::new("backend", &["backend.internal"]));
    let extra = [
        ca_config_map("backend-ca", &ca.cert_pem),
        policy("p", "backend-ca", "backend.internal"),
    ];
    let Setup {
        gw,
        _backend: _kept,
    } = setup(&leaf, None, "", &extra).await;
    let (code, body) = get(&gw).await;
    assert_eq!(code, 200, "{body}\n{}", gw.log_text());
    let seen = echo(body.as_bytes());
    assert_eq!(seen["sni"], "backend.internal", "{seen}");
    assert_eq!(seen["alpn"], "http/1.1", "{seen}");
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["host"], "app.example.test");
    assert!(
        seen["client_cn"].is_null(),
        "no client certificate configured"
    );
    let status = gw.status().await;
    let p = find_object(&status, "BackendTLSPolicy", "p").expect("policy status");
    assert!(
        has_condition(p, "Accepted", "True", Some("Accepted")),
        "{p}"
    );
    assert!(
        has_condition(p, "ResolvedRefs", "True", Some("ResolvedRefs")),
        "{p}"
    );
    // A second request reuses the pooled TLS connection and still works.
    assert_eq!(get(&gw).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_certificate_for_another_name_gets_502_and_a_log_line() {
    let ca = Ca::new("backend-ca");
    let leaf = ca.issue(&LeafSpec::new("backend", &["other.internal"]));
    let extra = [
        ca_config_map("backend-ca", &ca.cert_pem),
        policy("p", "backend-ca", "backend.internal"),
    ];
    let Setup {
        gw,
        _backend: _kept,
    } = setup(&leaf, None, "", &extra).await;
    let (code, body) = get(&gw).await;
    assert_eq!(code, 502, "{body}");
    assert!(
        gw.log_text().contains("backend TLS handshake failed"),
        "the reason must be logged: {}",
        gw.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_signed_by_another_ca_gets_502() {
    let ca = Ca::new("backend-ca");
    let foreign = Ca::new("foreign-ca");
    let leaf = foreign.issue(&LeafSpec::new("backend", &["backend.internal"]));
    let extra = [
        ca_config_map("backend-ca", &ca.cert_pem),
        policy("p", "backend-ca", "backend.internal"),
    ];
    let Setup {
        gw,
        _backend: _kept,
    } = setup(&leaf, None, "", &extra).await;
    let (code, body) = get(&gw).await;
    assert_eq!(code, 502, "{body}");
    let log = gw.log_text();
    assert!(
        log.contains("UnknownIssuer") || log.contains("unknown issuer"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_a_missing_ca_reports_it_and_never_sends_cleartext() {
    let ca = Ca::new("backend-ca");
    let leaf = ca.issue(&LeafSpec::new("backend", &["backend.internal"]));
    let extra = [policy("p", "absent", "backend.internal")];
    let Setup {
        gw,
        _backend: _kept,
    } = setup(&leaf, None, "", &extra).await;
    let status = gw.status().await;
    let p = find_object(&status, "BackendTLSPolicy", "p").expect("policy status");
    assert!(
        has_condition(p, "Accepted", "False", Some("NoValidCACertificate")),
        "{p}"
    );
    assert!(
        has_condition(p, "ResolvedRefs", "False", Some("InvalidCACertificateRef")),
        "{p}"
    );
    let (code, _) = get(&gw).await;
    assert_eq!(
        code, 500,
        "an invalid policy must fail requests, not downgrade them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_presents_its_client_certificate_to_a_backend_that_requires_one() {
    let ca = Ca::new("backend-ca");
    let leaf = ca.issue(&LeafSpec::new("backend", &["backend.internal"]));
    let client_ca = Ca::new("client-ca");
    let client = client_ca.issue(&LeafSpec::new("gateway-client", &["gw.internal"]));
    let spec = "  tls:\n    backend:\n      clientCertificateRef:\n        name: gw-client\n";
    let extra = [
        ca_config_map("backend-ca", &ca.cert_pem),
        policy("p", "backend-ca", "backend.internal"),
        tls_secret_raw("gw-client", &client.cert_pem, &client.key_pem),
    ];
    let Setup {
        gw,
        _backend: _kept,
    } = setup(&leaf, Some(&client_ca.cert_pem), spec, &extra).await;
    let (code, body) = get(&gw).await;
    assert_eq!(code, 200, "{body}\n{}", gw.log_text());
    assert_eq!(echo(body.as_bytes())["client_cn"], "gateway-client");
    let status = gw.status().await;
    let g = find_object(&status, "Gateway", "gw").expect("gateway status");
    assert!(
        has_condition(g, "ResolvedRefs", "True", Some("ResolvedRefs")),
        "{g}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_a_mutual_tls_backend_refuses_and_the_client_gets_502() {
    let ca = Ca::new("backend-ca");
    let leaf = ca.issue(&LeafSpec::new("backend", &["backend.internal"]));
    let client_ca = Ca::new("client-ca");
    let extra = [
        ca_config_map("backend-ca", &ca.cert_pem),
        policy("p", "backend-ca", "backend.internal"),
    ];
    let Setup {
        gw,
        _backend: _kept,
    } = setup(&leaf, Some(&client_ca.cert_pem), "", &extra).await;
    let (code, body) = get(&gw).await;
    assert!(code == 502 || code == 503, "got {code}: {body}");
}
