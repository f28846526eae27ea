//! The Lua GCRA and the Rust GCRA (`tailwater_core::rate::gcra`) agree on random sequences.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use tailwater_core::rate::{Quota, gcra};
use tailwater_redis::RedisRateStore;

/// Nanoseconds since the Unix epoch around 2026: exercises the two-limb arithmetic.
const BASE: u64 = 1_790_000_000_123_456_789;

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u64..5_000, 1u32..20).prop_map(|(rate, period_ms, burst)| {
        Quota::new(rate, Duration::from_millis(period_ms), burst).expect("valid")
    })
}

#[test]
fn lua_and_rust_gcra_agree_on_random_sequences() {
    let Some(server) = common::server("lua_and_rust_gcra_agree_on_random_sequences") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt.block_on(async {
        let conn = common::connect(&server, common::relaxed());
        RedisRateStore::builder(conn).build().expect("store")
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let config = ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(
        &(
            proptest::collection::vec(quota_strategy(), 1..4),
            // (time step in ns, n) pairs; steps up to a few seconds, sometimes 0.
            proptest::collection::vec((0u64..3_000_000_000, 0u32..25), 1..40),
        ),
        |(quotas, steps)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let key = format!("prop:{case}");
            let mut now = BASE + case * 1_000_000_000_000;
            let mut tats = vec![0u64; quotas.len()];
            for (dt, n) in steps {
                now += dt;
                let out = rt
                    .block_on(store.check_script_at(&key, &quotas, n, now))
                    .expect("script");
                prop_assert_eq!(out.now_nanos, now);
                prop_assert_eq!(&out.stored_before, &tats, "state before differs");
                let expect = gcra::step_all(&quotas, now, &mut tats, n);
                prop_assert_eq!(out.script_allowed, expect.allowed, "admit/deny differs");
                prop_assert_eq!(out.decision, expect);
            }
            // The state Redis holds now equals the Rust state (checked on the next call).
            let out = rt
                .block_on(store.check_script_at(&key, &quotas, 0, now))
                .expect("script");
            // A stored TAT in the past reads back as itself; Rust keeps it too.
            for (got, want) in out.stored_before.iter().zip(&tats) {
                if *want > now {
                    prop_assert_eq!(got, want);
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(store.stats().mismatches, 0);
    eprintln!(
        "lua_and_rust_gcra_agree: {} random sequences agreed",
        case.load(std::sync::atomic::Ordering::Relaxed)
    );
}
