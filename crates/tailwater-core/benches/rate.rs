//! Rate limiters side by side with governor, in one run.
//!
//! `cargo bench -p tailwater-core --bench rate`
//!
//! Each library on its **default** clock is the comparison that counts (`tailwater` vs
//! `governor`): tailwater's [`MonotonicClock`] reads the TSC where the kernel validated it
//! (else `Instant`; the run prints which), governor reads the TSC through quanta
//! unconditionally. The same-clock pairs are context that separates the limiter's cost from
//! the clock's: `tailwater_os` vs `governor_monotonic` (both `Instant`), and
//! `tailwater_quanta` (tailwater on governor's own quanta clock) vs `governor`.
//!
//! - `clock`: one reading of each clock, and creating a `MonotonicClock` (after the
//!   process's one-time calibration, which `main` times and prints).
//! - `direct`: one shared quota, always admitting (T = 1 ns), so every check does its CAS.
//! - `keyed`: 100/s, burst 100 per key; keys drawn from 1 Ki or 1 Mi distinct keys
//!   (Fibonacci-hashed counter, one per thread). tailwater runs with its cap and eviction on
//!   (`max_keys = 2 × keys`, `OnFull::EvictOldest`, lazy idle sweeps); governor's DashMap
//!   store grows without bound. Both maps are prefilled with every key.
//!   `tailwater_cap_half` binds the cap (`max_keys = keys / 2`): half the checks evict.
//!
//! The comparisons read only `allowed` (as governor's read only `is_ok()`), so the
//! decision's numbers are dead code there; `tailwater_decision` computes the whole
//! `RateDecision` (`remaining`, `reset_after`, `retry_after`, what the headers need) and
//! passes it to `black_box` by reference (returning it would measure divan storing
//! 56-byte outputs, about 6 ns).
//!
//! Both libraries get 1 and 2 threads (the machine has 2 cores). Sample sizes are fixed so
//! that with 2 threads a sample is long against divan's per-sample thread synchronisation.

use std::cell::Cell;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::time::Duration;

use divan::{Bencher, black_box};
use governor::clock::{Clock as _, QuantaClock, QuantaInstant, Reference as _};
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::rate::{DirectLimiter, KeyedLimiter, OnFull, Quota};

fn main() {
    let start = std::time::Instant::now();
    let source = MonotonicClock::default_source();
    let first = start.elapsed();
    println!(
        "tailwater's default clock here: {source} (first MonotonicClock: {first:?}, \
         detection and calibration included)"
    );
    divan::main();
}

const THREADS: &[usize] = &[1, 2];
const KEYS: &[u64] = &[1 << 10, 1 << 20];

/// governor's default TSC clock (quanta, unchecked) behind tailwater's `Clock` trait: shows
/// what tailwater costs on exactly governor's clock. Not a default we ship (governor #299).
#[derive(Debug, Clone)]
struct Tsc {
    clock: QuantaClock,
    origin: QuantaInstant,
}

impl Tsc {
    fn new() -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        Self { clock, origin }
    }
}

impl Clock for Tsc {
    #[inline]
    fn now(&self) -> Duration {
        Duration::from(self.clock.now().duration_since(self.origin))
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        self.clock.now().duration_since(self.origin).as_u64()
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

thread_local! {
    static COUNTER: Cell<u64> = Cell::new(
        std::hash::RandomState::new().hash_one(std::thread::current().id()),
    );
}

/// The next key in `0..keys` (`keys` a power of two) for this thread.
#[inline]
fn next_key(bits: u32) -> u64 {
    COUNTER.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)
    })
}

mod clock {
    use super::*;

    #[divan::bench]
    fn tailwater(b: Bencher<'_, '_>) {
        let c = MonotonicClock::new();
        b.bench(|| black_box(&c).now_nanos());
    }

    #[divan::bench]
    fn tailwater_os(b: Bencher<'_, '_>) {
        let c = MonotonicClock::os();
        b.bench(|| black_box(&c).now_nanos());
    }

    #[divan::bench]
    fn governor(b: Bencher<'_, '_>) {
        let c = QuantaClock::default();
        b.bench(|| black_box(&c).now());
    }

    #[divan::bench]
    fn governor_monotonic(b: Bencher<'_, '_>) {
        let c = governor::clock::MonotonicClock;
        b.bench(|| black_box(&c).now());
    }

    /// Creating a clock after the process's first (calibrated) one.
    #[divan::bench]
    fn tailwater_new() -> MonotonicClock {
        MonotonicClock::new()
    }
}

mod direct {
    use super::*;

    const SAMPLE: u32 = 20_000;

    fn quota() -> Quota {
        Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000).expect("quota")
    }

    fn governor_quota() -> governor::Quota {
        governor::Quota::per_second(nz(1_000_000_000)).allow_burst(nz(1_000_000))
    }

    /// Default clock.
    #[divan::bench(threads = THREADS, sample_size = SAMPLE)]
    fn tailwater(b: Bencher<'_, '_>) {
        let l = DirectLimiter::new(quota());
        b.bench(|| black_box(l.check().allowed));
    }

    /// Default clock (quanta's TSC).
    #[divan::bench(threads = THREADS, sample_size = SAMPLE)]
    fn governor(b: Bencher<'_, '_>) {
        let l = governor::RateLimiter::direct(governor_quota());
        b.bench(|| black_box(l.check().is_ok()));
    }

    /// Default clock, using the whole decision (`remaining`, `reset_after`, `retry_after`:
    /// what the RateLimit headers need) instead of only `allowed`.
    #[divan::bench(threads = THREADS, sample_size = SAMPLE)]
    fn tailwater_decision(b: Bencher<'_, '_>) {
        let l = DirectLimiter::new(quota());
        b.bench(|| {
            let d = l.check();
            black_box(&d);
            d.allowed
        });
    }

    /// `Instant`, like `governor_monotonic`.
    #[divan::bench(threads = THREADS, sample_size = SAMPLE)]
    fn tailwater_os(b: Bencher<'_, '_>) {
        let l = DirectLimiter::with_clock(quota(), MonotonicClock::os());
        b.bench(|| black_box(l.check().allowed));
    }

    #[divan::bench(threads = THREADS, sample_size = SAMPLE)]
    fn governor_monotonic(b: Bencher<'_, '_>) {
        let l = governor::RateLimiter::direct_with_clock(
            governor_quota(),
            governor::clock::MonotonicClock,
        );
        b.bench(|| black_box(l.check().is_ok()));
    }

    /// governor's own quanta clock, like `governor`.
    #[divan::bench(threads = THREADS, sample_size = SAMPLE)]
    fn tailwater_quanta(b: Bencher<'_, '_>) {
        let l = DirectLimiter::with_clock(quota(), Tsc::new());
        b.bench(|| black_box(l.check().allowed));
    }
}

mod keyed {
    use super::*;

    const SAMPLE: u32 = 4_000;

    fn tailwater_limiter<C: Clock>(keys: u64, max_keys: u64, clock: C) -> KeyedLimiter<u64, C> {
        let l = KeyedLimiter::<u64>::builder(Quota::per_second(100).expect("quota"))
            .max_keys(max_keys as usize)
            .on_full(OnFull::EvictOldest)
            .clock(clock)
            .build()
            .expect("limiter");
        for k in 0..keys {
            l.check(&k);
        }
        l
    }

    fn run_tailwater<C: Clock>(b: Bencher<'_, '_>, keys: u64, l: KeyedLimiter<u64, C>) {
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check(&next_key(bits)).allowed));
    }

    /// Default clock, eviction on (`max_keys = 2 × keys`).
    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn tailwater(b: Bencher<'_, '_>, keys: u64) {
        run_tailwater(
            b,
            keys,
            tailwater_limiter(keys, 2 * keys, MonotonicClock::new()),
        );
    }

    /// Default clock (quanta's TSC), unbounded DashMap.
    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn governor(b: Bencher<'_, '_>, keys: u64) {
        let l = governor::RateLimiter::<u64, _, _>::dashmap(governor::Quota::per_second(nz(100)));
        for k in 0..keys {
            let _ = l.check_key(&k);
        }
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check_key(&next_key(bits)).is_ok()));
    }

    /// The cap binding: `max_keys = keys / 2`, so half the traffic evicts (EvictOldest).
    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn tailwater_cap_half(b: Bencher<'_, '_>, keys: u64) {
        run_tailwater(
            b,
            keys,
            tailwater_limiter(keys, keys / 2, MonotonicClock::new()),
        );
    }

    /// Default clock, using the whole decision instead of only `allowed`.
    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn tailwater_decision(b: Bencher<'_, '_>, keys: u64) {
        let l = tailwater_limiter(keys, 2 * keys, MonotonicClock::new());
        let bits = keys.trailing_zeros();
        b.bench(|| {
            let d = l.check(&next_key(bits));
            black_box(&d);
            d.allowed
        });
    }

    /// `Instant`, like `governor_monotonic`.
    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn tailwater_os(b: Bencher<'_, '_>, keys: u64) {
        run_tailwater(
            b,
            keys,
            tailwater_limiter(keys, 2 * keys, MonotonicClock::os()),
        );
    }

    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn governor_monotonic(b: Bencher<'_, '_>, keys: u64) {
        let l = governor::RateLimiter::<u64, _, _, _>::dashmap_with_clock(
            governor::Quota::per_second(nz(100)),
            governor::clock::MonotonicClock,
        );
        for k in 0..keys {
            let _ = l.check_key(&k);
        }
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check_key(&next_key(bits)).is_ok()));
    }

    /// governor's own quanta clock, like `governor`.
    #[divan::bench(threads = THREADS, args = KEYS, sample_size = SAMPLE)]
    fn tailwater_quanta(b: Bencher<'_, '_>, keys: u64) {
        run_tailwater(b, keys, tailwater_limiter(keys, 2 * keys, Tsc::new()));
    }
}
