//! What a Gateway's `spec.addresses` asks for ([`resolve`], pure): the
//! `IPAddress` its listeners bind, and why the Gateway is not accepted
//! (`UnsupportedAddress`) or not programmed (`AddressNotUsable`). Whether
//! this node can bind an address is an input
//! ([`super::CompileOptions::unbindable_addresses`]): the runtime probes
//! it (`crate::runtime::compiler`), compile only reads the answer.
//!
//! Gateway API (GatewaySpec.addresses, GatewayStatus.addresses): an
//! address of a type the implementation does not support makes the
//! Gateway `Accepted=False/UnsupportedAddress`; an address it cannot use
//! makes it `Programmed=False/AddressNotUsable`; `status.addresses` lists
//! the addresses actually bound, which may be fewer than the spec asks.

use super::Problem;
use crate::model::{Gateway, Resources};
use crate::status::Reason;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The outcome of a Gateway's `spec.addresses`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SpecAddresses {
    /// Whether it names any address with a value (such a Gateway takes
    /// none from the address pool, even when none of them is usable).
    pub names_any: bool,
    /// The address its listeners bind: the first usable `IPAddress`.
    pub bound: Option<IpAddr>,
    /// Why it is not programmed: an address that is not an IP, one this
    /// node cannot bind, or a second usable one.
    pub not_usable: Option<Problem>,
}

/// Reads `gw`'s `spec.addresses`: `Err` (`UnsupportedAddress`) when any
/// entry has a type other than `IPAddress`. Entries without a value are
/// skipped (the implementation picks the address, `GatewayAddressEmpty`).
///
/// One data plane serves every Gateway and a listener binds one socket
/// address, so a Gateway binds a single `IPAddress`: the first this node
/// can bind. Every other address it names (not an IP, not bindable here,
/// or usable but a second one) is reported as `AddressNotUsable` and left
/// out of `status.addresses`, which lists only what is bound.
pub(crate) fn resolve(
    gw: &Gateway,
    unbindable: &BTreeSet<IpAddr>,
) -> Result<SpecAddresses, Problem> {
    let named: Vec<&str> = gw
        .spec
        .addresses
        .iter()
        .filter(|a| !a.value.is_empty())
        .map(|a| match a.kind.as_deref() {
            None | Some("IPAddress") => Ok(a.value.as_str()),
            Some(other) => Err(Problem::new(
                Reason::UnsupportedAddress,
                format!("address type {other} is not supported"),
            )),
        })
        .collect::<Result<_, _>>()?;
    let mut out = SpecAddresses {
        names_any: !named.is_empty(),
        ..SpecAddresses::default()
    };
    let mut unused = Vec::new();
    for value in named {
        match value.parse::<IpAddr>() {
            Err(_) => unused.push(format!("{value} is not an IP address")),
            Ok(ip) if unbindable.contains(&ip) => {
                unused.push(format!("{ip} cannot be bound on this node"))
            }
            Ok(ip) => match out.bound {
                None => out.bound = Some(ip),
                Some(first) => unused.push(format!(
                    "{ip} is not bound: a Gateway binds one IPAddress ({first})"
                )),
            },
        }
    }
    if !unused.is_empty() {
        out.not_usable = Some(Problem::new(Reason::AddressNotUsable, unused.join("; ")));
    }
    Ok(out)
}

/// The IP addresses any Gateway of `resources` names in `spec.addresses`:
/// what the runtime must probe before compiling.
pub fn named_ips(resources: &Resources) -> BTreeSet<IpAddr> {
    resources
        .gateways
        .iter()
        .flat_map(|g| &g.spec.addresses)
        .filter(|a| a.kind.as_deref().is_none_or(|k| k == "IPAddress"))
        .filter_map(|a| a.value.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gateway::GatewayAddress;

    fn gateway(addresses: &[(Option<&str>, &str)]) -> Gateway {
        let mut g = Gateway::default();
        g.spec.addresses = addresses
            .iter()
            .map(|(kind, value)| GatewayAddress {
                kind: kind.map(str::to_string),
                value: value.to_string(),
            })
            .collect();
        g
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP")
    }

    fn unbindable(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|i| ip(i)).collect()
    }

    fn reason(p: &Option<Problem>) -> Option<Reason> {
        p.as_ref().map(|p| p.reason)
    }

    #[test]
    fn an_unsupported_type_anywhere_rejects_the_gateway() {
        let g = gateway(&[(Some("IPAddress"), "127.0.0.1"), (Some("test/fake"), "x")]);
        let err = resolve(&g, &BTreeSet::new()).expect_err("unsupported type");
        assert_eq!(err.reason, Reason::UnsupportedAddress);
    }

    #[test]
    fn an_unbindable_address_is_not_usable_and_the_usable_one_is_bound() {
        let g = gateway(&[(None, "192.0.2.1"), (Some("IPAddress"), "127.0.82.1")]);
        let got = resolve(&g, &unbindable(&["192.0.2.1"])).expect("supported");
        assert_eq!(got.bound, Some(ip("127.0.82.1")));
        assert_eq!(reason(&got.not_usable), Some(Reason::AddressNotUsable));
        let message = got.not_usable.map(|p| p.message).unwrap_or_default();
        assert!(message.contains("192.0.2.1"), "{message}");
    }

    #[test]
    fn only_usable_addresses_program_the_gateway() {
        let g = gateway(&[(Some("IPAddress"), "127.0.82.1")]);
        let got = resolve(&g, &unbindable(&["192.0.2.1"])).expect("supported");
        assert_eq!(got.bound, Some(ip("127.0.82.1")));
        assert!(got.names_any);
        assert_eq!(got.not_usable, None);
    }

    #[test]
    fn all_unusable_binds_nothing_yet_names_addresses() {
        let g = gateway(&[(None, "192.0.2.1"), (None, "not-an-ip")]);
        let got = resolve(&g, &unbindable(&["192.0.2.1"])).expect("supported");
        assert_eq!(got.bound, None);
        assert!(got.names_any);
        assert_eq!(reason(&got.not_usable), Some(Reason::AddressNotUsable));
    }

    #[test]
    fn a_second_usable_address_is_not_bound() {
        let g = gateway(&[(None, "127.0.82.1"), (None, "127.0.82.2")]);
        let got = resolve(&g, &BTreeSet::new()).expect("supported");
        assert_eq!(got.bound, Some(ip("127.0.82.1")));
        assert_eq!(reason(&got.not_usable), Some(Reason::AddressNotUsable));
    }

    #[test]
    fn entries_without_a_value_name_nothing() {
        let got = resolve(&gateway(&[(Some("IPAddress"), "")]), &BTreeSet::new());
        assert_eq!(got, Ok(SpecAddresses::default()));
    }

    #[test]
    fn named_ips_are_the_ip_addresses_of_every_gateway() {
        let a = gateway(&[(None, "192.0.2.1"), (Some("Hostname"), "x.example")]);
        let b = gateway(&[(Some("IPAddress"), "127.0.82.1"), (None, "bad")]);
        let resources = Resources {
            gateways: vec![a.into(), b.into()],
            ..Resources::default()
        };
        assert_eq!(
            named_ips(&resources),
            unbindable(&["127.0.82.1", "192.0.2.1"])
        );
    }
}
