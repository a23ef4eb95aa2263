//! BackendTLSPolicy resolution, its status, and the upstream TLS it gives
//! Service ports; the Gateway's backend client certificate.

use super::*;
use crate::model::ConfigMap;

/// An HTTP Gateway, a route to `svc:443` (port name `https`) and the
/// Service with an endpoint.
fn base(extra_gateway_spec: &str) -> String {
    format!(
        "{CLASS}{}{}---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: infra}}
spec:
  ports: [{{name: https, port: 443}}, {{name: other, port: 8443}}]
",
        gateway(&[("http", 80, None)], extra_gateway_spec),
        route("infra", "r", "{name: gw}", "[]").replace("port: 80", "port: 443"),
    )
}

fn policy(name: &str, section: Option<&str>, ca: &str, hostname: &str) -> String {
    let section = section
        .map(|s| format!(", sectionName: {s}"))
        .unwrap_or_default();
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: infra}}
spec:
  targetRefs: [{{group: '', kind: Service, name: svc{section}}}]
  validation:
    caCertificateRefs: [{{group: '', kind: ConfigMap, name: {ca}}}]
    hostname: {hostname}
"
    )
}

fn ca_map(name: &str, pem: &str) -> Object {
    let mut data = std::collections::BTreeMap::new();
    data.insert("ca.crt".to_string(), pem.to_string());
    Object::ConfigMap(std::sync::Arc::new(ConfigMap {
        metadata: crate::model::ObjectMeta {
            name: name.into(),
            namespace: "infra".into(),
            ..Default::default()
        },
        data,
    }))
}

/// The upstream of the only rule's only backend.
fn target(c: &Compiled) -> &BackendTarget {
    let l = &c.dataplane.binds[0].listeners[0];
    let entry = l.routes.entries().first().expect("a route entry");
    &entry.rule.backends[0].target
}

fn policy_cond(c: &Compiled, name: &str, t: ConditionType) -> (bool, Reason) {
    object_cond(c, "BackendTLSPolicy", "infra", name, t)
}

#[test]
fn a_valid_policy_makes_the_service_port_speak_tls_with_its_hostname() {
    let (ca, _) = cert_pair("ca.example");
    let mut r = load(&(base("") + &policy("p", Some("https"), "ca", "abc.example.com")));
    r.push(ca_map("ca", &ca));
    let c = run(&r);
    assert_eq!(
        policy_cond(&c, "p", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        policy_cond(&c, "p", ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    match target(&c) {
        BackendTarget::Service(u) => {
            let tls = u.tls.as_ref().expect("upstream speaks TLS");
            assert_eq!(tls.server_name.to_str(), "abc.example.com");
            assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
        t => panic!("unexpected {t:?}"),
    }
}

#[test]
fn a_policy_for_another_port_leaves_the_upstream_cleartext() {
    let (ca, _) = cert_pair("ca.example");
    let mut r = load(&(base("") + &policy("p", Some("other"), "ca", "abc.example.com")));
    r.push(ca_map("ca", &ca));
    let c = run(&r);
    match target(&c) {
        BackendTarget::Service(u) => assert!(u.tls.is_none()),
        t => panic!("unexpected {t:?}"),
    }
}

#[test]
fn a_missing_ca_config_map_is_invalid_ca_certificate_ref_and_fails_requests() {
    let c = run_yaml(&(base("") + &policy("p", None, "absent", "abc.example.com")));
    assert_eq!(
        policy_cond(&c, "p", ConditionType::Accepted),
        (false, Reason::NoValidCACertificate)
    );
    assert_eq!(
        policy_cond(&c, "p", ConditionType::ResolvedRefs),
        (false, Reason::InvalidCACertificateRef)
    );
    assert!(
        matches!(target(&c), BackendTarget::Invalid),
        "traffic must not go out in cleartext"
    );
}

#[test]
fn a_malformed_ca_bundle_is_invalid_ca_certificate_ref() {
    let mut r = load(&(base("") + &policy("p", None, "ca", "abc.example.com")));
    r.push(ca_map(
        "ca",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    ));
    let c = run(&r);
    assert_eq!(
        policy_cond(&c, "p", ConditionType::ResolvedRefs),
        (false, Reason::InvalidCACertificateRef)
    );
}

#[test]
fn a_ca_ref_of_another_kind_is_invalid_kind() {
    let yaml = base("")
        + &policy("p", None, "ca", "abc.example.com").replace(
            "{group: '', kind: ConfigMap, name: ca}",
            "{group: invalid.io, kind: InvalidKind, name: ca}",
        );
    let c = run_yaml(&yaml);
    assert_eq!(
        policy_cond(&c, "p", ConditionType::Accepted),
        (false, Reason::NoValidCACertificate)
    );
    assert_eq!(
        policy_cond(&c, "p", ConditionType::ResolvedRefs),
        (false, Reason::InvalidKind)
    );
}

#[test]
fn of_two_policies_on_one_target_the_first_by_name_wins_the_other_is_conflicted() {
    let (ca, _) = cert_pair("ca.example");
    let yaml = base("")
        + &policy("p-2", Some("https"), "ca", "second.example.com")
        + &policy("p-1", Some("https"), "ca", "first.example.com");
    let mut r = load(&yaml);
    r.push(ca_map("ca", &ca));
    let c = run(&r);
    assert_eq!(
        policy_cond(&c, "p-1", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        policy_cond(&c, "p-2", ConditionType::Accepted),
        (false, Reason::Conflicted)
    );
    match target(&c) {
        BackendTarget::Service(u) => assert_eq!(
            u.tls.as_ref().expect("tls").server_name.to_str(),
            "first.example.com"
        ),
        t => panic!("unexpected {t:?}"),
    }
}

#[test]
fn a_section_policy_beats_a_whole_service_policy_without_conflict() {
    let (ca, _) = cert_pair("ca.example");
    let yaml = base("")
        + &policy("whole", None, "ca", "whole.example.com")
        + &policy("port", Some("https"), "ca", "port.example.com");
    let mut r = load(&yaml);
    r.push(ca_map("ca", &ca));
    let c = run(&r);
    for p in ["whole", "port"] {
        assert_eq!(
            policy_cond(&c, p, ConditionType::Accepted),
            (true, Reason::Accepted)
        );
    }
    match target(&c) {
        BackendTarget::Service(u) => assert_eq!(
            u.tls.as_ref().expect("tls").server_name.to_str(),
            "port.example.com"
        ),
        t => panic!("unexpected {t:?}"),
    }
}

#[test]
fn a_gateway_backend_client_certificate_gives_a_per_gateway_client_config() {
    let (ca, _) = cert_pair("ca.example");
    let (cert, key) = cert_pair("client.example");
    let spec = "  tls:\n    backend:\n      clientCertificateRef: {name: client}\n";
    let mut r = load(&(base(spec) + &policy("p", None, "ca", "abc.example.com")));
    r.push(ca_map("ca", &ca));
    r.push(tls_secret("infra", "client", &cert, &key));
    let c = run(&r);
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "gw", ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    match target(&c) {
        BackendTarget::Service(u) => {
            let tls = u.tls.as_ref().expect("tls");
            let gw = crate::model::ObjectKey::new("infra", "gw");
            assert!(tls.gateway_configs.contains_key(&gw));
            assert!(tls
                .config_for(Some(&gw))
                .client_auth_cert_resolver
                .has_certs());
            assert!(!tls.config_for(None).client_auth_cert_resolver.has_certs());
        }
        t => panic!("unexpected {t:?}"),
    }
}

#[test]
fn a_missing_backend_client_certificate_is_invalid_client_certificate_ref() {
    let spec = "  tls:\n    backend:\n      clientCertificateRef: {name: absent}\n";
    let c = run_yaml(&base(spec));
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "gw", ConditionType::ResolvedRefs),
        (false, Reason::InvalidClientCertificateRef)
    );
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "gw", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let cross = "  tls:\n    backend:\n      clientCertificateRef: {name: c, namespace: other}\n";
    let c = run_yaml(&base(cross));
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "gw", ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
}
