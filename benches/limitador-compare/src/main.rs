//! One rate-limit decision in process, side by side in one run: tailwater-rls's
//! `RateLimiter::should_rate_limit` (in-memory store) against limitador 0.14's
//! `RateLimiter::check_rate_limited_and_update` (its in-memory storage), the same limit
//! (`bench`: 1e9 per second per `user` value) and the same request (one descriptor,
//! `user=alice`, 1 hit).
//!
//! Each side does what its server does per call with the decoded request: tailwater the
//! whole call (validation, rule lookup, GCRA, statuses, draft-10 headers); limitador the
//! descriptor context its server builds (`descriptors` list binding) and the check.
//! Rounds alternate the two sides; the median of the rounds is reported.
//!
//! `cargo run --release` here (or `scripts/bench-limitador.sh`); env `ROUNDS`, `ITERS`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use limitador::limit::{Context, Limit};
use tailwater_rls::config::load_str;
use tailwater_rls::proto::{Entry, RateLimitDescriptor, RateLimitRequest};
use tailwater_rls::{Config, MemoryStore, RateLimiter, Store};

const CONFIG: &str = r#"
domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "bench".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "user".into(),
                value: "alice".into(),
            }],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

fn main() {
    let rounds = env("ROUNDS", 7);
    let iters = env("ITERS", 300_000);
    let req = request();

    // tailwater-rls
    let domain = load_str("bench.yaml", CONFIG).expect("config");
    let mut config = Config::default();
    config.domains.insert(domain.domain.clone(), domain);
    let store = Store::Memory(Arc::new(MemoryStore::new(1_000_000)));
    let ours = RateLimiter::new(Arc::new(ArcSwap::from_pointee(config)), store);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    // limitador, the same limit
    let theirs = limitador::RateLimiter::new(10_000);
    let var = "descriptors[0].user".try_into().expect("variable");
    let no_conditions: Vec<limitador::limit::Predicate> = Vec::new();
    theirs.add_limit(Limit::new(
        "bench",
        1_000_000_000,
        1,
        no_conditions,
        vec![var],
    ));
    let namespace = "bench".into();

    let run_ours = || {
        let start = Instant::now();
        for _ in 0..iters {
            let r = rt
                .block_on(ours.should_rate_limit(black_box(&req)))
                .expect("decides");
            assert_eq!(r.overall_code, 1);
            black_box(r);
        }
        start.elapsed().as_nanos() as f64 / iters as f64
    };
    let run_theirs = || {
        let start = Instant::now();
        for _ in 0..iters {
            let req = black_box(&req);
            // What limitador-server does with a decoded request: one map per descriptor,
            // bound as the `descriptors` list.
            let values: Vec<HashMap<String, String>> = req
                .descriptors
                .iter()
                .map(|d| {
                    d.entries
                        .iter()
                        .map(|e| (e.key.clone(), e.value.clone()))
                        .collect()
                })
                .collect();
            let mut ctx = Context::default();
            ctx.list_binding("descriptors".to_owned(), values);
            let r = theirs
                .check_rate_limited_and_update(&namespace, &ctx, u64::from(req.hits_addend))
                .expect("decides");
            assert!(!r.limited);
            black_box(r);
        }
        start.elapsed().as_nanos() as f64 / iters as f64
    };

    // Warm-up (allocator, caches, first-use paths).
    let _ = (run_ours(), run_theirs());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            a.push(run_ours());
            b.push(run_theirs());
        } else {
            b.push(run_theirs());
            a.push(run_ours());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!("rounds {rounds} x {iters} decisions, median ns per decision");
    println!("tailwater-rls  {ma:8.0} ns   (rounds: {a:.0?})");
    println!("limitador      {mb:8.0} ns   (rounds: {b:.0?})");
    println!("ratio tailwater / limitador = {:.2}x", ma / mb);
}
