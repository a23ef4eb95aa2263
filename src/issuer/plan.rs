//! When to issue, renew or retry: [`plan`], a pure function of the demands,
//! what is held, what happened before ([`Record`]) and the time.
//!
//! Rules:
//! - Nothing held, an expired or unusable certificate, or one that no longer
//!   matches its demand (names, key algorithm, issuer, lifetime, profile):
//!   issue now.
//! - Otherwise renew at [`renewal_time`]: `renew-before` before expiry, or
//!   when `renew-before-percentage` of the lifetime is left, or at 2/3 of
//!   the lifetime by default, never in the first fifth of the lifetime
//!   (so no annotation can make a renewal loop). An ACME Renewal Information window (RFC 9773)
//!   replaces that with a time in the window, chosen from a seed so plans are
//!   reproducible; a window already past means now. Under 1/20 of the
//!   lifetime left always renews, whatever ARI says.
//! - After a failure, wait [`retry_delay`]: exponential from a base of a
//!   hundredth of the lifetime (1 s to 1 min), with jitter, capped at an
//!   eighth of the validity left (between the base and 8 h; 30 min when
//!   nothing valid is held), never earlier than the server's Retry-After. A
//!   demand that changed since the failure retries at once.
//! - A valid certificate that is not due is never re-ordered, whatever the
//!   process restarted or lost: the inventory comes from the Store.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::demand::Demand;
use super::inventory::Held;
use super::request::RenewalWindow;
use crate::store::StoreKey;

/// Smallest and largest base of the retry backoff.
const MIN_BASE: Duration = Duration::from_secs(1);
const MAX_BASE: Duration = Duration::from_secs(60);
/// Longest wait between attempts while a valid certificate is held.
const MAX_RETRY_HELD: Duration = Duration::from_secs(8 * 3600);
/// Longest wait between attempts while nothing valid is held.
const MAX_RETRY_MISSING: Duration = Duration::from_secs(30 * 60);
/// Lifetime assumed for backoff when nothing is held and no duration is set.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// What is remembered about a certificate between attempts (and restarts).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Record {
    /// The demand fingerprint the held certificate was issued for.
    pub issued_for: Option<String>,
    /// Consecutive failed attempts.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When the last failure happened.
    #[serde(with = "unix_opt")]
    pub last_failure: Option<SystemTime>,
    /// The demand fingerprint at the last failure.
    pub failed_for: Option<String>,
    /// No attempt before this (the server's Retry-After).
    #[serde(with = "unix_opt")]
    pub retry_after: Option<SystemTime>,
    /// The ARI window for the held certificate.
    #[serde(with = "window_opt")]
    pub renewal_window: Option<RenewalWindow>,
    /// Serial of the certificate `renewal_window` belongs to.
    pub window_serial: Option<String>,
    /// When the ARI window was last asked for.
    #[serde(with = "unix_opt")]
    pub window_checked: Option<SystemTime>,
}

/// Why an action was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Why {
    /// Nothing (usable) is held.
    Missing,
    /// The held certificate has expired.
    Expired,
    /// The demand changed (names, key, issuer, lifetime, profile).
    Changed,
    /// The renewal time has come.
    Due,
    /// The ARI window moved into the past (a revocation signal).
    AriWindowPast,
    /// Under 1/20 of the lifetime is left.
    Emergency,
    /// Valid and not due: nothing to do until the renewal time.
    NotDue,
}

/// What to do about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Order a certificate now.
    Issue {
        /// Why.
        why: Why,
        /// ARI id of the certificate being replaced (renewals only).
        replaces: Option<String>,
    },
    /// Nothing before `at`.
    WaitUntil {
        /// When to look again.
        at: SystemTime,
        /// What will be done then (`NotDue`: renew; others: retry).
        why: Why,
        /// Whether the wait is a failure backoff.
        backoff: bool,
    },
}

/// The plan for one demanded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The Secret.
    pub secret: StoreKey,
    /// What to do.
    pub step: Step,
    /// When the held certificate is due for renewal, if one is held.
    pub renew_at: Option<SystemTime>,
}

/// Plans every demand. `held` and `records` are keyed by Secret; `seed`
/// makes jitter and ARI picks reproducible (the manager draws one per
/// process). Output in the order of `demands`.
pub fn plan(
    demands: &[Demand],
    held: &BTreeMap<StoreKey, Held>,
    records: &BTreeMap<StoreKey, Record>,
    now: SystemTime,
    seed: u64,
) -> Vec<Action> {
    let empty = Record::default();
    demands
        .iter()
        .map(|d| {
            plan_one(
                d,
                held.get(&d.secret),
                records.get(&d.secret).unwrap_or(&empty),
                now,
                seed,
            )
        })
        .collect()
}

/// Plans one demand.
pub fn plan_one(
    d: &Demand,
    held: Option<&Held>,
    record: &Record,
    now: SystemTime,
    seed: u64,
) -> Action {
    let renew_at = held.map(|h| renewal_time(d, h, record, now, seed));
    let wanted = match (held, renew_at) {
        (None, _) | (_, None) => Some(Why::Missing),
        (Some(h), _) if now >= h.not_after => Some(Why::Expired),
        (Some(h), _) if !matches(d, h, record) => Some(Why::Changed),
        (Some(h), Some(at)) if now >= at => Some(due_reason(h, record, now)),
        _ => None,
    };
    let step = match (wanted, renew_at) {
        (None, Some(at)) => Step::WaitUntil {
            at,
            why: Why::NotDue,
            backoff: false,
        },
        (None, None) => Step::Issue {
            why: Why::Missing,
            replaces: None,
        },
        (Some(why), _) => {
            let fingerprint = d.fingerprint();
            let same_cause = record.failed_for.as_deref() == Some(fingerprint.as_str());
            let retry_at = (record.attempts > 0 && same_cause)
                .then(|| next_attempt(d, held, record, seed))
                .flatten()
                .filter(|at| *at > now);
            match retry_at {
                Some(at) => Step::WaitUntil {
                    at,
                    why,
                    backoff: true,
                },
                None => Step::Issue {
                    why,
                    replaces: match why {
                        Why::Due | Why::AriWindowPast | Why::Emergency => {
                            held.and_then(|h| h.ari_id.clone())
                        }
                        _ => None,
                    },
                },
            }
        }
    };
    Action {
        secret: d.secret.clone(),
        step,
        renew_at,
    }
}

/// Whether the held certificate is what the demand asks for.
fn matches(d: &Demand, h: &Held, record: &Record) -> bool {
    let names_match = {
        let mut want: Vec<String> = d.dns_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        want.sort();
        want.dedup();
        want == h.dns_names
    };
    // Without a record (lost state file) the issuer, lifetime and profile
    // cannot be told from the certificate: assume unchanged rather than
    // order a duplicate.
    let rest_match = record
        .issued_for
        .as_ref()
        .is_none_or(|f| *f == d.fingerprint());
    names_match && h.key.is_none_or(|k| k == d.key) && rest_match
}

/// Why a held, matching certificate whose renewal time has come is renewed.
fn due_reason(h: &Held, record: &Record, now: SystemTime) -> Why {
    if now >= emergency_time(h) {
        Why::Emergency
    } else if window_for(h, record).is_some_and(|w| w.end <= now) {
        Why::AriWindowPast
    } else {
        Why::Due
    }
}

/// When less than 1/20 of the lifetime is left.
fn emergency_time(h: &Held) -> SystemTime {
    h.not_after - h.lifetime() / 20
}

/// The ARI window recorded for exactly this certificate.
fn window_for<'a>(h: &Held, record: &'a Record) -> Option<&'a RenewalWindow> {
    record
        .renewal_window
        .as_ref()
        .filter(|_| record.window_serial.as_deref() == Some(h.serial.as_str()))
}

/// When the held certificate should be renewed (see the module rules).
pub fn renewal_time(
    d: &Demand,
    h: &Held,
    record: &Record,
    now: SystemTime,
    seed: u64,
) -> SystemTime {
    let lifetime = h.lifetime();
    let configured = match (d.renew_before, d.renew_before_percentage) {
        (Some(before), _) if before < lifetime => h.not_after - before,
        (_, Some(pct)) => h.not_after - lifetime * pct.min(99) / 100,
        _ => h.not_before + lifetime * 2 / 3,
    }
    // Never in the first fifth of the lifetime: a certificate is not renewed
    // right after it was issued (CAs backdate notBefore), whatever the
    // annotations say.
    .max(h.not_before + lifetime / 5);
    let chosen = match window_for(h, record) {
        Some(w) if w.end <= now => now,
        Some(w) => {
            let span = w.end.duration_since(w.start).unwrap_or_default();
            w.start + span.mul_f64(unit(seed, &d.secret, 0))
        }
        None => configured,
    };
    chosen.min(emergency_time(h))
}

/// When the next attempt after a failure may start.
fn next_attempt(d: &Demand, held: Option<&Held>, record: &Record, seed: u64) -> Option<SystemTime> {
    let failed = record.last_failure?;
    let at = failed + retry_delay(d, held, failed, record.attempts, seed);
    Some(match record.retry_after {
        Some(ra) if ra > at => ra,
        _ => at,
    })
}

/// The backoff after `attempts` consecutive failures, the last at `failed`.
pub fn retry_delay(
    d: &Demand,
    held: Option<&Held>,
    failed: SystemTime,
    attempts: u32,
    seed: u64,
) -> Duration {
    let lifetime = held
        .map(Held::lifetime)
        .or(d.duration)
        .unwrap_or(ASSUMED_LIFETIME);
    let base = (lifetime / 100).clamp(MIN_BASE, MAX_BASE);
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let cap = match held.filter(|h| h.is_valid_at(failed)) {
        Some(h) => {
            let left = h.not_after.duration_since(failed).unwrap_or_default();
            (left / 8).clamp(base, MAX_RETRY_HELD)
        }
        None => MAX_RETRY_MISSING.max(base),
    };
    // "Equal jitter": between half and all of the delay.
    exp.min(cap)
        .mul_f64(0.5 + 0.5 * unit(seed, &d.secret, attempts))
}

/// A number in [0, 1) derived from the seed, the Secret and a salt
/// (splitmix64 over FNV-1a): deterministic, spread across certificates.
fn unit(seed: u64, secret: &StoreKey, salt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in secret.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h ^ u64::from(salt).rotate_left(32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the ARI window of the held certificate should be asked for again
/// (RFC 9773 §4.3: clients poll; a window that moved into the past is a
/// revocation signal): never asked, or asked longer ago than a twentieth of
/// the lifetime (between one minute and six hours).
pub fn window_stale(h: &Held, record: &Record, now: SystemTime) -> bool {
    let every = (h.lifetime() / 20).clamp(Duration::from_secs(60), Duration::from_secs(6 * 3600));
    match record.window_checked {
        Some(at) if record.window_serial.as_deref() == Some(h.serial.as_str()) => {
            now.duration_since(at).unwrap_or_default() >= every
        }
        _ => true,
    }
}

/// Serde for optional times as Unix seconds.
mod unix_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let secs: Option<f64> = Option::deserialize(d)?;
        Ok(secs
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(|d| UNIX_EPOCH + d))
    }
}

/// Serde for an optional ARI window as two Unix-second numbers.
mod window_opt {
    use super::RenewalWindow;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn secs(t: SystemTime) -> f64 {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    pub fn serialize<S: Serializer>(w: &Option<RenewalWindow>, s: S) -> Result<S::Ok, S::Error> {
        match w {
            Some(w) => s.serialize_some(&[secs(w.start), secs(w.end)]),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RenewalWindow>, D::Error> {
        let pair: Option<[f64; 2]> = Option::deserialize(d)?;
        let time = |s: f64| Duration::try_from_secs_f64(s).ok().map(|d| UNIX_EPOCH + d);
        Ok(pair.and_then(|[a, b]| {
            Some(RenewalWindow {
                start: time(a)?,
                end: time(b)?,
            })
        }))
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
