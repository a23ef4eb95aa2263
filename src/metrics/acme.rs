//! ACME client metrics, for the issuer to call: requests by endpoint and
//! status, their duration, orders and challenges by outcome, rate-limit
//! answers, and failed issuances by reason.
//!
//! Every label value is a `&'static str` chosen by the caller from a closed
//! set (an endpoint name, a challenge type, an outcome, a reason) or a status
//! code, so cardinality stays bounded whatever the server answers. These are
//! called per ACME request (seconds apart), not per client request, so the
//! family lookups are fine here.

use super::histogram::{Histogram, SLOW_SECONDS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChallengeLabels {
    #[prometheus(flatten)]
    outcome: OutcomeLabels,
    challenge_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct NewHistogram;

impl MetricConstructor<Histogram> for NewHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(SLOW_SECONDS)
    }
}

/// The ACME families.
#[derive(Debug)]
pub struct Acme {
    requests: Family<RequestLabels, Counter>,
    durations: Family<EndpointLabels, Histogram, NewHistogram>,
    orders: Family<OutcomeLabels, Counter>,
    challenges: Family<ChallengeLabels, Counter>,
    rate_limited: Family<EndpointLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
}

impl Acme {
    /// The families, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        use super::names as n;
        let a = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(NewHistogram),
            orders: Family::default(),
            challenges: Family::default(),
            rate_limited: Family::default(),
            failures: Family::default(),
        };
        registry.register(
            n::ACME_REQUESTS,
            "ACME requests by endpoint and HTTP status (`error` when no answer came)",
            a.requests.clone(),
        );
        registry.register(
            n::ACME_REQUEST_DURATION,
            "ACME request duration by endpoint, in seconds",
            a.durations.clone(),
        );
        registry.register(
            n::ACME_ORDERS,
            "ACME orders by outcome (valid, invalid, error)",
            a.orders.clone(),
        );
        registry.register(
            n::ACME_CHALLENGES,
            "ACME challenges by type (http-01, tls-alpn-01, dns-01) and outcome",
            a.challenges.clone(),
        );
        registry.register(
            n::ACME_RATE_LIMITED,
            "ACME answers that were rate limits (429 or urn:ietf:params:acme:error:rateLimited)",
            a.rate_limited.clone(),
        );
        registry.register(
            n::ISSUANCE_FAILURES,
            "Failed certificate issuances by reason",
            a.failures.clone(),
        );
        a
    }

    /// Counts one ACME request to `endpoint` (`newNonce`, `newAccount`,
    /// `newOrder`, `authz`, `challenge`, `finalize`, `certificate`,
    /// `renewalInfo`, `directory`...) answered with `status` (`None`: no
    /// answer) after `elapsed`. A 429 also counts as rate limited.
    pub fn request(&self, endpoint: &'static str, status: Option<u16>, elapsed: Duration) {
        let status_label = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                status: status_label,
            })
            .inc();
        self.durations
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
        if status == Some(429) {
            self.rate_limited(endpoint);
        }
    }

    /// Counts a rate-limit answer (`rateLimited` problem document) from
    /// `endpoint`.
    pub fn rate_limited(&self, endpoint: &'static str) {
        self.rate_limited
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
    }

    /// Counts a finished order by `outcome` (`valid`, `invalid`, `error`).
    pub fn order(&self, outcome: &'static str) {
        self.orders.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a finished challenge of `challenge_type` by `outcome`.
    pub fn challenge(&self, challenge_type: &'static str, outcome: &'static str) {
        self.challenges
            .get_or_create(&ChallengeLabels {
                outcome: OutcomeLabels { outcome },
                challenge_type,
            })
            .inc();
    }

    /// Counts a failed issuance by `reason` (the issuer's error reason).
    pub fn issuance_failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabels { reason }).inc();
    }
}
