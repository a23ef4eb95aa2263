//! What our field manager owns in a live object's status, read from its
//! `metadata.managedFields`, and whether an apply of a new status would
//! remove some of it. Server-side apply removes what a manager applied
//! before and leaves out now, so such a status differs from the live one
//! even when every field it names is already there.
//!
//! Without `managedFields` (a watch that strips them to save memory) nothing
//! counts as owned: a condition or listener compile stops reporting then
//! goes with the next write, which a spec change (a new generation) brings.

use super::map_list_key;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A path in a managed-fields set: `f:<field>` and `k:<key object>`
/// segments, the key object in one canonical spelling.
pub(in crate::cluster) type Path = Vec<String>;

/// Whether applying `desired` (a status) under `manager` would remove a
/// condition, listener, feature or top-level field `manager` owns in `live`.
pub(super) fn drops_owned(live: &Value, manager: &str, desired: &Value) -> bool {
    let Some(owned) = owned_paths(live, manager) else {
        return false;
    };
    let mut wanted = BTreeSet::new();
    desired_paths(desired, None, &mut Vec::new(), &mut wanted);
    owned
        .iter()
        .filter(|p| p.len() == 1 || p.last().is_some_and(|s| s.starts_with("k:")))
        .any(|p| !wanted.contains(p))
}

/// The status paths `manager` owns through the status subresource, or
/// `None` when the object carries no `managedFields` at all.
fn owned_paths(live: &Value, manager: &str) -> Option<BTreeSet<Path>> {
    owned_under(live, manager, Some("status"), "f:status")
}

/// The paths under the top-level field `root` (`f:metadata`, `f:spec`,
/// ...) that `manager` owns, through `subresource` (`None`: the object
/// itself), or `None` when the object carries no `managedFields` at all.
pub(in crate::cluster) fn owned_under(
    live: &Value,
    manager: &str,
    subresource: Option<&str>,
    root: &str,
) -> Option<BTreeSet<Path>> {
    let entries = live["metadata"]["managedFields"].as_array()?;
    let mut out = BTreeSet::new();
    for e in entries
        .iter()
        .filter(|e| e["manager"] == manager && e["subresource"].as_str() == subresource)
    {
        managed_paths(&e["fieldsV1"][root], &mut Vec::new(), &mut out);
    }
    Some(out)
}

fn managed_paths(set: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(fields) = set.as_object() else {
        return;
    };
    for (k, child) in fields {
        if k == "." {
            continue;
        }
        let segment = match k.strip_prefix("k:") {
            Some(key) => match serde_json::from_str::<Value>(key) {
                Ok(Value::Object(o)) => key_segment(&o),
                _ => k.clone(),
            },
            None => k.clone(),
        };
        prefix.push(segment);
        out.insert(prefix.clone());
        managed_paths(child, prefix, out);
        prefix.pop();
    }
}

/// The paths a status body sets, in the managed-fields spelling; atomic
/// lists and scalars are leaves.
fn desired_paths(v: &Value, field: Option<&str>, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                prefix.push(format!("f:{k}"));
                out.insert(prefix.clone());
                desired_paths(child, Some(k), prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            let Some(key) = field.and_then(map_list_key) else {
                return;
            };
            for item in items {
                let mut k = Map::new();
                k.insert(key.to_string(), item[key].clone());
                prefix.push(key_segment(&k));
                out.insert(prefix.clone());
                desired_paths(item, None, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// `k:` and the key object with its fields sorted, so two spellings of one
/// key compare equal.
pub(in crate::cluster) fn key_segment(key: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = key.iter().collect();
    format!("k:{}", serde_json::to_string(&sorted).unwrap_or_default())
}
