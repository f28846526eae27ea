//! A lock-free limiter for one shared quota.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::decision::RateDecision;
use super::gcra;
use super::quota::Quota;
use crate::clock::{Clock, MonotonicClock};

/// One GCRA quota shared by every caller (a "global" limit inside one process): one
/// `AtomicU64` holding the TAT, updated with a compare-and-swap loop. No lock, no
/// allocation, no unbounded state.
///
/// Time comes from `C` (default [`MonotonicClock`]: the TSC where the kernel validated it,
/// else `std::time::Instant`; never the unchecked TSC that makes governor's default go
/// backwards across cores, governor #299).
///
/// Failure modes: none at run time. A check with `n > burst` is denied with
/// [`DenyReason::ExceedsBurst`](super::DenyReason::ExceedsBurst) and no retry hint.
/// Denied checks never change the state, so a flood of rejected callers does not push
/// admitted ones further out.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::rate::{DirectLimiter, Quota};
///
/// let clock = ManualClock::new();
/// let limiter = DirectLimiter::with_clock(Quota::per_second(2)?, clock.clone());
/// assert!(limiter.check().allowed);
/// assert!(limiter.check().allowed);
/// let d = limiter.check();
/// assert!(!d.allowed);
/// assert_eq!(d.retry_after, Some(Duration::from_millis(500)));
/// clock.advance(Duration::from_millis(500));
/// assert!(limiter.check().allowed);
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct DirectLimiter<C: Clock = MonotonicClock> {
    tat: CachePadded<AtomicU64>,
    quota: Quota,
    clock: C,
}

impl DirectLimiter<MonotonicClock> {
    /// A limiter on the default monotonic clock, with a full bucket.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, MonotonicClock::new())
    }
}

impl<C: Clock> DirectLimiter<C> {
    /// A limiter reading time from `clock`, with a full bucket.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            tat: CachePadded::new(AtomicU64::new(0)),
            quota,
            clock,
        }
    }

    /// Asks for one cell.
    #[inline]
    pub fn check(&self) -> RateDecision {
        self.check_n(1)
    }

    /// Asks for `n` cells at once: all are admitted or none. `n > burst` can never
    /// succeed; `n == 0` only reports the current state.
    #[inline]
    pub fn check_n(&self, n: u32) -> RateDecision {
        let now = super::now_nanos(&self.clock);
        self.check_n_at(now, n)
    }

    /// [`check_n`](Self::check_n) at an explicit time (nanoseconds on this limiter's
    /// clock), for callers that already read the clock.
    #[inline]
    pub fn check_n_at(&self, now: u64, n: u32) -> RateDecision {
        let mut current = self.tat.load(Ordering::Acquire);
        // Decide in the loop with the bare state arithmetic; build the decision (a division
        // and two `Duration`s) once, after, from the state the decision was made on.
        while let Some(new) = gcra::admit(&self.quota, now, current, n) {
            if new == current {
                break;
            }
            match self
                .tat
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        gcra::step(&self.quota, now, current, n).0
    }

    /// The quota enforced.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The clock read by this limiter.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Time until the bucket is full again (zero if it is full).
    pub fn reset_after(&self) -> Duration {
        let now = super::now_nanos(&self.clock);
        Duration::from_nanos(self.tat.load(Ordering::Acquire).saturating_sub(now))
    }
}

impl<C: Clock> fmt::Debug for DirectLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectLimiter")
            .field("quota", &self.quota)
            .field("tat", &self.tat.load(Ordering::Relaxed))
            .field("clock", &self.clock)
            .finish()
    }
}
