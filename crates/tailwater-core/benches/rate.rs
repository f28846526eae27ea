//! Rate limiters side by side with governor, in one run.
//!
//! `cargo bench -p tailwater-core --bench rate`
//!
//! - `direct`: one shared quota, always admitting (T = 1 ns), so every check does its CAS.
//!   `governor` uses its default clock (quanta, TSC); `governor_monotonic` uses governor's
//!   `MonotonicClock` (`Instant`, the clock tailwater uses by default).
//! - `keyed`: 100/s, burst 100 per key; keys drawn from 1 Ki or 1 Mi distinct keys
//!   (Fibonacci-hashed counter, one per thread). tailwater runs with its cap and eviction on
//!   (`max_keys = 2 × keys`, `OnFull::EvictOldest`, lazy idle sweeps); governor's DashMap
//!   store grows without bound. Both maps are prefilled with every key.
//!
//! `tailwater_tsc` runs tailwater on governor's TSC clock (wrapped in tailwater's `Clock`)
//! and `governor_monotonic` runs governor on `Instant`: the pairs on the same clock
//! isolate the cost of the limiter from the cost of reading the time.
//!
//! Both libraries get 1 and 2 threads (the machine has 2 cores).

use std::cell::Cell;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::time::Duration;

use divan::{Bencher, black_box};
use governor::clock::{Clock as _, QuantaClock, QuantaInstant, Reference as _};
use tailwater_core::clock::Clock;
use tailwater_core::rate::{DirectLimiter, KeyedLimiter, OnFull, Quota};

fn main() {
    divan::main();
}

const THREADS: &[usize] = &[1, 2];
const KEYS: &[u64] = &[1 << 10, 1 << 20];

/// governor's default TSC clock (quanta) behind tailwater's `Clock` trait: shows what
/// tailwater costs on the same clock. Not a default we ship (governor #299).
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

mod direct {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn tailwater(b: Bencher<'_, '_>) {
        let q = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000).expect("quota");
        let l = DirectLimiter::new(q);
        b.bench(|| black_box(l.check().allowed));
    }

    #[divan::bench(threads = THREADS)]
    fn tailwater_tsc(b: Bencher<'_, '_>) {
        let q = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000).expect("quota");
        let l = DirectLimiter::with_clock(q, Tsc::new());
        b.bench(|| black_box(l.check().allowed));
    }

    #[divan::bench(threads = THREADS)]
    fn governor(b: Bencher<'_, '_>) {
        let q = governor::Quota::per_second(nz(1_000_000_000)).allow_burst(nz(1_000_000));
        let l = governor::RateLimiter::direct(q);
        b.bench(|| black_box(l.check().is_ok()));
    }

    #[divan::bench(threads = THREADS)]
    fn governor_monotonic(b: Bencher<'_, '_>) {
        let q = governor::Quota::per_second(nz(1_000_000_000)).allow_burst(nz(1_000_000));
        let l = governor::RateLimiter::direct_with_clock(q, governor::clock::MonotonicClock);
        b.bench(|| black_box(l.check().is_ok()));
    }
}

mod keyed {
    use super::*;

    #[divan::bench(threads = THREADS, args = KEYS)]
    fn tailwater(b: Bencher<'_, '_>, keys: u64) {
        let l = KeyedLimiter::<u64>::builder(Quota::per_second(100).expect("quota"))
            .max_keys(2 * keys as usize)
            .on_full(OnFull::EvictOldest)
            .build()
            .expect("limiter");
        for k in 0..keys {
            l.check(&k);
        }
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check(&next_key(bits)).allowed));
    }

    /// The cap binding: `max_keys = keys / 2`, so half the traffic evicts (EvictOldest).
    #[divan::bench(threads = THREADS, args = KEYS)]
    fn tailwater_cap_half(b: Bencher<'_, '_>, keys: u64) {
        let l = KeyedLimiter::<u64>::builder(Quota::per_second(100).expect("quota"))
            .max_keys(keys as usize / 2)
            .on_full(OnFull::EvictOldest)
            .build()
            .expect("limiter");
        for k in 0..keys {
            l.check(&k);
        }
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check(&next_key(bits)).allowed));
    }

    #[divan::bench(threads = THREADS, args = KEYS)]
    fn tailwater_tsc(b: Bencher<'_, '_>, keys: u64) {
        let l = KeyedLimiter::<u64>::builder(Quota::per_second(100).expect("quota"))
            .max_keys(2 * keys as usize)
            .on_full(OnFull::EvictOldest)
            .clock(Tsc::new())
            .build()
            .expect("limiter");
        for k in 0..keys {
            l.check(&k);
        }
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check(&next_key(bits)).allowed));
    }

    #[divan::bench(threads = THREADS, args = KEYS)]
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

    #[divan::bench(threads = THREADS, args = KEYS)]
    fn governor(b: Bencher<'_, '_>, keys: u64) {
        let l = governor::RateLimiter::<u64, _, _>::dashmap(governor::Quota::per_second(nz(100)));
        for k in 0..keys {
            let _ = l.check_key(&k);
        }
        let bits = keys.trailing_zeros();
        b.bench(|| black_box(l.check_key(&next_key(bits)).is_ok()));
    }
}
