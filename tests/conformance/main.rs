//! Gateway API conformance harness: runs the real `portcullis` binary against
//! in-process echo backends for every case of the shared conformance data
//! (`cases.json`, `status-only.json`), one named test per case, plus
//! `harness_self_check`. A case fails when its request entries' expectations
//! or encoded status checks fail, unless it is listed in
//! [`cases::KNOWN_FAILING`]; cases out of scope are reported as ignored
//! (`--include-ignored` runs them anyway).
//!
//! A custom test harness (`harness = false`, libtest-mimic), so the usual
//! test arguments work: `cargo test --test conformance HTTPRouteWeight` runs
//! the cases whose names contain `HTTPRouteWeight`, `-- --exact NAME` exactly
//! one, `-- --list` lists them. When no filter is given, the pass table is
//! printed and written to `target/conformance.md`.
//!
//! `PORTCULLIS_CONFORMANCE_CASES=Name1,Name2` also runs a subset;
//! `PORTCULLIS_CONFORMANCE_FEATURES=F1,F2` puts more features in scope for
//! this run (`prepared` stands for every feature of
//! [`cases::PREPARED_FEATURES`]); `PORTCULLIS_CONFORMANCE_JOBS` (or
//! `--test-threads`) sets how many cases run at once (default 2);
//! `PORTCULLIS_SHARED` points at the shared directory (default `../shared`).
//!
//! Layout: [`cases`] loads the cases and decides scope, [`run`] starts a case's
//! environment and walks its entries, [`traffic`] sends and checks each
//! entry's requests, [`report`] renders the table, [`self_check`] checks the
//! harness without the gateway.

mod cases;
mod report;
mod run;
mod self_check;
// Without libtest, support's `#[cfg(test)]` unit tests lose their `#[test]`
// functions here (they run in the other test targets), leaving their imports
// unused.
#[allow(unused_imports)]
#[path = "../support/mod.rs"]
mod support;
mod traffic;

use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cases::{Case, Outcome, KNOWN_FAILING};

/// Each case's result, in the order of the case list, for the report.
type Results = Arc<Mutex<Vec<Option<(Case, Outcome, Duration)>>>>;

fn main() {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(jobs());
    }
    support::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime builds");

    let subset: Option<Vec<String>> = std::env::var("PORTCULLIS_CONFORMANCE_CASES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
    let all = cases::load_cases();
    if let Some(names) = &subset {
        for name in names {
            assert!(all.iter().any(|c| &c.name == name), "unknown case {name}");
        }
    }
    let whole_set = subset.is_none() && args.filter.is_none() && args.skip.is_empty();

    // Addresses and ports are laid out by the case's index in the full list,
    // so a case gets the same layout whichever subset runs.
    let (base, port_offset) = {
        use rand::Rng;
        let mut rng = rand::rng();
        (
            rng.random_range(0..40_000u32),
            20_000 + rng.random_range(0..100u16) * 100,
        )
    };
    let in_scope = Arc::new(cases::scope_features());
    let results: Results = Arc::new(Mutex::new(vec![None; all.len()]));
    let self_check_rt = rt.handle().clone();
    let mut trials = vec![Trial::test("harness_self_check", move || {
        self_check::harness_self_check(&self_check_rt);
        Ok(())
    })];
    for (i, case) in all.into_iter().enumerate() {
        if subset.as_ref().is_some_and(|s| !s.contains(&case.name)) {
            continue;
        }
        let scope = cases::scope(&case, &in_scope);
        if let (Err(why), Ok(mut r)) = (&scope, results.lock()) {
            r[i] = Some((
                case.clone(),
                Outcome::NotInScope(why.clone()),
                Duration::ZERO,
            ));
        }
        let handle = rt.handle().clone();
        let results = results.clone();
        let name = case.name.clone();
        trials.push(
            Trial::test(name, move || {
                let t = Instant::now();
                let layout = cases::layout_for(base, i as u32, port_offset);
                let outcome =
                    match handle.block_on(run::run_case(&case, &layout, support::pki::suite())) {
                        Ok(()) => Outcome::Passed,
                        Err(e) => Outcome::Failed(e),
                    };
                let verdict = verdict(&case.name, &outcome);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some((case, outcome, t.elapsed()));
                }
                verdict
            })
            .with_ignored_flag(scope.is_err()),
        );
    }

    let started = Instant::now();
    let conclusion = libtest_mimic::run(&args, trials);
    if whole_set && !args.list {
        let results: Vec<_> = match results.lock() {
            Ok(r) => r.iter().flatten().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let report = report::render_report(&results, started.elapsed());
        println!("{report}");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let _ = std::fs::create_dir_all(&target);
        let _ = std::fs::write(target.join("conformance.md"), &report);
    }
    conclusion.exit();
}

/// How many cases run at once: `PORTCULLIS_CONFORMANCE_JOBS`, default 2.
fn jobs() -> usize {
    std::env::var("PORTCULLIS_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2)
        .max(1)
}

/// A failed case fails its test unless [`KNOWN_FAILING`] expects it to.
fn verdict(name: &str, outcome: &Outcome) -> Result<(), Failed> {
    let known: BTreeMap<&str, &str> = KNOWN_FAILING.iter().copied().collect();
    match outcome {
        Outcome::Failed(reason) if !known.contains_key(name) => Err(reason.as_str().into()),
        Outcome::Failed(reason) => {
            println!("{name}: known failing: {reason}");
            Ok(())
        }
        Outcome::Passed if known.contains_key(name) => {
            println!("{name} now passing, remove from KNOWN_FAILING");
            Ok(())
        }
        _ => Ok(()),
    }
}
