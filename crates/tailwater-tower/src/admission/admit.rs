//! The one composition of the admission steps: [`Admission::admit`].
//!
//! Tier (ceiling, trusted sources) → body cap → the caller's stated deadline → rate limits
//! (any store, through [`RateLimits`]) → the limiter, with the queue wait cut to what is
//! left of the deadline. The result is an [`Admitted`] request (its [`Ticket`], tier and
//! deadline) or a [`Refusal`], whose [`response`](Refusal::response) is the only builder of
//! the 503/429/413/504 answers.
//!
//! What a caller counts, traces or logs on the way is an [`AdmitObserver`]: a trait with
//! no-op default methods, taken by `&mut` and monomorphised, so observing costs nothing on
//! the request path beyond what the observer itself does (no boxing, no allocation).
//!
//! [`admit`](Admission::admit) is `async` (the rate limits of a remote store and the queue
//! are awaited). A caller that cannot hold its future — a tower `Service::call`, which is
//! synchronous and must not box — runs the same three pieces `admit` is made of:
//! [`screen`](Admission::screen) (steps 1–3), [`limit`](Admission::limit) (step 5 at once)
//! and, after polling the [`Queued`] waiter itself, [`after_wait`](Admission::after_wait).

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use tailwater_core::clock::Clock;
use tailwater_core::limiter::{Acquire, PartitionId, Request as LimiterRequest, Waiter};
use tailwater_core::{Criticality, OwnedPermit, Rejection};
use tokio::time::Instant;

use super::{Admission, RequestView, Ticket, body_too_large};
use crate::deadline::Deadline;
use crate::edge::{self, EdgeResponse, OnReject};
use crate::rejection::{DeadlineExceeded, Overloaded, RateLimited};

/// Who sent the request and when it arrived: what the steps know besides its head.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The connection's peer (the tier's trusted-source rule); `None`: not known, so not
    /// trusted.
    pub peer: Option<IpAddr>,
    /// When the head arrived: the stated deadline counts from here.
    pub start: Instant,
    /// A tier decided before admission (by a
    /// [`CriticalityLayer`](crate::CriticalityLayer), which applied its own policy); `None`:
    /// the admission's [`TierPolicy`](super::TierPolicy) decides from the head and `peer`.
    pub tier: Option<Criticality>,
    /// The limiter partition, if the limiter has partitions.
    pub partition: Option<PartitionId>,
    /// Admit without limiting (counted, not limited).
    pub bypass: bool,
}

impl Arrival {
    /// A request from `peer` whose head arrived at `start`.
    #[inline]
    pub fn new(peer: Option<IpAddr>, start: Instant) -> Self {
        Self {
            peer,
            start,
            tier: None,
            partition: None,
            bypass: false,
        }
    }
}

/// Why admission refused a request. [`response`](Self::response) is its answer.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The declared body is over the cap: `413`.
    BodyTooLarge,
    /// The caller's own budget was spent on arrival or in the queue: `504` (gRPC
    /// `DEADLINE_EXCEEDED`).
    DeadlineExceeded,
    /// A rate limit refused it: `429` (or `503` when a store that fails closed could not
    /// decide); `reason` names it in metrics and traces.
    RateLimited {
        /// The refusal, with its `RateLimit*` headers.
        limited: RateLimited,
        /// The snake-case reason (`rate_exceeded`, `store_error`, `rls_over_limit`…).
        reason: &'static str,
    },
    /// The limiter shed it: `503` + `Retry-After` (gRPC `UNAVAILABLE`).
    Shed(Rejection),
}

impl Refusal {
    /// A rate limit's refusal, with its own reason.
    pub fn rate_limited(limited: RateLimited) -> Self {
        let reason = limited.reason();
        Self::RateLimited { limited, reason }
    }

    /// The snake-case reason, for metrics and traces.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::RateLimited { reason, .. } => reason,
            Self::Shed(r) => r.reason.as_str(),
        }
    }

    /// The answer (gRPC's trailers-only form for a gRPC request): the only place the
    /// 503/429/413/504 answers of admission are built (tailwater-tower's [`edge`] mapping);
    /// a shed answer names its reason in `x-tailwater-rejection`.
    pub fn response(&self, grpc: bool) -> Response<Bytes> {
        match self {
            Self::BodyTooLarge => edge::body_too_large_response(),
            Self::DeadlineExceeded => DeadlineExceeded.edge_response(grpc),
            Self::RateLimited { limited, .. } => limited.edge_response(grpc),
            Self::Shed(r) => {
                let mut resp = Overloaded::new(*r).edge_response(grpc);
                resp.headers_mut().insert(
                    "x-tailwater-rejection",
                    http::HeaderValue::from_static(r.reason.as_str()),
                );
                resp
            }
        }
    }
}

impl Refusal {
    /// The refusal through a layer's [`OnReject`]: the typed error of each kind
    /// ([`Overloaded`], [`DeadlineExceeded`], [`RateLimited`], or the refusal itself), so
    /// that [`ReturnError`](crate::edge::ReturnError) callers can downcast it.
    pub(crate) fn reject_with<R: OnReject<E>, E>(
        self,
        on_reject: &R,
        grpc: bool,
    ) -> Result<Response<Bytes>, R::Error> {
        match self {
            Self::Shed(r) => on_reject.reject(Overloaded::new(r), grpc),
            Self::DeadlineExceeded => on_reject.reject(DeadlineExceeded, grpc),
            Self::RateLimited { limited, .. } => on_reject.reject(limited, grpc),
            Self::BodyTooLarge => on_reject.reject(self, grpc),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BodyTooLarge => f.write_str("request body too large"),
            Self::DeadlineExceeded => DeadlineExceeded.fmt(f),
            Self::RateLimited { limited, .. } => limited.fmt(f),
            Self::Shed(r) => Overloaded::new(*r).fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

impl EdgeResponse for Refusal {
    fn edge_response(&self, grpc: bool) -> Response<Bytes> {
        self.response(grpc)
    }
}

/// What admission tells its caller on the way: every method is a no-op by default, so an
/// observer implements only what it records. Taken by `&mut` and monomorphised (no
/// boxing on the request path).
pub trait AdmitObserver {
    /// The tier was decided (first step).
    #[inline]
    fn tier(&mut self, _tier: Criticality) {}

    /// The request was refused; `waited` is its time in the queue, if it waited.
    #[inline]
    fn refused(&mut self, _refusal: &Refusal, _tier: Criticality, _waited: Option<Duration>) {}

    /// The request was admitted at `limit`; `waited` is its time in the queue, if it
    /// waited.
    #[inline]
    fn admitted(&mut self, _ticket: &AdmittedInfo, _waited: Option<Duration>) {}
}

/// The observer that observes nothing.
impl AdmitObserver for () {}

/// What an admitted request is, for an [`AdmitObserver`].
#[derive(Debug, Clone, Copy)]
pub struct AdmittedInfo {
    /// Its tier.
    pub tier: Criticality,
    /// Whether it bypassed the limit.
    pub bypass: bool,
    /// The limit when it was admitted.
    pub limit: usize,
}

/// The rate-limit step (step 4): every limit of a route, on any store. `check` is awaited
/// only by [`Admission::admit`]; an in-process store answers in its first poll.
pub trait RateLimits<V: ?Sized> {
    /// Whether there is no limit to check (the step is skipped without a call).
    fn is_empty(&self) -> bool {
        false
    }

    /// The first refusal among the limits, if any, for `req` of `tier` from `arrival`.
    fn check(
        &self,
        req: &V,
        tier: Criticality,
        arrival: &Arrival,
    ) -> impl Future<Output = Option<Refusal>>;
}

/// No rate limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRateLimits;

impl<V: ?Sized> RateLimits<V> for NoRateLimits {
    fn is_empty(&self) -> bool {
        true
    }

    async fn check(&self, _: &V, _: Criticality, _: &Arrival) -> Option<Refusal> {
        None
    }
}

/// A request past steps 1–3: its tier, its stated deadline, and the limiter's request.
#[derive(Debug, Clone, Copy)]
pub struct Screened {
    /// The decided tier.
    pub tier: Criticality,
    /// The caller's deadline, if it stated one (not spent at screening).
    pub deadline: Option<Deadline>,
    request: LimiterRequest,
}

/// An admitted request: its [`Ticket`] (to settle with the outcome), tier and deadline.
#[derive(Debug)]
pub struct Admitted<C: Clock> {
    /// The permit, settled exactly once.
    pub ticket: Ticket<C>,
    /// The tier it was admitted in.
    pub tier: Criticality,
    /// The caller's deadline, if it stated one.
    pub deadline: Option<Deadline>,
}

/// Step 5 at once: admitted, or waiting in the queue.
#[derive(Debug)]
pub enum Limited<C: Clock> {
    /// A permit at once.
    Ready(Admitted<C>),
    /// A place in the queue: poll [`Queued::waiter`], then [`Admission::after_wait`].
    Queued(Queued<C>),
}

/// A request in the limiter's queue.
#[derive(Debug)]
pub struct Queued<C: Clock> {
    /// The waiter (a future; [`Waiter::wait`] with tokio timers).
    pub waiter: Waiter<C>,
    /// The request as screened.
    pub screened: Screened,
}

impl<C: Clock> Admission<C> {
    /// Steps 1–3: the tier (the arrival's, or the policy's from the head and peer), the
    /// body cap, the stated deadline (refused when spent already).
    #[inline]
    pub fn screen<O: AdmitObserver + ?Sized>(
        &self,
        req: &impl RequestView,
        arrival: &Arrival,
        obs: &mut O,
    ) -> Result<Screened, Refusal> {
        let tier = match arrival.tier {
            Some(t) => t,
            None => self.tier.tier(req, arrival.peer),
        };
        obs.tier(tier);
        if body_too_large(req, self.max_body) {
            return Err(refuse(Refusal::BodyTooLarge, tier, None, obs));
        }
        let deadline = Deadline::stated(req, self.deadline_header.as_ref(), arrival.start);
        if deadline.is_some_and(|d| d.is_spent()) {
            return Err(refuse(Refusal::DeadlineExceeded, tier, None, obs));
        }
        let mut request = LimiterRequest::new().tier(tier).bypass(arrival.bypass);
        if let Some(p) = arrival.partition {
            request = request.partition(p);
        }
        Ok(Screened {
            tier,
            deadline,
            request,
        })
    }

    /// Step 5 without waiting: a permit, a place in the queue (only with a wait; the wait
    /// cut to the deadline), or the shed refusal.
    #[inline]
    pub fn limit<O: AdmitObserver + ?Sized>(
        &self,
        screened: Screened,
        obs: &mut O,
    ) -> Result<Limited<C>, Refusal> {
        let budget = screened.deadline.as_ref().map(Deadline::remaining);
        match self.acquire(screened.request, budget) {
            Ok(Acquire::Ready(permit)) => {
                Ok(Limited::Ready(self.admitted(permit, screened, None, obs)))
            }
            Ok(Acquire::Queued(waiter)) => Ok(Limited::Queued(Queued { waiter, screened })),
            Err(rejection) => Err(refuse(Refusal::Shed(rejection), screened.tier, None, obs)),
        }
    }

    /// The end of a wait in the queue that took `waited`: admitted, refused because the
    /// deadline ran out meanwhile (the permit goes back unused), or shed.
    pub fn after_wait<O: AdmitObserver + ?Sized>(
        &self,
        screened: Screened,
        outcome: Result<OwnedPermit<C>, Rejection>,
        waited: Duration,
        obs: &mut O,
    ) -> Result<Admitted<C>, Refusal> {
        match outcome {
            // Nobody waits for the answer any more.
            Ok(permit) if screened.deadline.is_some_and(|d| d.is_spent()) => {
                permit.ignore();
                Err(refuse(
                    Refusal::DeadlineExceeded,
                    screened.tier,
                    Some(waited),
                    obs,
                ))
            }
            Ok(permit) => Ok(self.admitted(permit, screened, Some(waited), obs)),
            Err(rejection) => Err(refuse(
                Refusal::Shed(rejection),
                screened.tier,
                Some(waited),
                obs,
            )),
        }
    }

    /// Every step in order: tier → body cap → stated deadline → `rates` → the limiter,
    /// waiting (boxed, so that the caller's future stays small) at most the configured
    /// wait cut to the deadline. Refusals and the admission are told to `obs`.
    pub async fn admit<V, R, O>(
        &self,
        req: &V,
        arrival: &Arrival,
        rates: &R,
        obs: &mut O,
    ) -> Result<Admitted<C>, Refusal>
    where
        V: RequestView,
        R: RateLimits<V>,
        O: AdmitObserver + ?Sized,
    {
        let screened = self.screen(req, arrival, obs)?;
        if !rates.is_empty()
            && let Some(refusal) = rates.check(req, screened.tier, arrival).await
        {
            return Err(refuse(refusal, screened.tier, None, obs));
        }
        match self.limit(screened, obs)? {
            Limited::Ready(admitted) => Ok(admitted),
            Limited::Queued(Queued { waiter, screened }) => {
                let queued = Instant::now();
                let outcome = Box::pin(waiter.wait()).await;
                self.after_wait(screened, outcome, queued.elapsed(), obs)
            }
        }
    }

    #[inline]
    fn admitted<O: AdmitObserver + ?Sized>(
        &self,
        permit: OwnedPermit<C>,
        screened: Screened,
        waited: Option<Duration>,
        obs: &mut O,
    ) -> Admitted<C> {
        let info = AdmittedInfo {
            tier: screened.tier,
            bypass: permit.is_bypass(),
            limit: self.limiter.limit(),
        };
        obs.admitted(&info, waited);
        Admitted {
            ticket: Ticket::new(permit),
            tier: screened.tier,
            deadline: screened.deadline,
        }
    }
}

/// Tells `obs` of `refusal` and hands it back.
#[inline]
fn refuse<O: AdmitObserver + ?Sized>(
    refusal: Refusal,
    tier: Criticality,
    waited: Option<Duration>,
    obs: &mut O,
) -> Refusal {
    obs.refused(&refusal, tier, waited);
    refusal
}

#[cfg(test)]
mod tests;
