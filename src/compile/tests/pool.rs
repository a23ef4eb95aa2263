//! Gateways that name no address get their own from the address pool
//! (`--gateway-address-pool`).

use super::*;
use crate::address_pool::{AddressPool, HeldAddresses, PoolAddress};
use std::net::{IpAddr, SocketAddr};

/// Gateway `name` in `infra` created at second `second`, with an HTTP
/// listener on port 80 without hostname, and `addresses` as its spec's.
fn port_80(name: &str, second: u8, addresses: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: infra, creationTimestamp: '2026-01-01T00:00:{second:02}Z'}}
spec:
  gatewayClassName: pc
  addresses: {addresses}
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"
    )
}

fn with_pool(prefix: &str) -> CompileOptions {
    CompileOptions {
        address_pool: AddressPool::new(vec![prefix.parse().expect("test prefix")]),
        ..Default::default()
    }
}

fn bound(c: &Compiled) -> Vec<SocketAddr> {
    c.dataplane.binds.iter().map(|b| b.addr).collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn assigned(text: &str) -> Option<PoolAddress> {
    Some(PoolAddress::Assigned(ip(text)))
}

fn socket(text: &str) -> SocketAddr {
    text.parse().expect("test socket address")
}

#[test]
fn gateways_on_one_port_without_hostnames_each_bind_a_pool_address() {
    // The conformance suite's base Gateways: three port-80 listeners
    // without hostnames would conflict on one shared address.
    let r = load(&format!(
        "{CLASS}{}{}{}",
        port_80("same-namespace", 1, "[]"),
        port_80("all-namespaces", 1, "[]"),
        port_80("backend-namespaces", 2, "[]")
    ));
    let c = compile(&r, &with_pool("198.18.4.0/24"));
    for name in ["same-namespace", "all-namespaces", "backend-namespaces"] {
        let t = ConditionType::Programmed;
        assert_eq!(
            object_cond(&c, "Gateway", "infra", name, t),
            (true, Reason::Programmed),
            "{name}"
        );
        assert_eq!(
            listener_cond(
                &c,
                "Gateway",
                "infra",
                name,
                "http",
                ConditionType::Conflicted
            ),
            (false, Reason::NoConflicts),
            "{name}"
        );
    }
    // Oldest first; equal timestamps by name.
    let address = |name| find(&c, "Gateway", "infra", name).pool_address;
    assert_eq!(address("all-namespaces"), assigned("198.18.4.1"));
    assert_eq!(address("same-namespace"), assigned("198.18.4.2"));
    assert_eq!(address("backend-namespaces"), assigned("198.18.4.3"));
    assert_eq!(
        bound(&c),
        vec![
            socket("198.18.4.1:80"),
            socket("198.18.4.2:80"),
            socket("198.18.4.3:80")
        ]
    );
    assert_eq!(
        c.pool_addresses
            .get(&crate::model::ObjectKey::new("infra", "all-namespaces")),
        assigned("198.18.4.1")
    );
}

#[test]
fn a_spec_address_is_bound_as_given_and_never_handed_out() {
    let r = load(&format!(
        "{CLASS}{}{}",
        port_80("fixed", 1, "[{type: IPAddress, value: 198.18.4.1}]"),
        port_80("pooled", 2, "[]")
    ));
    let c = compile(&r, &with_pool("198.18.4.0/24"));
    assert_eq!(find(&c, "Gateway", "infra", "fixed").pool_address, None);
    assert_eq!(
        find(&c, "Gateway", "infra", "pooled").pool_address,
        assigned("198.18.4.2")
    );
    assert_eq!(
        bound(&c),
        vec![socket("198.18.4.1:80"), socket("198.18.4.2:80")]
    );
}

#[test]
fn an_address_entry_without_a_value_is_given_one_from_the_pool() {
    // GEP-3100: a type without a value asks the implementation to choose.
    let r = load(&format!(
        "{CLASS}{}",
        port_80("gw", 1, "[{type: IPAddress}]")
    ));
    let c = compile(&r, &with_pool("198.18.4.0/24"));
    assert_eq!(bound(&c), vec![socket("198.18.4.1:80")]);
}

#[test]
fn a_held_address_is_kept() {
    let r = load(&format!("{CLASS}{}", port_80("gw", 1, "[]")));
    let mut options = with_pool("198.18.4.0/24");
    let pool = options.address_pool.clone();
    let reported = std::collections::BTreeMap::from([(
        crate::model::ObjectKey::new("infra", "gw"),
        vec![ip("198.18.4.9")],
    )]);
    options.held_addresses =
        std::sync::Arc::new(HeldAddresses::new(&pool, &reported, &Default::default()));
    let c = compile(&r, &options);
    assert_eq!(bound(&c), vec![socket("198.18.4.9:80")]);
}

#[test]
fn when_the_pool_is_exhausted_the_youngest_gateway_is_accepted_but_not_programmed() {
    let r = load(&format!(
        "{CLASS}{}{}",
        port_80("old", 1, "[]"),
        port_80("young", 2, "[]")
    ));
    let c = compile(&r, &with_pool("198.18.4.7/32"));
    assert_eq!(bound(&c), vec![socket("198.18.4.7:80")]);
    let young = |t| object_cond(&c, "Gateway", "infra", "young", t);
    assert_eq!(young(ConditionType::Accepted), (true, Reason::Accepted));
    assert_eq!(
        young(ConditionType::Programmed),
        (false, Reason::AddressNotAssigned)
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "young",
            "http",
            ConditionType::Programmed
        ),
        (false, Reason::Pending)
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "young",
            "http",
            ConditionType::Accepted
        ),
        (true, Reason::Accepted)
    );
    assert_eq!(
        find(&c, "Gateway", "infra", "young").pool_address,
        Some(PoolAddress::Exhausted)
    );
    assert_eq!(
        object_cond(&c, "Gateway", "infra", "old", ConditionType::Programmed),
        (true, Reason::Programmed)
    );
}

#[test]
fn listener_set_listeners_bind_on_their_parents_pool_address() {
    let r = load(&format!(
        "{CLASS}{}{}{}",
        port_80("other", 1, "[]"),
        gateway(
            &[("http", 80, Some("gw.com"))],
            "  allowedListeners: {namespaces: {from: All}}\n"
        ),
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: infra}
spec:
  parentRef: {name: gw}
  listeners:
  - {name: extra, port: 8080, protocol: HTTP}
"
    ));
    let c = compile(&r, &with_pool("198.18.4.0/24"));
    // "gw" has no creation timestamp: it sorts before "other".
    assert_eq!(
        bound(&c),
        vec![
            socket("198.18.4.1:80"),
            socket("198.18.4.1:8080"),
            socket("198.18.4.2:80")
        ]
    );
}

#[test]
fn without_a_pool_gateways_share_the_listen_address() {
    let r = load(&format!(
        "{CLASS}{}{}",
        port_80("a", 1, "[]"),
        port_80("b", 2, "[]")
    ));
    let c = run(&r);
    assert_eq!(bound(&c), vec![socket("0.0.0.0:80")]);
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "b",
            "http",
            ConditionType::Conflicted
        ),
        (true, Reason::HostnameConflict)
    );
    assert!(c.pool_addresses == Default::default());
}

#[test]
fn an_unbindable_spec_address_leaves_the_gateway_unprogrammed_and_out_of_the_pool() {
    // GatewayStaticAddresses, step two: [unusable, usable].
    let r = load(&format!(
        "{CLASS}{}",
        port_80("fixed", 1, "[{value: 192.0.2.1}, {value: 198.18.4.7}]")
    ));
    let mut options = with_pool("198.18.4.0/24");
    options.unbindable_addresses = std::sync::Arc::new([ip("192.0.2.1")].into());
    let c = compile(&r, &options);
    let cond = |t| object_cond(&c, "Gateway", "infra", "fixed", t);
    assert_eq!(cond(ConditionType::Accepted), (true, Reason::Accepted));
    assert_eq!(
        cond(ConditionType::Programmed),
        (false, Reason::AddressNotUsable)
    );
    let status = find(&c, "Gateway", "infra", "fixed");
    assert_eq!(status.pool_address, None);
    assert_eq!(status.spec_address, Some(ip("198.18.4.7")));
    assert_eq!(bound(&c), vec![socket("198.18.4.7:80")]);

    // Only unbindable addresses: bound nowhere, still nothing from the pool.
    let r = load(&format!(
        "{CLASS}{}",
        port_80("fixed", 1, "[{value: 192.0.2.1}]")
    ));
    let c = compile(&r, &options);
    assert_eq!(find(&c, "Gateway", "infra", "fixed").pool_address, None);
    assert!(bound(&c).is_empty());
}
