//! The Lua GCRA and the Rust GCRA (`tailwater_core::rate::gcra`) agree on random sequences.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use tailwater_core::rate::{Quota, gcra};
use tailwater_redis::{
    EXACT_REDIS_TOLERANCE_NANOS, REDIS_LONG_GRAIN_NANOS, RedisRateStore, redis_quota,
};

/// Nanoseconds since the Unix epoch around 2026: exercises the two-limb arithmetic.
const BASE: u64 = 1_790_000_000_123_456_789;

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u64..5_000, 1u32..20).prop_map(|(rate, period_ms, burst)| {
        Quota::new(rate, Duration::from_millis(period_ms), burst).expect("valid")
    })
}

#[test]
fn lua_and_rust_gcra_agree_on_random_sequences() {
    // Steps up to a few seconds, sometimes 0.
    let _ = agree(
        "lua_and_rust_gcra_agree_on_random_sequences",
        quota_strategy(),
        3_000_000_000,
        200,
    );
}

/// Long quotas (53 to 410 days, burst up to the rate: a `year` rule and beyond the 2^52 ns
/// that plain nanoseconds allow): the store rounds each one's emission interval up to
/// 8 ns (`redis_quota`) and `now` down to 8 ns, and the Lua and Rust GCRA still agree on
/// every decision and every stored TAT, for the rounded quota.
#[test]
fn lua_and_rust_gcra_agree_on_year_long_quotas() {
    const DAY_NS: u64 = 86_400 * 1_000_000_000;
    let long = (1u32..2_000, 53u64..=410, 1u32..=100).prop_map(|(rate, days, burst_pct)| {
        let burst = (u64::from(rate) * u64::from(burst_pct))
            .div_ceil(100)
            .max(1);
        Quota::new(
            rate,
            Duration::from_secs(days * 86_400),
            u32::try_from(burst).expect("burst fits"),
        )
        .expect("valid")
    });
    // Steps up to 60 days (a few emission intervals of the slow quotas).
    if let Some((long, rounded)) = agree(
        "lua_and_rust_gcra_agree_on_year_long_quotas",
        long,
        60 * DAY_NS,
        150,
    ) {
        assert!(long > 100, "{long} sequences had a long quota");
        assert!(rounded > 100, "{rounded} quotas were rounded");
    }
}

/// Runs random sequences of (time step, n) through the script with a caller-given `now`
/// and through `gcra::step_all` on the quotas the store enforces ([`redis_quota`]),
/// comparing every decision and every stored TAT.
/// Returns how many sequences had a long quota and how many quotas were rounded (`None`
/// without a redis-server).
fn agree(
    test: &str,
    quotas: impl Strategy<Value = Quota>,
    max_dt: u64,
    cases: u32,
) -> Option<(u64, u64)> {
    let server = common::server(test)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt.block_on(async {
        let conn = common::connect(&server, common::relaxed());
        RedisRateStore::builder(conn).build().expect("store")
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let (long_seen, rounded_seen) = (
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    );
    let config = ProptestConfig {
        cases,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(
        &(
            proptest::collection::vec(quotas, 1..4),
            proptest::collection::vec((0u64..max_dt, 0u32..25), 1..40),
        ),
        |(asked, steps)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let key = format!("prop:{case}");
            let quotas: Vec<Quota> = asked
                .iter()
                .map(|q| redis_quota(q).expect("fits the Redis store"))
                .collect();
            let long = quotas
                .iter()
                .any(|q| q.tolerance_nanos() > EXACT_REDIS_TOLERANCE_NANOS);
            if long {
                long_seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            for (q, a) in quotas.iter().zip(&asked) {
                if q != a {
                    rounded_seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Rounded up to the grain, never down, by less than the grain.
                    prop_assert_eq!(q.emission_nanos() % REDIS_LONG_GRAIN_NANOS, 0);
                    prop_assert!(q.emission_nanos() >= a.emission_nanos());
                    prop_assert!(q.emission_nanos() - a.emission_nanos() < REDIS_LONG_GRAIN_NANOS);
                    prop_assert_eq!((q.rate(), q.burst()), (a.rate(), a.burst()));
                }
            }
            let mut now = BASE + case * 1_000_000_000_000;
            let mut tats = vec![0u64; quotas.len()];
            for (dt, n) in steps {
                now += dt;
                // The store is given the quotas as asked: it rounds them itself.
                let out = rt
                    .block_on(store.check_script_at(&key, &asked, n, now))
                    .expect("script");
                let script_now = if long {
                    now - now % REDIS_LONG_GRAIN_NANOS
                } else {
                    now
                };
                prop_assert_eq!(out.now_nanos, script_now);
                prop_assert_eq!(&out.stored_before, &tats, "state before differs");
                let expect = gcra::step_all(&quotas, script_now, &mut tats, n);
                prop_assert_eq!(out.script_allowed, expect.allowed, "admit/deny differs");
                prop_assert_eq!(out.decision, expect);
            }
            // The state Redis holds now equals the Rust state (checked on the next call).
            let out = rt
                .block_on(store.check_script_at(&key, &asked, 0, now))
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
        "{test}: {} random sequences agreed ({} with a long quota, {} quotas rounded)",
        case.load(std::sync::atomic::Ordering::Relaxed),
        long_seen.load(std::sync::atomic::Ordering::Relaxed),
        rounded_seen.load(std::sync::atomic::Ordering::Relaxed),
    );
    Some((
        long_seen.load(std::sync::atomic::Ordering::Relaxed),
        rounded_seen.load(std::sync::atomic::Ordering::Relaxed),
    ))
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
