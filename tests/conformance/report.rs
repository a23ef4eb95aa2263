//! The markdown report of a whole run (printed and written to
//! `target/conformance.md`): per-feature counts and one row per case.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cases::{Case, Outcome};

pub(crate) fn render_report(results: &[(Case, Outcome, Duration)], total: Duration) -> String {
    // feature -> (passed, failed, not in scope)
    let mut by_feature: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (case, outcome, _) in results {
        for f in &case.features {
            let e = by_feature.entry(f.as_str()).or_default();
            match outcome {
                Outcome::Passed => e.0 += 1,
                Outcome::Failed(_) => e.1 += 1,
                Outcome::NotInScope(_) => e.2 += 1,
            }
        }
    }
    let passed = results
        .iter()
        .filter(|r| matches!(r.1, Outcome::Passed))
        .count();
    let scoped = results
        .iter()
        .filter(|r| !matches!(r.1, Outcome::NotInScope(_)))
        .count();
    let mut out = format!(
        "# Gateway API conformance\n\n{passed}/{scoped} in-scope cases passed ({} not in scope), {:.1}s\n\n| feature | passed | failed | not in scope |\n| --- | --- | --- | --- |\n",
        results.len() - scoped,
        total.as_secs_f64()
    );
    for (f, (p, x, n)) in &by_feature {
        out.push_str(&format!("| {f} | {p} | {x} | {n} |\n"));
    }
    out.push_str("\n| case | result | time | first failure / why not in scope |\n| --- | --- | --- | --- |\n");
    for (case, outcome, took) in results {
        let (result, reason) = match outcome {
            Outcome::Passed => ("pass", String::new()),
            Outcome::Failed(r) => ("FAIL", r.replace('|', "\\|").replace('\n', " ")),
            Outcome::NotInScope(why) => ("not in scope", why.clone()),
        };
        let reason: String = reason.chars().take(300).collect();
        let kind = if case.status_only {
            " (status only)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {}{kind} | {result} | {:.1}s | {reason} |\n",
            case.name,
            took.as_secs_f64()
        ));
    }
    out
}
