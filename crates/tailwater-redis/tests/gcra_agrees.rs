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

/// The lease script takes exactly the largest `g <= want` cells that `gcra::step_all`
/// admits, leaves exactly the state that step leaves, and gives cells back exactly.
#[test]
fn lease_script_matches_rust_gcra() {
    let Some(server) = common::server("lease_script_matches_rust_gcra") else {
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
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 150,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &(
            proptest::collection::vec(quota_strategy(), 1..3),
            proptest::collection::vec((0u64..3_000_000_000, 1i64..30, any::<bool>()), 1..30),
        ),
        |(quotas, steps)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let key = format!("lease:{case}");
            let mut now = BASE + case * 1_000_000_000_000;
            let mut tats = vec![0u64; quotas.len()];
            for (dt, want, give_back) in steps {
                now += dt;
                if give_back {
                    // Give `want` cells back: every TAT moves back by want * T, not before now.
                    store
                        .pipe_lease(&rt, &key, &quotas, -want, now)
                        .map_err(TestCaseError::fail)?;
                    for (t, q) in tats.iter_mut().zip(&quotas) {
                        let back = t.saturating_sub(want as u64 * q.emission_nanos());
                        *t = if back > now { back } else { 0 };
                    }
                } else {
                    let (g, _, _) = store
                        .pipe_lease(&rt, &key, &quotas, want, now)
                        .map_err(TestCaseError::fail)?;
                    // Largest g' <= want that the Rust GCRA admits.
                    let mut expect = 0;
                    for k in (1..=want as u32).rev() {
                        let mut probe = tats.clone();
                        if gcra::step_all(&quotas, now, &mut probe, k).allowed {
                            expect = k;
                            break;
                        }
                    }
                    prop_assert_eq!(g, u64::from(expect), "granted differs");
                    if expect > 0 {
                        gcra::step_all(&quotas, now, &mut tats, expect);
                    }
                }
                let out = rt
                    .block_on(store.check_script_at(&key, &quotas, 0, now))
                    .expect("read state");
                for (got, want_tat) in out.stored_before.iter().zip(&tats) {
                    // States at or before `now` all mean "full" (the script may delete them).
                    if *want_tat > now || *got > now {
                        prop_assert_eq!(got, want_tat, "state differs");
                    }
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "lease_script_matches_rust_gcra: {} random sequences agreed",
        case.load(std::sync::atomic::Ordering::Relaxed)
    );
}

trait PipeLease {
    fn pipe_lease(
        &self,
        rt: &tokio::runtime::Runtime,
        key: &str,
        quotas: &[Quota],
        want: i64,
        now: u64,
    ) -> Result<(u64, u64, u64), String>;
}

impl PipeLease for RedisRateStore {
    fn pipe_lease(
        &self,
        rt: &tokio::runtime::Runtime,
        key: &str,
        quotas: &[Quota],
        want: i64,
        now: u64,
    ) -> Result<(u64, u64, u64), String> {
        rt.block_on(self.lease_script_at(key, quotas, want, now))
            .map_err(|e| e.to_string())
    }
}
