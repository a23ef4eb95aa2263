use super::*;

fn pool(prefixes: &[&str]) -> AddressPool {
    AddressPool::new(
        prefixes
            .iter()
            .map(|p| p.parse().expect("test prefix"))
            .collect(),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn gateway(name: &str, created: &str) -> Claimant {
    Claimant {
        key: ObjectKey::new("apps", name),
        created: created.into(),
    }
}

fn held(pairs: &[(&str, &str)]) -> HeldAddresses {
    HeldAddresses(
        pairs
            .iter()
            .map(|(name, a)| (ObjectKey::new("apps", name), ip(a)))
            .collect(),
    )
}

fn got(a: &Assignment, name: &str) -> Option<PoolAddress> {
    a.get(&ObjectKey::new("apps", name))
}

fn assigned(text: &str) -> Option<PoolAddress> {
    Some(PoolAddress::Assigned(ip(text)))
}

const T1: &str = "2026-01-01T00:00:01Z";
const T2: &str = "2026-01-01T00:00:02Z";
const T3: &str = "2026-01-01T00:00:03Z";

#[test]
fn new_gateways_take_the_lowest_free_addresses_oldest_first() {
    let p = pool(&["198.18.4.0/30"]);
    let a = assign(
        &p,
        &[gateway("young", T2), gateway("old", T1)],
        &HeldAddresses::default(),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "old"), assigned("198.18.4.1"));
    assert_eq!(got(&a, "young"), assigned("198.18.4.2"));
}

#[test]
fn equal_timestamps_are_ordered_by_namespace_and_name() {
    let p = pool(&["198.18.4.0/24"]);
    let a = assign(
        &p,
        &[gateway("b", T1), gateway("a", T1)],
        &HeldAddresses::default(),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "a"), assigned("198.18.4.1"));
    assert_eq!(got(&a, "b"), assigned("198.18.4.2"));
}

#[test]
fn a_held_address_stays_when_an_older_gateway_appears_without_one() {
    // "b" got .1 before "a" (created in the same second, ordered first)
    // was seen: "b" keeps it, "a" takes the next free one.
    let p = pool(&["198.18.4.0/24"]);
    let a = assign(
        &p,
        &[gateway("a", T1), gateway("b", T1)],
        &held(&[("b", "198.18.4.1")]),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "b"), assigned("198.18.4.1"));
    assert_eq!(got(&a, "a"), assigned("198.18.4.2"));
}

#[test]
fn the_older_gateway_wins_an_address_two_hold() {
    let p = pool(&["198.18.4.0/24"]);
    let a = assign(
        &p,
        &[gateway("young", T2), gateway("old", T1)],
        &held(&[("young", "198.18.4.7"), ("old", "198.18.4.7")]),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "old"), assigned("198.18.4.7"));
    assert_eq!(got(&a, "young"), assigned("198.18.4.1"));
}

#[test]
fn a_deleted_gateways_address_is_given_again_lowest_first() {
    let p = pool(&["198.18.4.0/24"]);
    let a = assign(
        &p,
        &[gateway("kept", T2), gateway("new", T3)],
        &held(&[("kept", "198.18.4.2")]),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "kept"), assigned("198.18.4.2"));
    assert_eq!(got(&a, "new"), assigned("198.18.4.1"));
}

#[test]
fn held_addresses_outside_the_pool_or_reserved_are_not_kept() {
    let p = pool(&["198.18.4.0/24"]);
    let reserved = BTreeSet::from([ip("198.18.4.1")]);
    let a = assign(
        &p,
        &[gateway("outside", T1), gateway("reserved", T2)],
        &held(&[("outside", "127.0.80.1"), ("reserved", "198.18.4.1")]),
        &reserved,
    );
    assert_eq!(got(&a, "outside"), assigned("198.18.4.2"));
    assert_eq!(got(&a, "reserved"), assigned("198.18.4.3"));
}

#[test]
fn spec_addresses_in_the_pool_are_never_handed_out() {
    let p = pool(&["198.18.4.0/29"]);
    let reserved = BTreeSet::from([ip("198.18.4.1"), ip("198.18.4.3")]);
    let a = assign(
        &p,
        &[gateway("a", T1), gateway("b", T2)],
        &HeldAddresses::default(),
        &reserved,
    );
    assert_eq!(got(&a, "a"), assigned("198.18.4.2"));
    assert_eq!(got(&a, "b"), assigned("198.18.4.4"));
}

#[test]
fn when_the_pool_runs_out_the_youngest_get_none_and_the_others_keep_theirs() {
    // A /30 hands out .1 and .2 only.
    let p = pool(&["198.18.4.0/30"]);
    let a = assign(
        &p,
        &[gateway("a", T1), gateway("b", T2), gateway("c", T3)],
        &held(&[("b", "198.18.4.1")]),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "b"), assigned("198.18.4.1"));
    assert_eq!(got(&a, "a"), assigned("198.18.4.2"));
    assert_eq!(got(&a, "c"), Some(PoolAddress::Exhausted));
}

#[test]
fn prefixes_are_used_in_the_order_given() {
    let p = pool(&["198.18.9.8/32", "198.18.4.0/24"]);
    let a = assign(
        &p,
        &[gateway("a", T1), gateway("b", T2)],
        &HeldAddresses::default(),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "a"), assigned("198.18.9.8"));
    assert_eq!(got(&a, "b"), assigned("198.18.4.1"));
}

#[test]
fn ipv6_prefixes_hand_out_every_address() {
    let p = pool(&["2001:db8::/127"]);
    let a = assign(
        &p,
        &[gateway("a", T1), gateway("b", T2), gateway("c", T3)],
        &HeldAddresses::default(),
        &BTreeSet::new(),
    );
    assert_eq!(got(&a, "a"), assigned("2001:db8::"));
    assert_eq!(got(&a, "b"), assigned("2001:db8::1"));
    assert_eq!(got(&a, "c"), Some(PoolAddress::Exhausted));
}

#[test]
fn ipv4_network_and_broadcast_addresses_are_not_in_the_pool() {
    let p = pool(&["198.18.4.0/24"]);
    assert!(!p.contains(ip("198.18.4.0")));
    assert!(p.contains(ip("198.18.4.1")));
    assert!(p.contains(ip("198.18.4.254")));
    assert!(!p.contains(ip("198.18.4.255")));
    assert!(!p.contains(ip("2001:db8::1")));
    let pair = pool(&["198.18.4.0/31"]);
    assert!(pair.contains(ip("198.18.4.0")) && pair.contains(ip("198.18.4.1")));
}

#[test]
fn prefixes_are_read_strictly() {
    assert_eq!(
        "198.18.4.7".parse::<Prefix>().map(|p| p.to_string()),
        Ok("198.18.4.7/32".to_string())
    );
    assert_eq!(
        "2001:db8::/64".parse::<Prefix>().map(|p| p.to_string()),
        Ok("2001:db8::/64".to_string())
    );
    assert!(matches!(
        "198.18.4.7/24".parse::<Prefix>(),
        Err(Error::HostBits { network, .. }) if network == "198.18.4.0/24"
    ));
    assert!(matches!(
        "198.18.4.0/33".parse::<Prefix>(),
        Err(Error::Length { max: 32, .. })
    ));
    assert!(matches!(
        "pool".parse::<Prefix>(),
        Err(Error::Address { .. })
    ));
    assert!("0.0.0.0/0".parse::<Prefix>().is_ok());
    assert!("::/0".parse::<Prefix>().is_ok());
}

#[test]
fn the_reported_address_is_held_before_the_last_assignment() {
    let p = pool(&["198.18.4.0/24"]);
    let previous = assign(
        &p,
        &[gateway("a", T1), gateway("b", T2)],
        &HeldAddresses::default(),
        &BTreeSet::new(),
    );
    let reported = BTreeMap::from([
        (
            ObjectKey::new("apps", "a"),
            vec![ip("127.0.80.1"), ip("198.18.4.9")],
        ),
        (ObjectKey::new("apps", "c"), vec![ip("127.0.80.1")]),
    ]);
    let h = HeldAddresses::new(&p, &reported, &previous);
    assert_eq!(h, held(&[("a", "198.18.4.9"), ("b", "198.18.4.2")]));
}

#[test]
fn an_assignment_is_held_as_long_as_statuses_agree_with_it() {
    let p = pool(&["198.18.4.0/30"]);
    let claimants = [gateway("a", T1), gateway("b", T2), gateway("c", T3)];
    let first = assign(&p, &claimants, &HeldAddresses::default(), &BTreeSet::new());
    // Nothing reported yet, or the echo of what was assigned: the same.
    let none = HeldAddresses::new(&p, &BTreeMap::new(), &first);
    assert!(first.is_held_as(&none));
    assert_eq!(assign(&p, &claimants, &none, &BTreeSet::new()), first);
    let echo = BTreeMap::from([(ObjectKey::new("apps", "a"), vec![ip("198.18.4.1")])]);
    assert!(first.is_held_as(&HeldAddresses::new(&p, &echo, &first)));
    // Another replica reported another address: assign again.
    let other = BTreeMap::from([(ObjectKey::new("apps", "a"), vec![ip("198.18.4.2")])]);
    let moved = HeldAddresses::new(&p, &other, &first);
    assert!(!first.is_held_as(&moved));
    let again = assign(&p, &claimants, &moved, &BTreeSet::new());
    assert_eq!(got(&again, "a"), assigned("198.18.4.2"));
    assert_eq!(got(&again, "b"), assigned("198.18.4.1"));
    assert!(again.is_held_as(&HeldAddresses::new(&p, &other, &again)));
}
