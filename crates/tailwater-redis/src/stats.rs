//! Counters for every Redis call, failure and fallback.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a store's or leased limiter's counters (monotonic totals since creation).
///
/// Exported by adapters as `tailwater_redis_*_total` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Script calls sent to Redis (including ones that then failed).
    pub redis_calls: u64,
    /// Decisions answered by Redis that admitted the request.
    pub redis_allowed: u64,
    /// Decisions answered by Redis that denied the request.
    pub redis_denied: u64,
    /// Calls that hit the per-call timeout.
    pub timeouts: u64,
    /// Calls that failed with a Redis or connection error.
    pub errors: u64,
    /// Calls not sent because Redis failed moments ago (back-off).
    pub skipped_backoff: u64,
    /// Decisions admitted by [`FailOpen`](crate::FailurePolicy::FailOpen).
    pub fallback_open: u64,
    /// Decisions rejected by [`FailClosed`](crate::FailurePolicy::FailClosed).
    pub fallback_closed: u64,
    /// Decisions answered by the local `limit / N` limiter of
    /// [`Degrade`](crate::FailurePolicy::Degrade).
    pub fallback_degraded: u64,
    /// Script answers whose allow/deny differed from the Rust GCRA on the same inputs
    /// (should stay 0; a non-zero value means a version skew of the script).
    pub mismatches: u64,
    /// Leased path: decisions answered from local credit (no Redis round trip).
    pub local_allowed: u64,
    /// Leased path: decisions denied locally because Redis said the budget is empty.
    pub local_denied: u64,
    /// Leased path: lease refills sent to Redis.
    pub lease_refills: u64,
    /// Leased path: cells granted by Redis in total.
    pub lease_granted: u64,
    /// Leased path: granted cells dropped unused because their lease expired.
    pub lease_expired: u64,
    /// Leased path: unused cells given back to Redis.
    pub lease_returned: u64,
    /// Group commit: decisions sent inside group scripts (each group script is one of
    /// `redis_calls`, so `grouped_decisions / redis_calls` is the mean group size when
    /// only batches are decided).
    pub grouped_decisions: u64,
}

/// Sums counters: a service with many limiters (one per key) exports their total.
impl std::ops::AddAssign<&RedisStats> for RedisStats {
    fn add_assign(&mut self, other: &RedisStats) {
        self.redis_calls += other.redis_calls;
        self.redis_allowed += other.redis_allowed;
        self.redis_denied += other.redis_denied;
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        self.skipped_backoff += other.skipped_backoff;
        self.fallback_open += other.fallback_open;
        self.fallback_closed += other.fallback_closed;
        self.fallback_degraded += other.fallback_degraded;
        self.mismatches += other.mismatches;
        self.local_allowed += other.local_allowed;
        self.local_denied += other.local_denied;
        self.lease_refills += other.lease_refills;
        self.lease_granted += other.lease_granted;
        self.lease_expired += other.lease_expired;
        self.lease_returned += other.lease_returned;
        self.grouped_decisions += other.grouped_decisions;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) redis_calls: AtomicU64,
    pub(crate) redis_allowed: AtomicU64,
    pub(crate) redis_denied: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) skipped_backoff: AtomicU64,
    pub(crate) fallback_open: AtomicU64,
    pub(crate) fallback_closed: AtomicU64,
    pub(crate) fallback_degraded: AtomicU64,
    pub(crate) mismatches: AtomicU64,
    pub(crate) local_allowed: AtomicU64,
    pub(crate) local_denied: AtomicU64,
    pub(crate) lease_refills: AtomicU64,
    pub(crate) lease_granted: AtomicU64,
    pub(crate) lease_expired: AtomicU64,
    pub(crate) lease_returned: AtomicU64,
    pub(crate) grouped_decisions: AtomicU64,
}

#[inline]
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[inline]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RedisStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisStats {
            redis_calls: g(&self.redis_calls),
            redis_allowed: g(&self.redis_allowed),
            redis_denied: g(&self.redis_denied),
            timeouts: g(&self.timeouts),
            errors: g(&self.errors),
            skipped_backoff: g(&self.skipped_backoff),
            fallback_open: g(&self.fallback_open),
            fallback_closed: g(&self.fallback_closed),
            fallback_degraded: g(&self.fallback_degraded),
            mismatches: g(&self.mismatches),
            local_allowed: g(&self.local_allowed),
            local_denied: g(&self.local_denied),
            lease_refills: g(&self.lease_refills),
            lease_granted: g(&self.lease_granted),
            lease_expired: g(&self.lease_expired),
            lease_returned: g(&self.lease_returned),
            grouped_decisions: g(&self.grouped_decisions),
        }
    }
}
