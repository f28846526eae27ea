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
    /// The limiter; taken when the permit is released, by a report or by the drop.
    shared: Option<Holder<'a, C>>,
    /// When it was granted, in nanoseconds of the limiter's clock; `NOT_SAMPLED` if the
    /// permit does not measure its RTT. (Kept small: permits are moved around by value.)
    start: u64,
    in_flight: u32,
    /// The limit at the grant (24 bits, as `in_flight`).
    limit: u32,
    partition: Option<PartitionId>,
    tier: Criticality,
    bypass: bool,
}

/// `Permit::start` of a permit that does not measure its RTT.
pub(crate) const NOT_SAMPLED: u64 = u64::MAX;

/// A reading of the limiter's clock as `Permit::start`. Saturates after 584 years of
/// uptime, when the permit would count as unsampled.
pub(crate) fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(NOT_SAMPLED)
}

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
    /// When it was granted (see [`nanos`]), or `NOT_SAMPLED` if it does not measure its
    /// RTT.
    pub(crate) start: u64,
    /// Permits in flight at the grant, itself included (0 for a bypass permit); 24 bits.
    pub(crate) in_flight: u32,
    /// The limit at the grant (0 for a bypass permit); 24 bits.
    pub(crate) limit: u32,
    pub(crate) tier: Criticality,
    pub(crate) partition: Option<PartitionId>,
    pub(crate) bypass: bool,
}

impl<'a, C: Clock> Permit<'a, C> {
    pub(crate) fn new(shared: Holder<'a, C>, grant: Terms) -> Self {
        Self {
            shared: Some(shared),
            start: grant.start,
            in_flight: grant.in_flight,
            limit: grant.limit,
            tier: grant.tier,
            partition: grant.partition,
            bypass: grant.bypass,
        }
    }

    /// The request completed normally. A sampled permit feeds the algorithm its RTT, the
    /// time since it was granted; an unsampled one is counted.
    #[inline(always)]
    pub fn success(self) {
        // The handle is matched at once, so a borrowed one never goes through memory (an
        // owned one is dropped from a place of its own, whose address its drop takes).
        match self.into_parts() {
            (Some(Holder::Borrowed(shared)), terms) => success(shared, terms),
            (Some(Holder::Owned(shared)), terms) => success(&shared, terms),
            (None, _) => {}
        }
    }

    /// The request completed normally and took `rtt` (measured by the caller, e.g. until the
    /// last byte of the response). Fed to the algorithm if the permit is sampled.
    pub fn success_with_rtt(self, rtt: Duration) {
        let sample = self
            .limiter()
            .filter(|_| self.is_sampled())
            .map(|s| (s.clock.now(), Some(rtt)));
        self.finish(Outcome::Success, sample);
    }

    /// The request failed in a way that signals overload (timeout, 503, 429, reset). Always
    /// fed to the algorithm.
    pub fn dropped(self) {
        let sample = self.limiter().map(|s| {
            let now = s.clock.now();
            (now, self.start().map(|start| now.saturating_sub(start)))
        });
        self.finish(Outcome::Dropped, sample);
    }

    /// The request ended in a way that says nothing about load; the limit is not updated.
    pub fn ignore(self) {
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

    /// The limiter, while the permit is held (always, outside its release).
    fn limiter(&self) -> Option<&Shared<C>> {
        self.shared.as_deref()
    }

    /// `sample`: the time of the report and the RTT (`None`: not measured) to feed, if any.
    #[inline(always)]
    fn finish(self, outcome: Outcome, sample: Option<(Duration, Option<Duration>)>) {
        if let (Some(shared), terms) = self.into_parts() {
            release(&shared, terms, outcome, sample);
        }
    }

    /// The terms it was granted on, by value.
    #[inline(always)]
    fn terms(&self) -> Terms {
        Terms {
            start: self.start,
            in_flight: self.in_flight,
            limit: self.limit,
            tier: self.tier,
            partition: self.partition,
            bypass: self.bypass,
        }
    }

    /// Takes the permit apart without running its drop: its handle and its terms, by value.
    /// A report releases the permit from these values and never through the permit's
    /// address, so that on the hot path the permit lives in registers (a permit written to
    /// the stack and read back before each locked instruction made the limiter's time swing
    /// with the machine's state on AMD EPYC; see `Shared::try_admit`).
    #[inline(always)]
    fn into_parts(mut self) -> (Option<Holder<'a, C>>, Terms) {
        let (shared, terms) = (self.shared.take(), self.terms());
        // Nothing is left to drop: the handle was taken and the rest is plain data.
        std::mem::forget(self);
        (shared, terms)
    }
}

/// Releases a permit from its terms.
#[inline(always)]
fn release<C: Clock>(
    shared: &Shared<C>,
    terms: Terms,
    outcome: Outcome,
    sample: Option<(Duration, Option<Duration>)>,
) {
    if terms.bypass {
        shared.counters.bypass_outcome(outcome);
    } else {
        shared.release(
            (terms.in_flight as usize, terms.limit as usize),
            terms.partition,
            outcome,
            sample,
        );
    }
}

/// [`Permit::success`] from the permit's parts.
#[inline(always)]
fn success<C: Clock>(shared: &Shared<C>, terms: Terms) {
    if terms.start == NOT_SAMPLED || terms.bypass {
        // Inlined into the caller: a counter and one decrement.
        release(shared, terms, Outcome::Success, None);
    } else {
        success_sampled(
            shared,
            terms.start,
            (terms.in_flight, terms.limit),
            terms.partition,
        );
    }
}

/// [`Permit::success`] of a limited permit that measures its RTT: a clock read and a turn
/// at the algorithm, out of line. (The terms it needs come in registers, as separate
/// values.)
#[inline(never)]
fn success_sampled<C: Clock>(
    shared: &Shared<C>,
    start: u64,
    (in_flight, limit): (u32, u32),
    partition: Option<PartitionId>,
) {
    let now = shared.clock.now();
    let rtt = now.saturating_sub(Duration::from_nanos(start));
    shared.release(
        (in_flight as usize, limit as usize),
        partition,
        Outcome::Success,
        Some((now, Some(rtt))),
    );
}

impl<C: Clock> Drop for Permit<'_, C> {
    /// A permit dropped without a report counts as ignored (a report takes the handle
    /// first, so this runs only for an unreported permit).
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            release(&shared, self.terms(), Outcome::Ignored, None);
        }
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
