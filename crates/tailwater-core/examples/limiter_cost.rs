//! The limiter's hot path in a loop, for counting instructions with callgrind (deterministic,
//! unlike wall-clock medians on a shared machine).
//!
//! ```text
//! cargo build --release -p tailwater-core --example limiter_cost
//! valgrind --tool=callgrind target/release/examples/limiter_cost default 1000000
//! valgrind --tool=callgrind target/release/examples/limiter_cost default 2000000
//! ```
//!
//! The difference of the two totals divided by 1 000 000 is the cost of one iteration
//! (admission + success report) after warm-up; `tokio` runs `tokio::sync::Semaphore`
//! `try_acquire` + drop, the anchor of the `limiter` bench; `clock_default` / `clock_os` read
//! the default clock (TSC where the kernel validated it) or `Instant` `n` times.

use std::hint::black_box;
use std::time::Duration;

use tailwater_core::Limiter;
use tailwater_core::algorithm::Aimd;
use tailwater_core::clock::{Clock, ManualClock, MonotonicClock};

fn aimd() -> Aimd {
    Aimd::builder()
        .initial_limit(1000)
        .min_limit(20)
        .max_limit(1000)
        .build()
        .expect("valid")
}

fn run<C: Clock>(limiter: &Limiter<C>, n: u64) {
    // As the bench: a busy service's RTT sampler has set its rate.
    for _ in 0..100_000 {
        limiter.try_acquire().expect("below the limit").success();
    }
    for _ in 0..black_box(n) {
        let permit = limiter.try_acquire().expect("below the limit");
        permit.success();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "default".into());
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("a count"))
        .unwrap_or(1_000_000);
    match which.as_str() {
        "default" => run(&Limiter::builder().build().expect("valid"), n),
        "aimd" => run(&Limiter::new(aimd()), n),
        "aimd_manual" => run(
            &Limiter::builder()
                .algorithm(aimd())
                .clock(ManualClock::new())
                .build()
                .expect("valid"),
            n,
        ),
        "tokio" => {
            let semaphore = tokio::sync::Semaphore::new(1000);
            for _ in 0..100_000 + n {
                drop(black_box(semaphore.try_acquire().expect("below the limit")));
            }
        }
        "clock_default" | "clock_os" => {
            let clock = if which == "clock_os" {
                MonotonicClock::os()
            } else {
                MonotonicClock::new()
            };
            eprintln!("source: {}", clock.source());
            let mut sum = Duration::ZERO;
            for _ in 0..n {
                sum += black_box(&clock).now();
            }
            black_box(sum);
        }
        other => panic!(
            "unknown case {other}: default, aimd, aimd_manual, tokio, clock_default, clock_os"
        ),
    }
}
