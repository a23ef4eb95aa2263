//! What the scale benchmark observes: the API server's view of status
//! (watches, [`Progress`]), portcullis's write counter, process memory and
//! CPU from `/proc`, and percentiles.

use super::support::kube_mode::condition;
use anyhow::{Context, Result};
use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which objects already show what portcullis should say, as watches see
/// them, and when all of them first did.
#[derive(Debug, Default)]
pub struct Progress {
    pub expected: usize,
    pub done: HashSet<String>,
    pub all_done_at: Option<Instant>,
    pub events: u64,
}

pub type Shared = Arc<Mutex<Progress>>;

pub fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Progress> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_true_current(conditions: &Value, kind: &str, generation: Option<i64>) -> bool {
    condition(conditions, kind)
        .is_some_and(|c| c["status"] == "True" && c["observedGeneration"].as_i64() == generation)
}

/// An HTTPRoute whose parent entry written by `controller` says Accepted
/// for the current generation.
pub fn route_accepted(route: &Value, controller: &str) -> bool {
    let generation = route["metadata"]["generation"].as_i64();
    route["status"]["parents"]
        .as_array()
        .is_some_and(|parents| {
            parents.iter().any(|p| {
                p["controllerName"] == controller
                    && is_true_current(&p["conditions"], "Accepted", generation)
            })
        })
}

/// A Gateway that is Programmed for its current generation.
pub fn gateway_programmed(gateway: &Value, _controller: &str) -> bool {
    let generation = gateway["metadata"]["generation"].as_i64();
    is_true_current(&gateway["status"]["conditions"], "Programmed", generation)
}

/// Watches every object of `resource` and keeps `progress` up to date with
/// which satisfy `done`.
pub fn watch(
    client: kube::Client,
    resource: ApiResource,
    controller: &'static str,
    done: fn(&Value, &str) -> bool,
    progress: Shared,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let (object, deleted) = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                Ok(watcher::Event::Delete(o)) => (o, true),
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("watch {}: {e}", resource.kind);
                    continue;
                }
            };
            let key = format!(
                "{}/{}",
                object.metadata.namespace.as_deref().unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default()
            );
            let ok = !deleted && serde_json::to_value(&object).is_ok_and(|v| done(&v, controller));
            let mut p = lock(&progress);
            p.events += 1;
            if ok {
                p.done.insert(key);
            } else {
                p.done.remove(&key);
            }
            if p.all_done_at.is_none() && p.expected > 0 && p.done.len() >= p.expected {
                p.all_done_at = Some(Instant::now());
            }
        }
    })
}

/// `portcullis_kubernetes_writes_total` by "kind/outcome".
pub fn writes(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("portcullis_kubernetes_writes_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        out.insert(format!("{}/{}", label("kind"), label("outcome")), n);
    }
    out
}

/// The sum of writes whose outcome is `outcome` (all when `None`).
pub fn total(writes: &BTreeMap<String, u64>, outcome: Option<&str>) -> u64 {
    writes
        .iter()
        .filter(|(k, _)| outcome.is_none_or(|o| k.ends_with(&format!("/{o}"))))
        .map(|(_, v)| v)
        .sum()
}

/// VmRSS and VmHWM of `pid`, in KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// User + system CPU time of `pid`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start at state.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    let hz = 100; // USER_HZ on Linux
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz))
}

/// Percentile `q` (0..=1) of sorted `values` by nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p90, p99, max and count of `values` (ms), as JSON.
pub fn summary(values: &[f64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let round = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
    serde_json::json!({
        "n": sorted.len(),
        "p50_ms": round(percentile(&sorted, 0.5)),
        "p90_ms": round(percentile(&sorted, 0.9)),
        "p99_ms": round(percentile(&sorted, 0.99)),
        "max_ms": round(sorted.last().copied()),
        "min_ms": round(sorted.first().copied()),
    })
}
