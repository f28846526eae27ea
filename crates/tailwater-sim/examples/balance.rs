//! The balancer figure of issue 12: one of four endpoints 10× slower, each policy against
//! its own all-healthy run (same arrivals and service draws).
//!
//! `cargo run --release -p tailwater-sim --example balance`

use tailwater_sim::balance::{BalanceScenario, compare};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = BalanceScenario::default();
    println!(
        "{} endpoints × {} workers, {:?} {:?} service, endpoint 0 {}× slower, load {:.0} % of healthy capacity, {} requests, seed {}\n",
        s.endpoints,
        s.workers,
        s.service,
        s.shape,
        s.slowdown,
        s.load * 100.0,
        s.requests,
        s.seed
    );
    println!(
        "| policy | healthy p50 | healthy p99 | slow p50 | slow p99 | slow p99.9 | p99 / healthy p99 | share of the slow endpoint |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (healthy, slow) in compare(&s)? {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× | {:.2} % |",
            healthy.policy,
            ms(healthy.p50),
            ms(healthy.p99),
            ms(slow.p50),
            ms(slow.p99),
            ms(slow.p999),
            slow.p99.as_secs_f64() / healthy.p99.as_secs_f64(),
            slow.share[0] * 100.0
        );
    }
    Ok(())
}
