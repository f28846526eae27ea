//! RAII permits.

use std::fmt;
use std::ops::Deref;
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
/// it cannot leak either.
///
/// A permit from [`try_acquire`](super::Limiter::try_acquire) borrows its limiter (no
/// reference count on the hot path, as `tokio::sync::Semaphore::try_acquire`); one that must
/// outlive the borrow (moved into a response body, another task or thread) comes from
/// [`try_acquire_owned`](super::Limiter::try_acquire_owned) and is an [`OwnedPermit`].
///
/// Whether the permit measures its RTT is decided when it is granted
/// ([`is_sampled`](Self::is_sampled), see [`RttSampling`](super::RttSampling)): a sampled
/// permit measures from the moment it was granted, by the limiter's clock, and its report
/// feeds the limit algorithm; an unsampled success is only counted. Drops always feed it.
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
pub struct Permit<'a, C: Clock = MonotonicClock> {
    shared: Holder<'a, C>,
    /// When it was granted, in nanoseconds of the limiter's clock; `NOT_SAMPLED` if the
    /// permit does not measure its RTT. (Kept small: permits are moved around by value.)
    start: u64,
    in_flight: u32,
    /// The limit at the grant (24 bits, as `in_flight`).
    limit: u32,
    partition: Option<PartitionId>,
    tier: Criticality,
    bypass: bool,
    released: bool,
}

/// `Permit::start` of a permit that does not measure its RTT.
const NOT_SAMPLED: u64 = u64::MAX;

/// A permit that owns a handle on its limiter, so it can be moved anywhere
/// (`'static`): from [`Limiter::try_acquire_owned`](super::Limiter::try_acquire_owned),
/// [`Limiter::enqueue`](super::Limiter::enqueue) and `Limiter::acquire`.
pub type OwnedPermit<C = MonotonicClock> = Permit<'static, C>;

/// How a permit reaches its limiter's state.
pub(crate) enum Holder<'a, C> {
    Borrowed(&'a Shared<C>),
    Owned(Arc<Shared<C>>),
}

impl<C> Deref for Holder<'_, C> {
    type Target = Shared<C>;

    #[inline]
    fn deref(&self) -> &Shared<C> {
        match self {
            Holder::Borrowed(s) => s,
            Holder::Owned(s) => s,
        }
    }
}

/// The terms a permit was granted on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terms {
    /// When it was granted, if it measures its RTT.
    pub(crate) start: Option<Duration>,
    /// Permits in flight at the grant, itself included (0 for a bypass permit).
    pub(crate) in_flight: usize,
    /// The limit at the grant (0 for a bypass permit).
    pub(crate) limit: usize,
    pub(crate) tier: Criticality,
    pub(crate) partition: Option<PartitionId>,
    pub(crate) bypass: bool,
}

impl<'a, C: Clock> Permit<'a, C> {
    pub(crate) fn new(shared: Holder<'a, C>, grant: Terms) -> Self {
        Self {
            shared,
            // Saturates after 584 years of uptime, when the permit would count as unsampled.
            start: grant.start.map_or(NOT_SAMPLED, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(NOT_SAMPLED)
            }),
            // In-flight counts fit in 24 bits (`MAX_LIMIT`).
            in_flight: grant.in_flight as u32,
            limit: grant.limit as u32,
            tier: grant.tier,
            partition: grant.partition,
            bypass: grant.bypass,
            released: false,
        }
    }

    /// The request completed normally. A sampled permit feeds the algorithm its RTT, the
    /// time since it was granted; an unsampled one is counted.
    #[inline(always)]
    pub fn success(mut self) {
        if self.start == NOT_SAMPLED {
            // Inlined into the caller: a counter and one decrement.
            self.finish(Outcome::Success, None);
        } else {
            self.success_sampled();
        }
    }

    /// [`success`](Self::success) of a permit that measures its RTT: a clock read and a turn
    /// at the algorithm, out of line.
    #[inline(never)]
    fn success_sampled(&mut self) {
        let sample = self.start().map(|start| {
            let now = self.shared.clock.now();
            (now, Some(now.saturating_sub(start)))
        });
        self.finish(Outcome::Success, sample);
    }

    /// The request completed normally and took `rtt` (measured by the caller, e.g. until the
    /// last byte of the response). Fed to the algorithm if the permit is sampled.
    pub fn success_with_rtt(mut self, rtt: Duration) {
        let sample = self
            .is_sampled()
            .then(|| (self.shared.clock.now(), Some(rtt)));
        self.finish(Outcome::Success, sample);
    }

    /// The request failed in a way that signals overload (timeout, 503, 429, reset). Always
    /// fed to the algorithm.
    pub fn dropped(mut self) {
        let now = self.shared.clock.now();
        let rtt = self.start().map(|start| now.saturating_sub(start));
        self.finish(Outcome::Dropped, Some((now, rtt)));
    }

    /// The request ended in a way that says nothing about load; the limit is not updated.
    pub fn ignore(mut self) {
        self.finish(Outcome::Ignored, None);
    }

    /// When the permit was granted, by the limiter's clock, if it measures its RTT
    /// ([`is_sampled`](Self::is_sampled)).
    #[inline]
    pub fn start(&self) -> Option<Duration> {
        (self.start != NOT_SAMPLED).then(|| Duration::from_nanos(self.start))
    }

    /// Whether this permit measures its RTT and feeds the limit algorithm on success.
    pub fn is_sampled(&self) -> bool {
        self.start != NOT_SAMPLED
    }

    /// Permits in flight when this one was granted, itself included (0 for a bypass permit).
    pub fn in_flight_at_acquire(&self) -> usize {
        self.in_flight as usize
    }

    /// The tier the permit was granted to.
    pub fn tier(&self) -> Criticality {
        self.tier
    }

    /// Whether this permit bypassed the limit (it is counted, not limited).
    pub fn is_bypass(&self) -> bool {
        self.bypass
    }

    /// `sample`: the time of the report and the RTT (`None`: not measured) to feed, if any.
    #[inline(always)]
    fn finish(&mut self, outcome: Outcome, sample: Option<(Duration, Option<Duration>)>) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if self.bypass {
            self.shared.counters.bypass_outcome(outcome);
        } else {
            self.shared.release(
                (self.in_flight as usize, self.limit as usize),
                self.partition,
                outcome,
                sample,
            );
        }
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    /// Small enough to inline, so that after a report the compiler sees the permit is
    /// released and drops only its handle.
    #[inline]
    fn drop(&mut self) {
        if !self.released {
            self.release_unreported();
        }
    }
}

impl<C: Clock> Permit<'_, C> {
    /// A permit dropped without a report counts as ignored.
    #[inline(never)]
    fn release_unreported(&mut self) {
        self.finish(Outcome::Ignored, None);
    }
}

impl<C: Clock> fmt::Debug for Permit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("start", &self.start())
            .field("in_flight", &self.in_flight)
            .field("tier", &self.tier)
            .field("partition", &self.partition)
            .field("bypass", &self.bypass)
            .finish()
    }
}
