//! Listener validation, conflicts, certificates and ListenerSets.

use super::*;

fn https_gateway(name: &str, cert_ref: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: infra}}
spec:
  gatewayClassName: pc
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls: {{certificateRefs: [{cert_ref}]}}
"
    )
}

const SECRET_GRANT: &str = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: '', kind: Secret, name: NAME}]
";

fn with_secret(yaml: &str, ns: &str, name: &str) -> Resources {
    let (cert, key) = cert_pair("a.example.com");
    let mut r = load(yaml);
    r.push(tls_secret(ns, name, &cert, &key));
    r
}

fn https(c: &Compiled, t: ConditionType) -> (bool, Reason) {
    listener_cond(c, "Gateway", "infra", "gw", "https", t)
}

#[test]
fn cross_namespace_certificate_without_grant_is_ref_not_permitted() {
    let r = with_secret(
        &format!(
            "{CLASS}{}",
            https_gateway("gw", "{name: c, namespace: certs}")
        ),
        "certs",
        "c",
    );
    let c = run(&r);
    assert_eq!(
        https(&c, ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
    assert!(!https(&c, ConditionType::Programmed).0);
    assert!(c.dataplane.binds.is_empty());
}

#[test]
fn certificate_grant_naming_the_secret_permits_it() {
    let yaml = format!(
        "{CLASS}{}{}",
        https_gateway("gw", "{name: c, namespace: certs}"),
        SECRET_GRANT.replace("NAME", "c")
    );
    let c = run(&with_secret(&yaml, "certs", "c"));
    assert_eq!(
        https(&c, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    assert_eq!(
        https(&c, ConditionType::Programmed),
        (true, Reason::Programmed)
    );
}

#[test]
fn certificate_grant_naming_another_secret_does_not_permit() {
    let yaml = format!(
        "{CLASS}{}{}",
        https_gateway("gw", "{name: c, namespace: certs}"),
        SECRET_GRANT.replace("NAME", "other")
    );
    let c = run(&with_secret(&yaml, "certs", "c"));
    assert_eq!(
        https(&c, ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
}

#[test]
fn mismatched_key_is_invalid_certificate_ref() {
    let (cert, _) = cert_pair("a.example.com");
    let (_, other_key) = cert_pair("b.example.com");
    let mut r = load(&format!("{CLASS}{}", https_gateway("gw", "{name: c}")));
    r.push(tls_secret("infra", "c", &cert, &other_key));
    let c = run(&r);
    assert_eq!(
        https(&c, ConditionType::ResolvedRefs),
        (false, Reason::InvalidCertificateRef)
    );
    assert_eq!(https(&c, ConditionType::Accepted), (true, Reason::Accepted));
}

#[test]
fn non_pem_secret_missing_secret_and_wrong_kind_are_invalid_certificate_refs() {
    let mut r = load(&format!(
        "{CLASS}{}{}{}",
        https_gateway("gw", "{name: c}"),
        https_gateway("missing", "{name: nope}"),
        https_gateway("kind", "{name: c, kind: ConfigMap}")
    ));
    r.push(tls_secret("infra", "c", "not pem", "not pem"));
    let c = run(&r);
    for gw in ["gw", "missing", "kind"] {
        assert_eq!(
            listener_cond(
                &c,
                "Gateway",
                "infra",
                gw,
                "https",
                ConditionType::ResolvedRefs
            ),
            (false, Reason::InvalidCertificateRef),
            "{gw}"
        );
    }
}

#[test]
fn unsupported_protocol_rejects_the_listener_and_a_gateway_without_valid_listeners() {
    let only_sctp = format!(
        "{CLASS}{}",
        gateway(&[("sctp", 9000, None)], "").replace("protocol: HTTP", "protocol: SCTP")
    );
    let c = run_yaml(&only_sctp);
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "sctp",
            ConditionType::Accepted
        ),
        (false, Reason::UnsupportedProtocol)
    );
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "gw", ConditionType::Accepted),
        (false, Reason::ListenersNotValid)
    );
    let mixed = format!("{CLASS}{}", gateway(&[("http", 80, None)], ""))
        + "  - {name: sctp, port: 53, protocol: SCTP}\n";
    let c = run_yaml(&mixed);
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "gw", ConditionType::Accepted),
        (true, Reason::ListenersNotValid)
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "http",
            ConditionType::Accepted
        ),
        (true, Reason::Accepted)
    );
}

#[test]
fn unknown_route_kinds_are_invalid_route_kinds() {
    let yaml = format!("{CLASS}{}", gateway(&[("http", 80, None)], "")).replace(
        "allowedRoutes: {namespaces: {from: All}}",
        "allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}",
    );
    let c = run_yaml(&yaml);
    let l = listener(find(&c, "Gateway", "infra", "gw"), "http");
    assert_eq!(l.supported_kinds, vec!["HTTPRoute".to_string()]);
    assert_eq!(
        cond(&l.conditions, ConditionType::ResolvedRefs),
        (false, Reason::InvalidRouteKinds)
    );
}

#[test]
fn same_hostname_on_one_port_is_a_hostname_conflict_for_the_later_gateway() {
    let second = gateway(&[("http", 80, Some("a.com"))], "").replace("name: gw,", "name: gw2,");
    let yaml = format!(
        "{CLASS}{}{second}",
        gateway(&[("http", 80, Some("a.com")), ("b", 80, Some("b.com"))], "")
    );
    let c = run_yaml(&yaml.replace(
        "name: gw2, namespace: infra",
        "name: gw2, namespace: infra, creationTimestamp: '2030-01-01T00:00:00Z'",
    ));
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw2",
            "http",
            ConditionType::Conflicted
        ),
        (true, Reason::HostnameConflict)
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "http",
            ConditionType::Conflicted
        ),
        (false, Reason::NoConflicts)
    );
    assert_eq!(c.dataplane.binds.len(), 1);
    assert_eq!(c.dataplane.binds[0].listeners.len(), 2);
}

#[test]
fn http_and_https_on_one_port_is_a_protocol_conflict() {
    let yaml = format!(
        "{CLASS}{}{}",
        gateway(&[("http", 443, Some("a.com"))], ""),
        https_gateway("gw2", "{name: c}")
    );
    let c = run(&with_secret(&yaml, "infra", "c"));
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw2",
            "https",
            ConditionType::Conflicted
        ),
        (true, Reason::ProtocolConflict)
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw2",
            "https",
            ConditionType::Accepted
        ),
        (false, Reason::ProtocolConflict)
    );
}

#[test]
fn port_beyond_range_after_offset_is_port_unavailable() {
    let r = load(&format!("{CLASS}{}", gateway(&[("http", 65000, None)], "")));
    let c = compile(
        &r,
        &CompileOptions {
            port_offset: 1000,
            ..Default::default()
        },
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "http",
            ConditionType::Accepted
        ),
        (false, Reason::PortUnavailable)
    );
}

fn listener_set(ns: &str, name: &str, host: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRef: {{name: gw, namespace: infra}}
  listeners:
  - {{name: ls, port: 80, protocol: HTTP, hostname: {host}}}
"
    )
}

#[test]
fn listener_sets_are_not_allowed_by_default() {
    let c = run_yaml(&format!(
        "{CLASS}{}{}",
        gateway(&[("http", 80, Some("gw.com"))], ""),
        listener_set("infra", "ls", "ls.com")
    ));
    assert_eq!(
        object_cond(&c, "ListenerSet", "infra", "ls", ConditionType::Accepted),
        (false, Reason::NotAllowed)
    );
    assert_eq!(
        object_cond(&c, "ListenerSet", "infra", "ls", ConditionType::Programmed),
        (false, Reason::NotAllowed)
    );
    assert_eq!(c.dataplane.binds[0].listeners.len(), 1);
}

#[test]
fn listener_sets_from_the_same_namespace_join_the_gateway_socket() {
    let yaml = format!(
        "{CLASS}{}{}{}",
        gateway(
            &[("http", 80, Some("gw.com"))],
            "  allowedListeners: {namespaces: {from: Same}}\n"
        ),
        listener_set("infra", "ls", "ls.com"),
        listener_set("other", "ls", "other.com"),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        object_cond(&c, "ListenerSet", "infra", "ls", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        object_cond(&c, "ListenerSet", "other", "ls", ConditionType::Accepted),
        (false, Reason::NotAllowed)
    );
    assert_eq!(
        object_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            ConditionType::AttachedListenerSets
        ),
        (true, Reason::Accepted)
    );
    let bind = &c.dataplane.binds[0];
    assert_eq!(bind.listeners.len(), 2);
    let ls = bind
        .listeners
        .iter()
        .find(|l| l.key.listener_set.is_some())
        .expect("ListenerSet listener");
    assert_eq!(ls.hostname.as_deref(), Some("ls.com"));
}

#[test]
fn gateway_listeners_win_hostname_conflicts_over_listener_sets() {
    let yaml = format!(
        "{CLASS}{}{}",
        gateway(
            &[("http", 80, Some("same.com"))],
            "  allowedListeners: {namespaces: {from: All}}\n"
        ),
        listener_set("infra", "ls", "same.com"),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        listener_cond(
            &c,
            "ListenerSet",
            "infra",
            "ls",
            "ls",
            ConditionType::Conflicted
        ),
        (true, Reason::HostnameConflict)
    );
    assert_eq!(
        object_cond(&c, "ListenerSet", "infra", "ls", ConditionType::Accepted),
        (false, Reason::ListenersNotValid)
    );
}

#[test]
fn expired_certificate_is_an_invalid_certificate_ref() {
    let r = with_secret(
        &format!("{CLASS}{}", https_gateway("gw", "{name: c}")),
        "infra",
        "c",
    );
    let options = CompileOptions {
        now: Some(i64::MAX / 2),
        ..Default::default()
    };
    let c = compile(&r, &options);
    let l = listener(find(&c, "Gateway", "infra", "gw"), "https");
    let resolved = l
        .conditions
        .iter()
        .find(|c| c.kind == ConditionType::ResolvedRefs)
        .expect("ResolvedRefs condition");
    assert_eq!(resolved.status, ConditionStatus::False);
    assert_eq!(resolved.reason, Reason::InvalidCertificateRef);
    assert!(
        resolved.message.contains("validity"),
        "{}",
        resolved.message
    );
    assert!(c.dataplane.binds.is_empty());
}
