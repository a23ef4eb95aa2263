//! Prometheus metrics (OpenMetrics text on the admin `/metrics`): one
//! [`Metrics`] per process holding the registry and every family.
//!
//! | module | exports |
//! |---|---|
//! | [`names`] | every metric name, one place |
//! | [`certificates`] | served certificates, per-listener served expiry, managed certificates ([`ManagedCertificate`]), cert-manager-compatible names |
//! | [`traffic`] | requests, durations, upstream failures, connections, TLS handshakes (lock-free handles per dataplane) |
//! | [`acme`] | ACME client requests, orders, challenges, rate limits, issuance failures |
//! | [`cluster`] | Kubernetes mode: leadership, writes to the API server, watch failures, refused objects |
//! | [`process`] | `process_*`: memory, CPU, file descriptors |
//! | [`histogram`] | the lock-free histogram the families use |
//!
//! Who feeds what: the runtime calls [`Metrics::publish`] before swapping a
//! dataplane in and [`Metrics::reloaded`] / [`Metrics::reload_failed`] after;
//! the server and proxy count through [`Metrics::traffic`]; the issuer calls
//! [`Metrics::set_managed`] with its per-certificate state and counts ACME
//! work through [`Metrics::acme`]. Scrapes ([`Metrics::encode`]) read the
//! current dataplane, so certificate series always describe what is served.

pub mod acme;
pub mod certificates;
pub mod cluster;
pub mod histogram;
pub mod names;
pub mod process;
pub mod traffic;

pub use certificates::ManagedCertificate;
pub use traffic::{HandshakeFailure, RequestTarget};

use crate::dataplane::Dataplane;
use crate::status::Status;
use arc_swap::ArcSwap;
use histogram::{Histogram, SLOW_SECONDS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the certificate collector reads at scrape time.
#[derive(Debug, Default)]
struct CertState {
    dataplane: ArcSwap<Dataplane>,
    managed: ArcSwap<Vec<ManagedCertificate>>,
    cert_manager_compat: AtomicBool,
}

#[derive(Debug)]
struct CertCollector(Arc<CertState>);

impl Collector for CertCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = &self.0;
        certificates::encode(
            &mut encoder,
            &state.dataplane.load(),
            &state.managed.load(),
            state.cert_manager_compat.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ObjectLabels {
    kind: String,
    condition: String,
    status: String,
}

/// Configuration families.
#[derive(Debug)]
struct Config {
    reloads: Family<ResultLabels, Counter>,
    duration: Histogram,
    last_success: Gauge<f64, AtomicU64>,
    problems: Gauge,
    bind_errors: Gauge,
    objects: Family<ObjectLabels, Gauge>,
    connection_limit: Gauge,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    traffic: traffic::Traffic,
    acme: acme::Acme,
    cluster: cluster::Cluster,
    config: Config,
    certs: Arc<CertState>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family, nothing counted yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let traffic = traffic::Traffic::new(&mut registry);
        let acme = acme::Acme::new(&mut registry);
        let cluster = cluster::Cluster::new(&mut registry);
        let config = Config {
            reloads: Family::default(),
            duration: Histogram::new(SLOW_SECONDS),
            last_success: Gauge::default(),
            problems: Gauge::default(),
            bind_errors: Gauge::default(),
            objects: Family::default(),
            connection_limit: Gauge::default(),
        };
        registry.register(
            names::RELOADS,
            "Configuration reloads by result (success, partial: some files kept their previous content, failure)",
            config.reloads.clone(),
        );
        registry.register(
            names::RELOAD_DURATION,
            "Time to load, compile and program a configuration, in seconds",
            config.duration.clone(),
        );
        registry.register(
            names::RELOAD_LAST_SUCCESS,
            "When the last reload that loaded every file finished, Unix seconds",
            config.last_success.clone(),
        );
        registry.register(
            names::CONFIG_PROBLEMS,
            "Manifest files that did not load on the last reload",
            config.problems.clone(),
        );
        registry.register(
            names::BIND_ERRORS,
            "Sockets of the current configuration that could not be bound",
            config.bind_errors.clone(),
        );
        registry.register(
            names::CONFIG_OBJECTS,
            "Objects by kind and status condition (routes count once per parent)",
            config.objects.clone(),
        );
        registry.register(
            names::CONNECTION_LIMIT,
            "Most concurrent client connections (--max-connections)",
            config.connection_limit.clone(),
        );
        registry.register(
            names::BUILD,
            "The portcullis version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let certs = Arc::new(CertState::default());
        registry.register_collector(Box::new(CertCollector(certs.clone())));
        registry.register_collector(Box::new(process::Collector));
        Self {
            registry,
            traffic,
            acme,
            cluster,
            config,
            certs,
        }
    }

    /// Also exports certificates under cert-manager's names and labels
    /// (`--metrics-cert-manager-compat`).
    pub fn set_cert_manager_compat(&self, on: bool) {
        self.certs.cert_manager_compat.store(on, Ordering::Relaxed);
    }

    /// Records the `--max-connections` setting.
    pub fn set_connection_limit(&self, limit: usize) {
        self.config
            .connection_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Replaces the issuer's per-certificate state (the whole list; an empty
    /// list when nothing is managed).
    pub fn set_managed(&self, managed: Vec<ManagedCertificate>) {
        self.certs.managed.store(Arc::new(managed));
    }

    /// Data-plane counters.
    pub fn traffic(&self) -> &traffic::Traffic {
        &self.traffic
    }

    /// ACME client counters.
    pub fn acme(&self) -> &acme::Acme {
        &self.acme
    }

    /// Kubernetes-mode families.
    pub fn cluster(&self) -> &cluster::Cluster {
        &self.cluster
    }

    /// Resolves the counters `dataplane` will use and makes it the one
    /// certificate series describe. Call before publishing the dataplane.
    pub fn publish(&self, dataplane: &Arc<Dataplane>) {
        self.traffic.prepare(dataplane);
        self.certs.dataplane.store(dataplane.clone());
    }

    /// Records a finished reload: its duration, whether every file loaded,
    /// the objects' conditions, and `now` (Unix seconds) as the last success
    /// when nothing failed.
    pub fn reloaded(
        &self,
        elapsed: Duration,
        status: &Status,
        problems: usize,
        bind_errors: usize,
        now: u64,
    ) {
        let result = if problems == 0 { "success" } else { "partial" };
        self.config
            .reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.config.duration.observe(elapsed.as_secs_f64());
        if problems == 0 {
            self.config.last_success.set(now as f64);
        }
        self.config
            .problems
            .set(i64::try_from(problems).unwrap_or(i64::MAX));
        self.set_bind_errors(bind_errors);
        self.config.objects.clear();
        for (labels, n) in object_counts(status) {
            self.config
                .objects
                .get_or_create(&ObjectLabels::from(labels))
                .set(n);
        }
    }

    /// Records the number of sockets that could not be bound.
    pub fn set_bind_errors(&self, bind_errors: usize) {
        self.config
            .bind_errors
            .set(i64::try_from(bind_errors).unwrap_or(i64::MAX));
    }

    /// Records a reload that could not read the configuration at all.
    pub fn reload_failed(&self, elapsed: Duration) {
        self.config
            .reloads
            .get_or_create(&ResultLabels { result: "failure" })
            .inc();
        self.config.duration.observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}

/// Objects per (kind, condition type, status): object-level conditions and,
/// for routes, each parent's.
fn object_counts(status: &Status) -> BTreeMap<(String, String, String), i64> {
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut counts = BTreeMap::new();
    for object in &status.objects {
        let conditions = object
            .conditions
            .iter()
            .chain(object.parents.iter().flat_map(|p| p.conditions.iter()));
        for c in conditions {
            let key = (
                object.kind.clone(),
                name(serde_json::to_value(c.kind)),
                name(serde_json::to_value(c.status)),
            );
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    counts
}

impl From<(String, String, String)> for ObjectLabels {
    fn from((kind, condition, status): (String, String, String)) -> Self {
        Self {
            kind,
            condition,
            status,
        }
    }
}

#[cfg(test)]
mod tests;
