//! One `ShouldRateLimit` decision in process (no gRPC): configuration lookup, the
//! in-memory GCRA batch, statuses and draft-10 headers. `cargo bench -p tailwater-rls`.
//!
//! The side-by-side run against the `limitador` crate is `benches/limitador-compare` (a
//! separate cargo project, `scripts/bench-limitador.sh`): limitador 0.14 without default
//! features still pulls 122 crates (a CEL interpreter with an ANTLR runtime, moka, chrono),
//! and as a dev-dependency here it would be compiled by every workspace test run.

use std::sync::Arc;

use arc_swap::ArcSwap;
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
  - key: route
    value: /api/*
    descriptors:
      - key: user
        rate_limit:
          unit: minute
          requests_per_unit: 1000000000
"#;

fn main() {
    divan::main();
}

fn limiter() -> RateLimiter {
    let domain = load_str("bench.yaml", CONFIG).expect("config");
    let mut config = Config::default();
    config.domains.insert(domain.domain.clone(), domain);
    let store = Store::Memory(Arc::new(MemoryStore::new(1_000_000)));
    RateLimiter::new(Arc::new(ArcSwap::from_pointee(config)), store)
}

fn request(entries: &[(&str, &str)]) -> RateLimitRequest {
    RateLimitRequest {
        domain: "bench".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

fn run(bencher: divan::Bencher<'_, '_>, req: RateLimitRequest) {
    let limiter = limiter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    bencher.bench_local(|| {
        rt.block_on(limiter.should_rate_limit(divan::black_box(&req)))
            .expect("decides")
    });
}

/// One descriptor, one entry (the h2load request of `scripts/bench-rls.sh`).
#[divan::bench]
fn one_descriptor(bencher: divan::Bencher<'_, '_>) {
    run(bencher, request(&[("user", "alice")]));
}

/// One descriptor, two entries through a wildcard.
#[divan::bench]
fn nested_wildcard(bencher: divan::Bencher<'_, '_>) {
    run(
        bencher,
        request(&[("route", "/api/orders"), ("user", "alice")]),
    );
}
