//! Kubernetes-mode metrics: whether this replica leads, the leader's writes
//! to the API server by kind and outcome, watch failures by kind, and the
//! objects the API accepted but portcullis refuses. Label values are kinds,
//! outcomes and the Lease's name, so cardinality stays bounded; the leader
//! series exists only in Kubernetes mode.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LeaseLabels {
    lease: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The Kubernetes-mode families.
#[derive(Debug)]
pub struct Cluster {
    leader: Family<LeaseLabels, Gauge>,
    writes: Family<WriteLabels, Counter>,
    watch_errors: Family<KindLabels, Counter>,
    refused: Gauge,
}

/// What became of one write to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Applied.
    Written,
    /// Refused with 409 Conflict or 404: redone on the next snapshot.
    Superseded,
    /// Any other failure: retried with backoff.
    Failed,
}

impl WriteOutcome {
    fn label(self) -> &'static str {
        match self {
            WriteOutcome::Written => "written",
            WriteOutcome::Superseded => "superseded",
            WriteOutcome::Failed => "failed",
        }
    }
}

impl Cluster {
    /// The families, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        use super::names as n;
        let c = Self {
            leader: Family::default(),
            writes: Family::default(),
            watch_errors: Family::default(),
            refused: Gauge::default(),
        };
        registry.register(
            n::KUBERNETES_LEADER,
            "1 while this replica holds the leader Lease (issues certificates and writes status), else 0; absent in standalone mode",
            c.leader.clone(),
        );
        registry.register(
            n::KUBERNETES_WRITES,
            "Writes to the API server (server-side applies, and deletions of per-Gateway Services) by kind and outcome (written; superseded: 409/404, redone on the next snapshot; failed: retried with backoff)",
            c.writes.clone(),
        );
        registry.register(
            n::KUBERNETES_WATCH_ERRORS,
            "Failed watch requests by kind (the watch retries with backoff; the last configuration keeps serving)",
            c.watch_errors.clone(),
        );
        registry.register(
            n::KUBERNETES_REFUSED,
            "Objects the API server holds that portcullis refuses to read (their previous version, if any, is served)",
            c.refused.clone(),
        );
        c
    }

    /// Records whether this replica leads through Lease `lease`.
    pub fn set_leader(&self, lease: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabels {
                lease: lease.to_string(),
            })
            .set(i64::from(leading));
    }

    /// Counts one write of `kind`.
    pub fn write(&self, kind: &str, outcome: WriteOutcome) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Counts one failed watch request of `kind`.
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Records how many objects are refused.
    pub fn set_refused(&self, n: usize) {
        self.refused.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
