//! Route attachment, backends and rules.

use super::*;

fn two_listeners() -> String {
    format!(
        "{CLASS}{}{}",
        gateway(&[("http", 80, None), ("alt", 8080, None)], ""),
        service("infra")
    )
}

#[test]
fn route_attaches_to_the_listener_its_section_name_names() {
    let c =
        run_yaml(&(two_listeners() + &route("infra", "r", "{name: gw, sectionName: alt}", "[]")));
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!((attached(&c, "http"), attached(&c, "alt")), (0, 1));
}

#[test]
fn route_attaches_to_the_listener_its_port_names() {
    let c = run_yaml(&(two_listeners() + &route("infra", "r", "{name: gw, port: 8080}", "[]")));
    assert_eq!((attached(&c, "http"), attached(&c, "alt")), (0, 1));
    let c = run_yaml(&(two_listeners() + &route("infra", "r", "{name: gw}", "[]")));
    assert_eq!((attached(&c, "http"), attached(&c, "alt")), (1, 1));
}

#[test]
fn unknown_section_name_or_port_is_no_matching_parent() {
    for parent in [
        "{name: gw, sectionName: nope}",
        "{name: gw, port: 9999}",
        "{name: gw, sectionName: http, port: 8080}",
        "{name: missing}",
    ] {
        let c = run_yaml(&(two_listeners() + &route("infra", "r", parent, "[]")));
        assert_eq!(
            route_cond(&c, "infra", "r", 0, ConditionType::Accepted),
            (false, Reason::NoMatchingParent),
            "{parent}"
        );
        assert_eq!(attached(&c, "http"), 0);
    }
}

#[test]
fn routes_of_other_controllers_get_no_status() {
    let yaml = format!(
        "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: theirs, namespace: infra}}\nspec: {{gatewayClassName: other, listeners: []}}\n{}",
        two_listeners(),
        route("infra", "r", "{name: theirs}", "[]")
    );
    assert!(run_yaml(&yaml)
        .status
        .find("HTTPRoute", "infra", "r")
        .is_none());
}

fn namespaces_fixture(from: &str) -> String {
    format!(
        "{CLASS}{}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: web, labels: {{team: web}}}}\n{}",
        gateway(&[("http", 80, None)], ""),
        route("web", "r", "{name: gw, namespace: infra}", "[]")
    )
    .replace("allowedRoutes: {namespaces: {from: All}}", &format!("allowedRoutes: {{namespaces: {from}}}"))
}

#[test]
fn allowed_routes_same_rejects_routes_from_other_namespaces() {
    let c = run_yaml(&namespaces_fixture("{from: Same}"));
    assert_eq!(
        route_cond(&c, "web", "r", 0, ConditionType::Accepted),
        (false, Reason::NotAllowedByListeners)
    );
    assert_eq!(attached(&c, "http"), 0);
    let c = run_yaml(&namespaces_fixture("{}"));
    assert_eq!(
        route_cond(&c, "web", "r", 0, ConditionType::Accepted),
        (false, Reason::NotAllowedByListeners)
    );
}

#[test]
fn allowed_routes_all_and_selector_admit_other_namespaces() {
    let c = run_yaml(&namespaces_fixture("{from: All}"));
    assert_eq!(
        route_cond(&c, "web", "r", 0, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let c = run_yaml(&namespaces_fixture(
        "{from: Selector, selector: {matchLabels: {team: web}}}",
    ));
    assert_eq!(
        route_cond(&c, "web", "r", 0, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let c = run_yaml(&namespaces_fixture(
        "{from: Selector, selector: {matchLabels: {team: api}}}",
    ));
    assert_eq!(
        route_cond(&c, "web", "r", 0, ConditionType::Accepted),
        (false, Reason::NotAllowedByListeners)
    );
}

#[test]
fn disjoint_hostnames_are_no_matching_listener_hostname() {
    let base = format!(
        "{CLASS}{}{}",
        gateway(&[("http", 80, Some("*.example.com"))], ""),
        service("infra")
    );
    let c = run_yaml(&(base.clone() + &route("infra", "r", "{name: gw}", "[other.com]")));
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::Accepted),
        (false, Reason::NoMatchingListenerHostname)
    );
    assert_eq!(attached(&c, "http"), 0);
    let c = run_yaml(
        &(base
            + &route(
                "infra",
                "r",
                "{name: gw}",
                "[a.example.com, other.com, '*.example.com']",
            )),
    );
    let hosts: Vec<_> = c.dataplane.binds[0].listeners[0]
        .routes
        .entries
        .iter()
        .map(|e| e.hostname.clone())
        .collect();
    assert_eq!(
        hosts,
        vec![
            Some("a.example.com".to_string()),
            Some("*.example.com".to_string())
        ]
    );
}

#[test]
fn route_without_hostnames_takes_the_listener_hostname() {
    let yaml = format!(
        "{CLASS}{}{}{}",
        gateway(&[("http", 80, Some("a.com")), ("any", 81, None)], ""),
        service("infra"),
        route("infra", "r", "{name: gw}", "[]")
    );
    let c = run_yaml(&yaml);
    let hosts: Vec<_> = c
        .dataplane
        .binds
        .iter()
        .map(|b| b.listeners[0].routes.entries[0].hostname.clone())
        .collect();
    assert_eq!(hosts, vec![Some("a.com".to_string()), None]);
}

fn cross_namespace_backend(grant_name: Option<&str>) -> String {
    let grant = grant_name.map(|n| format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: backends}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}}]\n  to: [{{group: '', kind: Service{n}}}]\n"
    ));
    format!(
        "{CLASS}{}{}{}",
        gateway(&[("http", 80, None)], ""),
        service("backends"),
        route("infra", "r", "{name: gw}", "[]").replace(
            "{name: svc, port: 80}",
            "{name: svc, namespace: backends, port: 80}"
        )
    ) + &grant.unwrap_or_default()
}

#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    let c = run_yaml(&cross_namespace_backend(None));
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
    let entry = &c.dataplane.binds[0].listeners[0].routes.entries[0];
    assert!(matches!(
        entry.rule.backends[0].target,
        BackendTarget::Invalid
    ));
    let c = run_yaml(&cross_namespace_backend(Some("")));
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    let c = run_yaml(&cross_namespace_backend(Some(", name: svc")));
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    let c = run_yaml(&cross_namespace_backend(Some(", name: other")));
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
}

#[test]
fn missing_service_or_port_is_backend_not_found() {
    let base = format!(
        "{CLASS}{}{}",
        gateway(&[("http", 80, None)], ""),
        service("infra")
    );
    for backend in ["{name: nope, port: 80}", "{name: svc, port: 81}"] {
        let yaml = base.clone()
            + &route("infra", "r", "{name: gw}", "[]").replace("{name: svc, port: 80}", backend);
        let c = run_yaml(&yaml);
        assert_eq!(
            route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
            (false, Reason::BackendNotFound),
            "{backend}"
        );
        assert_eq!(
            route_cond(&c, "infra", "r", 0, ConditionType::Accepted),
            (true, Reason::Accepted)
        );
    }
}

#[test]
fn unknown_backend_kind_is_invalid_kind() {
    let yaml = format!("{CLASS}{}", gateway(&[("http", 80, None)], ""))
        + &route("infra", "r", "{name: gw}", "[]").replace(
            "{name: svc, port: 80}",
            "{group: example.com, kind: Thing, name: x}",
        );
    let c = run_yaml(&yaml);
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (false, Reason::InvalidKind)
    );
}

#[test]
fn invalid_regex_rejects_the_route_with_unsupported_value() {
    let yaml = format!(
        "{CLASS}{}{}",
        gateway(&[("http", 80, None)], ""),
        service("infra")
    ) + &route("infra", "r", "{name: gw}", "[]").replace(
        "  - backendRefs",
        "  - matches: [{path: {type: RegularExpression, value: '('}}]\n    backendRefs",
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::Accepted),
        (false, Reason::UnsupportedValue)
    );
    assert_eq!(attached(&c, "http"), 0);
    assert!(c.dataplane.binds[0].listeners[0].routes.is_empty());
}

#[test]
fn redirect_defaults_to_302_and_entries_carry_their_order() {
    let yaml = format!("{CLASS}{}{}", gateway(&[("http", 80, None)], ""), service("infra"))
        + &route("infra", "r", "{name: gw}", "[]").replace(
            "  - backendRefs",
            "  - matches: [{path: {value: /a}}, {path: {type: Exact, value: /b}}]\n    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]\n    backendRefs",
        );
    let c = run_yaml(&yaml);
    let entries = &c.dataplane.binds[0].listeners[0].routes.entries;
    assert_eq!(entries.len(), 2);
    let exact = entries
        .iter()
        .find(|e| matches!(&e.matcher.path, crate::dataplane::PathMatch::Exact(p) if p == "/b"))
        .expect("exact entry");
    assert_eq!((exact.order.rule, exact.order.index), (0, 1));
    assert_eq!(exact.order.route.name, "r");
    let crate::dataplane::Filter::Redirect(r) = &entries[0].rule.filters[0] else {
        panic!("expected a redirect");
    };
    assert_eq!(r.status, 302);
}

#[test]
fn routes_attach_to_listener_sets_only_through_listener_set_parents() {
    let yaml = format!(
        "{CLASS}{}{}---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: ls, namespace: infra}}
spec:
  parentRef: {{name: gw}}
  listeners:
  - {{name: ls-http, port: 80, protocol: HTTP, hostname: ls.com}}
",
        gateway(
            &[("http", 80, Some("gw.com"))],
            "  allowedListeners: {namespaces: {from: Same}}\n"
        ),
        service("infra"),
    ) + &route("infra", "via-gw", "{name: gw, sectionName: ls-http}", "[]")
        + &route(
            "infra",
            "via-ls",
            "{kind: ListenerSet, name: ls, sectionName: ls-http}",
            "[]",
        );
    let c = run_yaml(&yaml);
    assert_eq!(
        route_cond(&c, "infra", "via-gw", 0, ConditionType::Accepted),
        (false, Reason::NoMatchingParent)
    );
    assert_eq!(
        route_cond(&c, "infra", "via-ls", 0, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let s = find(&c, "HTTPRoute", "infra", "via-ls");
    assert_eq!(s.parents[0].parent_ref.kind, "ListenerSet");
    assert_eq!(
        listener(find(&c, "ListenerSet", "infra", "ls"), "ls-http").attached_routes,
        1
    );
}

#[test]
fn grpc_routes_attach_and_match_service_paths() {
    let yaml = format!(
        "{CLASS}{}{}",
        gateway(&[("http", 80, None)], ""),
        service("infra")
    ) + "---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: echo.Echo, method: Say}}]
    backendRefs: [{name: svc, port: 80}]
";
    let c = run_yaml(&yaml);
    let s = find(&c, "GRPCRoute", "infra", "g");
    assert_eq!(
        cond(&s.parents[0].conditions, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let entry = &c.dataplane.binds[0].listeners[0].routes.entries[0];
    assert!(
        matches!(&entry.matcher.path, crate::dataplane::PathMatch::Exact(p) if p == "/echo.Echo/Say")
    );
}

#[test]
fn static_response_backends_answer_from_the_object() {
    let yaml = format!("{CLASS}{}", gateway(&[("http", 80, None)], ""))
        + &route("infra", "r", "{name: gw}", "[]").replace("{name: svc, port: 80}", "{group: portcullis.dev, kind: StaticResponse, name: hello}")
        + "---\napiVersion: portcullis.dev/v1alpha1\nkind: StaticResponse\nmetadata: {name: hello, namespace: infra}\nspec: {status: 418, body: teapot}\n";
    let c = run_yaml(&yaml);
    assert_eq!(
        route_cond(&c, "infra", "r", 0, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    let entry = &c.dataplane.binds[0].listeners[0].routes.entries[0];
    let BackendTarget::Static(s) = &entry.rule.backends[0].target else {
        panic!("expected a static response");
    };
    assert_eq!(
        (s.status, s.content_type.as_str(), &s.body[..]),
        (418, "text/plain", &b"teapot"[..])
    );
}
