//! Simulator throughput: events processed per second of wall time on one core.
//!
//! `cargo bench -p tailwater-sim --bench events` prints one line per workload. The goal is
//! ≥ 5 million events/s; the figure includes the real tailwater-core limiter work (admission,
//! release, algorithm update, queue handling) done for every request.

use std::time::Instant;

/// On-CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`), so that the
/// figure is not diluted by other processes on a shared machine; `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

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
        let mut best_wall = f64::INFINITY;
        let mut events = 0;
        for _ in 0..5 {
            let cpu0 = cpu_seconds();
            let start = Instant::now();
            let r = engine::run(&s, &spec, RunOptions::default()).expect("runs");
            let wall = start.elapsed().as_secs_f64();
            let cpu = match (cpu0, cpu_seconds()) {
                (Some(a), Some(b)) if b > a => b - a,
                _ => wall,
            };
            events = r.events;
            best = best.min(cpu);
            best_wall = best_wall.min(wall);
        }
        total_events += events;
        total_secs += best;
        println!(
            "{name:<16} {policy:<32} {events:>9} events in {:>6.1} ms CPU ({:>6.1} ms wall) = {:>5.2} M events/s",
            best * 1e3,
            best_wall * 1e3,
            events as f64 / best / 1e6
        );
    }
    println!(
        "overall: {:.2} M events per CPU-second on one core (goal ≥ 5)",
        total_events as f64 / total_secs / 1e6
    );
}
