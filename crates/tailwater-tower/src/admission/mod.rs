//! The transport-neutral admission steps, shared by the [`ConcurrencyLayer`] and
//! tailwater-proxy's two engines (hyper's and the lean HTTP/1.1 path).
//!
//! Whoever parsed the request head gives a [`RequestView`] of it (hyper's `Request`, or a
//! parser's own head), never a transport type. The steps, in order:
//!
//! 1. the tier: [`tier_of`] (`x-criticality`, default `Critical`), capped by a
//!    [`TierPolicy`] (a ceiling, and the client networks trusted to claim above it);
//! 2. the body cap: [`body_too_large`] on the declared `Content-Length`;
//! 3. the caller's own budget: [`Deadline::stated`], refused on arrival when spent;
//! 4. rate limits on any store (in memory, Redis, a remote service), judged by
//!    [`rate_verdict`] under the [`OnStoreError`] policy;
//! 5. the limiter: [`Admission::acquire`], with the queue wait cut to what is left of the
//!    budget; its permit rides in a [`Ticket`], which classifies how the request ended
//!    (status, gRPC status in the head or the trailers, body errors, timeouts) and settles
//!    the permit exactly once.
//!
//! [`Admission::admit`] runs them in that order (the one composition: the proxy's two
//! engines call it; [`ConcurrencyLayer`], whose synchronous `call` cannot hold its future,
//! runs the three pieces it is made of: [`screen`](Admission::screen),
//! [`limit`](Admission::limit) and [`after_wait`](Admission::after_wait)), returning an [`Admitted`] request or a [`Refusal`], whose
//! [`response`](Refusal::response) is the answer, built by [`edge`](crate::edge): `503`
//! ([`shed_response`](crate::edge::shed_response)), `429`
//! ([`rate_limited_response`](crate::edge::rate_limited_response)), `413`
//! ([`body_too_large_response`](crate::edge::body_too_large_response)) and `504`
//! ([`deadline_response`](crate::edge::deadline_response)).
//!
//! [`ConcurrencyLayer`]: crate::ConcurrencyLayer
//! [`Deadline::stated`]: crate::deadline::Deadline::stated

use std::fmt;
use std::time::Duration;

use http::HeaderName;
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::limiter::{Acquire, Request as LimiterRequest};
use tailwater_core::{Criticality, Limiter, Rejection};

mod admit;
mod rate;
mod ticket;
mod tier;

pub use admit::{
    AdmitObserver, Admitted, AdmittedInfo, Arrival, Limited, NoRateLimits, Queued, RateLimits,
    Refusal, Screened,
};

pub use crate::view::RequestView;
pub use rate::{OnStoreError, RateVerdict, rate_verdict};
pub use ticket::Ticket;
pub use tier::{InvalidSourceNet, SourceNet, TierPolicy};

/// The header carrying the request's criticality tier.
pub const CRITICALITY_HEADER: &str = "x-criticality";

/// The request's criticality tier: [`CRITICALITY_HEADER`], default `Critical` (a value that
/// does not parse is the default too).
///
/// ```
/// use tailwater_core::Criticality;
/// use tailwater_tower::admission::tier_of;
/// let req = http::Request::builder().header("x-criticality", "sheddable").body(()).unwrap();
/// assert_eq!(tier_of(&req), Criticality::Sheddable);
/// assert_eq!(tier_of(&http::Request::new(())), Criticality::Critical);
/// ```
pub fn tier_of(req: &impl RequestView) -> Criticality {
    req.header(CRITICALITY_HEADER)
        .and_then(|v| v.parse::<Criticality>().ok())
        .unwrap_or_default()
}

/// Whether the declared body is over `max` bytes (`None`: no cap): answered `413` before
/// anything is admitted or read.
///
/// ```
/// use tailwater_tower::admission::body_too_large;
/// let req = http::Request::builder().header("content-length", "11").body(()).unwrap();
/// assert!(body_too_large(&req, Some(10)));
/// assert!(!body_too_large(&req, Some(11)));
/// assert!(!body_too_large(&req, None));
/// ```
pub fn body_too_large(req: &impl RequestView, max: Option<u64>) -> bool {
    max.is_some_and(|max| req.content_length().is_some_and(|n| n > max))
}

/// One admission: the settings of every step (the tier policy, the body cap, the deadline
/// header, the limiter and the longest wait in its queue) and [`admit`](Self::admit), which
/// runs them in order.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::limiter::{Acquire, Request};
/// use tailwater_core::{Limiter, algorithm::Fixed};
/// use tailwater_tower::admission::Admission;
/// let limiter = Limiter::builder().algorithm(Fixed::new(1)?).build()?;
/// let admission = Admission::new(limiter);
/// let Ok(Acquire::Ready(permit)) = admission.acquire(Request::new(), None) else { panic!() };
/// assert!(admission.acquire(Request::new(), None).is_err()); // full, no queue
/// permit.success();
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct Admission<C: Clock = MonotonicClock> {
    limiter: Limiter<C>,
    wait: Option<Duration>,
    tier: TierPolicy,
    max_body: Option<u64>,
    deadline_header: Option<HeaderName>,
}

impl<C: Clock> Admission<C> {
    /// Admission on `limiter`, rejecting at once when it is full; no tier ceiling, no body
    /// cap, and only `grpc-timeout` states a deadline.
    pub fn new(limiter: Limiter<C>) -> Self {
        Self {
            limiter,
            wait: None,
            tier: TierPolicy::new(),
            max_body: None,
            deadline_header: None,
        }
    }

    /// Caps the tiers requests claim with `policy` (step 1).
    pub fn with_tier_policy(mut self, policy: TierPolicy) -> Self {
        self.tier = policy;
        self
    }

    /// Refuses a declared body over `max` bytes with `413` (step 2; `None`: no cap).
    pub fn with_max_body(mut self, max: Option<u64>) -> Self {
        self.max_body = max;
        self
    }

    /// Reads `header` (whole milliseconds) besides `grpc-timeout` for the caller's deadline
    /// (step 3).
    pub fn with_deadline_header(mut self, header: Option<HeaderName>) -> Self {
        self.deadline_header = header;
        self
    }

    /// The tier policy.
    pub fn tier_policy(&self) -> &TierPolicy {
        &self.tier
    }

    /// The body cap.
    pub fn max_body(&self) -> Option<u64> {
        self.max_body
    }

    /// The header read for the deadline besides `grpc-timeout`.
    pub fn deadline_header(&self) -> Option<&HeaderName> {
        self.deadline_header.as_ref()
    }

    /// Waits up to `wait` in the limiter's queue when it is full (`None`: no wait).
    pub fn with_wait(mut self, wait: Option<Duration>) -> Self {
        self.wait = wait;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter<C> {
        &self.limiter
    }

    /// The longest wait in the queue; `None` when requests never wait.
    pub fn wait(&self) -> Option<Duration> {
        self.wait
    }

    /// The wait of a request with `budget` left of its own deadline: the configured wait,
    /// cut to the budget (waiting past it produces an answer nobody reads).
    pub fn wait_for(&self, budget: Option<Duration>) -> Option<Duration> {
        match (self.wait, budget) {
            (Some(wait), Some(left)) => Some(wait.min(left)),
            (wait, _) => wait,
        }
    }

    /// Asks the limiter for `request`: a permit at once, a place in the queue (only with a
    /// wait), or the rejection (reason, tier, limit and retry hint).
    #[inline]
    pub fn acquire(
        &self,
        request: LimiterRequest,
        budget: Option<Duration>,
    ) -> Result<Acquire<C>, Rejection> {
        match self.wait_for(budget) {
            Some(wait) => self.limiter.enqueue(request, wait),
            None => self
                .limiter
                .try_acquire_owned_with(request)
                .map(Acquire::Ready),
        }
    }
}

impl<C: Clock> Clone for Admission<C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            wait: self.wait,
            tier: self.tier.clone(),
            max_body: self.max_body,
            deadline_header: self.deadline_header.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for Admission<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("limiter", &self.limiter)
            .field("wait", &self.wait)
            .field("tier", &self.tier)
            .field("max_body", &self.max_body)
            .field("deadline_header", &self.deadline_header)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use tailwater_core::algorithm::Fixed;

    #[test]
    fn the_queue_wait_is_cut_to_the_budget() {
        let limiter = Limiter::builder()
            .algorithm(Fixed::new(1).expect("limit"))
            .build()
            .expect("limiter");
        let a = Admission::new(limiter.clone());
        assert_eq!(a.wait_for(Some(Duration::from_millis(5))), None);
        let a = Admission::new(limiter).with_wait(Some(Duration::from_millis(50)));
        assert_eq!(a.wait_for(None), Some(Duration::from_millis(50)));
        assert_eq!(
            a.wait_for(Some(Duration::from_millis(5))),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            a.wait_for(Some(Duration::from_secs(5))),
            Some(Duration::from_millis(50))
        );
    }

    #[test]
    fn a_body_without_a_declared_length_is_never_too_large() {
        let req = Request::builder()
            .header("transfer-encoding", "chunked")
            .body(())
            .expect("request");
        assert!(!body_too_large(&req, Some(0)));
        let req = Request::builder()
            .header("content-length", "not a number")
            .body(())
            .expect("request");
        assert!(!body_too_large(&req, Some(0)));
    }
}
