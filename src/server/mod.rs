//! Sockets: one listening socket per bind address of the current dataplane,
//! reconciled after every swap ([`Sockets::reconcile`]), an accept loop per
//! socket and a task per connection ([`accept`]), and draining on shutdown
//! ([`Sockets::shutdown`], [`shutdown::signal`]).
//!
//! What a connection serves is decided elsewhere: certificates by
//! `crate::tls::resolver`, requests by `crate::proxy`.

pub mod accept;
pub mod binds;
pub mod hello;
pub mod shutdown;
pub mod stream;

pub use accept::ConnContext;
pub use binds::BindError;

use crate::dataplane::Dataplane;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

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
}

impl Sockets {
    /// No sockets yet; connections will share `ctx`.
    pub fn new(ctx: Arc<ConnContext>) -> Self {
        Self {
            ctx,
            running: BTreeMap::new(),
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
        let wanted: BTreeSet<SocketAddr> = dataplane.binds.iter().map(|b| b.addr).collect();
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
        errors
    }

    fn start(&self, addr: SocketAddr, listener: tokio::net::TcpListener) -> Running {
        let (stop, stop_rx) = watch::channel(());
        let tls = match crate::tls::server_config(self.ctx.dataplane.clone(), addr) {
            Ok(config) => TlsAcceptor::from(config),
            Err(error) => {
                // The built-in provider supports both protocol versions; this
                // cannot fail at run time, but if it does the socket is unusable.
                tracing::error!(%addr, %error, "cannot build TLS configuration");
                return Running {
                    stop,
                    task: tokio::spawn(async {}),
                };
            }
        };
        let task = tokio::spawn(accept::run(self.ctx.clone(), addr, listener, tls, stop_rx));
        Running { stop, task }
    }

    /// Stops accepting on every socket, asks every connection to finish its
    /// in-flight requests and close, and waits for them for at most `grace`.
    /// Returns whether every connection finished in time.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        for (addr, running) in std::mem::take(&mut self.running) {
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
