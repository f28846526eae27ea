//! The admitted request's ticket: its permit, the outcome its response says so far, and
//! the one place the permit is settled.
//!
//! Whoever forwards the request tells the ticket what it learns: the response head
//! ([`Ticket::head`]: `5xx`/`429` and a `grpc-status` in the head count against the
//! service), then the trailers ([`Ticket::with_trailers`]: gRPC puts its status there; a
//! good head can turn bad, never the reverse), a body error or a timeout (settle
//! `Dropped`), a client that went away (settle `Ignored`). [`Ticket::settle`] releases the
//! permit exactly once; later calls do nothing and say so.
//!
//! A ticket dropped unsettled settles by the documented default
//! ([`Ticket::drop_outcome`]): `Dropped` if the head already counted against the service
//! (a `503` whose body was never read), `Ignored` otherwise (the client went away).
//!
//! [`ConcurrencyLayer`](crate::ConcurrencyLayer)'s response body and tailwater-proxy's
//! two engines settle through it.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::{Criticality, OwnedPermit};

use crate::classify::{Outcome, grpc_outcome, status_outcome};

/// An admitted request's permit, settled exactly once with the outcome of its end.
///
/// ```
/// use tailwater_core::{Limiter, algorithm::Fixed};
/// use tailwater_tower::admission::Ticket;
/// use tailwater_tower::classify::Outcome;
/// let limiter = Limiter::builder().algorithm(Fixed::new(1)?).build()?;
/// let mut ticket = Ticket::new(limiter.try_acquire_owned().unwrap());
/// let mut head = http::HeaderMap::new();
/// head.insert("grpc-status", "0".parse().unwrap());
/// ticket.head(200, &head);
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap()); // UNAVAILABLE
/// let outcome = ticket.with_trailers(&trailers);
/// assert_eq!(outcome, Outcome::Dropped);
/// assert!(ticket.settle(outcome, None).is_some());
/// assert!(ticket.settle(Outcome::Success, None).is_none()); // once only
/// assert_eq!(limiter.in_flight(), 0);
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct Ticket<C: Clock = MonotonicClock> {
    permit: Option<OwnedPermit<C>>,
    /// The outcome the response says so far (`Ignored` before its head).
    head: Outcome,
}

impl<C: Clock> Ticket<C> {
    /// The ticket of `permit`; nothing known of the response yet.
    #[inline]
    pub fn new(permit: OwnedPermit<C>) -> Self {
        Self {
            permit: Some(permit),
            head: Outcome::Ignored,
        }
    }

    /// The response head arrived with `status` and `headers`: `Dropped` for `5xx` and
    /// `429`, or for a `grpc-status` of `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED` or
    /// `UNAVAILABLE` in the head (gRPC's trailers-only answer); `Success` otherwise (the
    /// [`DefaultClassifier`](crate::classify::DefaultClassifier) table).
    #[inline]
    pub fn head(&mut self, status: u16, headers: &HeaderMap) {
        self.head = match status_outcome(status) {
            Outcome::Success => grpc_outcome(headers).unwrap_or(Outcome::Success),
            dropped => dropped,
        };
    }

    /// [`head`](Self::head) with the status alone (a head without gRPC fields).
    #[inline]
    pub fn head_status(&mut self, status: u16) {
        self.head = status_outcome(status);
    }

    /// Sets the head's outcome as a custom classifier decided it.
    #[inline]
    pub fn set_head(&mut self, outcome: Outcome) {
        self.head = outcome;
    }

    /// The outcome the head gave (`Ignored` before the head).
    #[inline]
    pub fn head_outcome(&self) -> Outcome {
        self.head
    }

    /// The outcome of a body that ended with `trailers`: a `Success` head becomes what a
    /// `grpc-status` in them says; any other head stands.
    pub fn with_trailers(&self, trailers: &HeaderMap) -> Outcome {
        self.with_trailer_outcome(grpc_outcome(trailers))
    }

    /// [`with_trailers`](Self::with_trailers) with the trailers already classified
    /// (`None`: they say nothing).
    #[inline]
    pub fn with_trailer_outcome(&self, by_trailers: Option<Outcome>) -> Outcome {
        match (self.head, by_trailers) {
            (Outcome::Success, Some(o)) => o,
            (head, _) => head,
        }
    }

    /// The outcome a ticket dropped unsettled settles with: `Dropped` if the head counted
    /// against the service, `Ignored` otherwise.
    #[inline]
    pub fn drop_outcome(&self) -> Outcome {
        match self.head {
            Outcome::Dropped => Outcome::Dropped,
            _ => Outcome::Ignored,
        }
    }

    /// Whether the permit was settled already.
    #[inline]
    pub fn is_settled(&self) -> bool {
        self.permit.is_none()
    }

    /// Moves the permit and the head into a new ticket, leaving this one settled (a
    /// tunnel that holds the permit past the request's end takes it so).
    pub fn take(&mut self) -> Option<Self> {
        let permit = self.permit.take()?;
        Some(Self {
            permit: Some(permit),
            head: self.head,
        })
    }

    /// When the permit measured its start (the limiter clock's reading), if it does.
    pub fn permit_start(&self) -> Option<Duration> {
        self.permit.as_ref().and_then(|p| p.start())
    }

    /// Releases the permit with `outcome` (a `Success` with `rtt` when the caller measured
    /// it, else the permit's own measurement); the request's tier, or `None` when the
    /// ticket was settled already (nothing happens then).
    #[inline]
    pub fn settle(&mut self, outcome: Outcome, rtt: Option<Duration>) -> Option<Criticality> {
        let permit = self.permit.take()?;
        let tier = permit.tier();
        match (outcome, rtt) {
            (Outcome::Success, Some(rtt)) => permit.success_with_rtt(rtt),
            (Outcome::Success, None) => permit.success(),
            (Outcome::Dropped, _) => permit.dropped(),
            (Outcome::Ignored, _) => permit.ignore(),
        }
        Some(tier)
    }
}

impl<C: Clock> Drop for Ticket<C> {
    fn drop(&mut self) {
        let outcome = self.drop_outcome();
        self.settle(outcome, None);
    }
}

impl<C: Clock> fmt::Debug for Ticket<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("settled", &self.is_settled())
            .field("head", &self.head)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailwater_core::Limiter;
    use tailwater_core::algorithm::Fixed;

    fn limiter() -> Limiter {
        Limiter::builder()
            .algorithm(Fixed::new(4).expect("limit"))
            .build()
            .expect("limiter")
    }

    #[test]
    fn a_dropped_ticket_settles_by_its_head() {
        let l = limiter();
        let before = l.stats();
        let mut t = Ticket::new(l.try_acquire_owned().expect("permit"));
        t.head_status(503);
        drop(t);
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.stats().counters.dropped, before.counters.dropped + 1);
        let mut t = Ticket::new(l.try_acquire_owned().expect("permit"));
        t.head_status(200);
        drop(t);
        assert_eq!(
            l.stats().counters.dropped,
            before.counters.dropped + 1,
            "a good head is ignored"
        );
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn trailers_turn_a_good_head_bad_never_the_reverse() {
        let l = limiter();
        let mut t = Ticket::new(l.try_acquire_owned().expect("permit"));
        let mut grpc_ok = HeaderMap::new();
        grpc_ok.insert("grpc-status", "0".parse().expect("value"));
        let mut grpc_busy = HeaderMap::new();
        grpc_busy.insert("grpc-status", "8".parse().expect("value"));
        t.head(200, &HeaderMap::new());
        assert_eq!(t.with_trailers(&grpc_ok), Outcome::Success);
        assert_eq!(t.with_trailers(&grpc_busy), Outcome::Dropped);
        t.head(502, &HeaderMap::new());
        assert_eq!(t.with_trailers(&grpc_ok), Outcome::Dropped);
        // Trailers-only: the status is in the head.
        t.head(200, &grpc_busy);
        assert_eq!(t.head_outcome(), Outcome::Dropped);
        assert!(t.settle(Outcome::Dropped, None).is_some());
        assert!(t.is_settled());
        assert!(t.settle(Outcome::Success, None).is_none());
    }
}
