//! The addresses a Gateway reports in `status.addresses` ([`addresses`],
//! pure): where clients reach it. portcullis serves every Gateway of its
//! classes from the same replicas (one Deployment behind one Service), so
//! the addresses are those of that Service unless the Gateway asks for
//! its own.
//!
//! In order: the Gateway's `spec.addresses` (of its IPAddresses only the
//! one compile bound, none when it could bind none; a Hostname is what it
//! asked to be called); else the
//! address compile gave it from `--gateway-address-pool` (bound by its
//! listeners); else the ingress of its own LoadBalancer Service
//! (`--per-gateway-service`, once it has any; `super::writes` picks it),
//! else of the LoadBalancer Service named by `--gateway-service`; else the addresses given with `--gateway-address`;
//! else the address every listener binds, when it is a specific one.
//!
//! [`reported`] reads back what Gateways report, so that an address given
//! from the pool stays with its Gateway ([`crate::address_pool`]).

use super::cache::Live;
use super::kinds::Watched;
use super::status_patch::{AddressType, GatewayAddress};
use crate::address_pool::PoolAddress;
use crate::model::gateway::{Gateway, GatewayAddress as SpecAddress};
use crate::model::ObjectKey;
use crate::status::ObjectStatus;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Where addresses come from when a Gateway names none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressSources {
    /// `--gateway-address`.
    pub configured: Vec<String>,
    /// The listen address of every listener without one of its own.
    pub listen_address: Option<IpAddr>,
}

/// The ingress of a LoadBalancer Service, as its live status says:
/// `status.loadBalancer.ingress[].ip` or `.hostname`.
pub fn service_ingress(status: Option<&serde_json::Value>) -> Vec<GatewayAddress> {
    let ingress = status
        .and_then(|s| s.pointer("/loadBalancer/ingress"))
        .and_then(|i| i.as_array())
        .cloned()
        .unwrap_or_default();
    ingress
        .iter()
        .filter_map(|i| {
            if let Some(ip) = i.get("ip").and_then(|v| v.as_str()) {
                Some(GatewayAddress {
                    kind: AddressType::IpAddress,
                    value: ip.to_string(),
                })
            } else {
                i.get("hostname")
                    .and_then(|v| v.as_str())
                    .map(|h| GatewayAddress {
                        kind: AddressType::Hostname,
                        value: h.to_string(),
                    })
            }
        })
        .collect()
}

/// The IP addresses each Gateway's live `status.addresses` reports, in
/// order (Gateways that report none are left out).
pub fn reported(live: &BTreeMap<(Watched, ObjectKey), Live>) -> BTreeMap<ObjectKey, Vec<IpAddr>> {
    live.iter()
        .filter(|((watched, _), _)| *watched == Watched::Gateway)
        .filter_map(|((_, key), l)| {
            let object = l.object.value();
            let ips: Vec<IpAddr> = object
                .pointer("/status/addresses")?
                .as_array()?
                .iter()
                .filter(|a| a["type"].as_str().is_none_or(|t| t == "IPAddress"))
                .filter_map(|a| a["value"].as_str()?.parse().ok())
                .collect();
            (!ips.is_empty()).then(|| (key.clone(), ips))
        })
        .collect()
}

/// The addresses `gateway` reports. `compiled` is its compiled status:
/// the `spec.addresses` IP it binds, and what the address pool gave it if
/// it claimed an address there (none when the pool is exhausted: it is
/// bound nowhere); `service` is the `--gateway-service` Service's
/// ingress, when one is named and has any.
pub fn addresses(
    gateway: &Gateway,
    compiled: &ObjectStatus,
    service: &[GatewayAddress],
    sources: &AddressSources,
) -> Vec<GatewayAddress> {
    let named: Vec<&SpecAddress> = gateway
        .spec
        .addresses
        .iter()
        .filter(|a| !a.value.is_empty())
        .collect();
    if !named.is_empty() {
        // The addresses it could not bind are in its Programmed condition
        // (AddressNotUsable), not here: status.addresses lists what is bound.
        let is_bound = |a: &SpecAddress| {
            compiled.spec_address.is_some() && a.value.parse().ok() == compiled.spec_address
        };
        return named
            .into_iter()
            .filter_map(|a| match a.kind.as_deref().unwrap_or("IPAddress") {
                "IPAddress" if is_bound(a) => Some(GatewayAddress {
                    kind: AddressType::IpAddress,
                    value: a.value.clone(),
                }),
                "Hostname" => Some(GatewayAddress {
                    kind: AddressType::Hostname,
                    value: a.value.clone(),
                }),
                _ => None,
            })
            .collect();
    }
    match compiled.pool_address {
        Some(PoolAddress::Assigned(ip)) => {
            return vec![GatewayAddress {
                kind: AddressType::IpAddress,
                value: ip.to_string(),
            }]
        }
        Some(PoolAddress::Exhausted) => return Vec::new(),
        None => {}
    }
    if !service.is_empty() {
        return service.to_vec();
    }
    if !sources.configured.is_empty() {
        return sources
            .configured
            .iter()
            .map(|v| GatewayAddress {
                kind: if v.parse::<IpAddr>().is_ok() {
                    AddressType::IpAddress
                } else {
                    AddressType::Hostname
                },
                value: v.clone(),
            })
            .collect();
    }
    sources
        .listen_address
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| {
            vec![GatewayAddress {
                kind: AddressType::IpAddress,
                value: ip.to_string(),
            }]
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gateway(addresses: Vec<(&str, &str)>) -> Gateway {
        let mut g = Gateway::default();
        g.spec.addresses = addresses
            .into_iter()
            .map(|(k, v)| SpecAddress {
                kind: Some(k.into()),
                value: v.into(),
            })
            .collect();
        g
    }

    /// The compiled status of a Gateway bound on `bound` (a spec address)
    /// or given `pool`.
    fn compiled(bound: Option<&str>, pool: Option<PoolAddress>) -> ObjectStatus {
        let mut status = ObjectStatus::new("Gateway", "apps", "web");
        status.spec_address = bound.map(|b| b.parse().expect("literal"));
        status.pool_address = pool;
        status
    }

    fn ip(v: &str) -> GatewayAddress {
        GatewayAddress {
            kind: AddressType::IpAddress,
            value: v.into(),
        }
    }

    #[test]
    fn the_gateways_own_addresses_come_first() {
        let g = gateway(vec![("IPAddress", "10.1.2.3"), ("Hostname", "gw.example")]);
        let bound = compiled(Some("10.1.2.3"), None);
        let got = addresses(&g, &bound, &[ip("203.0.113.9")], &AddressSources::default());
        assert_eq!(
            got,
            vec![
                ip("10.1.2.3"),
                GatewayAddress {
                    kind: AddressType::Hostname,
                    value: "gw.example".into()
                }
            ]
        );
    }

    #[test]
    fn otherwise_the_load_balancer_ingress_then_the_configured_then_the_listen_address() {
        let g = gateway(vec![]);
        let sources = AddressSources {
            configured: vec!["198.51.100.7".into(), "edge.example".into()],
            listen_address: Some("192.0.2.1".parse().expect("literal")),
        };
        assert_eq!(
            addresses(&g, &compiled(None, None), &[ip("203.0.113.9")], &sources),
            vec![ip("203.0.113.9")]
        );
        let got = addresses(&g, &compiled(None, None), &[], &sources);
        assert_eq!(got[0], ip("198.51.100.7"));
        assert_eq!(got[1].kind, AddressType::Hostname);
        let bound = AddressSources {
            configured: vec![],
            ..sources
        };
        assert_eq!(
            addresses(&g, &compiled(None, None), &[], &bound),
            vec![ip("192.0.2.1")]
        );
        let anywhere = AddressSources {
            configured: vec![],
            listen_address: Some("0.0.0.0".parse().expect("literal")),
        };
        assert!(addresses(&g, &compiled(None, None), &[], &anywhere).is_empty());
    }

    #[test]
    fn a_pool_address_comes_after_the_gateways_own_and_before_the_service() {
        let pool = Some(PoolAddress::Assigned(
            "198.18.4.1".parse().expect("literal"),
        ));
        let sources = AddressSources::default();
        let service = [ip("203.0.113.9")];
        assert_eq!(
            addresses(&gateway(vec![]), &compiled(None, pool), &service, &sources),
            vec![ip("198.18.4.1")]
        );
        let own = gateway(vec![("IPAddress", "10.1.2.3")]);
        assert_eq!(
            addresses(&own, &compiled(Some("10.1.2.3"), pool), &service, &sources),
            vec![ip("10.1.2.3")]
        );
        let none = compiled(None, Some(PoolAddress::Exhausted));
        assert!(addresses(&gateway(vec![]), &none, &service, &sources).is_empty());
    }

    #[test]
    fn only_the_bound_spec_address_is_reported_even_when_none_is() {
        let both = gateway(vec![
            ("IPAddress", "192.0.2.1"),
            ("IPAddress", "127.0.82.1"),
        ]);
        let sources = AddressSources::default();
        let service = [ip("203.0.113.9")];
        assert_eq!(
            addresses(
                &both,
                &compiled(Some("127.0.82.1"), None),
                &service,
                &sources
            ),
            vec![ip("127.0.82.1")]
        );
        let unusable = gateway(vec![("IPAddress", "192.0.2.1")]);
        assert!(addresses(&unusable, &compiled(None, None), &service, &sources).is_empty());
    }

    #[test]
    fn reported_addresses_are_the_ips_of_each_gateways_live_status() {
        use crate::cluster::cache::{Live, LiveObject};
        let live_with = |status: serde_json::Value| Live {
            resource_version: "1".into(),
            generation: Some(1),
            object: LiveObject::new(&json!({ "status": status })),
        };
        let live = BTreeMap::from([
            (
                (Watched::Gateway, ObjectKey::new("apps", "web")),
                live_with(json!({"addresses": [
                    {"type": "Hostname", "value": "web.example"},
                    {"type": "IPAddress", "value": "198.18.4.1"},
                    {"value": "198.18.4.2"},
                    {"type": "IPAddress", "value": "not an ip"}
                ]})),
            ),
            (
                (Watched::Gateway, ObjectKey::new("apps", "new")),
                live_with(json!({})),
            ),
            (
                (Watched::HttpRoute, ObjectKey::new("apps", "route")),
                live_with(json!({"addresses": [{"value": "198.18.4.3"}]})),
            ),
        ]);
        let got = reported(&live);
        assert_eq!(
            got,
            BTreeMap::from([(
                ObjectKey::new("apps", "web"),
                vec![
                    "198.18.4.1".parse().expect("literal"),
                    "198.18.4.2".parse().expect("literal")
                ]
            )])
        );
    }

    #[test]
    fn ingress_entries_give_ips_and_hostnames() {
        let status = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example"}, {}]}});
        let got = service_ingress(Some(&status));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ip("203.0.113.9"));
        assert_eq!(got[1].value, "lb.example");
        assert!(service_ingress(Some(&json!({"loadBalancer": {}}))).is_empty());
    }
}
