//! `Headroom::update` in a loop, for counting its instructions per sample with callgrind
//! (deterministic, unlike wall-clock medians on a shared machine; no clock is read, so
//! quanta's TSC calibration is not counted either).
//!
//! ```text
//! cargo build --release -p tailwater-core --example headroom_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/headroom_cost 200000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/headroom_cost 400000
//! ```
//!
//! The difference of the two totals divided by 200 000 is the cost of one sample in steady
//! state, feed included; `headroom_cost N feed` runs the feed alone (a fixed limit of 32, as
//! Headroom keeps on it), whose per-sample cost, measured the same way, is subtracted (the 1 000-window baseline history full in both runs). The feed is a pool of 8
//! workers with service times of 10–30 ms (uniform, from a fixed xorshift sequence) and a
//! demand of 4–16 requests in flight that changes every 1 000 samples (half a second to a
//! second): each sample sees `min(L, demand)` in flight, its RTT is the service time times
//! `max(1, in flight / 8)` (a FIFO queue beyond the workers), and completions arrive every
//! `RTT / in flight` (Little's law). Windows hold 10–20 samples, so the per-window work (the
//! baseline, the guard, the rules) weighs as it does on a small pool, which sometimes binds
//! the limit and mostly does not.

use std::hint::black_box;
use std::time::Duration;

use tailwater_core::algorithm::{Headroom, LimitAlgorithm, Sample};

const WORKERS: f64 = 8.0;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a sample count"))
        .unwrap_or(200_000);
    let feed_only = std::env::args().nth(2).as_deref() == Some("feed");
    let mut h = Headroom::default();
    let mut t = Duration::ZERO;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut demand = 8;
    let mut sum = 0usize;
    for i in 0..black_box(n) {
        if i % 1000 == 0 {
            demand = 4 + (xorshift(&mut x) % 13) as usize;
        }
        let service = 0.010 + (xorshift(&mut x) % 20_000) as f64 * 1e-6;
        let limit = if feed_only { 32 } else { h.limit() };
        let in_flight = limit.min(demand).max(1);
        let rtt = service * (in_flight as f64 / WORKERS).max(1.0);
        t += Duration::from_secs_f64(rtt / in_flight as f64);
        let sample = black_box(Sample::success(t, Duration::from_secs_f64(rtt), in_flight));
        sum += if feed_only {
            black_box(&sample).in_flight
        } else {
            h.update(&sample)
        };
    }
    println!("limit {} (sum {sum})", h.limit());
}
