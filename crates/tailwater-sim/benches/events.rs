//! Simulator throughput: events processed per second of wall time on one core.
//!
//! `cargo bench -p tailwater-sim --bench events` prints one line per workload. The goal is
//! ≥ 5 million events/s; the figure includes the real tailwater-core limiter work (admission,
//! release, algorithm update, queue handling) done for every request.

use std::time::Instant;

use tailwater_sim::engine::{self, RunOptions};
use tailwater_sim::policy::PolicySpec;
use tailwater_sim::scenario;

fn main() {
    let workloads = [
        ("steady-2x", "none"),
        ("steady-2x", "static"),
        ("steady-2x", "gradient2-corrected"),
        ("steady-2x", "static+codel"),
        ("spike-10x", "envoy"),
        ("tiered-overload", "gradient2-corrected+tiers"),
    ];
    let mut total_events = 0u64;
    let mut total_secs = 0.0;
    for (name, policy) in workloads {
        let mut s = scenario::builtin(name).expect("built-in scenario");
        // Ten times longer than the suite's runs, so that timing noise is small.
        for p in &mut s.phase {
            p.duration *= 10;
        }
        s.step_at = None;
        let spec = PolicySpec::parse(policy).expect("valid policy");
        let mut best = f64::INFINITY;
        let mut events = 0;
        for _ in 0..3 {
            let start = Instant::now();
            let r = engine::run(&s, &spec, RunOptions::default()).expect("runs");
            let secs = start.elapsed().as_secs_f64();
            events = r.events;
            best = best.min(secs);
        }
        total_events += events;
        total_secs += best;
        println!(
            "{name:<16} {policy:<28} {events:>10} events in {:>7.1} ms = {:>6.2} M events/s",
            best * 1e3,
            events as f64 / best / 1e6
        );
    }
    println!(
        "overall: {:.2} M events/s (goal ≥ 5)",
        total_events as f64 / total_secs / 1e6
    );
}
