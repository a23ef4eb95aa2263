//! Grouping programmed listeners into sockets ([`Bind`]s), with the
//! listeners of each socket ordered most specific hostname first.

use super::gateway::World;
use crate::dataplane::{Bind, Dataplane, Listener, RouteTable, StreamTable, Streams};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Builds the data plane from the programmed listeners, moving their route
/// entries into route tables.
pub(crate) fn build(world: &mut World<'_>) -> Dataplane {
    let mut sockets: BTreeMap<SocketAddr, Bind> = BTreeMap::new();
    for l in &mut world.listeners {
        if !l.is_programmed() {
            continue;
        }
        let (Some(addr), Some(protocol), Ok(port)) =
            (l.socket, l.bind_protocol(), u16::try_from(l.spec.port))
        else {
            continue;
        };
        let listener = Arc::new(Listener {
            key: l.key.clone(),
            hostname: l.spec.hostname.clone(),
            port,
            protocol,
            certificates: l.certificates.clone(),
            routes: RouteTable::new(std::mem::take(&mut l.entries)),
            streams: l.stream_mode().map(|mode| Streams {
                mode,
                table: StreamTable::new(std::mem::take(&mut l.streams)),
            }),
        });
        sockets
            .entry(addr)
            .or_insert_with(|| Bind {
                addr,
                protocol,
                listeners: Vec::new(),
            })
            .listeners
            .push(listener);
    }
    let mut binds: Vec<Bind> = sockets.into_values().collect();
    for b in &mut binds {
        b.listeners.sort_by(|a, b| {
            by_specificity(a.hostname.as_deref(), b.hostname.as_deref())
                .then_with(|| a.key.cmp(&b.key))
        });
    }
    Dataplane { binds }
}

/// Exact hostnames first (longer first), then wildcards by longer suffix, then
/// the listener without hostname.
pub(crate) fn by_specificity(a: Option<&str>, b: Option<&str>) -> Ordering {
    fn rank(h: Option<&str>) -> (u8, std::cmp::Reverse<usize>) {
        match h {
            Some(h) if crate::hostname::is_wildcard(h) => (1, std::cmp::Reverse(h.len())),
            Some(h) => (0, std::cmp::Reverse(h.len())),
            None => (2, std::cmp::Reverse(0)),
        }
    }
    rank(a).cmp(&rank(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcard_beats_catch_all() {
        let mut hosts = vec![
            None,
            Some("*.com"),
            Some("a.b.com"),
            Some("*.b.com"),
            Some("b.com"),
        ];
        hosts.sort_by(|a, b| by_specificity(*a, *b));
        assert_eq!(
            hosts,
            vec![
                Some("a.b.com"),
                Some("b.com"),
                Some("*.b.com"),
                Some("*.com"),
                None
            ]
        );
    }
}
