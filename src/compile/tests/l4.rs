//! TCP and UDP listeners, TCPRoute and UDPRoute attachment, and the
//! `portcullis.dev/proxy-protocol` annotation.

use super::*;
use crate::dataplane::{Listener, StreamMode};

/// Gateway `gw` in `infra` with `listeners` (YAML flow mappings).
fn l4_gateway(listeners: &[&str]) -> String {
    let mut out = "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: pc
  listeners:
"
    .to_string();
    for l in listeners {
        out.push_str(&format!("  - {l}\n"));
    }
    out
}

const TCP: &str = "{name: tcp, port: 5432, protocol: TCP, hostname: ignored.example.test, allowedRoutes: {namespaces: {from: All}}}";
const UDP: &str =
    "{name: udp, port: 5432, protocol: UDP, allowedRoutes: {namespaces: {from: All}}}";

/// A route of `kind` (`TCPRoute` / `UDPRoute`) `name` in `app`, created at
/// `created`, with `parent` and `backends` (YAML flow list).
fn l4_route(kind: &str, name: &str, created: &str, parent: &str, backends: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: app, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{parent}]
  rules:
  - backendRefs: {backends}
"
    )
}

/// Services `a` and `b` in `app`, port 5432, endpoints 10.0.0.1 / 10.0.0.2.
const SERVICES: &str = "---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: app}
spec: {ports: [{port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, namespace: app, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
ports: [{port: 15432}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: app}
spec: {ports: [{port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: b-1, namespace: app, labels: {kubernetes.io/service-name: b}}
addressType: IPv4
ports: [{port: 15432}]
endpoints: [{addresses: [10.0.0.2]}]
";

const AB: &str = "[{name: a, port: 5432, weight: 1}, {name: b, port: 5432, weight: 3}]";

fn parent_cond(c: &Compiled, kind: &str, name: &str, t: ConditionType) -> (bool, Reason) {
    cond(&find(c, kind, "app", name).parents[0].conditions, t)
}

/// The only listener of the bind of `protocol`.
fn only_listener(c: &Compiled, protocol: BindProtocol) -> &Arc<Listener> {
    let bind = c
        .dataplane
        .binds
        .iter()
        .find(|b| b.protocol == protocol)
        .unwrap_or_else(|| panic!("no {protocol:?} bind: {:#?}", c.dataplane));
    assert_eq!(bind.listeners.len(), 1);
    &bind.listeners[0]
}

#[test]
fn tcp_listener_is_programmed_serves_tcproute_and_ignores_its_hostname() {
    let c = run_yaml(&format!("{CLASS}{}", l4_gateway(&[TCP])));
    for (t, ok) in [
        (ConditionType::Accepted, true),
        (ConditionType::ResolvedRefs, true),
        (ConditionType::Programmed, true),
    ] {
        assert_eq!(
            listener_cond(&c, "Gateway", "infra", "gw", "tcp", t).0,
            ok,
            "{t:?}"
        );
    }
    let gw = find(&c, "Gateway", "infra", "gw");
    assert_eq!(listener(gw, "tcp").supported_kinds, vec!["TCPRoute"]);
    let l = only_listener(&c, BindProtocol::Tcp);
    assert_eq!(l.hostname, None, "hostname is ignored on TCP listeners");
    assert_eq!(l.streams.as_ref().map(|s| s.mode), Some(StreamMode::Plain));
}

#[test]
fn tcp_route_attaches_with_weighted_backends() {
    let yaml = format!(
        "{CLASS}{}{}{SERVICES}",
        l4_gateway(&[TCP]),
        l4_route(
            "TCPRoute",
            "db",
            "2024-01-01T00:00:00Z",
            "{name: gw, namespace: infra, sectionName: tcp}",
            AB
        ),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        parent_cond(&c, "TCPRoute", "db", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        parent_cond(&c, "TCPRoute", "db", ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    assert_eq!(attached(&c, "tcp"), 1);
    let l = only_listener(&c, BindProtocol::Tcp);
    let entries = &l.streams.as_ref().expect("stream table").table.entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].hostname, None);
    assert!(!entries[0].proxy_protocol);
    let weights: Vec<u32> = entries[0].backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, vec![1, 3]);
    let BackendTarget::Service(u) = &entries[0].backends[1].target else {
        panic!("expected a Service backend");
    };
    assert_eq!(u.endpoints[0].to_string(), "10.0.0.2:15432");
}

#[test]
fn second_tcp_route_on_a_listener_loses_to_the_oldest() {
    let parent = "{name: gw, namespace: infra}";
    let yaml = format!(
        "{CLASS}{}{}{}{SERVICES}",
        l4_gateway(&[TCP]),
        // Listed first but newer.
        l4_route(
            "TCPRoute",
            "newer",
            "2024-06-01T00:00:00Z",
            parent,
            "[{name: b, port: 5432}]"
        ),
        l4_route(
            "TCPRoute",
            "older",
            "2024-01-01T00:00:00Z",
            parent,
            "[{name: a, port: 5432}]"
        ),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        parent_cond(&c, "TCPRoute", "older", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    // Both Accepted (Gateway API v1.6 conformance), only the older bound.
    assert_eq!(
        parent_cond(&c, "TCPRoute", "newer", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    // Attachment depends on parentRefs and allowedRoutes only.
    assert_eq!(attached(&c, "tcp"), 2);
    let l = only_listener(&c, BindProtocol::Tcp);
    let entries = &l.streams.as_ref().expect("stream table").table.entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].route.name, "older");
}

#[test]
fn udp_and_tcp_listeners_share_a_port_on_separate_binds() {
    let yaml = format!(
        "{CLASS}{}{}{}{SERVICES}",
        l4_gateway(&[TCP, UDP]),
        l4_route(
            "TCPRoute",
            "t",
            "2024-01-01T00:00:00Z",
            "{name: gw, namespace: infra, sectionName: tcp}",
            "[{name: a, port: 5432}]"
        ),
        l4_route(
            "UDPRoute",
            "u",
            "2024-01-01T00:00:00Z",
            "{name: gw, namespace: infra, port: 5432}",
            "[{name: b, port: 5432}]"
        ),
    );
    let c = run_yaml(&yaml);
    for l in ["tcp", "udp"] {
        assert_eq!(
            listener_cond(&c, "Gateway", "infra", "gw", l, ConditionType::Conflicted),
            (false, Reason::NoConflicts),
            "{l}"
        );
    }
    let gw = find(&c, "Gateway", "infra", "gw");
    assert_eq!(listener(gw, "udp").supported_kinds, vec!["UDPRoute"]);
    assert_eq!(
        parent_cond(&c, "UDPRoute", "u", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(c.dataplane.binds.len(), 2);
    let tcp = c
        .dataplane
        .bind(c.dataplane.binds[0].addr)
        .expect("tcp bind");
    assert_eq!(tcp.protocol, BindProtocol::Tcp);
    let udp = c
        .dataplane
        .datagram_bind(tcp.addr)
        .expect("udp bind on the same address");
    let entries = &udp.listeners[0]
        .streams
        .as_ref()
        .expect("table")
        .table
        .entries;
    assert_eq!(entries[0].route.name, "u");
}

#[test]
fn udp_route_to_a_tcp_listener_is_not_allowed_by_listeners() {
    let yaml = format!(
        "{CLASS}{}{}{SERVICES}",
        l4_gateway(&[TCP]),
        l4_route(
            "UDPRoute",
            "u",
            "2024-01-01T00:00:00Z",
            "{name: gw, namespace: infra, sectionName: tcp}",
            "[{name: a, port: 5432}]"
        ),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        parent_cond(&c, "UDPRoute", "u", ConditionType::Accepted),
        (false, Reason::NotAllowedByListeners)
    );
    assert_eq!(attached(&c, "tcp"), 0);
}

#[test]
fn tcp_listener_with_http_route_kind_is_invalid_route_kinds() {
    let l = "{name: tcp, port: 5432, protocol: TCP, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}}";
    let c = run_yaml(&format!("{CLASS}{}", l4_gateway(&[l])));
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "tcp",
            ConditionType::ResolvedRefs
        ),
        (false, Reason::InvalidRouteKinds)
    );
    let gw = find(&c, "Gateway", "infra", "gw");
    assert_eq!(listener(gw, "tcp").supported_kinds, vec!["TCPRoute"]);
    let only_http =
        "{name: tcp, port: 5432, protocol: TCP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}";
    let c = run_yaml(&format!("{CLASS}{}", l4_gateway(&[only_http])));
    let programmed = listener_cond(
        &c,
        "Gateway",
        "infra",
        "gw",
        "tcp",
        ConditionType::Programmed,
    );
    assert!(
        !programmed.0,
        "a TCP listener serving no kind is not programmed"
    );
}

#[test]
fn two_tcp_listeners_on_one_port_conflict_whatever_their_hostnames() {
    let a = "{name: a, port: 5432, protocol: TCP, hostname: a.example.test}";
    let b = "{name: b, port: 5432, protocol: TCP, hostname: b.example.test}";
    let c = run_yaml(&format!("{CLASS}{}", l4_gateway(&[a, b])));
    assert_eq!(
        listener_cond(&c, "Gateway", "infra", "gw", "b", ConditionType::Conflicted),
        (true, Reason::HostnameConflict)
    );
}

#[test]
fn tcp_and_http_listeners_on_one_port_are_a_protocol_conflict() {
    let http = "{name: http, port: 5432, protocol: HTTP}";
    let c = run_yaml(&format!("{CLASS}{}", l4_gateway(&[http, TCP])));
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "tcp",
            ConditionType::Conflicted
        ),
        (true, Reason::ProtocolConflict)
    );
}

#[test]
fn unresolved_backends_are_reported_and_refused_by_weight() {
    let backends = "[{name: a, port: 5432}, {name: missing, port: 5432}, {group: example.com, kind: Thing, name: x}, {name: a, namespace: other, port: 5432}]";
    let yaml = format!(
        "{CLASS}{}{}{SERVICES}",
        l4_gateway(&[TCP]),
        l4_route(
            "TCPRoute",
            "db",
            "2024-01-01T00:00:00Z",
            "{name: gw, namespace: infra}",
            backends
        ),
    );
    let c = run_yaml(&yaml);
    assert_eq!(
        parent_cond(&c, "TCPRoute", "db", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        parent_cond(&c, "TCPRoute", "db", ConditionType::ResolvedRefs),
        (false, Reason::BackendNotFound)
    );
    let l = only_listener(&c, BindProtocol::Tcp);
    let entry = &l.streams.as_ref().expect("table").table.entries[0];
    let invalid = entry
        .backends
        .iter()
        .filter(|b| matches!(b.target, BackendTarget::Invalid))
        .count();
    assert_eq!(
        invalid, 3,
        "each unresolved backend keeps its share, refused"
    );

    for (backend, reason) in [
        (
            "[{group: example.com, kind: Thing, name: x}]",
            Reason::InvalidKind,
        ),
        (
            "[{name: a, namespace: other, port: 5432}]",
            Reason::RefNotPermitted,
        ),
    ] {
        let yaml = format!(
            "{CLASS}{}{}{SERVICES}",
            l4_gateway(&[TCP]),
            l4_route(
                "TCPRoute",
                "db",
                "2024-01-01T00:00:00Z",
                "{name: gw, namespace: infra}",
                backend
            ),
        );
        let c = run_yaml(&yaml);
        assert_eq!(
            parent_cond(&c, "TCPRoute", "db", ConditionType::ResolvedRefs),
            (false, reason),
            "{backend}"
        );
    }
}

#[test]
fn proxy_protocol_annotation_sets_the_entry_flag_or_is_unsupported() {
    let route = |value: &str| {
        l4_route("TCPRoute", "db", "2024-01-01T00:00:00Z", "{name: gw, namespace: infra}", "[{name: a, port: 5432}]")
            .replace(
                "creationTimestamp: '2024-01-01T00:00:00Z'",
                &format!("creationTimestamp: '2024-01-01T00:00:00Z', annotations: {{portcullis.dev/proxy-protocol: '{value}'}}"),
            )
    };
    let c = run_yaml(&format!(
        "{CLASS}{}{}{SERVICES}",
        l4_gateway(&[TCP]),
        route("v2")
    ));
    let l = only_listener(&c, BindProtocol::Tcp);
    assert!(l.streams.as_ref().expect("table").table.entries[0].proxy_protocol);

    let c = run_yaml(&format!(
        "{CLASS}{}{}{SERVICES}",
        l4_gateway(&[TCP]),
        route("v1")
    ));
    assert_eq!(
        parent_cond(&c, "TCPRoute", "db", ConditionType::Accepted),
        (false, Reason::UnsupportedValue)
    );
}

#[test]
fn tls_route_with_proxy_protocol_annotation_sets_the_entry_flag() {
    let yaml = format!(
        "{CLASS}{}---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata:
  name: pt
  namespace: app
  annotations: {{portcullis.dev/proxy-protocol: v2}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  hostnames: [a.example.test]
  rules:
  - backendRefs: [{{name: a, port: 5432}}]
{SERVICES}",
        l4_gateway(&["{name: pt, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: All}}}"]),
    );
    let c = run_yaml(&yaml);
    let l = only_listener(&c, BindProtocol::Https);
    let entry = &l.streams.as_ref().expect("table").table.entries[0];
    assert!(entry.proxy_protocol);
}
