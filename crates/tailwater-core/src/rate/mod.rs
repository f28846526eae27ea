//! Rate limits: GCRA quotas, a lock-free direct limiter, a sharded keyed limiter with
//! bounded memory, several quotas in one decision, and a store seam for global limits.
//!
//! A *rate* limit bounds how often (cells per period, with a burst); a *concurrency* limit
//! (see [`crate::limiter`]) bounds how many at once. Rate-limit before
//! admission: it smooths the arrival process the concurrency limiter sees.
//!
//! # Which limiter
//!
//! | Need | Use | State | Accuracy | Cost |
//! |---|---|---|---|---|
//! | one budget for the whole process (protect a dependency, outbound calls) | [`DirectLimiter`] | one `AtomicU64` | exact | one CAS, tens of ns |
//! | a budget per client / API key / tenant, on one instance | [`KeyedLimiter`] | one `u64` per key, sharded, `max_keys` cap | exact per key (with [`OnFull::Reject`]) | one shard lock + hash lookup |
//! | the same per-key budget across a fleet | [`StoreLimiter`] over the Redis store (`tailwater-redis`) | in Redis, one Lua script per decision | exact, atomic across quotas | one round trip (~0.1 ms) |
//! | fleet-wide budget at local speed | the leased path of `tailwater-redis` | chunks of budget leased from Redis | bounded overshoot | local, plus background refills |
//!
//! Local limits divided by the replica count (`limit / N`) are the cheap alternative to a
//! global limit when traffic is spread evenly; they are wrong under sticky or skewed
//! routing. Quotas over long periods (per hour, day, 30-day month) are plain GCRA quotas
//! with long periods: there is no window boundary to burst across.
//!
//! # GCRA (the Generic Cell Rate Algorithm)
//!
//! From ATM traffic policing (ITU-T I.371), as used by governor and redis-cell. For a quota
//! of `rate` per `period` with burst `b`:
//!
//! - emission interval `T = ceil(period / rate)` (in integer nanoseconds, rounded **up** so
//!   that the limiter never admits more than the quota says);
//! - tolerance `τ = T·(b − 1)`; we store `DVT = b·T = τ + T`;
//! - state: the theoretical arrival time `TAT` of the next cell, one `u64` of nanoseconds.
//!
//! A request for `n` cells at time `now`: `tat = max(TAT, now)`; if `n > b` it can never
//! succeed; if `now < tat + n·T − DVT` it is denied and must wait exactly that difference;
//! otherwise it is admitted and `TAT ← tat + n·T`. Denied requests never change `TAT`.
//! Over any interval of length `L`, at most `b + floor(L / T) ≤ b + rate·L/period` cells
//! are admitted (property-tested). [`gcra`] states every rounding for the Redis port.
//!
//! The [`RateDecision`] carries what the edge needs: `allowed`, `limit` (= burst),
//! `remaining`, `reset_after` (`t` of the draft-10 `RateLimit` header) and `retry_after`
//! (`Retry-After` on a 429), plus the [`DenyReason`].
//!
//! # Examples
//!
//! A process-wide limit, on a manual clock:
//!
//! ```
//! use std::time::Duration;
//! use tailwater_core::clock::ManualClock;
//! use tailwater_core::rate::{DirectLimiter, Quota};
//!
//! let clock = ManualClock::new();
//! let limiter = DirectLimiter::with_clock(Quota::per_second(100)?.with_burst(10)?, clock.clone());
//! let admitted = (0..50).filter(|_| limiter.check().allowed).count();
//! assert_eq!(admitted, 10); // the burst
//! let d = limiter.check();
//! assert_eq!(d.retry_after, Some(Duration::from_millis(10))); // T = 10 ms
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```
//!
//! Per client, 100/s and 1 M/day together, memory bounded:
//!
//! ```
//! use tailwater_core::rate::{KeyedLimiter, MultiQuota, OnFull, Quota};
//!
//! let quotas = MultiQuota::new([Quota::per_second(100)?, Quota::per_day(1_000_000)?])?;
//! let limiter = KeyedLimiter::<String>::builder(quotas)
//!     .max_keys(50_000)
//!     .on_full(OnFull::EvictOldest)
//!     .build()?;
//! let d = limiter.check("203.0.113.7");
//! assert!(d.allowed);
//! // Headers: RateLimit-Policy: "per-second";q=100;w=1 ...
//! //          RateLimit: "<policy of d.quota_index>";r=<d.remaining>;t=<d.reset_after_secs()>
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```
//!
//! The same code over any [`RateStore`] (memory here, Redis in `tailwater-redis`): see
//! [`StoreLimiter`].
//!
//! # Clock
//!
//! Limiters default to [`MonotonicClock`](crate::clock::MonotonicClock): the TSC (through
//! quanta, as governor's default) only where the kernel validated it as its own monotonic
//! clocksource, `std::time::Instant` elsewhere. governor reads the TSC unconditionally, and
//! on machines whose cores' counters disagree its clock goes backwards and rejects before
//! the burst is used (governor #299); see [`clock`](crate::clock) for the rule and for
//! [`MonotonicClock::os`](crate::clock::MonotonicClock::os), which forces the OS clock.

mod batch;
mod decision;
mod direct;
pub mod gcra;
mod keyed;
mod quota;
mod store;

pub use batch::{BatchClass, BatchItem, BatchOutcome, step_batch};
pub use decision::{DenyReason, RateDecision};
pub use direct::DirectLimiter;
pub use keyed::{
    DEFAULT_MAX_KEYS, KeyedLimiter, KeyedLimiterBuilder, KeyedStats, MAX_SHARDS, OnFull,
};
pub use quota::{MAX_TOLERANCE_NANOS, MONTH, MultiQuota, Quota};
pub use store::{MemoryStore, RateStore, StoreError, StoreLimiter};

#[cfg(test)]
mod tests;

/// The clock's reading in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
fn now_nanos<C: crate::clock::Clock>(clock: &C) -> u64 {
    clock.now_nanos()
}
