//! RAII permits.

use std::fmt;
use std::time::Duration;

use crate::algorithm::Outcome;
use crate::clock::{Clock, MonotonicClock};
use crate::criticality::Criticality;
use crate::sync::Arc;

use super::{PartitionId, Shared};

/// The right to run one request under a [`Limiter`](super::Limiter).
///
/// Report how the request ended with exactly one of [`success`](Self::success),
/// [`success_with_rtt`](Self::success_with_rtt), [`dropped`](Self::dropped) or
/// [`ignore`](Self::ignore). Each consumes the permit, so it cannot be released twice; a
/// permit that is simply dropped (a cancelled future, a panic unwinding) counts as ignored, so
/// it cannot leak either. The RTT is measured by the limiter's clock from the moment the
/// permit was granted.
///
/// ```
/// use tailwater_core::{Limiter, algorithm::Fixed};
/// let limiter = Limiter::new(Fixed::new(1).unwrap());
/// let permit = limiter.try_acquire().unwrap();
/// assert!(limiter.try_acquire().is_err());
/// permit.success();
/// assert_eq!(limiter.in_flight(), 0);
/// ```
#[must_use = "a permit is released when dropped; report success() or dropped() to feed the limit"]
pub struct Permit<C: Clock = MonotonicClock> {
    shared: Arc<Shared<C>>,
    start: Duration,
    in_flight: usize,
    tier: Criticality,
    partition: Option<PartitionId>,
    bypass: bool,
    released: bool,
}

impl<C: Clock> Permit<C> {
    pub(crate) fn new(
        shared: Arc<Shared<C>>,
        start: Duration,
        in_flight: usize,
        tier: Criticality,
        partition: Option<PartitionId>,
        bypass: bool,
    ) -> Self {
        Self {
            shared,
            start,
            in_flight,
            tier,
            partition,
            bypass,
            released: false,
        }
    }

    /// The request completed normally; its RTT is the time since the permit was granted.
    pub fn success(mut self) {
        let rtt = self.shared.clock.now().saturating_sub(self.start);
        self.finish(Outcome::Success, rtt);
    }

    /// The request completed normally and took `rtt` (measured by the caller, e.g. from the
    /// first byte sent to the last byte received).
    pub fn success_with_rtt(mut self, rtt: Duration) {
        self.finish(Outcome::Success, rtt);
    }

    /// The request failed in a way that signals overload (timeout, 503, 429, reset).
    pub fn dropped(mut self) {
        let rtt = self.shared.clock.now().saturating_sub(self.start);
        self.finish(Outcome::Dropped, rtt);
    }

    /// The request ended in a way that says nothing about load; the limit is not updated.
    pub fn ignore(mut self) {
        self.finish(Outcome::Ignored, Duration::ZERO);
    }

    /// When the permit was granted, by the limiter's clock.
    pub fn start(&self) -> Duration {
        self.start
    }

    /// Permits in flight when this one was granted, itself included (0 for a bypass permit).
    pub fn in_flight_at_acquire(&self) -> usize {
        self.in_flight
    }

    /// The tier the permit was granted to.
    pub fn tier(&self) -> Criticality {
        self.tier
    }

    /// Whether this permit bypassed the limit (it is counted, not limited).
    pub fn is_bypass(&self) -> bool {
        self.bypass
    }

    fn finish(&mut self, outcome: Outcome, rtt: Duration) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if self.bypass {
            self.shared.counters.outcome(outcome);
        } else {
            self.shared
                .release(self.in_flight, self.partition, outcome, rtt);
        }
    }
}

impl<C: Clock> Drop for Permit<C> {
    fn drop(&mut self) {
        self.finish(Outcome::Ignored, Duration::ZERO);
    }
}

impl<C: Clock> fmt::Debug for Permit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("start", &self.start)
            .field("in_flight", &self.in_flight)
            .field("tier", &self.tier)
            .field("partition", &self.partition)
            .field("bypass", &self.bypass)
            .finish()
    }
}
