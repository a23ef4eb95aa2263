//! Socket reconciliation: which listening sockets to open and close so the
//! set of sockets equals the set of bind addresses of the current dataplane
//! ([`plan`], pure), and opening one socket ([`open`]).

use serde::Serialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues per socket.
const BACKLOG: u32 = 1024;

/// A socket that could not be bound, reported on `/status` as `bindErrors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindError {
    /// The address.
    pub address: SocketAddr,
    /// The operating system's reason (port in use, permission denied, ...).
    pub message: String,
}

/// What to change so that the open sockets match the wanted addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Addresses to bind.
    pub open: Vec<SocketAddr>,
    /// Addresses to stop accepting on.
    pub close: Vec<SocketAddr>,
}

/// The changes that turn `current` into `wanted`. Sockets in both are kept
/// untouched: their established connections and accept loop go on.
pub fn plan(current: &BTreeSet<SocketAddr>, wanted: &BTreeSet<SocketAddr>) -> Plan {
    Plan {
        open: wanted.difference(current).copied().collect(),
        close: current.difference(wanted).copied().collect(),
    }
}

/// Binds a listening socket with `SO_REUSEADDR`, so a restart or a socket
/// closed by a reload can be bound again while old connections linger in
/// TIME_WAIT.
pub fn open(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addrs: &[&str]) -> BTreeSet<SocketAddr> {
        addrs
            .iter()
            .map(|a| a.parse().expect("literal address"))
            .collect()
    }

    #[test]
    fn sockets_in_both_sets_are_kept() {
        let p = plan(
            &set(&["0.0.0.0:80", "0.0.0.0:443"]),
            &set(&["0.0.0.0:443", "0.0.0.0:8443"]),
        );
        assert_eq!(p.open, vec!["0.0.0.0:8443".parse().expect("literal")]);
        assert_eq!(p.close, vec!["0.0.0.0:80".parse().expect("literal")]);
    }

    #[test]
    fn same_sets_change_nothing() {
        let s = set(&["127.0.0.1:80"]);
        assert_eq!(plan(&s, &s), Plan::default());
    }

    #[tokio::test]
    async fn port_in_use_is_an_error_not_a_panic() {
        let first = open("127.0.0.1:0".parse().expect("literal")).expect("ephemeral bind");
        let addr = first.local_addr().expect("bound");
        assert!(open(addr).is_err());
    }
}
