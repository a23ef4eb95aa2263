//! Whole-registry tests: a real compile of a Gateway serving a two-level
//! chain from a Secret, scraped as OpenMetrics text.

use super::*;
use crate::compile::{compile, CompileOptions};
use crate::model::load::parse_documents;
use crate::model::Resources;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

/// A leaf for `a.example.com` signed by an intermediate CA, as one PEM chain
/// (leaf first) and the leaf's key.
pub(super) fn chain() -> (String, String) {
    let ca_key = KeyPair::generate().expect("key generation");
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Test Intermediate");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("key generation");
    let mut leaf = CertificateParams::new(vec!["a.example.com".to_string()]).expect("names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "a.example.com");
    leaf.distinguished_name = dn;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("signed leaf");
    (
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        leaf_key.serialize_pem(),
    )
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// Resources with Gateway `infra/gw`, HTTPS listener `web` serving Secret
/// `infra/web-tls`, and an HTTPRoute `apps/shop` to a Service.
pub(super) fn resources() -> Resources {
    let (cert, key) = chain();
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: pc}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: pc
  listeners:
  - name: web
    port: 443
    protocol: HTTPS
    hostname: a.example.com
    tls: {{certificateRefs: [{{name: web-tls}}]}}
    allowedRoutes: {{namespaces: {{from: All}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: web-tls, namespace: infra}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: apps}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  rules:
  - backendRefs: [{{name: svc, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: apps}}
spec:
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-1
  namespace: apps
  labels: {{kubernetes.io/service-name: svc}}
addressType: IPv4
endpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]
ports: [{{name: http, port: 9, protocol: TCP}}]
",
        indent(&cert),
        indent(&key)
    );
    let parsed = parse_documents(&yaml, "test.yaml").expect("valid YAML");
    let mut resources = Resources::default();
    for object in parsed.objects {
        resources.push(object);
    }
    resources
}

pub(super) fn dataplane(resources: &Resources) -> Arc<Dataplane> {
    let options = CompileOptions {
        listen_address: "127.0.0.1".parse().expect("literal address"),
        ..CompileOptions::default()
    };
    Arc::new(compile(resources, &options).dataplane)
}

fn managed() -> ManagedCertificate {
    ManagedCertificate {
        namespace: "infra".into(),
        secret: "web-tls".into(),
        issuer_kind: "Issuer".into(),
        issuer_name: "le".into(),
        not_before: Some(1_000),
        not_after: Some(2_000),
        renewal_time: Some(1_600),
        ready: Some(false),
        ari_window: Some((1_500, 1_700)),
        profile: Some("shortlived".into()),
        failed_attempts: 3,
        next_retry: Some(1_650),
    }
}

/// The sample lines (no comments) of an exposition.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

fn has(text: &str, prefix: &str) -> bool {
    samples(text).iter().any(|l| l.starts_with(prefix))
}

#[test]
fn served_chain_is_exported_per_position_with_its_secret_and_listener() {
    let resources = resources();
    let metrics = Metrics::new();
    metrics.publish(&dataplane(&resources));
    let text = metrics.encode();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let leaf = "portcullis_certificate_expiration_timestamp_seconds{secret_namespace=\"infra\",secret=\"web-tls\",gateway_namespace=\"infra\",gateway=\"gw\",listener=\"web\",issuer_kind=\"\",issuer_name=\"\",managed=\"false\",chain_position=\"0\",subject_cn=\"a.example.com\"} ";
    assert!(has(&text, leaf), "{text}");
    assert!(has(&text, "portcullis_certificate_not_before_timestamp_seconds{secret_namespace=\"infra\",secret=\"web-tls\",gateway_namespace=\"infra\",gateway=\"gw\",listener=\"web\",issuer_kind=\"\",issuer_name=\"\",managed=\"false\",chain_position=\"1\",subject_cn=\"Test Intermediate\"} "), "{text}");
    assert!(has(&text, "portcullis_listener_certificate_expiration_timestamp_seconds{gateway_namespace=\"infra\",gateway=\"gw\",listener=\"web\",hostname=\"a.example.com\"} "), "{text}");
    assert!(!text.contains("certmanager_"), "compat is off by default");
    assert!(!text.contains(names::CERT_RENEWAL), "nothing managed");
}

#[test]
fn managed_state_labels_served_certificates_and_exports_issuer_series() {
    let resources = resources();
    let metrics = Metrics::new();
    metrics.publish(&dataplane(&resources));
    metrics.set_managed(vec![managed()]);
    let text = metrics.encode();
    let ids =
        "secret_namespace=\"infra\",secret=\"web-tls\",issuer_kind=\"Issuer\",issuer_name=\"le\"";
    assert!(
        text.contains(
            "issuer_kind=\"Issuer\",issuer_name=\"le\",managed=\"true\",chain_position=\"0\""
        ),
        "{text}"
    );
    for line in [
        format!("portcullis_certificate_renewal_timestamp_seconds{{{ids}}} 1600"),
        format!("portcullis_certificate_ready_status{{{ids},condition=\"False\"}} 1"),
        format!("portcullis_certificate_ready_status{{{ids},condition=\"True\"}} 0"),
        format!("portcullis_certificate_ready_status{{{ids},condition=\"Unknown\"}} 0"),
        format!("portcullis_certificate_ari_window_start_timestamp_seconds{{{ids}}} 1500"),
        format!("portcullis_certificate_ari_window_end_timestamp_seconds{{{ids}}} 1700"),
        format!("portcullis_certificate_failed_attempts{{{ids}}} 3"),
        format!("portcullis_certificate_next_retry_timestamp_seconds{{{ids}}} 1650"),
        format!("portcullis_certificate_profile_info{{profile=\"shortlived\",{ids}}} 1"),
    ] {
        assert!(
            samples(&text).iter().any(|l| l.starts_with(&line)),
            "{line} in {text}"
        );
    }
}

#[test]
fn cert_manager_compat_reproduces_cert_managers_names_and_labels() {
    let resources = resources();
    let metrics = Metrics::new();
    metrics.set_cert_manager_compat(true);
    metrics.publish(&dataplane(&resources));
    metrics.set_managed(vec![managed()]);
    let text = metrics.encode();
    let labels = "name=\"web-tls\",namespace=\"infra\",issuer_name=\"le\",issuer_kind=\"Issuer\",issuer_group=\"portcullis.dev\"";
    for line in [
        format!("certmanager_certificate_expiration_timestamp_seconds{{{labels}}} 2000"),
        format!("certmanager_certificate_renewal_timestamp_seconds{{{labels}}} 1600"),
        "certmanager_certificate_ready_status{name=\"web-tls\",namespace=\"infra\",condition=\"False\",issuer_name=\"le\",issuer_kind=\"Issuer\",issuer_group=\"portcullis.dev\"} 1".to_string(),
    ] {
        assert!(samples(&text).iter().any(|l| l.starts_with(&line)), "{line} in {text}");
    }
}

#[test]
fn every_exported_series_name_is_listed_in_names() {
    let resources = resources();
    let metrics = Metrics::new();
    metrics.set_cert_manager_compat(true);
    let dp = dataplane(&resources);
    metrics.publish(&dp);
    metrics.set_managed(vec![managed()]);
    metrics.reloaded(
        Duration::from_millis(3),
        &Status::default(),
        0,
        0,
        1_700_000_000,
    );
    metrics.reload_failed(Duration::from_millis(1));
    metrics
        .acme()
        .request("newOrder", Some(429), Duration::from_millis(20));
    metrics.acme().order("valid");
    metrics.acme().challenge("http-01", "valid");
    metrics.acme().issuance_failed("rate_limited");
    metrics.traffic().request(
        &dp,
        &RequestTarget::default(),
        404,
        Duration::from_millis(1),
        None,
    );
    let known = names::all();
    let text = metrics.encode();
    for line in samples(&text) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(
            known.iter().any(|k| k == name),
            "{name} is not in names::all()"
        );
    }
    for name in [
        "portcullis_acme_rate_limited_total",
        "portcullis_config_reloads_total",
        "portcullis_http_requests_total",
        "portcullis_build_info",
        "process_open_fds",
    ] {
        assert!(has(&text, name), "{name} in {text}");
    }
}

#[test]
fn reloads_count_by_result_and_only_clean_ones_move_the_last_success() {
    let metrics = Metrics::new();
    metrics.reloaded(Duration::from_millis(3), &Status::default(), 0, 0, 100);
    metrics.reloaded(Duration::from_millis(3), &Status::default(), 2, 1, 200);
    metrics.reload_failed(Duration::from_millis(1));
    let text = metrics.encode();
    for line in [
        "portcullis_config_reloads_total{result=\"success\"} 1",
        "portcullis_config_reloads_total{result=\"partial\"} 1",
        "portcullis_config_reloads_total{result=\"failure\"} 1",
        "portcullis_config_last_reload_success_timestamp_seconds 100.0",
        "portcullis_config_load_problems 2",
        "portcullis_config_bind_errors 1",
        "portcullis_config_reload_duration_seconds_count 3",
    ] {
        assert!(samples(&text).contains(&line), "{line} in {text}");
    }
}

#[test]
fn objects_are_counted_by_kind_and_condition() {
    let resources = resources();
    let compiled = compile(&resources, &CompileOptions::default());
    let metrics = Metrics::new();
    metrics.reloaded(Duration::ZERO, &compiled.status, 0, 0, 1);
    let text = metrics.encode();
    assert!(
        has(
            &text,
            "portcullis_config_objects{kind=\"Gateway\",condition=\"Accepted\",status=\"True\"} 1"
        ),
        "{text}"
    );
    assert!(
        has(&text, "portcullis_config_objects{kind=\"HTTPRoute\",condition=\"Accepted\",status=\"True\"} 1"),
        "{text}"
    );
}
