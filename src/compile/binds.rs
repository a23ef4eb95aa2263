//! Grouping programmed listeners into sockets ([`Bind`]s), with the
//! listeners of each socket ordered most specific hostname first.

use super::gateway::World;
use super::listeners::ListenerState;
use super::CompileOptions;
use crate::dataplane::{Bind, Dataplane, Listener, RouteTable, StreamTable, Streams};
use crate::tls::sessions::Resumption;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Builds the data plane from the programmed listeners, moving their route
/// entries into route tables; terminating listeners resume sessions as
/// `options.resumption` says, and the snapshot answers the challenges of
/// `options.challenges`.
pub(crate) fn build(world: &mut World<'_>, options: &CompileOptions) -> Dataplane {
    let resumption = &options.resumption;
    // A UDP and a TCP socket may share an address.
    type Socket = (
        SocketAddr,
        crate::dataplane::BindProtocol,
        Vec<Arc<Listener>>,
    );
    let mut sockets: BTreeMap<(SocketAddr, bool), Socket> = BTreeMap::new();
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
            hostname: l.hostname().map(str::to_string),
            port,
            protocol,
            certificates: l.certificates.clone(),
            tls: server_config(l, resumption),
            client_auth: l.client_auth.clone(),
            routes: RouteTable::new(std::mem::take(&mut l.entries)),
            streams: l.stream_mode().map(|mode| Streams {
                mode,
                table: StreamTable::new(std::mem::take(&mut l.streams)),
            }),
        });
        sockets
            .entry((addr, protocol == crate::dataplane::BindProtocol::Udp))
            .or_insert_with(|| (addr, protocol, Vec::new()))
            .2
            .push(listener);
    }
    let binds = sockets
        .into_values()
        .map(|(addr, protocol, mut listeners)| {
            listeners.sort_by(|a, b| {
                by_specificity(a.hostname.as_deref(), b.hostname.as_deref())
                    .then_with(|| a.key.cmp(&b.key))
            });
            Bind::new(addr, protocol, listeners)
        })
        .collect();
    Dataplane {
        binds,
        challenges: options.challenges.clone(),
    }
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

/// The TLS configuration of a terminating listener with certificates: ALPN
/// h2 and http/1.1 for HTTPS, none for TLS listeners (the stream is opaque).
fn server_config(
    l: &ListenerState<'_>,
    resumption: &Resumption,
) -> Option<Arc<rustls::ServerConfig>> {
    if !l.terminates_tls() || l.certificates.is_empty() {
        return None;
    }
    let alpn: &[&[u8]] = if l.stream_mode().is_some() {
        &[]
    } else {
        &crate::tls::ALPN_PROTOCOLS
    };
    let verifier = l.client_auth.as_ref().map(|a| a.handshake.clone());
    let keys = l
        .certificates
        .iter()
        .map(|c| c.parsed.key.clone())
        .collect();
    match crate::tls::listener_config(keys, verifier, alpn, resumption) {
        Ok(c) => Some(c),
        Err(error) => {
            tracing::warn!(listener = %l.key, %error, "cannot build TLS configuration");
            None
        }
    }
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
