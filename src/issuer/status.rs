//! What is reported about each managed certificate ([`CertStatus`]): built
//! purely from the demands, what is held, the records and the plan, and
//! shown by `/status` (`certificates`), `portcullis certs` ([`format_table`])
//! and the certificate metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::demand::{Demands, ListenerId, OwnerKind};
use super::inventory::Held;
use super::plan::{Action, Record, Step, Why};
use crate::model::ObjectKey;
use crate::store::StoreKey;

/// The state of one managed certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertStatus {
    /// The Secret, `namespace/name`.
    pub secret: String,
    /// The names it is (to be) issued for.
    pub dns_names: Vec<String>,
    /// `local-ca`, `Issuer` or `ClusterIssuer`.
    pub issuer_kind: String,
    /// The issuer's name (`namespace/name` for an `Issuer`).
    pub issuer_name: String,
    /// The listeners it serves ([`ListenerId`]s: `namespace/gateway/listener`,
    /// `ListenerSet namespace/listenerset/listener`).
    pub listeners: Vec<String>,
    /// notBefore of the held certificate, Unix seconds.
    pub not_before: Option<u64>,
    /// notAfter of the held certificate, Unix seconds.
    pub not_after: Option<u64>,
    /// Serial of the held certificate, hex.
    pub serial: Option<String>,
    /// When the held certificate is due for renewal, Unix seconds.
    pub renewal_time: Option<u64>,
    /// Whether a valid certificate matching the demand is held.
    pub ready: bool,
    /// `Ready`, `Issuing`, `Renewing`, `Waiting` (failed, retrying later) or
    /// `Failed` (config problem).
    pub status: String,
    /// Why the last decision was taken (`notDue`, `missing`, `changed`…).
    pub reason: Why,
    /// Consecutive failed attempts.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the next attempt may start, Unix seconds (failures only).
    pub next_attempt: Option<u64>,
    /// Problems with the listeners it serves (wildcards, annotations).
    pub problems: Vec<String>,
    /// The ACME Renewal Information window (RFC 9773) of the held
    /// certificate, start and end, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ari_window: Option<(u64, u64)>,
    /// The ACME profile ordered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One status per demand (and one per listener problem that has no demand),
/// in Secret order. `in_flight` are Secrets with an order running.
pub fn certificate_statuses(
    demands: &Demands,
    held: &BTreeMap<StoreKey, Held>,
    records: &BTreeMap<StoreKey, Record>,
    actions: &[Action],
    in_flight: &BTreeSet<StoreKey>,
    now: SystemTime,
) -> Vec<CertStatus> {
    let mut out = Vec::new();
    for (d, a) in demands.certificates.iter().zip(actions) {
        let h = held.get(&d.secret);
        let r = records.get(&d.secret).cloned().unwrap_or_default();
        let valid = h.is_some_and(|h| h.is_valid_at(now));
        let reason = match &a.step {
            Step::Issue { why, .. } | Step::WaitUntil { why, .. } => *why,
        };
        let (status, next) = match &a.step {
            _ if in_flight.contains(&d.secret) => {
                (if valid { "Renewing" } else { "Issuing" }, None)
            }
            Step::WaitUntil {
                why: Why::NotDue, ..
            } => ("Ready", None),
            Step::WaitUntil { at, .. } => ("Waiting", Some(unix(*at))),
            Step::Issue { .. } => (if valid { "Renewing" } else { "Issuing" }, None),
        };
        let issuer_name = match &d.issuer {
            super::demand::IssuerRef::Issuer { namespace, name } => format!("{namespace}/{name}"),
            other => other.name().to_string(),
        };
        out.push(CertStatus {
            secret: d.secret.to_string(),
            dns_names: d.dns_names.clone(),
            issuer_kind: d.issuer.kind().to_string(),
            issuer_name,
            listeners: d.listeners.clone(),
            not_before: h.map(|h| unix(h.not_before)),
            not_after: h.map(|h| unix(h.not_after)),
            serial: h.map(|h| h.serial.clone()),
            renewal_time: a.renew_at.map(unix),
            ready: valid && reason != Why::Changed,
            status: status.to_string(),
            reason,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            next_attempt: next,
            problems: demands
                .problems
                .iter()
                .filter(|p| p.secret.as_ref() == Some(&d.secret))
                .map(|p| format!("{}: {}", p.listener, p.message))
                .collect(),
            ari_window: r.renewal_window.map(|w| (unix(w.start), unix(w.end))),
            profile: d.profile.clone(),
        });
    }
    // Listeners that got no demand at all still show up, as failures.
    let demanded: BTreeSet<&StoreKey> = demands.certificates.iter().map(|d| &d.secret).collect();
    let mut orphan: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &demands.problems {
        match &p.secret {
            Some(s) if demanded.contains(s) => {}
            Some(s) => orphan
                .entry(s.to_string())
                .or_default()
                .push(format!("{}: {}", p.listener, p.message)),
            None => orphan
                .entry(String::new())
                .or_default()
                .push(format!("{}: {}", p.listener, p.message)),
        }
    }
    for (secret, problems) in orphan {
        out.push(CertStatus {
            secret,
            dns_names: vec![],
            issuer_kind: String::new(),
            issuer_name: String::new(),
            listeners: vec![],
            not_before: None,
            not_after: None,
            serial: None,
            renewal_time: None,
            ready: false,
            status: "Failed".into(),
            reason: Why::Missing,
            attempts: 0,
            last_error: problems.first().cloned(),
            next_attempt: None,
            problems,
            ari_window: None,
            profile: None,
        });
    }
    out.sort_by(|a, b| a.secret.cmp(&b.secret));
    out
}

/// `YYYY-MM-DD HH:MM` (UTC) of Unix seconds.
fn date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The `portcullis certs` table: Secret, hostnames, issuer, not after, days
/// left, renewal due, status and last error, one row per certificate.
pub fn format_table(certs: &[CertStatus], now: SystemTime) -> String {
    let now = unix(now);
    let header = [
        "SECRET",
        "HOSTNAMES",
        "ISSUER",
        "NOT AFTER",
        "DAYS LEFT",
        "RENEWAL DUE",
        "STATUS",
        "LAST ERROR",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(String::from)];
    for c in certs {
        let issuer = match c.issuer_kind.as_str() {
            "" => "-".to_string(),
            "local-ca" => "local-ca".to_string(),
            kind => format!("{kind} {}", c.issuer_name),
        };
        let days_left = c.not_after.map_or("-".to_string(), |na| {
            format!("{:.1}", (na as f64 - now as f64) / 86_400.0)
        });
        rows.push([
            if c.secret.is_empty() {
                "-".into()
            } else {
                c.secret.clone()
            },
            if c.dns_names.is_empty() {
                "-".into()
            } else {
                c.dns_names.join(",")
            },
            issuer,
            c.not_after.map_or("-".into(), date),
            days_left,
            c.renewal_time.map_or("-".into(), date),
            c.status.clone(),
            c.last_error
                .as_deref()
                .map_or("-".into(), |e| e.replace('\n', " ")),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Sets the `portcullis.dev/CertificateReady` condition on every listener a
/// managed certificate serves (the Gateway and ListenerSet listeners named
/// by [`ListenerId`]s in [`CertStatus::listeners`]): True when a current certificate is held
/// and nothing is wrong, False with the problem (a wildcard hostname without
/// a DNS-01 solver, a bad annotation), or with the issuing state and last
/// error. Conditions set by an earlier call are replaced, so this can run
/// on every certificate change.
pub fn annotate_listeners(status: &mut crate::status::Status, certificates: &[CertStatus]) {
    let conditions = ListenerConditions::of(certificates);
    for object in &mut status.objects {
        conditions.annotate(object);
    }
}

/// Which owner of listeners `object` is, if it is one (a Gateway or a
/// ListenerSet).
fn owner_kind(object: &crate::status::ObjectStatus) -> Option<OwnerKind> {
    match object.kind.as_str() {
        "Gateway" => Some(OwnerKind::Gateway),
        "ListenerSet" => Some(OwnerKind::ListenerSet),
        _ => None,
    }
}

/// The `CertificateReady` verdict of every listener some certificate
/// serves, by owner, so that one object's status can be annotated on its
/// own ([`Self::annotate`]) without copying the whole compiled status.
#[derive(Debug, Default)]
pub struct ListenerConditions {
    /// (owner kind, owner) → (listener, verdict).
    by_owner: BTreeMap<(OwnerKind, ObjectKey), Vec<(String, Verdict)>>,
}

/// What a listener's `CertificateReady` condition says.
#[derive(Debug, Clone)]
struct Verdict {
    ok: bool,
    reason: crate::status::Reason,
    message: String,
}

impl ListenerConditions {
    /// No certificate, no condition.
    pub const EMPTY: Self = Self {
        by_owner: BTreeMap::new(),
    };

    /// The verdicts `certificates` give. A listener served by several
    /// Secrets keeps the worst news (the first False).
    pub fn of(certificates: &[CertStatus]) -> Self {
        use crate::status::Reason;
        let mut by_owner: BTreeMap<(OwnerKind, ObjectKey), Vec<(String, Verdict)>> =
            BTreeMap::new();
        for cert in certificates {
            let verdict = if !cert.problems.is_empty() {
                Verdict {
                    ok: false,
                    reason: Reason::CertificateConfiguration,
                    message: cert.problems.join("; "),
                }
            } else if cert.ready {
                Verdict {
                    ok: true,
                    reason: Reason::Ready,
                    message: format!("{} is current", cert.secret),
                }
            } else {
                let why = cert.last_error.as_deref().unwrap_or(&cert.status);
                Verdict {
                    ok: false,
                    reason: Reason::Issuing,
                    message: format!("{}: {why}", cert.secret),
                }
            };
            for name in &cert.listeners {
                let Some(id) = ListenerId::parse(name) else {
                    continue;
                };
                let listeners = by_owner
                    .entry((id.kind, ObjectKey::new(&id.namespace, &id.owner)))
                    .or_default();
                match listeners.iter_mut().find(|(l, _)| *l == id.listener) {
                    Some((_, existing)) if existing.ok && !verdict.ok => {
                        *existing = verdict.clone();
                    }
                    Some(_) => {}
                    None => listeners.push((id.listener, verdict.clone())),
                }
            }
        }
        Self { by_owner }
    }

    /// `object` as [`Self::annotate`] leaves it, copied only when that
    /// changes it (most objects no certificate concerns are borrowed).
    pub fn annotated<'a>(
        &self,
        object: &'a crate::status::ObjectStatus,
    ) -> std::borrow::Cow<'a, crate::status::ObjectStatus> {
        use crate::status::ConditionType;
        let Some(kind) = owner_kind(object) else {
            return std::borrow::Cow::Borrowed(object);
        };
        let stale = object.listeners.iter().any(|l| {
            l.conditions
                .iter()
                .any(|c| c.kind == ConditionType::CertificateReady)
        });
        let owner = ObjectKey::new(&object.namespace, &object.name);
        if !stale && !self.by_owner.contains_key(&(kind, owner)) {
            return std::borrow::Cow::Borrowed(object);
        }
        let mut copy = object.clone();
        self.annotate(&mut copy);
        std::borrow::Cow::Owned(copy)
    }

    /// Replaces the `CertificateReady` conditions of `object`'s listeners
    /// (a Gateway's or ListenerSet's; other kinds are left alone) with the
    /// verdicts that concern them.
    pub fn annotate(&self, object: &mut crate::status::ObjectStatus) {
        use crate::status::{Condition, ConditionType};
        let Some(kind) = owner_kind(object) else {
            return;
        };
        for l in &mut object.listeners {
            l.conditions
                .retain(|c| c.kind != ConditionType::CertificateReady);
        }
        let owner = ObjectKey::new(&object.namespace, &object.name);
        let Some(verdicts) = self.by_owner.get(&(kind, owner)) else {
            return;
        };
        for (name, verdict) in verdicts {
            let Some(l) = object.listeners.iter_mut().find(|l| l.name == *name) else {
                continue;
            };
            let generation = l.conditions.first().map_or(0, |c| c.observed_generation);
            l.conditions.push(Condition::new(
                ConditionType::CertificateReady,
                verdict.ok,
                verdict.reason,
                verdict.message.clone(),
                generation,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ready certificate for `secret` from `issuer` (kind, name) serving
    /// `listeners`, with nothing else known; tests override what they check.
    fn ready_cert(secret: &str, issuer: (&str, &str), listeners: &[&str]) -> CertStatus {
        CertStatus {
            secret: secret.into(),
            dns_names: vec![],
            issuer_kind: issuer.0.into(),
            issuer_name: issuer.1.into(),
            listeners: listeners.iter().map(|l| l.to_string()).collect(),
            not_before: None,
            not_after: None,
            serial: None,
            renewal_time: None,
            ready: true,
            status: "Ready".into(),
            reason: Why::NotDue,
            attempts: 0,
            last_error: None,
            next_attempt: None,
            problems: vec![],
            ari_window: None,
            profile: None,
        }
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01 00:00");
        assert_eq!(date(1_767_225_600), "2026-01-01 00:00");
        assert_eq!(date(951_782_400 + 3661), "2000-02-29 01:01");
    }

    #[test]
    fn table_has_one_aligned_row_per_certificate() {
        let c = CertStatus {
            dns_names: vec!["a.test".into(), "b.test".into()],
            not_before: Some(1_767_225_600),
            not_after: Some(1_767_225_600 + 90 * 86_400),
            serial: Some("01".into()),
            renewal_time: Some(1_767_225_600 + 60 * 86_400),
            ..ready_cert("default/gw-web-tls", ("ClusterIssuer", "le"), &[])
        };
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600 + 30 * 86_400);
        let table = format_table(&[c], now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("SECRET"));
        assert!(lines[1].starts_with("default/gw-web-tls"));
        for cell in [
            "a.test,b.test",
            "ClusterIssuer le",
            "2026-04-01 00:00",
            "60.0",
            "2026-03-02 00:00",
            "Ready",
        ] {
            assert!(lines[1].contains(cell), "{cell} in {}", lines[1]);
        }
        assert_eq!(lines[0].find("STATUS"), lines[1].find("Ready"));
    }

    fn listener_status(name: &str) -> crate::status::ListenerStatus {
        crate::status::ListenerStatus {
            name: name.into(),
            attached_routes: 0,
            supported_kinds: vec![],
            conditions: vec![],
            certificate_refs: vec![],
        }
    }

    #[test]
    fn certificate_problems_and_states_reach_the_listeners_they_serve() {
        use crate::status::{ConditionStatus, ConditionType, ObjectStatus, Reason, Status};
        let mut gw = ObjectStatus::new("Gateway", "default", "gw");
        gw.listeners = vec![listener_status("wild"), listener_status("web")];
        let mut status = Status { objects: vec![gw] };
        let cert = |secret: &str, listener: &str, ready: bool, problems: Vec<String>| CertStatus {
            ready,
            status: if ready {
                "Ready".into()
            } else {
                "Waiting".into()
            },
            problems,
            ..ready_cert(
                secret,
                ("Issuer", "default/le"),
                &[&format!("default/gw/{listener}")],
            )
        };
        let certs = vec![
            cert(
                "default/gw-wild-tls",
                "wild",
                true,
                vec!["wildcard hostname *.a.test needs a DNS-01 solver".into()],
            ),
            cert("default/gw-web-tls", "web", true, vec![]),
        ];
        annotate_listeners(&mut status, &certs);
        annotate_listeners(&mut status, &certs);
        let cond = |status: &Status, l: usize| {
            let c: Vec<_> = status.objects[0].listeners[l]
                .conditions
                .iter()
                .filter(|c| c.kind == ConditionType::CertificateReady)
                .collect();
            assert_eq!(c.len(), 1, "one condition after two calls");
            (c[0].status, c[0].reason, c[0].message.clone())
        };
        let (st, reason, message) = cond(&status, 0);
        assert_eq!(
            (st, reason),
            (ConditionStatus::False, Reason::CertificateConfiguration)
        );
        assert!(message.contains("DNS-01"), "{message}");
        assert_eq!(cond(&status, 1).0, ConditionStatus::True);
        let waiting = vec![cert("default/gw-web-tls", "web", false, vec![])];
        annotate_listeners(&mut status, &waiting);
        assert_eq!(cond(&status, 1).1, Reason::Issuing);
    }

    #[test]
    fn certificate_state_reaches_listener_set_listeners_not_same_named_gateway_ones() {
        use crate::status::{ConditionStatus, ConditionType, ObjectStatus, Status};
        let mut gw = ObjectStatus::new("Gateway", "apps", "extra");
        gw.listeners = vec![listener_status("web")];
        let mut set = ObjectStatus::new("ListenerSet", "apps", "extra");
        set.listeners = vec![listener_status("web")];
        let mut status = Status {
            objects: vec![gw, set],
        };
        let cert = CertStatus {
            dns_names: vec!["extra.test".into()],
            ..ready_cert(
                "apps/extra-web-tls",
                ("local-ca", "local-ca"),
                &["ListenerSet apps/extra/web"],
            )
        };
        annotate_listeners(&mut status, &[cert]);
        let ready = |status: &Status, o: usize| {
            status.objects[o].listeners[0]
                .conditions
                .iter()
                .find(|c| c.kind == ConditionType::CertificateReady)
                .map(|c| c.status)
        };
        assert_eq!(ready(&status, 1), Some(ConditionStatus::True));
        assert_eq!(
            ready(&status, 0),
            None,
            "a Gateway of the same name is untouched"
        );
        // A later report without the certificate clears the condition.
        annotate_listeners(&mut status, &[]);
        assert_eq!(ready(&status, 1), None);
    }

    #[test]
    fn annotated_copies_only_the_objects_a_certificate_concerns() {
        use crate::status::ObjectStatus;
        use std::borrow::Cow;
        let mut gw = ObjectStatus::new("Gateway", "apps", "plain");
        gw.listeners = vec![listener_status("web")];
        let mut set = ObjectStatus::new("ListenerSet", "apps", "extra");
        set.listeners = vec![listener_status("web")];
        let cert = ready_cert(
            "apps/extra-web-tls",
            ("local-ca", "local-ca"),
            &["ListenerSet apps/extra/web"],
        );
        let conditions = ListenerConditions::of(&[cert]);
        assert!(matches!(conditions.annotated(&gw), Cow::Borrowed(_)));
        let Cow::Owned(annotated) = conditions.annotated(&set) else {
            panic!("the ListenerSet a certificate serves is annotated");
        };
        let mut expected = set.clone();
        conditions.annotate(&mut expected);
        assert_eq!(annotated, expected);
        assert_ne!(annotated, set);
        // A stale condition is cleared even when no certificate is left.
        let Cow::Owned(cleared) = ListenerConditions::EMPTY.annotated(&annotated) else {
            panic!("a stale CertificateReady condition is removed");
        };
        assert_eq!(cleared, set);
    }
}
