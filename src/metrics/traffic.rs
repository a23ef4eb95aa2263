//! Data-plane metrics: requests, request durations and upstream failures per
//! route and backend; connections and connection-limit hits per socket; TLS
//! handshakes per listener and handshake failures per socket.
//!
//! The hot path takes no lock. At each reload [`Traffic::prepare`] resolves
//! every label set the new dataplane can produce into counter handles (atomics
//! shared with the registry) and publishes them as one [`Snapshot`] keyed by
//! the addresses of the dataplane's own listeners and rules; a request or
//! handshake loads the snapshot (an `ArcSwap` read) and finds its handles by
//! pointer. The snapshot holds its dataplane, so those addresses stay unique
//! while it lives, and it is used only when it belongs to the very dataplane
//! the request loaded; otherwise (a request straddling a reload) the labels
//! are computed from the listener and rule themselves, through the family.
//! Stream backend failures ([`Traffic::stream_failed`]) also go through the
//! family: they are rare, and their backend is known only by name.

use super::certificates::listener_names;
use super::histogram::{Histogram, REQUEST_SECONDS};
use crate::dataplane::{
    BackendTarget, BindProtocol, Dataplane, Listener, Rule, StreamMode, WeightedBackend,
};
use crate::hashing::FastMap;
use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Labels of a request series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// Namespace of the Gateway (empty when no listener took the request).
    pub gateway_namespace: String,
    /// The Gateway.
    pub gateway: String,
    /// The listener.
    pub listener: String,
    /// `namespace/name` of the HTTPRoute or GRPCRoute (empty: no route).
    pub route: String,
    /// `namespace/service:port`, `static`, `invalid`, or empty (no backend).
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    #[prometheus(flatten)]
    route: RouteLabels,
    code_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    backend: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SocketLabels {
    address: String,
    protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandshakeLabels {
    gateway_namespace: String,
    gateway: String,
    listener: String,
    mode: &'static str,
    version: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    gateway_namespace: String,
    gateway: String,
    listener: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    address: String,
    reason: &'static str,
}

/// Status classes, by the first digit of the status code.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upstream failure reasons (`crate::proxy::Error::upstream_reason`).
pub const UPSTREAM_REASONS: [&str; 6] = [
    "connect",
    "timeout",
    "reset",
    "protocol",
    "tls",
    "no_endpoints",
];

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// No listener (so no certificate) for the SNI the client sent.
    NoListener,
    /// The ClientHello or the handshake broke the protocol (or no common
    /// parameters).
    Protocol,
    /// The client took longer than `--handshake-timeout`.
    Timeout,
    /// The client closed (or the socket failed) before the hello was whole.
    ClientClosed,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 4] = [
        HandshakeFailure::NoListener,
        HandshakeFailure::Protocol,
        HandshakeFailure::Timeout,
        HandshakeFailure::ClientClosed,
    ];

    /// The `reason` label value.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeFailure::NoListener => "no_listener",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::ClientClosed => "client_closed",
        }
    }
}

/// Counters of one socket.
#[derive(Debug)]
pub struct SocketHandles {
    accepted: Counter,
    active: Gauge,
    limit_reached: Counter,
    failures: [Counter; 4],
}

impl SocketHandles {
    /// Counts an accepted connection; the returned guard keeps it counted as
    /// active until dropped.
    pub fn opened(self: &Arc<Self>) -> OpenConnection {
        self.accepted.inc();
        self.active.inc();
        OpenConnection {
            socket: self.clone(),
        }
    }

    /// Counts a moment the accept loop had to wait for a connection slot.
    pub fn limit_reached(&self) {
        self.limit_reached.inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, failure: HandshakeFailure) {
        let i = HandshakeFailure::ALL
            .iter()
            .position(|f| *f == failure)
            .unwrap_or(0);
        if let Some(c) = self.failures.get(i) {
            c.inc();
        }
    }
}

/// An accepted connection, counted as active while alive.
#[derive(Debug)]
pub struct OpenConnection {
    socket: Arc<SocketHandles>,
}

impl OpenConnection {
    /// The socket the connection was accepted on.
    pub fn socket(&self) -> &SocketHandles {
        &self.socket
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.socket.active.dec();
    }
}

/// Connection and handshake counters of one listener.
#[derive(Debug)]
pub struct ListenerHandles {
    accepted: Counter,
    active: Gauge,
    tls12: Counter,
    tls13: Counter,
    other: Counter,
    failed: Counter,
    passthrough: Counter,
}

impl ListenerHandles {
    /// Counts a connection that belongs to this listener; the returned guard
    /// keeps it counted as open until dropped.
    pub fn connection(self: &Arc<Self>) -> ListenerConnection {
        self.accepted.inc();
        self.active.inc();
        ListenerConnection {
            listener: self.clone(),
        }
    }

    /// Counts a handshake completed here with `version`.
    pub fn terminated(&self, version: Option<rustls::ProtocolVersion>) {
        match version {
            Some(rustls::ProtocolVersion::TLSv1_3) => self.tls13.inc(),
            Some(rustls::ProtocolVersion::TLSv1_2) => self.tls12.inc(),
            _ => self.other.inc(),
        };
    }

    /// Counts a handshake that failed after the listener was chosen.
    pub fn failed(&self) {
        self.failed.inc();
    }

    /// Counts a connection passed through to a backend (its handshake is the
    /// backend's).
    pub fn passed_through(&self) {
        self.passthrough.inc();
    }
}

/// A connection counted as open on a listener while alive.
#[derive(Debug)]
pub struct ListenerConnection {
    listener: Arc<ListenerHandles>,
}

impl Drop for ListenerConnection {
    fn drop(&mut self) {
        self.listener.active.dec();
    }
}

/// Counters of one (listener, route, backend).
#[derive(Debug, Clone)]
struct RouteHandles {
    classes: [Counter; 5],
    duration: Histogram,
    upstream: Option<[Counter; 6]>,
}

/// What the proxy chose for a request, filled in as it decides.
#[derive(Debug, Default)]
pub struct RequestTarget {
    /// The listener that took the request.
    pub listener: Option<Arc<Listener>>,
    /// The rule that matched.
    pub rule: Option<Arc<Rule>>,
    /// Index of the backend picked in `rule.backends`.
    pub backend: Option<usize>,
}

impl RequestTarget {
    fn key(&self) -> (usize, usize, Option<usize>) {
        (
            self.listener
                .as_ref()
                .map_or(0, |l| Arc::as_ptr(l) as usize),
            self.rule.as_ref().map_or(0, |r| Arc::as_ptr(r) as usize),
            self.backend,
        )
    }
}

/// Handles resolved for one dataplane.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The dataplane the handles belong to.
    pub(crate) dataplane: Arc<Dataplane>,
    listeners: FastMap<usize, Arc<ListenerHandles>>,
    /// Created at the first request of each (listener, rule, backend): at
    /// 5,000 routes, creating every series up front cost 36 MiB and a
    /// /metrics page of series that never counted anything.
    routes: FastMap<(usize, usize, Option<usize>), OnceLock<Box<RouteHandles>>>,
    sockets: FastMap<SocketAddr, Arc<SocketHandles>>,
}

#[derive(Debug, Clone, Copy)]
struct NewHistogram;

impl MetricConstructor<Histogram> for NewHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(REQUEST_SECONDS)
    }
}

/// The data-plane families and the current [`Snapshot`].
#[derive(Debug)]
pub struct Traffic {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, NewHistogram>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    accepted: Family<SocketLabels, Counter>,
    active: Family<SocketLabels, Gauge>,
    limit_reached: Family<SocketLabels, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    listener_accepted: Family<ListenerLabels, Counter>,
    listener_active: Family<ListenerLabels, Gauge>,
    snapshot: ArcSwap<Snapshot>,
}

impl Traffic {
    /// The families, registered in `registry`, and an empty snapshot.
    pub fn new(registry: &mut Registry) -> Self {
        use super::names as n;
        let t = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(NewHistogram),
            upstream_errors: Family::default(),
            accepted: Family::default(),
            active: Family::default(),
            limit_reached: Family::default(),
            handshakes: Family::default(),
            failures: Family::default(),
            listener_accepted: Family::default(),
            listener_active: Family::default(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
        };
        registry.register(
            n::LISTENER_CONNECTIONS_ACCEPTED,
            "Client connections accepted, per listener (TLS connections by the listener their SNI selected; plain sockets with a single listener)",
            t.listener_accepted.clone(),
        );
        registry.register(
            n::LISTENER_CONNECTIONS_ACTIVE,
            "Client connections open, per listener (as for the accepted count)",
            t.listener_active.clone(),
        );
        registry.register(
            n::REQUESTS,
            "HTTP requests by gateway, listener, route, backend and status class",
            t.requests.clone(),
        );
        registry.register(
            n::REQUEST_DURATION,
            "Time from receiving a request to sending the response head, in seconds",
            t.durations.clone(),
        );
        registry.register(
            n::UPSTREAM_ERRORS,
            "Requests and streams that failed toward a backend, by reason",
            t.upstream_errors.clone(),
        );
        registry.register(
            n::CONNECTIONS_ACCEPTED,
            "Client connections accepted, per socket",
            t.accepted.clone(),
        );
        registry.register(
            n::CONNECTIONS_ACTIVE,
            "Client connections open, per socket",
            t.active.clone(),
        );
        registry.register(
            n::CONNECTION_LIMIT_REACHED,
            "Times a socket stopped accepting because --max-connections connections were open",
            t.limit_reached.clone(),
        );
        registry.register(
            n::TLS_HANDSHAKES,
            "TLS handshakes by listener, mode (terminate, passthrough), version and result",
            t.handshakes.clone(),
        );
        registry.register(
            n::TLS_HANDSHAKE_FAILURES,
            "TLS handshakes that failed, per socket, by reason",
            t.failures.clone(),
        );
        t
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Resolves every handle `dataplane` can use and publishes them. Call it
    /// before the dataplane itself is published.
    pub fn prepare(&self, dataplane: &Arc<Dataplane>) {
        let mut snap = Snapshot {
            dataplane: dataplane.clone(),
            ..Snapshot::default()
        };
        for bind in &dataplane.binds {
            if bind.protocol != BindProtocol::Udp {
                snap.sockets.insert(
                    bind.addr,
                    Arc::new(self.socket_handles(bind.addr, bind.protocol)),
                );
            }
            for listener in &bind.listeners {
                let lp = Arc::as_ptr(listener) as usize;
                if listener.tls.is_some() || listener.streams.is_some() {
                    snap.listeners
                        .insert(lp, Arc::new(self.listener_handles(listener)));
                }
                snap.routes.insert((lp, 0, None), OnceLock::new());
                for entry in &listener.routes.entries {
                    let rp = Arc::as_ptr(&entry.rule) as usize;
                    snap.routes.entry((lp, rp, None)).or_default();
                    for i in 0..entry.rule.backends.len() {
                        snap.routes.entry((lp, rp, Some(i))).or_default();
                    }
                }
            }
        }
        self.snapshot.store(Arc::new(snap));
    }

    fn socket_handles(&self, addr: SocketAddr, protocol: BindProtocol) -> SocketHandles {
        let labels = SocketLabels {
            address: addr.to_string(),
            protocol: match protocol {
                BindProtocol::Http => "http",
                BindProtocol::Https => "https",
                BindProtocol::Tcp => "tcp",
                BindProtocol::Udp => "udp",
            },
        };
        let failure = |f: HandshakeFailure| {
            self.failures.get_or_create_owned(&FailureLabels {
                address: labels.address.clone(),
                reason: f.reason(),
            })
        };
        SocketHandles {
            accepted: self.accepted.get_or_create_owned(&labels),
            active: self.active.get_or_create_owned(&labels),
            limit_reached: self.limit_reached.get_or_create_owned(&labels),
            failures: HandshakeFailure::ALL.map(failure),
        }
    }

    fn listener_handles(&self, listener: &Listener) -> ListenerHandles {
        let (gateway_namespace, gateway, name) = listener_names(&listener.key);
        let handle = |mode: &'static str, version: &'static str, result: &'static str| {
            self.handshakes.get_or_create_owned(&HandshakeLabels {
                gateway_namespace: gateway_namespace.clone(),
                gateway: gateway.clone(),
                listener: name.clone(),
                mode,
                version,
                result,
            })
        };
        let passthrough = listener
            .streams
            .as_ref()
            .is_some_and(|s| s.mode == StreamMode::Passthrough);
        let labels = ListenerLabels {
            gateway_namespace: gateway_namespace.clone(),
            gateway: gateway.clone(),
            listener: name.clone(),
        };
        ListenerHandles {
            accepted: self.listener_accepted.get_or_create_owned(&labels),
            active: self.listener_active.get_or_create_owned(&labels),
            tls12: handle("terminate", "TLSv1.2", "success"),
            tls13: handle("terminate", "TLSv1.3", "success"),
            other: handle("terminate", "other", "success"),
            failed: handle("terminate", "", "failure"),
            passthrough: if passthrough {
                handle("passthrough", "", "success")
            } else {
                Counter::default()
            },
        }
    }

    fn route_handles(&self, route: RouteLabels) -> RouteHandles {
        let class = |code_class: &'static str| {
            self.requests.get_or_create_owned(&RequestLabels {
                route: route.clone(),
                code_class,
            })
        };
        let upstream =
            (!route.backend.is_empty() && route.backend != "static" && route.backend != "invalid")
                .then(|| {
                    UPSTREAM_REASONS.map(|reason| {
                        self.upstream_errors.get_or_create_owned(&UpstreamLabels {
                            backend: route.backend.clone(),
                            reason,
                        })
                    })
                });
        RouteHandles {
            classes: CODE_CLASSES.map(class),
            duration: self.durations.get_or_create_owned(&route),
            upstream,
        }
    }

    /// The socket handles for `addr` in `dataplane` (resolved again if the
    /// snapshot is of another dataplane).
    pub fn socket(&self, dataplane: &Arc<Dataplane>, addr: SocketAddr) -> Arc<SocketHandles> {
        let snap = self.snapshot.load();
        if Arc::ptr_eq(&snap.dataplane, dataplane) {
            if let Some(h) = snap.sockets.get(&addr) {
                return h.clone();
            }
        }
        let protocol = dataplane
            .bind(addr)
            .map_or(BindProtocol::Tcp, |b| b.protocol);
        Arc::new(self.socket_handles(addr, protocol))
    }

    /// The handshake handles of `listener` of `dataplane`.
    pub fn listener(
        &self,
        dataplane: &Arc<Dataplane>,
        listener: &Arc<Listener>,
    ) -> Arc<ListenerHandles> {
        let snap = self.snapshot.load();
        if Arc::ptr_eq(&snap.dataplane, dataplane) {
            if let Some(h) = snap.listeners.get(&(Arc::as_ptr(listener) as usize)) {
                return h.clone();
            }
        }
        Arc::new(self.listener_handles(listener))
    }

    /// Counts a request answered with `status` after `elapsed`, and the
    /// upstream failure behind it if any (`reason` from
    /// [`UPSTREAM_REASONS`]).
    pub fn request(
        &self,
        dataplane: &Arc<Dataplane>,
        target: &RequestTarget,
        status: u16,
        elapsed: Duration,
        upstream_failure: Option<&'static str>,
    ) {
        let snap = self.snapshot.load();
        let found = Arc::ptr_eq(&snap.dataplane, dataplane)
            .then(|| snap.routes.get(&target.key()))
            .flatten();
        let labels = || {
            let backend = target
                .rule
                .as_ref()
                .zip(target.backend)
                .and_then(|(r, i)| r.backends.get(i));
            route_labels(target.listener.as_deref(), target.rule.as_deref(), backend)
        };
        let owned;
        let handles = match found {
            // The family's lock is taken once per key and dataplane, at its
            // first request; every later request counts lock-free.
            Some(cell) => cell.get_or_init(|| Box::new(self.route_handles(labels()))),
            None => {
                owned = self.route_handles(labels());
                &owned
            }
        };
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(c) = handles.classes.get(class) {
            c.inc();
        }
        handles.duration.observe(elapsed.as_secs_f64());
        if let (Some(reason), Some(counters)) = (upstream_failure, &handles.upstream) {
            if let Some(i) = UPSTREAM_REASONS.iter().position(|r| *r == reason) {
                counters[i].inc();
            }
        }
    }

    /// Counts a stream (TLS passthrough, TLS terminate, TCP) that failed
    /// toward `backend` (an upstream name) for `reason`.
    pub fn stream_failed(&self, backend: &str, reason: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                backend: backend.to_string(),
                reason,
            })
            .inc();
    }
}

fn route_labels(
    listener: Option<&Listener>,
    rule: Option<&Rule>,
    backend: Option<&WeightedBackend>,
) -> RouteLabels {
    let (gateway_namespace, gateway, listener) =
        listener.map(|l| listener_names(&l.key)).unwrap_or_default();
    RouteLabels {
        gateway_namespace,
        gateway,
        listener,
        route: rule.map_or_else(String::new, |r| r.key.route.to_string()),
        backend: backend.map_or_else(String::new, |b| match &b.target {
            BackendTarget::Service(u) => u.name.clone(),
            BackendTarget::Static(_) => "static".to_string(),
            BackendTarget::Invalid => "invalid".to_string(),
        }),
    }
}

#[cfg(test)]
#[path = "traffic_tests.rs"]
mod tests;
