//! Conditions as the API carries them (`metav1.Condition`): compile's
//! [`Condition`]s rendered against the live ones, which give the
//! `lastTransitionTime` of a status that did not change and tell whether
//! this compile is older than what the object already says.

use crate::status::{Condition, ConditionType};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::SystemTime;

/// `maxLength` of a condition message.
pub(super) const MAX_MESSAGE_BYTES: usize = 32768;

/// Renders conditions against the live ones, remembering whether any live
/// condition of ours is from a newer generation than compile saw.
pub(super) struct Render {
    now: String,
    /// A live condition of ours has a higher `observedGeneration`.
    pub(super) stale: bool,
}

impl Render {
    pub(super) fn new(now: SystemTime) -> Self {
        Self {
            now: rfc3339_seconds(now),
            stale: false,
        }
    }

    /// `ours` as API conditions (one per type, first wins), each matched
    /// with the live condition of its type in `live` (an array or null).
    pub(super) fn conditions(&mut self, ours: &[Condition], live: &Value) -> Value {
        self.conditions_where(ours, live, |_| true)
    }

    pub(super) fn conditions_where(
        &mut self,
        ours: &[Condition],
        live: &Value,
        keep: impl Fn(ConditionType) -> bool,
    ) -> Value {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for c in ours {
            if !keep(c.kind) || !seen.insert(c.kind.as_str()) {
                continue;
            }
            let previous = live
                .as_array()
                .and_then(|l| l.iter().find(|x| x["type"] == c.kind.as_str()));
            out.push(self.condition(c, previous));
        }
        Value::Array(out)
    }

    fn condition(&mut self, c: &Condition, previous: Option<&Value>) -> Value {
        let status = c.status.as_str();
        let generation = c.observed_generation.max(0);
        let mut since = self.now.clone();
        if let Some(p) = previous {
            if p["observedGeneration"]
                .as_i64()
                .is_some_and(|g| g > generation)
            {
                self.stale = true;
            }
            if p["status"] == status {
                if let Some(t) = p["lastTransitionTime"].as_str() {
                    since = t.to_string();
                }
            }
        }
        json!({
            "type": c.kind.as_str(),
            "status": status,
            "reason": c.reason.as_str(),
            "message": truncate(&c.message, MAX_MESSAGE_BYTES),
            "lastTransitionTime": since,
            "observedGeneration": generation,
        })
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// RFC 3339 in UTC with whole seconds (`2026-08-21T10:00:00Z`), as the API's
/// `metav1.Time` serialises.
pub(super) fn rfc3339_seconds(t: SystemTime) -> String {
    use k8s_openapi::jiff::Timestamp;
    let ts = Timestamp::try_from(t).unwrap_or(if t < SystemTime::UNIX_EPOCH {
        Timestamp::UNIX_EPOCH
    } else {
        Timestamp::MAX
    });
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
