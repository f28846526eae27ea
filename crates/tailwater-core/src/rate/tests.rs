//! Limiter-level tests: table tests on a manual clock, invariants by proptest, a stress test.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};

const MS: Duration = Duration::from_millis(1);

fn quota(rate: u32, period: Duration, burst: u32) -> Quota {
    Quota::new(rate, period, burst).expect("valid quota")
}

/// Polls a future that must be ready at once (the memory store's).
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory store future was not ready"),
    }
}

#[test]
fn direct_burst_then_steady_rate() {
    // 5 per second (T = 200 ms), burst 3.
    let clock = ManualClock::new();
    let l = DirectLimiter::with_clock(quota(5, Duration::from_secs(1), 3), clock.clone());
    let rem: Vec<u32> = (0..3).map(|_| l.check().remaining).collect();
    assert_eq!(rem, [2, 1, 0]);
    let d = l.check();
    assert_eq!(d.reason, Some(DenyReason::RateExceeded));
    assert_eq!(d.retry_after, Some(200 * MS));
    assert_eq!(d.reset_after, 600 * MS);
    assert_eq!(d.retry_after_secs(), Some(1));
    assert_eq!(d.reset_after_secs(), 1);
    // Denials do not push the state: many denials later, still 200 ms.
    for _ in 0..100 {
        assert!(!l.check().allowed);
    }
    assert_eq!(l.reset_after(), 600 * MS);
    clock.advance(150 * MS);
    assert_eq!(l.check().retry_after, Some(50 * MS));
    clock.advance(50 * MS);
    assert!(l.check().allowed);
    // Steady: every 200 ms one more.
    for _ in 0..10 {
        assert!(!l.check().allowed);
        clock.advance(200 * MS);
        assert!(l.check().allowed);
    }
}

#[test]
fn direct_check_n_over_burst_and_partial() {
    let clock = ManualClock::new();
    let l = DirectLimiter::with_clock(quota(10, Duration::from_secs(1), 4), clock.clone());
    let d = l.check_n(5);
    assert_eq!(d.reason, Some(DenyReason::ExceedsBurst));
    assert_eq!(d.retry_after, None);
    assert_eq!(d.remaining, 4);
    assert!(l.check_n(3).allowed);
    // 1 left; 3 need 2 more emission intervals.
    let d = l.check_n(3);
    assert_eq!(d.reason, Some(DenyReason::RateExceeded));
    assert_eq!(d.retry_after, Some(200 * MS));
    assert_eq!(d.remaining, 1);
    clock.advance(200 * MS);
    let d = l.check_n(3);
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    // n = 0 is a query.
    let d = l.check_n(0);
    assert!(d.allowed);
    assert_eq!(d.reset_after, 400 * MS);
}

#[test]
fn direct_two_threads_admit_exactly_burst() {
    // One per hour: no refill during the test, so exactly `burst` may pass.
    let burst = 1_000;
    let l = Arc::new(DirectLimiter::new(quota(
        1,
        Duration::from_secs(3600),
        burst,
    )));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || (0..20_000).filter(|_| l.check().allowed).count())
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(admitted, burst as usize);
}

#[test]
fn keyed_two_threads_admit_exactly_burst_per_key() {
    let burst = 500;
    let l = Arc::new(
        KeyedLimiter::<u32>::builder(quota(1, Duration::from_secs(3600), burst))
            .build()
            .expect("valid"),
    );
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || (0..10_000).filter(|i| l.check(&(i % 4)).allowed).count())
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(admitted, 4 * burst as usize);
    let s = l.stats();
    assert_eq!((s.checks, s.allowed, s.keys), (20_000, 2_000, 4));
}

#[test]
fn keyed_keys_are_independent_and_denials_insert_nothing() {
    let clock = ManualClock::new();
    let l = KeyedLimiter::<u64>::builder(quota(1, Duration::from_secs(1), 2))
        .clock(clock.clone())
        .build()
        .expect("valid");
    assert!(l.check(&1).allowed);
    assert!(l.check(&1).allowed);
    let d = l.check(&1);
    assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
    assert!(l.check(&2).allowed);
    // A new key asking for more than the burst is denied and not stored.
    assert_eq!(l.check_n(&3, 3).reason, Some(DenyReason::ExceedsBurst));
    assert_eq!(l.check_n(&4, 0).remaining, 2);
    assert_eq!(l.len(), 2);
    let s = l.stats();
    assert_eq!((s.checks, s.allowed, s.denied), (6, 4, 2));
}

#[test]
fn keyed_reject_at_capacity_then_idle_keys_free_room() {
    let clock = ManualClock::new();
    let q = quota(1, Duration::from_secs(1), 1);
    let l = KeyedLimiter::<String>::builder(q)
        .max_keys(3)
        .shards(1)
        .clock(clock.clone())
        .build()
        .expect("valid");
    for k in ["a", "b", "c"] {
        assert!(l.check(k).allowed);
    }
    let d = l.check("d");
    assert_eq!(d.reason, Some(DenyReason::KeyCapacity));
    assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
    // Known keys keep working at capacity.
    clock.advance(Duration::from_millis(500));
    assert!(!l.check("a").allowed);
    // After burst·T every key is idle: the new key gets in, the idle ones are swept.
    clock.advance(Duration::from_millis(500));
    assert!(l.check("d").allowed);
    assert_eq!(l.len(), 1);
    let s = l.stats();
    assert_eq!(s.rejected_at_capacity, 1);
    assert_eq!(s.evicted_idle, 3);
    assert!(s.keys <= s.max_keys);
}

#[test]
fn keyed_reject_retry_hint_is_honest_at_capacity() {
    // 64 keys inserted 1 ms apart fill the shard; a flood of new keys is refused, and a
    // new key arriving retry_after later is admitted.
    let clock = ManualClock::new();
    let l = KeyedLimiter::<u32>::builder(quota(10, Duration::from_secs(1), 5))
        .max_keys(64)
        .shards(1)
        .clock(clock.clone())
        .build()
        .expect("valid");
    for k in 0..64 {
        assert!(l.check(&k).allowed);
        clock.advance(MS);
    }
    let mut hint = Duration::ZERO;
    for k in 64..1_000 {
        let d = l.check(&k);
        assert_eq!(d.reason, Some(DenyReason::KeyCapacity));
        hint = d.retry_after.expect("hint");
    }
    assert_eq!(hint, Duration::from_millis(500));
    clock.advance(hint);
    assert!(l.check(&5_000).allowed);
    assert!(l.len() <= 64);
}

#[test]
fn keyed_evict_oldest_never_refuses_and_stays_bounded() {
    let clock = ManualClock::new();
    let l = KeyedLimiter::<u32>::builder(quota(1, Duration::from_secs(60), 5))
        .max_keys(16)
        .shards(2)
        .on_full(OnFull::EvictOldest)
        .clock(clock.clone())
        .build()
        .expect("valid");
    for k in 0..1_000u32 {
        assert!(l.check(&k).allowed, "key {k}");
        assert!(l.len() <= 16);
        clock.advance(MS);
    }
    let s = l.stats();
    assert!(s.evicted_active > 0);
    assert_eq!(s.rejected_at_capacity, 0);
}

#[test]
fn keyed_idle_sweep_is_amortised_and_evict_idle_clears() {
    let clock = ManualClock::new();
    let l = KeyedLimiter::<u32>::builder(quota(10, Duration::from_secs(1), 1))
        .max_keys(100_000)
        .shards(1)
        .clock(clock.clone())
        .build()
        .expect("valid");
    // 10 000 one-off keys, each idle 100 ms after its hit: the map never holds many more
    // than twice the live set (plus the minimum sweep size).
    for k in 0..10_000u32 {
        assert!(l.check(&k).allowed);
        clock.advance(Duration::from_millis(1));
        assert!(l.len() <= 2 * 101 + 64, "len {} at key {k}", l.len());
    }
    clock.advance(Duration::from_secs(1));
    l.evict_idle();
    assert!(l.is_empty());
}

#[test]
fn keyed_multi_quota_all_or_nothing() {
    let clock = ManualClock::new();
    let quotas = MultiQuota::new([
        quota(2, Duration::from_secs(1), 2),
        quota(3, Duration::from_secs(3600), 3),
    ])
    .expect("valid");
    let l = KeyedLimiter::<&str>::builder(quotas)
        .clock(clock.clone())
        .build()
        .expect("valid");
    assert!(l.check_n(&"k", 2).allowed);
    clock.advance(Duration::from_secs(1));
    let d = l.check_n(&"k", 2);
    assert!(!d.allowed);
    assert_eq!(d.quota_index, 1);
    // Hourly: T = 1200 s, TAT 2400 s; 2 more: allow_at = 4800 − 3600 = 1200 s, now = 1 s.
    assert_eq!(d.retry_after, Some(Duration::from_secs(1199)));
    // The per-second quota was not charged by the denial: one cell still passes both.
    let d = l.check(&"k");
    assert!(d.allowed);
    assert_eq!((d.quota_index, d.remaining), (1, 0));
}

#[test]
fn keyed_check_quotas_changing_shape_starts_fresh() {
    let l = KeyedLimiter::<String>::builder(quota(1, Duration::from_secs(1), 1))
        .clock(ManualClock::new())
        .build()
        .expect("valid");
    let one = [quota(1, Duration::from_secs(1), 1)];
    let two = [one[0], quota(1, Duration::from_secs(2), 1)];
    assert!(l.check_quotas("k", &one, 1).allowed);
    assert!(!l.check_quotas("k", &one, 1).allowed);
    assert!(l.check_quotas("k", &two, 1).allowed);
    assert!(l.check_quotas("k", &[], 1).allowed);
}

#[test]
fn keyed_builder_validation_names_fields() {
    let q = quota(1, Duration::from_secs(1), 1);
    let err = |b: KeyedLimiterBuilder<u8>| b.build().expect_err("invalid").field();
    assert_eq!(err(KeyedLimiter::builder(q).max_keys(0)), "max_keys");
    assert_eq!(err(KeyedLimiter::builder(q).shards(3)), "shards");
    assert_eq!(err(KeyedLimiter::builder(q).shards(0)), "shards");
    assert_eq!(
        err(KeyedLimiter::builder(q).max_keys(2).shards(4)),
        "shards"
    );
    // Default shards shrink to fit a small max_keys.
    let l = KeyedLimiter::<u8>::builder(q)
        .max_keys(3)
        .build()
        .expect("valid");
    assert!(l.shard_count() <= 2);
}

#[test]
fn memory_store_matches_keyed_and_validates() {
    let clock = ManualClock::new();
    let q = quota(1, Duration::from_secs(1), 1);
    let store = MemoryStore::new(
        KeyedLimiter::<String>::builder(q)
            .clock(clock.clone())
            .build()
            .expect("valid"),
    );
    let ok = now_or_never(store.check("a", &[q], 1)).expect("ok");
    assert!(ok.allowed);
    let denied = now_or_never(store.check("a", &[q], 1)).expect("ok");
    assert_eq!(denied.retry_after, Some(Duration::from_secs(1)));
    let err = now_or_never(store.check("a", &[], 1)).expect_err("empty");
    assert_eq!(err.kind(), "invalid_request");
    assert!(!err.is_transient());
    let limiter = StoreLimiter::new(store, q);
    clock.advance(Duration::from_secs(1));
    assert!(now_or_never(limiter.check("a")).expect("ok").allowed);
    assert_eq!(limiter.store().limiter().len(), 1);
}

/// Checks every window of a run: cells admitted in `[t_i, t_j]` ≤ burst + rate·(t_j − t_i)/period.
fn assert_conforms(q: &Quota, run: &[(u64, u32)]) -> Result<(), TestCaseError> {
    for i in 0..run.len() {
        let mut cells = 0u64;
        for &(t, n) in &run[i..] {
            cells += u64::from(n);
            let elapsed = u128::from(t - run[i].0);
            let bound = u128::from(q.burst())
                + elapsed * u128::from(q.rate()) / u128::from(q.period_nanos());
            prop_assert!(
                u128::from(cells) <= bound,
                "{cells} cells admitted in {elapsed} ns, bound {bound}"
            );
        }
    }
    Ok(())
}

fn arb_quota() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u64..2_000, 1u32..20)
        .prop_map(|(rate, period_ms, burst)| quota(rate, Duration::from_millis(period_ms), burst))
}

proptest! {
    #[test]
    fn direct_never_admits_more_than_burst_plus_rate(
        q in arb_quota(),
        ops in prop::collection::vec((0u64..200, 0u32..6), 1..120),
    ) {
        let clock = ManualClock::new();
        let l = DirectLimiter::with_clock(q, clock.clone());
        let mut admitted = Vec::new();
        for (dt_ms, n) in ops {
            clock.advance(Duration::from_millis(dt_ms));
            let before = l.reset_after();
            let d = l.check_n(n);
            prop_assert_eq!(d.allowed, d.reason.is_none());
            prop_assert!(d.remaining <= d.limit);
            if d.allowed {
                admitted.push((crate::clock::duration_to_nanos(clock.now()), n));
            } else {
                prop_assert_eq!(l.reset_after(), before, "denial changed the state");
            }
        }
        assert_conforms(&q, &admitted)?;
    }

    #[test]
    fn keyed_never_admits_more_per_key_nor_holds_more_than_max_keys(
        q in arb_quota(),
        max_keys in 1usize..6,
        ops in prop::collection::vec((0u64..200, 0u8..10, 1u32..4), 1..150),
    ) {
        let clock = ManualClock::new();
        let l = KeyedLimiter::<u8>::builder(q)
            .max_keys(max_keys)
            .clock(clock.clone())
            .build()
            .expect("valid");
        let mut per_key: Vec<Vec<(u64, u32)>> = vec![Vec::new(); 10];
        for (dt_ms, key, n) in ops {
            clock.advance(Duration::from_millis(dt_ms));
            let d = l.check_n(&key, n);
            if d.allowed {
                per_key[usize::from(key)].push((crate::clock::duration_to_nanos(clock.now()), n));
            }
            prop_assert!(l.len() <= max_keys);
        }
        for run in &per_key {
            assert_conforms(&q, run)?;
        }
    }

    #[test]
    fn keyed_evict_oldest_holds_at_most_max_keys(
        max_keys in 1usize..40,
        shards_log in 0u32..3,
        ops in prop::collection::vec((0u64..5, any::<u16>()), 1..400),
    ) {
        let shards = 1usize << shards_log;
        prop_assume!(shards <= max_keys);
        let clock = ManualClock::new();
        let l = KeyedLimiter::<u16>::builder(quota(1, Duration::from_secs(10), 3))
            .max_keys(max_keys)
            .shards(shards)
            .on_full(OnFull::EvictOldest)
            .clock(clock.clone())
            .build()
            .expect("valid");
        for (dt_ms, key) in ops {
            clock.advance(Duration::from_millis(dt_ms));
            let d = l.check(&key);
            prop_assert_ne!(d.reason, Some(DenyReason::KeyCapacity));
            prop_assert!(l.len() <= max_keys);
        }
    }

    #[test]
    fn keyed_limiter_equals_the_pure_model_below_capacity(
        q in arb_quota(),
        ops in prop::collection::vec((0u64..300, 0u8..6, 0u32..5), 1..200),
    ) {
        // With room for every key, eviction only drops idle keys, which is invisible:
        // every decision equals gcra::step on a plain map.
        let clock = ManualClock::new();
        let l = KeyedLimiter::<u8>::builder(q)
            .max_keys(8)
            .shards(1)
            .clock(clock.clone())
            .build()
            .expect("valid");
        let mut model = std::collections::HashMap::<u8, u64>::new();
        for (dt_ms, key, n) in ops {
            clock.advance(Duration::from_millis(dt_ms));
            let now = crate::clock::duration_to_nanos(clock.now());
            let stored = model.get(&key).copied().unwrap_or(0);
            let (want, new) = gcra::step(&q, now, stored, n);
            model.insert(key, new);
            prop_assert_eq!(l.check_n(&key, n), want);
        }
    }

    #[test]
    fn admit_is_the_state_half_of_step(
        q in arb_quota(),
        now in prop_oneof![0u64..10_000_000_000, any::<u64>()],
        stored in prop_oneof![0u64..10_000_000_000, any::<u64>()],
        n in 0u32..25,
    ) {
        // The limiters decide with `admit` under their lock / in their CAS loop and build
        // the decision with `step` afterwards: the two must agree exactly.
        let (d, new) = gcra::step(&q, now, stored, n);
        prop_assert_eq!(gcra::admit(&q, now, stored, n), d.allowed.then_some(new));
    }

    #[test]
    fn direct_limiter_equals_the_pure_model(
        q in arb_quota(),
        ops in prop::collection::vec((0u64..300, 0u32..5), 1..200),
    ) {
        let clock = ManualClock::new();
        let l = DirectLimiter::with_clock(q, clock.clone());
        let mut tat = 0;
        for (dt_ms, n) in ops {
            clock.advance(Duration::from_millis(dt_ms));
            let now = crate::clock::duration_to_nanos(clock.now());
            let (want, new) = gcra::step(&q, now, tat, n);
            tat = new;
            prop_assert_eq!(l.check_n(n), want);
        }
    }

    #[test]
    fn step_all_equals_single_step_for_one_quota(
        q in arb_quota(),
        ops in prop::collection::vec((0u64..300_000_000, 0u32..25), 1..60),
    ) {
        let (mut now, mut a, mut b) = (0u64, 0u64, [0u64]);
        for (dt, n) in ops {
            now += dt;
            let (d1, new) = gcra::step(&q, now, a, n);
            a = new;
            let d2 = gcra::step_all(&[q], now, &mut b, n);
            prop_assert_eq!(d1, d2);
            prop_assert_eq!(a, b[0]);
        }
    }
}
