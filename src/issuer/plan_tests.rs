//! Table tests of [`plan`] with a fake clock: 6-, 45- and 90-day
//! certificates, ARI windows (RFC 9773 examples), emergencies, backoff,
//! Retry-After, configuration changes, and 10,000 certificates at once.

use super::*;
use crate::issuer::demand::IssuerRef;
use crate::issuer::KeyAlgorithm;

const DAY: u64 = 86_400;
const HOUR: u64 = 3600;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;
const SEED: u64 = 42;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn demand(name: &str) -> Demand {
    Demand {
        secret: StoreKey::new("default", name).expect("valid"),
        dns_names: vec![format!("{name}.test")],
        issuer: IssuerRef::LocalCa,
        key: KeyAlgorithm::EcdsaP256,
        duration: None,
        renew_before: None,
        renew_before_percentage: None,
        rotate_key: true,
        profile: None,
        listeners: vec![],
        auto_filled: true,
    }
}

fn held(d: &Demand, lifetime_days: u64) -> Held {
    Held {
        secret: d.secret.clone(),
        dns_names: d.dns_names.clone(),
        key: Some(d.key),
        not_before: at(T0),
        not_after: at(T0 + lifetime_days * DAY),
        serial: "01".into(),
        ari_id: Some("aki.serial".into()),
    }
}

fn issued(d: &Demand) -> Record {
    Record {
        issued_for: Some(d.fingerprint()),
        ..Record::default()
    }
}

fn step(d: &Demand, h: Option<&Held>, r: &Record, now: SystemTime) -> Step {
    plan_one(d, h, r, now, SEED).step
}

fn issue(why: Why) -> Step {
    Step::Issue {
        why,
        replaces: None,
    }
}

#[test]
fn nothing_held_issues_at_once() {
    let d = demand("a");
    assert_eq!(
        step(&d, None, &Record::default(), at(T0)),
        issue(Why::Missing)
    );
}

#[test]
fn default_renewal_is_two_thirds_of_the_lifetime_for_6_45_and_90_days() {
    for days in [6, 45, 90] {
        let d = demand("a");
        let h = held(&d, days);
        let r = issued(&d);
        let due = at(T0 + days * DAY * 2 / 3);
        assert_eq!(
            step(&d, Some(&h), &r, at(T0 + DAY / 2)),
            Step::WaitUntil {
                at: due,
                why: Why::NotDue,
                backoff: false
            },
            "{days} days"
        );
        let one_second_early = due - Duration::from_secs(1);
        assert!(matches!(
            step(&d, Some(&h), &r, one_second_early),
            Step::WaitUntil { .. }
        ));
        assert_eq!(
            step(&d, Some(&h), &r, due),
            Step::Issue {
                why: Why::Due,
                replaces: Some("aki.serial".into())
            },
            "{days} days"
        );
    }
}

#[test]
fn renew_before_and_percentage_move_the_renewal_time() {
    let mut d = demand("a");
    let h = held(&d, 90);
    d.renew_before = Some(Duration::from_secs(10 * DAY));
    assert_eq!(
        renewal_time(&d, &h, &issued(&d), at(T0), SEED),
        at(T0 + 80 * DAY)
    );
    // A renew-before longer than the lifetime falls back to the next rule.
    d.renew_before = Some(Duration::from_secs(100 * DAY));
    d.renew_before_percentage = Some(50);
    assert_eq!(
        renewal_time(&d, &h, &issued(&d), at(T0), SEED),
        at(T0 + 45 * DAY)
    );
}

#[test]
fn renewal_never_falls_in_the_first_fifth_of_the_lifetime() {
    let mut d = demand("a");
    d.renew_before_percentage = Some(95);
    let h = held(&d, 10);
    assert_eq!(
        renewal_time(&d, &h, &issued(&d), at(T0), SEED),
        at(T0 + 2 * DAY)
    );
}

#[test]
fn emergency_caps_a_late_renewal_time_at_one_twentieth_left() {
    let mut d = demand("a");
    d.renew_before = Some(Duration::from_secs(HOUR));
    let h = held(&d, 6);
    // 1/20 of 6 days is 7.2 h.
    let emergency = at(T0 + 6 * DAY - 6 * DAY / 20);
    assert_eq!(renewal_time(&d, &h, &issued(&d), at(T0), SEED), emergency);
    assert!(matches!(
        step(&d, Some(&h), &issued(&d), emergency),
        Step::Issue {
            why: Why::Emergency,
            ..
        }
    ));
}

#[test]
fn ari_window_picks_a_reproducible_time_inside_it() {
    let d = demand("a");
    let h = held(&d, 90);
    // RFC 9773's example shape: a window of two days well before expiry.
    let window = RenewalWindow {
        start: at(T0 + 58 * DAY),
        end: at(T0 + 60 * DAY),
    };
    let r = Record {
        renewal_window: Some(window),
        window_serial: Some("01".into()),
        ..issued(&d)
    };
    let t = renewal_time(&d, &h, &r, at(T0 + DAY), SEED);
    assert!(t >= window.start && t <= window.end, "{t:?}");
    assert_eq!(t, renewal_time(&d, &h, &r, at(T0 + DAY), SEED));
    // Different certificates spread across the window.
    let spread: std::collections::BTreeSet<SystemTime> = (0..20)
        .map(|i| {
            let d = demand(&format!("c{i}"));
            renewal_time(&d, &held(&d, 90), &r, at(T0 + DAY), SEED)
        })
        .collect();
    assert!(spread.len() > 15, "{}", spread.len());
}

#[test]
fn ari_window_of_another_certificate_is_ignored() {
    let d = demand("a");
    let h = held(&d, 90);
    let r = Record {
        renewal_window: Some(RenewalWindow {
            start: at(T0 + DAY),
            end: at(T0 + 2 * DAY),
        }),
        window_serial: Some("02".into()),
        ..issued(&d)
    };
    assert_eq!(renewal_time(&d, &h, &r, at(T0), SEED), at(T0 + 60 * DAY));
}

#[test]
fn ari_window_in_the_past_renews_at_once() {
    let d = demand("a");
    let h = held(&d, 90);
    let r = Record {
        renewal_window: Some(RenewalWindow {
            start: at(T0 + DAY),
            end: at(T0 + DAY + HOUR),
        }),
        window_serial: Some("01".into()),
        ..issued(&d)
    };
    let now = at(T0 + 2 * DAY);
    assert_eq!(
        step(&d, Some(&h), &r, now),
        Step::Issue {
            why: Why::AriWindowPast,
            replaces: Some("aki.serial".into())
        }
    );
}

#[test]
fn emergency_overrides_a_later_ari_window() {
    let d = demand("a");
    let h = held(&d, 6);
    let r = Record {
        renewal_window: Some(RenewalWindow {
            start: at(T0 + 10 * DAY),
            end: at(T0 + 11 * DAY),
        }),
        window_serial: Some("01".into()),
        ..issued(&d)
    };
    let now = at(T0 + 6 * DAY - 2 * HOUR);
    assert!(matches!(
        step(&d, Some(&h), &r, now),
        Step::Issue {
            why: Why::Emergency,
            ..
        }
    ));
}

#[test]
fn valid_certificate_is_not_reordered_after_losing_the_state_file() {
    let d = demand("a");
    let h = held(&d, 90);
    assert!(matches!(
        step(&d, Some(&h), &Record::default(), at(T0 + DAY)),
        Step::WaitUntil {
            why: Why::NotDue,
            ..
        }
    ));
}

#[test]
fn changed_names_key_or_issuer_issue_at_once() {
    let d = demand("a");
    let h = held(&d, 90);
    let r = issued(&d);
    let now = at(T0 + DAY);
    let mut names = d.clone();
    names.dns_names.push("b.test".into());
    let mut key = d.clone();
    key.key = KeyAlgorithm::EcdsaP384;
    let mut issuer = d.clone();
    issuer.issuer = IssuerRef::ClusterIssuer { name: "le".into() };
    for changed in [names, key, issuer] {
        assert_eq!(
            step(&changed, Some(&h), &r, now),
            issue(Why::Changed),
            "{changed:?}"
        );
    }
}

#[test]
fn expired_certificate_is_replaced() {
    let d = demand("a");
    let h = held(&d, 6);
    assert_eq!(
        step(&d, Some(&h), &issued(&d), at(T0 + 7 * DAY)),
        issue(Why::Expired)
    );
}

fn failed(d: &Demand, attempts: u32, when: SystemTime) -> Record {
    Record {
        attempts,
        last_error: Some("boom".into()),
        last_failure: Some(when),
        failed_for: Some(d.fingerprint()),
        ..issued(d)
    }
}

#[test]
fn failures_back_off_exponentially_with_jitter() {
    let d = demand("a");
    let mut last = Duration::ZERO;
    for attempts in 1..=6 {
        let delay = retry_delay(&d, None, at(T0), attempts, SEED);
        let full = Duration::from_secs(60 << (attempts - 1)).min(MAX_RETRY_MISSING);
        assert!(
            delay >= full / 2 && delay <= full,
            "attempt {attempts}: {delay:?}"
        );
        if full < MAX_RETRY_MISSING {
            assert!(delay > last / 2);
        }
        last = delay;
    }
    assert!(retry_delay(&d, None, at(T0), 30, SEED) <= MAX_RETRY_MISSING);
}

#[test]
fn backoff_is_capped_by_an_eighth_of_the_validity_left() {
    for (days, left) in [(6, 2 * HOUR), (45, 2 * DAY), (90, 20 * DAY)] {
        let d = demand("a");
        let h = held(&d, days);
        let failed_at = h.not_after - Duration::from_secs(left);
        let delay = retry_delay(&d, Some(&h), failed_at, 20, SEED);
        let cap = (Duration::from_secs(left) / 8).min(MAX_RETRY_HELD);
        assert!(delay <= cap, "{days} days, {left} s left: {delay:?}");
        assert!(delay >= cap / 2, "{days} days: {delay:?}");
    }
}

#[test]
fn short_certificates_start_backoff_in_seconds() {
    let mut d = demand("a");
    d.duration = Some(Duration::from_secs(120));
    let delay = retry_delay(&d, None, at(T0), 1, SEED);
    assert!(delay <= Duration::from_secs(2), "{delay:?}");
}

#[test]
fn retry_waits_for_backoff_then_issues() {
    let d = demand("a");
    let h = held(&d, 90);
    let due = at(T0 + 60 * DAY);
    let r = failed(&d, 3, due);
    let Step::WaitUntil {
        at: retry, backoff, ..
    } = step(&d, Some(&h), &r, due + Duration::from_secs(1))
    else {
        panic!("should wait after a failure");
    };
    assert!(backoff);
    assert!(retry > due);
    assert!(matches!(
        step(&d, Some(&h), &r, retry),
        Step::Issue { why: Why::Due, .. }
    ));
}

#[test]
fn retry_after_is_honoured() {
    let d = demand("a");
    let r = Record {
        retry_after: Some(at(T0 + 5 * HOUR)),
        ..failed(&d, 1, at(T0))
    };
    assert_eq!(
        step(&d, None, &r, at(T0 + HOUR)),
        Step::WaitUntil {
            at: at(T0 + 5 * HOUR),
            why: Why::Missing,
            backoff: true
        }
    );
}

#[test]
fn config_change_skips_the_backoff() {
    let d = demand("a");
    let r = failed(&d, 5, at(T0));
    assert!(matches!(
        step(&d, None, &r, at(T0 + 1)),
        Step::WaitUntil { backoff: true, .. }
    ));
    let mut fixed = d.clone();
    fixed.dns_names = vec!["fixed.test".into()];
    assert_eq!(step(&fixed, None, &r, at(T0 + 1)), issue(Why::Missing));
}

#[test]
fn plans_ten_thousand_certificates_correctly() {
    let now = at(T0 + 30 * DAY);
    let mut demands = Vec::new();
    let mut held_map = BTreeMap::new();
    let mut records = BTreeMap::new();
    for i in 0..10_000u64 {
        let d = demand(&format!("c{i}"));
        match i % 4 {
            0 => {}
            1 => {
                // 90 days, 30 in: not due.
                held_map.insert(d.secret.clone(), held(&d, 90));
                records.insert(d.secret.clone(), issued(&d));
            }
            2 => {
                // 6 days: long expired.
                held_map.insert(d.secret.clone(), held(&d, 6));
            }
            _ => {
                // 45 days, 30 in: exactly 2/3, due.
                held_map.insert(d.secret.clone(), held(&d, 45));
            }
        }
        demands.push(d);
    }
    let actions = plan(&demands, &held_map, &records, now, SEED);
    assert_eq!(actions.len(), 10_000);
    for (i, (a, d)) in actions.iter().zip(&demands).enumerate() {
        assert_eq!(a.secret, d.secret);
        let want = match i % 4 {
            0 => issue(Why::Missing),
            1 => Step::WaitUntil {
                at: at(T0 + 60 * DAY),
                why: Why::NotDue,
                backoff: false,
            },
            2 => issue(Why::Expired),
            _ => Step::Issue {
                why: Why::Due,
                replaces: Some("aki.serial".into()),
            },
        };
        assert_eq!(a.step, want, "certificate {i}");
    }
}

#[test]
fn record_round_trips_through_json() {
    let d = demand("a");
    let r = Record {
        retry_after: Some(at(T0 + 5)),
        renewal_window: Some(RenewalWindow {
            start: at(T0),
            end: at(T0 + 10),
        }),
        window_serial: Some("01".into()),
        ..failed(&d, 2, at(T0))
    };
    let text = serde_json::to_string(&r).expect("serialises");
    let back: Record = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, r);
}

#[test]
fn ari_window_is_polled_again_after_a_twentieth_of_the_lifetime() {
    let d = demand("a");
    let h = held(&d, 90);
    let mut r = issued(&d);
    assert!(window_stale(&h, &r, at(T0)), "never asked");
    r.window_checked = Some(at(T0));
    r.window_serial = Some("01".into());
    assert!(!window_stale(&h, &r, at(T0 + HOUR)));
    assert!(
        window_stale(&h, &r, at(T0 + 6 * HOUR)),
        "capped at six hours"
    );
    r.window_serial = Some("02".into());
    assert!(
        window_stale(&h, &r, at(T0 + HOUR)),
        "asked for another certificate"
    );
}
