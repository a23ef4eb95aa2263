//! Leader election over a `coordination.k8s.io/v1` Lease: every replica
//! serves traffic, only the holder issues certificates and writes status.
//!
//! The rule ([`decide`], pure): a replica renews a Lease it holds, takes a
//! Lease nobody holds, and takes over a Lease whose record it has seen
//! unchanged for a whole lease duration. "Unchanged as seen here" is
//! measured on this replica's own clock from the moment it last saw the
//! record change, never by comparing the holder's `renewTime` with local
//! time, so clock skew between nodes cannot make two leaders. Every write
//! carries the resourceVersion it read, so two replicas taking over at once
//! cannot both succeed.
//!
//! Leading ends at once when renewing has failed for the renew deadline
//! (shorter than the lease duration, so the old leader stops before anyone
//! may take over), when another holder is seen, or on shutdown, where the
//! Lease is released so the next replica takes over without waiting.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// Timing of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a record must stay unchanged before another replica takes
    /// over.
    pub duration: Duration,
    /// How long the holder keeps leading while its renewals fail.
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Timings for a lease duration, in the proportions client-go uses
    /// (15 s / 10 s / 2 s).
    pub fn with_duration(duration: Duration) -> Self {
        let duration = duration.max(Duration::from_secs(3));
        Self {
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: (duration * 2 / 15).max(Duration::from_millis(500)),
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::with_duration(Duration::from_secs(15))
    }
}

/// What the Lease says, as far as the decision goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The holder, when someone holds it.
    pub holder: Option<String>,
    /// The version read: a change of it means the holder renewed.
    pub resource_version: String,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it.
    TakeOver,
    /// Someone else holds it and renews it: wait.
    Wait,
}

/// The election rule. `unchanged_for` is how long this replica has seen
/// the record unchanged.
pub fn decide(
    me: &str,
    record: Option<&Record>,
    unchanged_for: Duration,
    duration: Duration,
) -> Step {
    let Some(record) = record else {
        return Step::Create;
    };
    match record.holder.as_deref() {
        Some(h) if h == me => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) if unchanged_for >= duration => Step::TakeOver,
        Some(_) => Step::Wait,
    }
}

/// Runs the election for one replica.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    config: LeaseConfig,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The record last seen and since when (local clock).
#[derive(Debug, Default)]
struct Seen {
    record: Option<Record>,
    since: Option<Instant>,
}

impl Elector {
    /// An elector for Lease `name` in `namespace`, as `identity`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        config: LeaseConfig,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            config,
        }
    }

    /// Takes part in the election until `stop` fires, publishing whether
    /// this replica leads on `leading`; then releases the Lease if held.
    pub async fn run(self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut seen = Seen::default();
        // Until when this replica may act as leader without a new renewal.
        let mut lead_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            match self.round(&mut seen, now).await {
                Ok(true) => lead_until = Some(now + self.config.renew_deadline),
                Ok(false) => lead_until = None,
                Err(error) => {
                    if lead_until.is_some() {
                        tracing::warn!(lease = %self.name, %error, "cannot renew the Lease; still leading until the renew deadline");
                    } else {
                        tracing::debug!(lease = %self.name, %error, "cannot read the Lease");
                    }
                }
            }
            set_leading(
                &leading,
                lead_until.is_some_and(|t| Instant::now() < t),
                &self.name,
            );
            // Sleep until the next round, waking at the renew deadline so
            // leadership ends exactly then.
            let next = Instant::now() + self.config.retry_period;
            let wake = lead_until.map_or(next, |t| t.min(next));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if lead_until.is_some_and(|t| Instant::now() >= t) {
                lead_until = None;
                set_leading(&leading, false, &self.name);
            }
        }
        set_leading(&leading, false, &self.name);
        if seen.record.as_ref().and_then(|r| r.holder.as_deref()) == Some(self.identity.as_str()) {
            self.release().await;
        }
    }

    /// One read-decide-write round; `Ok(true)` when this replica holds the
    /// Lease afterwards.
    async fn round(&self, seen: &mut Seen, now: Instant) -> Result<bool, kube::Error> {
        let timeout = self.config.retry_period;
        let lease = within(timeout, self.api.get_opt(&self.name)).await?;
        let record = lease.as_ref().map(|l| Record {
            holder: l.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
        });
        if record != seen.record {
            seen.record = record.clone();
            seen.since = Some(now);
        }
        let unchanged_for = seen.since.map_or(Duration::ZERO, |s| now.duration_since(s));
        let step = decide(
            &self.identity,
            record.as_ref(),
            unchanged_for,
            self.config.duration,
        );
        let stamp = MicroTime(to_timestamp(SystemTime::now()));
        let written = match step {
            Step::Wait => return Ok(false),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs(self.config.duration)),
                        acquire_time: Some(stamp.clone()),
                        renew_time: Some(stamp),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                within(timeout, self.api.create(&PostParams::default(), &lease)).await
            }
            Step::Renew | Step::TakeOver => {
                let Some(mut lease) = lease else {
                    return Ok(false);
                };
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if step == Step::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(stamp.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(secs(self.config.duration));
                spec.renew_time = Some(stamp);
                // `replace` sends the resourceVersion read: a concurrent
                // writer makes this fail with 409 instead of both winning.
                within(
                    timeout,
                    self.api.replace(&self.name, &PostParams::default(), &lease),
                )
                .await
            }
        };
        match written {
            Ok(lease) => {
                if step != Step::Renew {
                    tracing::info!(lease = %self.name, identity = %self.identity, ?step, "acquired the Lease");
                }
                seen.record = Some(Record {
                    holder: Some(self.identity.clone()),
                    resource_version: lease.metadata.resource_version.unwrap_or_default(),
                });
                seen.since = Some(now);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!(lease = %self.name, "another replica wrote the Lease first");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, so another replica takes over at once.
    async fn release(&self) {
        let result = async {
            let Some(mut lease) =
                within(self.config.retry_period, self.api.get_opt(&self.name)).await?
            else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = None;
            within(
                self.config.retry_period,
                self.api.replace(&self.name, &PostParams::default(), &lease),
            )
            .await
            .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(lease = %self.name, "released the Lease"),
            Err(error) => {
                tracing::warn!(lease = %self.name, %error, "cannot release the Lease; another replica takes over when it expires")
            }
        }
    }
}

fn set_leading(leading: &watch::Sender<bool>, now_leading: bool, name: &str) {
    leading.send_if_modified(|l| {
        if *l == now_leading {
            return false;
        }
        *l = now_leading;
        if now_leading {
            tracing::info!(lease = %name, "leading: issuing certificates and writing status");
        } else {
            tracing::warn!(lease = %name, "not leading: stopped issuing and writing status");
        }
        true
    });
}

/// Bounds an API call by `timeout` (an API server that accepts the
/// connection and never answers must not stall the election).
async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Lease request timed out",
        )))),
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn to_timestamp(t: SystemTime) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::try_from(t).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(h: &str) -> Record {
        Record {
            holder: Some(h.into()),
            resource_version: "7".into(),
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide("a", None, Duration::ZERO, D), Step::Create);
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(decide("a", Some(&held_by("a")), D * 10, D), Step::Renew);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let released = Record {
            holder: None,
            resource_version: "8".into(),
        };
        assert_eq!(
            decide("b", Some(&released), Duration::ZERO, D),
            Step::TakeOver
        );
        let empty = Record {
            holder: Some(String::new()),
            resource_version: "8".into(),
        };
        assert_eq!(decide("b", Some(&empty), Duration::ZERO, D), Step::TakeOver);
    }

    #[test]
    fn another_holder_is_waited_for_until_seen_unchanged_for_a_whole_duration() {
        let r = held_by("a");
        assert_eq!(
            decide("b", Some(&r), D - Duration::from_millis(1), D),
            Step::Wait
        );
        assert_eq!(decide("b", Some(&r), D, D), Step::TakeOver);
    }

    #[test]
    fn the_holder_stops_leading_before_anyone_may_take_over() {
        for secs in [3, 15, 60] {
            let c = LeaseConfig::with_duration(Duration::from_secs(secs));
            assert!(c.renew_deadline < c.duration);
            assert!(c.retry_period * 2 <= c.renew_deadline, "{c:?}");
        }
    }
}
