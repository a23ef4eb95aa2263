//! Addresses of their own for Gateways that name none
//! (`--gateway-address-pool`): the pool ([`AddressPool`]), and which
//! Gateway holds which address ([`assign`], pure). Compile binds a
//! Gateway's listeners on its address and reports it in status; the
//! runtime feeds back what each Gateway already holds ([`HeldAddresses`]),
//! so an address, once given, stays.
//!
//! The rule is IPAM's usual one (MetalLB's allocator, DHCP leases): an
//! existing assignment is kept while it is valid, a new Gateway takes the
//! lowest free address, and when two claim one address the older wins.
//! Everything it reads is in the API (creation timestamps, names, the
//! addresses Gateways report in `status.addresses`), so every replica and
//! every restart decide alike.

use crate::model::ObjectKey;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a pool prefix could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("{text:?} is not an address or CIDR prefix (like 198.18.4.0/24)")]
    Address {
        /// What was given.
        text: String,
    },
    /// The prefix length is not a number, or too long for the family.
    #[error("{text:?}: the prefix length must be a number up to {max}")]
    Length {
        /// What was given.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// Bits are set past the prefix length (a typo more often than not).
    #[error("{text:?} has bits set past its prefix length; did you mean {network}?")]
    HostBits {
        /// What was given.
        text: String,
        /// The prefix with those bits cleared.
        network: String,
    },
}

/// One CIDR prefix of the pool, e.g. `198.18.4.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    network: IpAddr,
    len: u8,
}

impl Prefix {
    fn max_len(ip: IpAddr) -> u8 {
        if ip.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The addresses handed out, as integers (IPv4 in the low 32 bits):
    /// the whole prefix, except the network and broadcast addresses of an
    /// IPv4 prefix shorter than /31, which hosts on a subnet never hold.
    fn range(&self) -> (u128, u128) {
        let bits = u32::from(Self::max_len(self.network) - self.len);
        let first = to_int(self.network);
        let last = first | low_bits(bits);
        if self.network.is_ipv4() && self.len < 31 {
            (first + 1, last - 1)
        } else {
            (first, last)
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (first, last) = self.range();
        ip.is_ipv4() == self.network.is_ipv4() && (first..=last).contains(&to_int(ip))
    }

    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last) = self.range();
        (first..=last).map(|n| from_int(n, self.network.is_ipv4()))
    }
}

impl FromStr for Prefix {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let (address, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| Error::Address {
            text: text.to_string(),
        })?;
        let max = Self::max_len(network);
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| Error::Length {
                    text: text.to_string(),
                    max,
                })?,
        };
        let host = low_bits(u32::from(max - len));
        if to_int(network) & host != 0 {
            let cleared = from_int(to_int(network) & !host, network.is_ipv4());
            return Err(Error::HostBits {
                text: text.to_string(),
                network: format!("{cleared}/{len}"),
            });
        }
        Ok(Self { network, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

fn low_bits(bits: u32) -> u128 {
    u128::MAX.checked_shr(128 - bits).unwrap_or(0)
}

fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_int(n: u128, v4: bool) -> IpAddr {
    if v4 {
        // In range by construction: IPv4 prefixes span 32 bits.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The addresses Gateways may be given, in the order they are handed out:
/// the prefixes as given, each from its lowest address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPool {
    prefixes: Vec<Prefix>,
}

impl AddressPool {
    /// A pool of `prefixes`, handed out in this order.
    pub fn new(prefixes: Vec<Prefix>) -> Self {
        Self { prefixes }
    }

    /// Whether no pool was given (Gateways then share the listen address).
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Whether `ip` is one of the pool's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }

    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.prefixes.iter().flat_map(Prefix::addresses)
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.prefixes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A Gateway that needs an address from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    /// The Gateway.
    pub key: ObjectKey,
    /// Its `metadata.creationTimestamp` (RFC 3339 in UTC, as the API
    /// server writes it, so text order is time order); empty (standalone
    /// manifests) sorts first.
    pub created: String,
}

/// The pool address each Gateway holds already: the one its live
/// `status.addresses` reports, else the one the last assignment gave it
/// (whose status may not be written yet). Only candidates: [`assign`]
/// decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldAddresses(BTreeMap<ObjectKey, IpAddr>);

impl HeldAddresses {
    /// What Gateways hold: each one's first `reported` address in `pool`,
    /// else its address in `previous`.
    pub fn new(
        pool: &AddressPool,
        reported: &BTreeMap<ObjectKey, Vec<IpAddr>>,
        previous: &Assignment,
    ) -> Self {
        let mut held: BTreeMap<ObjectKey, IpAddr> = previous
            .0
            .iter()
            .filter_map(|(k, a)| match a {
                PoolAddress::Assigned(ip) => Some((k.clone(), *ip)),
                PoolAddress::Exhausted => None,
            })
            .collect();
        for (key, ips) in reported {
            if let Some(ip) = ips.iter().find(|ip| pool.contains(**ip)) {
                held.insert(key.clone(), *ip);
            }
        }
        Self(held)
    }
}

/// What the pool gave one Gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PoolAddress {
    /// Its own address: its listeners bind there and its status reports it.
    Assigned(IpAddr),
    /// None was left; the Gateway is not programmed
    /// (`Programmed=False/AddressNotAssigned`).
    Exhausted,
}

/// The pool address of every [`Claimant`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment(BTreeMap<ObjectKey, PoolAddress>);

impl Assignment {
    /// What Gateway `key` got; `None` when it claimed nothing.
    pub fn get(&self, key: &ObjectKey) -> Option<PoolAddress> {
        self.0.get(key).copied()
    }

    /// Whether assigning again from `held`, for the same claimants, would
    /// give this very assignment: every Gateway holds the address it got,
    /// and those that got none hold none. When it would not (another
    /// replica reported other addresses), the runtime compiles again.
    pub fn is_held_as(&self, held: &HeldAddresses) -> bool {
        self.0.iter().all(|(key, a)| match a {
            PoolAddress::Assigned(ip) => held.0.get(key) == Some(ip),
            PoolAddress::Exhausted => !held.0.contains_key(key),
        })
    }
}

/// Gives every claimant an address of `pool`, none of them `reserved`
/// (addresses Gateways name in `spec.addresses`).
///
/// Claimants are taken oldest first (creation timestamp, then
/// namespace/name). First each keeps the address it holds (`held`), if
/// that is in the pool, not reserved and not kept by an older one; then
/// the others, oldest first, take the lowest free addresses; those left
/// without one are [`PoolAddress::Exhausted`]. So an address never moves
/// while its Gateway exists, a deleted Gateway's address is given again,
/// lowest first, and a conflict (two Gateways reporting one address,
/// after a split or a restore) is settled for the older.
pub fn assign(
    pool: &AddressPool,
    claimants: &[Claimant],
    held: &HeldAddresses,
    reserved: &BTreeSet<IpAddr>,
) -> Assignment {
    let mut order: Vec<&Claimant> = claimants.iter().collect();
    order.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));
    let mut taken: BTreeSet<IpAddr> = reserved.clone();
    let mut out = BTreeMap::new();
    for c in &order {
        if let Some(ip) = held.0.get(&c.key) {
            if pool.contains(*ip) && taken.insert(*ip) {
                out.insert(c.key.clone(), PoolAddress::Assigned(*ip));
            }
        }
    }
    let mut free = pool.addresses();
    for c in order {
        if out.contains_key(&c.key) {
            continue;
        }
        let address = match free.by_ref().find(|ip| !taken.contains(ip)) {
            Some(ip) => {
                taken.insert(ip);
                PoolAddress::Assigned(ip)
            }
            None => PoolAddress::Exhausted,
        };
        out.insert(c.key.clone(), address);
    }
    Assignment(out)
}

#[cfg(test)]
mod tests;
