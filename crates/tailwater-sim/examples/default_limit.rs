//! The `default-limit` suite for one or more policies, without the CLI (a quicker build while
//! tuning an algorithm): prints every check that fails (every check but the do-no-harm cells
//! with `ALL=1`) and the count; with `CELL=NAME` the time series of the checks whose name
//! contains NAME instead; `SEED=N` runs every scenario on seed N; `SEEDS=1,2,3` runs the
//! suite once per seed and prints each seed's misses, then every check missed on any seed
//! with the number of seeds it missed on (a figure tuned on one seed is luck until the others
//! agree), and with `CELLS=1` every check's figure per seed (to compare two runs cell by
//! cell: a do-no-harm cell must not shed more); `MARKDOWN=1` prints the summary and every do-no-harm cell as the README's tables.
//! `ONLY=TEXT` runs only the checks whose scenario name contains TEXT, or any of several
//! comma-separated TEXTs (quick iteration on a few checks: `ONLY=small-pool`,
//! `ONLY="bimodal w4,cpu-thrash"`), with every mode above.
//!
//! `cargo run --release -p tailwater-sim --example default_limit -- headroom [GROUP...]`
use tailwater_sim::engine::{self, RunOptions};
use tailwater_sim::policy::PolicySpec;
use tailwater_sim::suite;

fn main() {
    let mut args = std::env::args().skip(1);
    let policies: Vec<String> = args
        .next()
        .unwrap_or_else(|| "headroom".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let groups: Vec<String> = args.collect();
    let specs: Vec<PolicySpec> = policies
        .iter()
        .map(|p| PolicySpec::parse(p).expect("a policy"))
        .collect();
    let mut checks = suite::suite("default-limit").expect("the suite");
    // ONLY=TEXT[,TEXT...]: the checks whose scenario name contains any of the TEXTs.
    if let Ok(only) = std::env::var("ONLY") {
        checks.retain(|c| only.split(',').any(|t| c.scenario.name.contains(t)));
        assert!(
            !checks.is_empty(),
            "ONLY={only}: no scenario name contains it"
        );
    }
    // SEED=N: every scenario on seed N (as `tailwater sim --suite default-limit --seed N`).
    if let Some(seed) = std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        suite::reseed(&mut checks, seed);
    }
    if let Ok(cell) = std::env::var("CELL") {
        // One check's time series (every STEP-th point), then stop.
        let step: usize = std::env::var("STEP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        for c in checks.iter().filter(|c| c.scenario.name.contains(&cell)) {
            for spec in &specs {
                let r = engine::run(&c.scenario, spec, RunOptions { series: true }).expect("runs");
                println!(
                    "== {} {}: shed {:.2}% gp {:?} p99 {:.2}x conv {:?}",
                    c.scenario.name,
                    spec.name,
                    r.shed_total as f64 * 100.0 / r.attempts.max(1) as f64,
                    r.overload_goodput,
                    r.p99_ratio,
                    r.convergence_s
                );
                for p in r.series.iter().step_by(step) {
                    println!(
                        "  t {:7.2} L {:5} inflight {:5} q {:5} off {:8.0} gp {:8.0} lat {:8.1}",
                        p.t,
                        p.limit,
                        p.in_flight,
                        p.server_queue,
                        p.offered_rps,
                        p.goodput_rps,
                        p.mean_latency_ms
                    );
                }
            }
        }
        return;
    }
    let start = std::time::Instant::now();
    if let Ok(seeds) = std::env::var("SEEDS") {
        let seeds: Vec<u64> = seeds
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("SEEDS: a comma-separated list of seeds")
            })
            .collect();
        print_seeds(&policies, &checks, &specs, &groups, &seeds);
        eprintln!("{:?}", start.elapsed());
        return;
    }
    let results = run_threaded(&checks, &specs, &groups);
    if std::env::var_os("MARKDOWN").is_some() {
        print_markdown(&policies, &results);
        return;
    }
    for (i, p) in policies.iter().enumerate() {
        println!("== {p}");
        let mut failed = 0;
        for r in &results {
            let o = &r.outcomes[i];
            let verbose = std::env::var_os("ALL").is_some();
            if !o.pass || (verbose && r.group != "no-harm") {
                println!(
                    "  {} {:<40} {}",
                    if o.pass { "ok  " } else { "FAIL" },
                    r.name,
                    o.figure
                );
            }
            failed += usize::from(!o.pass);
        }
        for load in ["0.5x", "0.9x"] {
            let cells: Vec<&suite::Outcome> = results
                .iter()
                .filter(|r| r.group == "no-harm" && r.name.ends_with(load))
                .map(|r| &r.outcomes[i])
                .collect();
            if let Some(worst) = cells.iter().max_by(|a, b| a.shed.total_cmp(&b.shed)) {
                println!(
                    "  no-harm {load}: worst {:.2}%, {}/{} cells ok",
                    worst.shed * 100.0,
                    cells.iter().filter(|o| o.pass).count(),
                    cells.len()
                );
            }
        }
        println!("  {failed} of {} checks fail", results.len());
    }
    eprintln!("{:?}", start.elapsed());
}

/// The summary (one row per check, the do-no-harm matrix in two rows) and every do-no-harm
/// cell, as Markdown tables (misses in bold).
fn print_markdown(policies: &[String], results: &[suite::CheckResult]) {
    let header = |first: &str| {
        let names: Vec<String> = policies.iter().map(|p| format!("`{p}`")).collect();
        println!("| {first} | {} |", names.join(" | "));
        println!("|---|{}", "---|".repeat(policies.len()));
    };
    let mark = |o: &suite::Outcome| {
        if o.pass {
            format!("ok {}", o.figure)
        } else {
            format!("**FAIL** {}", o.figure)
        }
    };
    header("check (goal)");
    for (load, max) in [
        ("0.5x", suite::NO_HARM_SHED_HALF),
        ("0.9x", suite::NO_HARM_SHED_NINE),
    ] {
        let cells: Vec<&suite::CheckResult> = results
            .iter()
            .filter(|r| r.group == "no-harm" && r.name.ends_with(load))
            .collect();
        let row: Vec<String> = (0..policies.len())
            .map(|i| {
                let worst = cells.iter().map(|c| c.outcomes[i].shed).fold(0.0, f64::max);
                let ok = cells.iter().filter(|c| c.outcomes[i].pass).count();
                let verdict = if ok == cells.len() { "ok" } else { "**FAIL**" };
                format!("{verdict} {:.2}% {ok}/{}", worst * 100.0, cells.len())
            })
            .collect();
        println!(
            "| no-harm {load}: worst shed, cells ok (<= {}%) | {} |",
            max * 100.0,
            row.join(" | ")
        );
    }
    for r in results.iter().filter(|r| r.group != "no-harm") {
        let row: Vec<String> = r.outcomes.iter().map(mark).collect();
        println!("| {} | {} |", r.name, row.join(" | "));
    }
    let every: Vec<String> = (0..policies.len())
        .map(|i| {
            let failed = results.iter().filter(|r| !r.outcomes[i].pass).count();
            if failed == 0 {
                "MET".to_string()
            } else {
                format!("{failed} of {} checks fail", results.len())
            }
        })
        .collect();
    println!("| every goal | {} |", every.join(" | "));
    println!();
    header("cell (service, workers, mean, load)");
    for r in results.iter().filter(|r| r.group == "no-harm") {
        let row: Vec<String> = r
            .outcomes
            .iter()
            .map(|o| {
                if o.pass {
                    o.figure.clone()
                } else {
                    format!("**{}**", o.figure)
                }
            })
            .collect();
        println!(
            "| {} | {} |",
            r.name.trim_start_matches("no-harm "),
            row.join(" | ")
        );
    }
}

/// Runs the checks on `THREADS` threads (default 2), every other check each, merged back in
/// order.
fn run_threaded(
    checks: &[suite::Check],
    specs: &[PolicySpec],
    groups: &[String],
) -> Vec<suite::CheckResult> {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let parts: Vec<Vec<suite::CheckResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let mine: Vec<suite::Check> =
                    checks.iter().skip(k).step_by(threads).cloned().collect();
                scope.spawn(move || suite::run(&mine, specs, groups).expect("runs"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("joins"))
            .collect()
    });
    let mut results = Vec::new();
    let mut iters: Vec<_> = parts.into_iter().map(|p| p.into_iter()).collect();
    'merge: loop {
        for it in &mut iters {
            match it.next() {
                Some(r) => results.push(r),
                None => break 'merge,
            }
        }
    }
    for it in &mut iters {
        results.extend(it);
    }
    results
}

/// `SEEDS=...`: the suite once per seed; each seed's misses, then every check missed on any
/// seed with the number of seeds it missed on, per policy.
fn print_seeds(
    policies: &[String],
    checks: &[suite::Check],
    specs: &[PolicySpec],
    groups: &[String],
    seeds: &[u64],
) {
    let mut per_seed = Vec::new();
    for &seed in seeds {
        let mut checks = checks.to_vec();
        suite::reseed(&mut checks, seed);
        per_seed.push(run_threaded(&checks, specs, groups));
    }
    for (i, p) in policies.iter().enumerate() {
        println!("== {p}");
        for (seed, results) in seeds.iter().zip(&per_seed) {
            let missed: Vec<String> = results
                .iter()
                .filter(|r| !r.outcomes[i].pass)
                .map(|r| format!("{} {}", r.name, r.outcomes[i].figure))
                .collect();
            println!(
                "  seed {seed}: {} of {} checks fail: {}",
                missed.len(),
                results.len(),
                missed.join("; ")
            );
        }
        let Some(first) = per_seed.first() else {
            continue;
        };
        if std::env::var_os("CELLS").is_some() {
            for (k, r) in first.iter().enumerate() {
                let figures: Vec<&str> = per_seed
                    .iter()
                    .map(|results| results[k].outcomes[i].figure.as_str())
                    .collect();
                println!("  cell {:<40} {}", r.name, figures.join(" | "));
            }
        }
        for (k, r) in first.iter().enumerate() {
            let failed = per_seed
                .iter()
                .filter(|results| !results[k].outcomes[i].pass)
                .count();
            if failed > 0 {
                println!(
                    "  {:<40} missed on {failed} of {} seeds",
                    r.name,
                    seeds.len()
                );
            }
        }
    }
}
