//! Ports for the servers and programs the tests start: the one way to get a
//! port in tests/ (support, acme, e2e and observability all use this file).
//!
//! A server in this process takes a bound [`listener`] and keeps it, so the
//! port is never free for anyone else. Another program (`portcullis serve`,
//! Pebble, named, etcd, kube-apiserver, Prometheus, Alertmanager) binds its
//! port itself and cannot be handed a socket, so [`for_child`] only picks a
//! port that is free now; between that check and the program's own bind
//! another test may take it. The accepted fix is to retry: when the program
//! exits reporting the address in use ([`is_addr_in_use`]), start it again
//! on a new port (as `Portcullis::wait_ready`, etcd and kube-apiserver do).

// Each test target uses part of this file (it is included by several).
#![allow(dead_code)]

use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

/// Ports [`for_child`] picks from: below the kernel's ephemeral range
/// (32768 and up), so no `bind(0)` or outgoing connection of any test takes
/// the port between the pick and the program's bind, and below the data-plane
/// ports the conformance harness offsets by 20,000 and more.
const CHILD_PORTS: std::ops::Range<u16> = 3_000..10_000;

/// A TCP listener on 127.0.0.1 on a port the kernel chose, for a server in
/// this process: pass the listener on, never just its port.
pub fn listener() -> io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
}

/// A port on 127.0.0.1, free for TCP and UDP right now, for another program
/// to bind (a DNS server needs both). The caller retries with a new port when
/// the program reports the address in use; see the module doc.
pub fn for_child() -> io::Result<u16> {
    for _ in 0..200 {
        let port = rand::random_range(CHILD_PORTS);
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
        if tcp.is_ok() && udp.is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port in {CHILD_PORTS:?}"),
    ))
}

/// Whether a program's output (its log tail or error message) says the
/// address it tried to bind was taken, the case to retry on a new port.
pub fn is_addr_in_use(output: &str) -> bool {
    let output = output.to_ascii_lowercase();
    ["address already in use", "address in use", "eaddrinuse"]
        .iter()
        .any(|needle| output.contains(needle))
}
