//! Sockets: one listening socket per bind address of the current dataplane,
//! reconciled after every swap ([`Sockets::reconcile`]), an accept loop per
//! socket and a task per connection ([`accept`]), a receive loop per UDP
//! socket ([`udp`]), and draining on shutdown ([`Sockets::shutdown`],
//! [`shutdown::signal`]). Byte streams (TLS passthrough, TCP) are forwarded
//! by [`stream`].
//!
//! What a connection serves is decided elsewhere: certificates by
//! `crate::tls::resolver`, requests by `crate::proxy`.

pub mod accept;
pub mod binds;
pub mod cork;
mod front;
pub mod hello;
pub mod http_conn;
pub mod proxy_protocol;
pub mod shutdown;
#[cfg(target_os = "linux")]
mod splice;
pub mod stream;
pub mod udp;

pub use accept::ConnContext;
pub use binds::BindError;

use crate::dataplane::{BindProtocol, Dataplane};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A socket being accepted on.
#[derive(Debug)]
struct Running {
    /// Dropping this stops the accept loop.
    stop: watch::Sender<()>,
    /// The accept loop; it owns the listening socket.
    task: JoinHandle<()>,
}

/// The set of listening sockets.
#[derive(Debug)]
pub struct Sockets {
    ctx: Arc<ConnContext>,
    running: BTreeMap<SocketAddr, Running>,
    /// UDP sockets, apart: a UDP and a TCP socket may share an address.
    datagram: BTreeMap<SocketAddr, Running>,
}

impl Sockets {
    /// No sockets yet; connections will share `ctx`.
    pub fn new(ctx: Arc<ConnContext>) -> Self {
        Self {
            ctx,
            running: BTreeMap::new(),
            datagram: BTreeMap::new(),
        }
    }

    /// Addresses being accepted on.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.running.keys().copied().collect()
    }

    /// Makes the listening sockets match the binds of `dataplane`: closes the
    /// sockets no bind uses any more (their established connections carry
    /// on), then binds the missing ones. A socket that cannot be bound is
    /// logged, returned, and retried on the next reconcile; the others serve.
    pub async fn reconcile(&mut self, dataplane: &Dataplane) -> Vec<BindError> {
        let current: BTreeSet<SocketAddr> = self.running.keys().copied().collect();
        let wanted: BTreeSet<SocketAddr> = dataplane
            .binds
            .iter()
            .filter(|b| b.protocol != BindProtocol::Udp)
            .map(|b| b.addr)
            .collect();
        let plan = binds::plan(&current, &wanted);
        for addr in plan.close {
            if let Some(running) = self.running.remove(&addr) {
                stop(addr, running).await;
            }
        }
        let mut errors = Vec::new();
        for addr in plan.open {
            match binds::open(addr) {
                Ok(listener) => {
                    tracing::info!(%addr, "listening");
                    let running = self.start(addr, listener);
                    self.running.insert(addr, running);
                }
                Err(error) => {
                    tracing::error!(%addr, %error, "cannot bind");
                    errors.push(BindError {
                        address: addr,
                        message: error.to_string(),
                    });
                }
            }
        }
        errors.extend(self.reconcile_datagram(dataplane).await);
        errors
    }

    /// [`Self::reconcile`] for the UDP sockets.
    async fn reconcile_datagram(&mut self, dataplane: &Dataplane) -> Vec<BindError> {
        let current: BTreeSet<SocketAddr> = self.datagram.keys().copied().collect();
        let wanted: BTreeSet<SocketAddr> = dataplane
            .binds
            .iter()
            .filter(|b| b.protocol == BindProtocol::Udp)
            .map(|b| b.addr)
            .collect();
        let plan = binds::plan(&current, &wanted);
        for addr in plan.close {
            if let Some(running) = self.datagram.remove(&addr) {
                stop(addr, running).await;
            }
        }
        let mut errors = Vec::new();
        for addr in plan.open {
            match udp::open(addr) {
                Ok(socket) => {
                    tracing::info!(%addr, "listening (UDP)");
                    let (stop, stop_rx) = watch::channel(());
                    let task = tokio::spawn(udp::run(self.ctx.clone(), addr, socket, stop_rx));
                    self.datagram.insert(addr, Running { stop, task });
                }
                Err(error) => {
                    tracing::error!(%addr, %error, "cannot bind UDP");
                    errors.push(BindError {
                        address: addr,
                        message: format!("UDP: {error}"),
                    });
                }
            }
        }
        errors
    }

    fn start(&self, addr: SocketAddr, listener: tokio::net::TcpListener) -> Running {
        let (stop, stop_rx) = watch::channel(());
        let task = tokio::spawn(accept::run(self.ctx.clone(), addr, listener, stop_rx));
        Running { stop, task }
    }

    /// Stops accepting on every socket, asks every connection to finish its
    /// in-flight requests and close, and waits for them for at most `grace`.
    /// Returns whether every connection finished in time.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        for (addr, running) in std::mem::take(&mut self.running) {
            stop(addr, running).await;
        }
        for (addr, running) in std::mem::take(&mut self.datagram) {
            stop(addr, running).await;
        }
        self.ctx.drain.send_replace(());
        let open = self.ctx.drain.receiver_count();
        if open > 0 {
            tracing::info!(
                connections = open,
                grace_secs = grace.as_secs_f64(),
                "draining connections"
            );
        }
        match tokio::time::timeout(grace, self.ctx.drain.closed()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(
                    connections = self.ctx.drain.receiver_count(),
                    "grace period over; closing remaining connections"
                );
                false
            }
        }
    }
}

async fn stop(addr: SocketAddr, running: Running) {
    let Running { stop, task } = running;
    stop.send_replace(());
    drop(stop);
    if let Err(error) = task.await {
        tracing::warn!(%addr, %error, "accept loop ended abnormally");
    }
}

/// Helpers for the tests of `server`'s modules.
#[cfg(test)]
mod testing {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair of loopback TCP sockets.
    pub(super) async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// Writes `bytes` into `from` and ends its write side, then reads
    /// `to` until the end arrives there; returns what `to` read.
    pub(super) async fn pass(
        from: &mut (impl AsyncWrite + Unpin),
        to: &mut (impl AsyncRead + Unpin),
        bytes: &[u8],
    ) -> Vec<u8> {
        from.write_all(bytes).await.expect("write");
        from.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        to.read_to_end(&mut got).await.expect("read to the end");
        got
    }
}
