//! The log lines of what compile refuses ([`Refused`]): every object, route
//! parent and listener whose `Accepted` or `ResolvedRefs` condition is
//! False, and every Gateway not programmed for want of an address (the
//! address pool is exhausted), gets one warning naming it, the condition,
//! its reason and its message — when it becomes so or its reason or message changes, not on
//! every reload (a cluster reloads on every change of anything). Status
//! says the same to the API; the log is where an operator without access
//! to the objects' status (or running standalone) sees it.

use crate::status::{Condition, ConditionStatus, ConditionType, Reason, Status};
use std::collections::BTreeMap;

/// One False condition: where it is, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `Kind namespace/name` (no namespace for cluster-scoped kinds).
    pub object: String,
    /// Empty for the object itself, `parent <ref>` or `listener <name>`.
    pub scope: String,
    /// `Accepted`, `ResolvedRefs` or `Programmed`.
    pub condition: &'static str,
    /// The condition's reason.
    pub reason: &'static str,
    /// The condition's message.
    pub message: String,
}

impl Refused {
    /// Logs it as a warning.
    pub fn log(&self) {
        tracing::warn!(
            object = %self.object,
            scope = %self.scope,
            condition = self.condition,
            reason = self.reason,
            message = %self.message,
            "refused by compile (status says so too)"
        );
    }
}

/// What was refused at the last reload, to log only what changed.
#[derive(Debug, Default)]
pub struct RefusedLog {
    last: BTreeMap<(String, String, &'static str), (&'static str, String)>,
}

impl RefusedLog {
    /// The refusals of `status` that are new or say something new since
    /// the previous call; remembers `status`'s for the next.
    pub fn changed(&mut self, status: &Status) -> Vec<Refused> {
        let now = refusals(status);
        let fresh = now
            .iter()
            .filter(|r| {
                self.last
                    .get(&(r.object.clone(), r.scope.clone(), r.condition))
                    .is_none_or(|(reason, message)| *reason != r.reason || *message != r.message)
            })
            .cloned()
            .collect();
        self.last = now
            .into_iter()
            .map(|r| ((r.object, r.scope, r.condition), (r.reason, r.message)))
            .collect();
        fresh
    }
}

/// Every False `Accepted` or `ResolvedRefs` condition of `status`, and
/// every `Programmed` False for want of an address.
fn refusals(status: &Status) -> Vec<Refused> {
    let mut out = Vec::new();
    for o in &status.objects {
        let object = if o.namespace.is_empty() {
            format!("{} {}", o.kind, o.name)
        } else {
            format!("{} {}/{}", o.kind, o.namespace, o.name)
        };
        let mut push = |scope: String, conditions: &[Condition]| {
            for c in conditions {
                let watched = match c.kind {
                    ConditionType::Accepted | ConditionType::ResolvedRefs => true,
                    ConditionType::Programmed => c.reason == Reason::AddressNotAssigned,
                    _ => false,
                };
                if watched && c.status == ConditionStatus::False {
                    out.push(Refused {
                        object: object.clone(),
                        scope: scope.clone(),
                        condition: c.kind.as_str(),
                        reason: c.reason.as_str(),
                        message: c.message.clone(),
                    });
                }
            }
        };
        push(String::new(), &o.conditions);
        for l in &o.listeners {
            push(format!("listener {}", l.name), &l.conditions);
        }
        for p in &o.parents {
            let r = &p.parent_ref;
            let mut scope = format!("parent {} {}/{}", r.kind, r.namespace, r.name);
            if let Some(section) = &r.section_name {
                scope.push('/');
                scope.push_str(section);
            }
            push(scope, &p.conditions);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ObjectStatus;

    fn route(accepted: bool, message: &str) -> Status {
        let mut o = ObjectStatus::new("HTTPRoute", "apps", "bad");
        o.conditions.push(Condition::new(
            ConditionType::Accepted,
            accepted,
            if accepted {
                Reason::Accepted
            } else {
                Reason::UnsupportedValue
            },
            message,
            1,
        ));
        let mut ok = ObjectStatus::new("GatewayClass", "", "portcullis");
        ok.conditions.push(Condition::new(
            ConditionType::Accepted,
            true,
            Reason::Accepted,
            "",
            1,
        ));
        Status {
            objects: vec![ok, o],
        }
    }

    #[test]
    fn a_refusal_is_logged_when_it_appears_or_changes_not_on_every_reload() {
        let mut log = RefusedLog::default();
        let first = log.changed(&route(false, "invalid regular expression"));
        assert_eq!(
            first,
            vec![Refused {
                object: "HTTPRoute apps/bad".into(),
                scope: String::new(),
                condition: "Accepted",
                reason: "UnsupportedValue",
                message: "invalid regular expression".into(),
            }]
        );
        assert!(log
            .changed(&route(false, "invalid regular expression"))
            .is_empty());
        assert_eq!(log.changed(&route(false, "another problem")).len(), 1);
        assert!(log.changed(&route(true, "")).is_empty(), "fixed");
        assert_eq!(
            log.changed(&route(false, "another problem")).len(),
            1,
            "refused again after being fixed"
        );
    }
    #[test]
    fn a_gateway_without_an_address_is_logged_other_unprogrammed_states_are_not() {
        let mut o = ObjectStatus::new("Gateway", "apps", "web");
        o.conditions.push(Condition::new(
            ConditionType::Programmed,
            false,
            Reason::AddressNotAssigned,
            "the address pool (198.18.4.7/32) has no address left",
            1,
        ));
        let mut not_accepted = ObjectStatus::new("Gateway", "apps", "other");
        not_accepted.conditions.push(Condition::new(
            ConditionType::Programmed,
            false,
            Reason::Invalid,
            "the Gateway is not accepted",
            1,
        ));
        let got = RefusedLog::default().changed(&Status {
            objects: vec![o, not_accepted],
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].object.as_str(), got[0].reason),
            ("Gateway apps/web", "AddressNotAssigned")
        );
    }
}
