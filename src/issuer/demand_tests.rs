//! Table tests of [`demand`] over YAML fixtures, compiled by the real compile
//! step so route attachment is the real one.

use super::*;
use crate::compile::{compile, CompileOptions};
use crate::model::load::parse_documents;

const CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
"#;

const ISSUERS: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {name: le-http, namespace: default}
spec:
  acme:
    server: https://acme.test/dir
    privateKeySecretRef: {name: acct}
    profile: shortlived
    solvers: [{http01: {}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterIssuer
metadata: {name: le-dns}
spec:
  acme:
    server: https://acme.test/dir
    privateKeySecretRef: {name: acct}
    solvers:
      - selector: {dnsZones: [example.com]}
        dns01: {rfc2136: {nameserver: 127.0.0.1, tsigKeyName: k, tsigSecretSecretRef: {name: t}}}
---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {name: self, namespace: default}
spec: {selfSigned: {}}
"#;

fn run(yaml: &str) -> Demands {
    let text = format!("{CLASS}\n---\n{ISSUERS}\n---\n{yaml}");
    let parsed = parse_documents(&text, "fixture.yaml").expect("fixture parses");
    let resources = Resources::from_objects(parsed.objects);
    let compiled = compile(&resources, &CompileOptions::default());
    demand(&resources, &compiled.status)
}

fn gateway(annotations: &str, listeners: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{{annotations}}}
spec:
  gatewayClassName: pc
  listeners:
{listeners}
"#
    )
}

fn route(name: &str, section: &str, hostnames: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: {section}}}]
  hostnames: [{hostnames}]
  rules: [{{backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: s}}]}}]
"#
    )
}

fn names(d: &Demand) -> Vec<&str> {
    d.dns_names.iter().map(String::as_str).collect()
}

fn secret(d: &Demand) -> String {
    d.secret.to_string()
}

#[test]
fn listener_without_refs_or_annotation_gets_local_ca_auto_filled_secret() {
    let d = run(&gateway(
        "",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test}",
    ));
    assert_eq!(d.certificates.len(), 1, "{d:?}");
    let c = &d.certificates[0];
    assert_eq!(c.issuer, IssuerRef::LocalCa);
    assert_eq!(secret(c), "default/gw-web-tls");
    assert!(c.auto_filled);
    assert_eq!(names(c), ["app.test"]);
    assert_eq!(c.key, KeyAlgorithm::EcdsaP256);
    assert!(c.rotate_key);
}

#[test]
fn listener_with_refs_and_no_annotation_is_left_to_the_user() {
    let d = run(&gateway(
        "",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test, tls: {certificateRefs: [{name: mine}]}}",
    ));
    assert!(d.certificates.is_empty(), "{d:?}");
}

#[test]
fn annotated_listener_with_refs_is_issued_into_that_secret() {
    for annotation in [
        "portcullis.dev/issuer: self",
        "cert-manager.io/issuer: self",
    ] {
        let d = run(&gateway(
            annotation,
            "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test, tls: {certificateRefs: [{name: mine}]}}",
        ));
        let c = &d.certificates[0];
        assert_eq!(secret(c), "default/mine", "{annotation}");
        assert!(!c.auto_filled);
        assert_eq!(
            c.issuer,
            IssuerRef::Issuer {
                namespace: "default".into(),
                name: "self".into()
            }
        );
    }
}

#[test]
fn cluster_issuer_annotations_name_a_cluster_issuer() {
    for annotation in [
        "portcullis.dev/cluster-issuer: le-dns",
        "cert-manager.io/cluster-issuer: le-dns",
    ] {
        let d = run(&gateway(
            annotation,
            "  - {name: web, protocol: HTTPS, port: 443, hostname: app.example.com}",
        ));
        assert_eq!(
            d.certificates[0].issuer,
            IssuerRef::ClusterIssuer {
                name: "le-dns".into()
            }
        );
    }
}

#[test]
fn listeners_sharing_a_secret_share_one_certificate_with_all_names() {
    let d = run(&gateway(
        "portcullis.dev/issuer: self",
        "  - {name: a, protocol: HTTPS, port: 443, hostname: b.test, tls: {certificateRefs: [{name: shared}]}}
  - {name: b, protocol: HTTPS, port: 443, hostname: a.test, tls: {certificateRefs: [{name: shared}]}}
  - {name: c, protocol: HTTPS, port: 443, hostname: c.test}",
    ));
    assert_eq!(d.certificates.len(), 2, "{d:?}");
    let shared = &d.certificates[1];
    assert_eq!(secret(shared), "default/shared");
    assert_eq!(names(shared), ["a.test", "b.test"]);
    assert_eq!(shared.listeners.len(), 2);
    assert_eq!(secret(&d.certificates[0]), "default/gw-c-tls");
}

#[test]
fn wildcard_with_dns01_solver_is_kept() {
    let d = run(&gateway(
        "portcullis.dev/cluster-issuer: le-dns",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: '*.example.com'}",
    ));
    assert_eq!(names(&d.certificates[0]), ["*.example.com"]);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn wildcard_without_dns01_uses_attached_route_hostnames_and_says_so() {
    let yaml = gateway(
        "portcullis.dev/issuer: le-http",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: '*.example.com'}",
    ) + &route("r1", "web", "a.example.com, '*.example.com', other.org")
        + &route("r2", "web", "b.example.com");
    let d = run(&yaml);
    let c = &d.certificates[0];
    // Never widened, never a name outside the listener's.
    assert_eq!(names(c), ["a.example.com", "b.example.com"]);
    assert_eq!(c.profile.as_deref(), Some("shortlived"));
    assert!(
        d.problems
            .iter()
            .any(|p| p.message.contains("needs a DNS-01 solver")),
        "{:?}",
        d.problems
    );
}

#[test]
fn wildcard_without_dns01_and_no_routes_gets_no_certificate() {
    let d = run(&gateway(
        "portcullis.dev/issuer: le-http",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: '*.example.com'}",
    ));
    assert!(d.certificates.is_empty());
    assert!(d
        .problems
        .iter()
        .any(|p| p.message.contains("no hostname to certify")));
}

#[test]
fn catch_all_listener_gets_the_hostnames_of_attached_routes_only() {
    let yaml = gateway(
        "portcullis.dev/issuer: le-http",
        "  - {name: web, protocol: HTTPS, port: 443}
  - {name: other, protocol: HTTPS, port: 443, hostname: x.test}",
    ) + &route("r1", "web", "one.test, two.test")
        + &route("r2", "other", "x.test");
    let d = run(&yaml);
    let web = d
        .certificates
        .iter()
        .find(|c| secret(c) == "default/gw-web-tls")
        .expect("web demand");
    assert_eq!(names(web), ["one.test", "two.test"]);
}

#[test]
fn catch_all_local_ca_listener_without_route_hosts_gets_localhost() {
    let d = run(&gateway("", "  - {name: web, protocol: HTTPS, port: 443}"));
    assert_eq!(names(&d.certificates[0]), ["127.0.0.1", "localhost"]);
}

#[test]
fn tls_terminate_listeners_are_managed_and_passthrough_and_http_are_not() {
    // `d` names no mode and `e` no tls at all: both terminate, as compile
    // serves them (the Gateway API's default mode).
    let d = run(&gateway(
        "",
        "  - {name: t, protocol: TLS, port: 443, hostname: t.test, tls: {mode: Terminate}}
  - {name: d, protocol: TLS, port: 443, hostname: d.test, tls: {}}
  - {name: e, protocol: TLS, port: 443, hostname: e.test}
  - {name: p, protocol: TLS, port: 443, hostname: p.test, tls: {mode: Passthrough}}
  - {name: u, protocol: TLS, port: 443, hostname: u.test, tls: {mode: Unwrap}}
  - {name: h, protocol: HTTP, port: 80, hostname: h.test}",
    ));
    let mut secrets: Vec<String> = d.certificates.iter().map(secret).collect();
    secrets.sort();
    assert_eq!(
        secrets,
        ["default/gw-d-tls", "default/gw-e-tls", "default/gw-t-tls"]
    );
}

#[test]
fn annotations_set_lifetime_renewal_and_key() {
    let d = run(&gateway(
        "portcullis.dev/duration: 2m, portcullis.dev/renew-before-percentage: '50', cert-manager.io/private-key-algorithm: RSA, cert-manager.io/private-key-size: '3072', portcullis.dev/private-key-rotation: Never, cert-manager.io/renew-before: 1h30m",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test}",
    ));
    let c = &d.certificates[0];
    assert_eq!(c.duration, Some(Duration::from_secs(120)));
    assert_eq!(c.renew_before, Some(Duration::from_secs(5400)));
    assert_eq!(c.renew_before_percentage, Some(50));
    assert_eq!(c.key, KeyAlgorithm::Rsa3072);
    assert!(!c.rotate_key);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn invalid_annotations_are_reported_and_defaults_used() {
    let d = run(&gateway(
        "portcullis.dev/duration: soon, portcullis.dev/private-key-algorithm: DSA",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test}",
    ));
    let c = &d.certificates[0];
    assert_eq!(c.duration, None);
    assert_eq!(c.key, KeyAlgorithm::EcdsaP256);
    assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
}

#[test]
fn missing_issuer_is_a_problem_not_a_local_ca_certificate() {
    let d = run(&gateway(
        "portcullis.dev/issuer: nope",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test}",
    ));
    assert!(d.certificates.is_empty());
    assert_eq!(d.problems[0].message, "Issuer default/nope not found");
}

#[test]
fn gateways_of_other_classes_are_not_managed() {
    let yaml = gateway(
        "",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test}",
    )
    .replace("gatewayClassName: pc", "gatewayClassName: someone-else");
    assert!(run(&yaml).certificates.is_empty());
}

#[test]
fn go_durations_and_days_parse() {
    let cases = [
        ("2160h", Some(2160 * 3600)),
        ("1h30m", Some(5400)),
        ("90d", Some(90 * 86_400)),
        ("45s", Some(45)),
        ("1.5h", Some(5400)),
        ("", None),
        ("10", None),
        ("5y", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text).map(|d| d.as_secs()), want, "{text:?}");
    }
}

/// Gateway `gw` (namespace `default`, admitting ListenerSets from every
/// namespace) with `gateway_annotations`, and ListenerSet `extra` in `apps`
/// with `set_annotations` and `listeners`.
fn listener_set(gateway_annotations: &str, set_annotations: &str, listeners: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{{gateway_annotations}}}
spec:
  gatewayClassName: pc
  allowedListeners: {{namespaces: {{from: All}}}}
  listeners:
  - {{name: http, protocol: HTTP, port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata:
  name: extra
  namespace: apps
  annotations: {{{set_annotations}}}
spec:
  parentRef: {{name: gw, namespace: default}}
  listeners:
{listeners}
"#
    )
}

const APPS_ISSUER: &str = r#"
---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {name: self, namespace: apps}
spec: {selfSigned: {}}
"#;

const SET_WEB: &str = "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test}";

#[test]
fn listener_set_listener_without_refs_gets_local_ca_secret_named_after_the_set() {
    let d = run(&listener_set("", "", SET_WEB));
    assert_eq!(d.certificates.len(), 1, "{d:?}");
    let c = &d.certificates[0];
    assert_eq!(c.issuer, IssuerRef::LocalCa);
    // In the ListenerSet's namespace, named after the ListenerSet.
    assert_eq!(secret(c), "apps/extra-web-tls");
    assert!(c.auto_filled);
    assert_eq!(names(c), ["app.test"]);
    assert_eq!(c.listeners, ["ListenerSet apps/extra/web"]);
}

#[test]
fn listener_set_with_refs_and_no_annotation_anywhere_is_left_to_the_user() {
    let d = run(&listener_set(
        "",
        "",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test, tls: {certificateRefs: [{name: mine}]}}",
    ));
    assert!(d.certificates.is_empty(), "{d:?}");
}

#[test]
fn listener_set_inherits_the_parent_issuer_looked_up_in_its_own_namespace() {
    let yaml = listener_set("portcullis.dev/issuer: self", "", SET_WEB);
    // The Gateway's namespace has an Issuer `self`; the ListenerSet's has none.
    let d = run(&yaml);
    assert!(d.certificates.is_empty(), "{d:?}");
    assert_eq!(d.problems[0].message, "Issuer apps/self not found");
    assert_eq!(d.problems[0].listener, "ListenerSet apps/extra/web");
    let d = run(&format!("{yaml}{APPS_ISSUER}"));
    let c = &d.certificates[0];
    assert_eq!(
        c.issuer,
        IssuerRef::Issuer {
            namespace: "apps".into(),
            name: "self".into()
        }
    );
    assert_eq!(secret(c), "apps/extra-web-tls");
}

#[test]
fn listener_set_inherits_a_parent_cluster_issuer_for_named_secrets() {
    let d = run(&listener_set(
        "cert-manager.io/cluster-issuer: le-dns",
        "",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.example.com, tls: {certificateRefs: [{name: mine}]}}",
    ));
    let c = &d.certificates[0];
    assert_eq!(
        c.issuer,
        IssuerRef::ClusterIssuer {
            name: "le-dns".into()
        }
    );
    assert_eq!(secret(c), "apps/mine");
    assert!(!c.auto_filled);
}

#[test]
fn listener_set_issuer_annotation_wins_over_the_parent_gateway() {
    let d = run(&format!(
        "{}{APPS_ISSUER}",
        listener_set(
            "cert-manager.io/cluster-issuer: le-dns",
            "portcullis.dev/issuer: self",
            SET_WEB
        )
    ));
    assert_eq!(
        d.certificates[0].issuer,
        IssuerRef::Issuer {
            namespace: "apps".into(),
            name: "self".into()
        }
    );
    // A ClusterIssuer on the ListenerSet beats an Issuer on the Gateway.
    let d = run(&listener_set(
        "portcullis.dev/issuer: self",
        "cert-manager.io/cluster-issuer: le-dns",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.example.com}",
    ));
    assert_eq!(
        d.certificates[0].issuer,
        IssuerRef::ClusterIssuer {
            name: "le-dns".into()
        }
    );
}

#[test]
fn listener_set_knobs_win_over_the_parent_gateway_one_knob_at_a_time() {
    let d = run(&listener_set(
        "portcullis.dev/duration: 2m, portcullis.dev/private-key-algorithm: RSA, portcullis.dev/private-key-rotation: Never",
        "cert-manager.io/duration: 10m, portcullis.dev/private-key-rotation: Always",
        SET_WEB,
    ));
    let c = &d.certificates[0];
    // Its own annotations win, whichever prefix they use...
    assert_eq!(c.duration, Some(Duration::from_secs(600)));
    assert!(c.rotate_key);
    // ...and the knobs it leaves unset come from the parent.
    assert_eq!(c.key, KeyAlgorithm::Rsa2048);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn listener_set_not_admitted_by_its_parent_is_not_managed() {
    // No allowedListeners: the Gateway admits no ListenerSet.
    let refused = listener_set("portcullis.dev/issuer: self", "", SET_WEB)
        .replace("  allowedListeners: {namespaces: {from: All}}\n", "");
    let d = run(&format!("{refused}{APPS_ISSUER}"));
    assert!(d.certificates.is_empty(), "{d:?}");
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    // Same namespace only: `apps` is refused too.
    let same = listener_set("", "", SET_WEB).replace("from: All", "from: Same");
    assert!(run(&same).certificates.is_empty());
    // A parent that does not exist admits nothing.
    let orphan =
        listener_set("", "", SET_WEB).replace("name: gw, namespace", "name: nope, namespace");
    assert!(run(&orphan).certificates.is_empty());
}

#[test]
fn listener_set_catch_all_listener_uses_routes_attached_to_that_listener() {
    let route_to = |name: &str, parent: &str, hostnames: &str| {
        format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: apps}}
spec:
  parentRefs: [{parent}]
  hostnames: [{hostnames}]
  rules: [{{backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: s}}]}}]
"#
        )
    };
    let yaml = listener_set(
        "",
        "",
        "  - {name: web, protocol: HTTPS, port: 443}
  - {name: other, protocol: HTTPS, port: 8443}",
    ) + &route_to(
        "mine",
        "{kind: ListenerSet, name: extra, sectionName: web}",
        "one.test, two.test",
    ) + &route_to(
        "next-door",
        "{kind: ListenerSet, name: extra, sectionName: other}",
        "other.test",
    ) + &route_to(
        "via-gateway",
        "{name: gw, namespace: default}",
        "gateway.test",
    );
    let d = run(&yaml);
    let web = d
        .certificates
        .iter()
        .find(|c| secret(c) == "apps/extra-web-tls")
        .expect("web demand");
    assert_eq!(names(web), ["one.test", "two.test"]);
}

#[test]
fn listener_ids_name_gateway_and_listener_set_listeners_reversibly() {
    for text in ["default/gw/web", "ListenerSet apps/extra/web"] {
        let id = ListenerId::parse(text).expect("parses");
        assert_eq!(id.to_string(), text);
    }
    let id = ListenerId::parse("ListenerSet apps/extra/web").expect("parses");
    assert_eq!(
        (id.kind, id.namespace.as_str(), id.owner.as_str()),
        (OwnerKind::ListenerSet, "apps", "extra")
    );
    assert_eq!(ListenerId::parse("default/gw"), None);
}

#[test]
fn an_issuer_in_the_listeners_tls_options_wins_over_the_gateways() {
    let d = run(&gateway(
        "portcullis.dev/issuer: self",
        "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test, tls: {options: {portcullis.dev/cluster-issuer: le-dns}}}\n  - {name: other, protocol: HTTPS, port: 8443, hostname: other.test}",
    ));
    let issuer_of = |listener_secret: &str| {
        d.certificates
            .iter()
            .find(|c| secret(c) == listener_secret)
            .map(|c| c.issuer.clone())
    };
    assert_eq!(
        issuer_of("default/gw-web-tls"),
        Some(IssuerRef::ClusterIssuer {
            name: "le-dns".into()
        })
    );
    assert_eq!(
        issuer_of("default/gw-other-tls"),
        Some(IssuerRef::Issuer {
            namespace: "default".into(),
            name: "self".into()
        })
    );
}

#[test]
fn references_portcullis_wrote_back_stay_auto_filled_until_the_user_changes_them() {
    let written = "  - {name: web, protocol: HTTPS, port: 443, hostname: app.test, tls: {certificateRefs: [{group: '', kind: Secret, name: gw-web-tls}]}}";
    let d = run(&gateway(
        "portcullis.dev/filled-certificate-refs: web",
        written,
    ));
    assert_eq!(d.certificates.len(), 1, "{d:?}");
    assert_eq!(d.certificates[0].issuer, IssuerRef::LocalCa);
    assert!(d.certificates[0].auto_filled);
    // The same reference without the annotation is the user's own.
    assert!(run(&gateway("", written)).certificates.is_empty());
    // A reference the user changed is theirs, annotation or not.
    let changed = written.replace("name: gw-web-tls", "name: mine");
    assert!(run(&gateway(
        "portcullis.dev/filled-certificate-refs: web",
        &changed
    ))
    .certificates
    .is_empty());
}

#[test]
fn a_gateway_class_annotation_names_the_default_cluster_issuer() {
    let annotated_class = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pc, annotations: {portcullis.dev/cluster-issuer: le-dns}}\nspec: {controllerName: portcullis.dev/gateway-controller}\n";
    let text = format!(
        "{annotated_class}---\n{ISSUERS}\n---\n{}",
        gateway(
            "",
            "  - {name: web, protocol: HTTPS, port: 443, hostname: app.example.com}\n  - {name: own, protocol: HTTPS, port: 8443, hostname: own.example.com, tls: {options: {portcullis.dev/issuer: self}}}"
        )
    );
    let resources =
        Resources::from_objects(parse_documents(&text, "f.yaml").expect("parses").objects);
    let d = demand(
        &resources,
        &compile(&resources, &CompileOptions::default()).status,
    );
    let issuer_of = |s: &str| {
        d.certificates
            .iter()
            .find(|c| secret(c) == s)
            .map(|c| c.issuer.clone())
    };
    assert_eq!(
        issuer_of("default/gw-web-tls"),
        Some(IssuerRef::ClusterIssuer {
            name: "le-dns".into()
        })
    );
    assert_eq!(
        issuer_of("default/gw-own-tls"),
        Some(IssuerRef::Issuer {
            namespace: "default".into(),
            name: "self".into()
        })
    );
}
