//! The two status lists a route or policy shares with other controllers:
//! route `status.parents` and policy `status.ancestors`. Both are atomic in
//! the CRDs, so the body carries the whole list: other controllers' entries
//! as they are and where they are, ours replaced, dropped or appended.

use super::{PatchContext, Render, GATEWAY_GROUP};
use crate::status::{ObjectStatus, ParentRefStatus};
use serde_json::{json, Map, Value};

/// `maxItems` of a route's `status.parents`.
pub(super) const MAX_ROUTE_PARENTS: usize = 32;
/// `maxItems` of a policy's `status.ancestors`.
pub(super) const MAX_POLICY_ANCESTORS: usize = 16;
/// A parentRef or ancestorRef with the API's defaults applied, for telling
/// which live entry an entry of ours replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefKey {
    group: String,
    kind: String,
    namespace: String,
    name: String,
    section_name: Option<String>,
    port: Option<i64>,
}

impl RefKey {
    fn of_status(r: &ParentRefStatus) -> Self {
        Self {
            group: r.group.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            section_name: r.section_name.clone(),
            port: r.port,
        }
    }

    /// A ref as the API stores it; `namespace` defaults to the referrer's.
    fn of_value(v: &Value, local_namespace: &str) -> Self {
        let text = |k: &str, default: &str| v[k].as_str().unwrap_or(default).to_string();
        Self {
            group: text("group", GATEWAY_GROUP),
            kind: text("kind", "Gateway"),
            namespace: text("namespace", local_namespace),
            name: text("name", ""),
            section_name: v["sectionName"].as_str().map(str::to_string),
            port: v["port"].as_i64(),
        }
    }
}

/// The ref fields the API defines, in the order it documents them.
const REF_FIELDS: [&str; 6] = ["group", "kind", "namespace", "name", "sectionName", "port"];

/// `r` as written in the live object's `spec.parentRefs` (what the user
/// wrote, with the API server's defaults), or in full when the spec no
/// longer has it (compile was of an older spec; the next one corrects it).
fn echo_parent_ref(r: &ParentRefStatus, spec_refs: &Value, local_namespace: &str) -> Value {
    let key = RefKey::of_status(r);
    let written = spec_refs.as_array().and_then(|refs| {
        refs.iter()
            .find(|x| RefKey::of_value(x, local_namespace) == key)
    });
    match written {
        Some(w) => {
            let mut out = Map::new();
            for f in REF_FIELDS {
                if let Some(v) = w.get(f).filter(|v| !v.is_null()) {
                    out.insert(f.into(), v.clone());
                }
            }
            Value::Object(out)
        }
        None => full_ref(r),
    }
}

fn full_ref(r: &ParentRefStatus) -> Value {
    let mut out = Map::new();
    out.insert("group".into(), json!(r.group));
    out.insert("kind".into(), json!(r.kind));
    out.insert("namespace".into(), json!(r.namespace));
    out.insert("name".into(), json!(r.name));
    if let Some(s) = &r.section_name {
        out.insert("sectionName".into(), json!(s));
    }
    if let Some(p) = r.port {
        out.insert("port".into(), json!(p));
    }
    Value::Object(out)
}

/// One entry of ours for a shared list.
struct Entry {
    key: RefKey,
    value: Value,
}

/// The shared atomic list `field` (`parents` or `ancestors`, whose entries
/// name their object in `ref_field`): live entries of other controllers
/// kept as they are and where they are, ours replaced in place or dropped,
/// new ones of ours appended; at most `max` entries, ours cut first.
fn merge_shared(
    live: &Value,
    ref_field: &str,
    ours: Vec<Entry>,
    controller_name: &str,
    local_namespace: &str,
    max: usize,
) -> Vec<Value> {
    let mut used = vec![false; ours.len()];
    // (entry, is ours)
    let mut out: Vec<(Value, bool)> = Vec::new();
    for e in live.as_array().into_iter().flatten() {
        if e["controllerName"] != controller_name {
            out.push((e.clone(), false));
            continue;
        }
        let key = RefKey::of_value(&e[ref_field], local_namespace);
        if let Some(i) = (0..ours.len()).find(|&i| !used[i] && ours[i].key == key) {
            used[i] = true;
            out.push((ours[i].value.clone(), true));
        }
    }
    for (entry, used) in ours.into_iter().zip(used) {
        if !used {
            out.push((entry.value, true));
        }
    }
    while out.len() > max {
        match out.iter().rposition(|(_, mine)| *mine) {
            Some(i) => {
                out.remove(i);
            }
            None => break,
        }
    }
    out.into_iter().map(|(v, _)| v).collect()
}

/// The live entry of ours in a shared list for `key` (its conditions give
/// the transition times).
fn live_entry<'v>(
    live: &'v Value,
    ref_field: &str,
    key: &RefKey,
    controller_name: &str,
    local_namespace: &str,
) -> &'v Value {
    live.as_array()
        .and_then(|a| {
            a.iter().find(|e| {
                e["controllerName"] == controller_name
                    && RefKey::of_value(&e[ref_field], local_namespace) == *key
            })
        })
        .unwrap_or(&Value::Null)
}

pub(super) fn route_status(
    render: &mut Render,
    ours: &ObjectStatus,
    live: &Value,
    ctx: &PatchContext<'_>,
) -> Value {
    let live_parents = &live["status"]["parents"];
    let spec_refs = &live["spec"]["parentRefs"];
    let mut entries: Vec<Entry> = Vec::new();
    for p in &ours.parents {
        let key = RefKey::of_status(&p.parent_ref);
        if !ctx.owned.owns(&p.parent_ref)
            || p.conditions.is_empty()
            || entries.iter().any(|e| e.key == key)
        {
            continue;
        }
        let previous = live_entry(
            live_parents,
            "parentRef",
            &key,
            ctx.controller_name,
            &ours.namespace,
        );
        let value = json!({
            "parentRef": echo_parent_ref(&p.parent_ref, spec_refs, &ours.namespace),
            "controllerName": ctx.controller_name,
            "conditions": render.conditions(&p.conditions, &previous["conditions"]),
        });
        entries.push(Entry { key, value });
    }
    let parents = merge_shared(
        live_parents,
        "parentRef",
        entries,
        ctx.controller_name,
        &ours.namespace,
        MAX_ROUTE_PARENTS,
    );
    json!({ "parents": parents })
}

pub(super) fn policy_status(
    render: &mut Render,
    ours: &ObjectStatus,
    live: &Value,
    ctx: &PatchContext<'_>,
    ancestors: &[ParentRefStatus],
) -> Value {
    let live_ancestors = &live["status"]["ancestors"];
    let mut entries: Vec<Entry> = Vec::new();
    if !ours.conditions.is_empty() {
        for a in ancestors {
            let key = RefKey::of_status(a);
            if !ctx.owned.owns(a) || entries.iter().any(|e| e.key == key) {
                continue;
            }
            let previous = live_entry(
                live_ancestors,
                "ancestorRef",
                &key,
                ctx.controller_name,
                &ours.namespace,
            );
            let value = json!({
                "ancestorRef": full_ref(a),
                "controllerName": ctx.controller_name,
                "conditions": render.conditions(&ours.conditions, &previous["conditions"]),
            });
            entries.push(Entry { key, value });
        }
    }
    let list = merge_shared(
        live_ancestors,
        "ancestorRef",
        entries,
        ctx.controller_name,
        &ours.namespace,
        MAX_POLICY_ANCESTORS,
    );
    json!({ "ancestors": list })
}
