//! The proxy's admission path, on tailwater-tower's transport-neutral steps
//! ([`tailwater_tower::admission`]): the tier, the body cap, the client's own deadline, the
//! route's rate limits (`[[route.rate_limit]]` on any store, then `[route.rls]`), and the limiter with its queue wait cut
//! to the deadline. Both engines (hyper's and the lean HTTP/1.1 path) call [`admit`] with a
//! [`RequestView`] of their head, so both decide alike; the refusals are tailwater-tower's
//! edge answers (503/429/413/504, or their gRPC statuses), counted on the route, traced, and
//! noted in the access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use tailwater_core::Criticality;
use tailwater_core::rate::{RateDecision, StoreError};
pub(crate) use tailwater_tower::admission::RequestView;
use tailwater_tower::admission::{
    AdmitObserver, AdmittedInfo, Arrival, RateLimits, RateVerdict, Refusal, Ticket, rate_verdict,
};
use tokio::time::Instant;

use crate::body::{Guard, ProxyBody, local};
use crate::conn::{Conn, Shared};
use crate::deadline::Deadline;
use crate::decision::Decision;
use crate::metrics::RouteCounters;
use crate::route::{RateLimit, Route};

/// The 404 for a request no route matches.
pub(crate) fn no_route(shared: &Shared, span: &tracing::Span) -> Response<ProxyBody> {
    shared
        .metrics
        .unrouted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    span.record("decision", "no_route");
    crate::access_log::note_no_route();
    local(StatusCode::NOT_FOUND, "no route\n")
}

/// Admits a request on `route` through tailwater-tower's one [`Admission::admit`]: tier,
/// 413 for a declared body over `server.max_body_bytes`, the client's own deadline, the
/// route's rate limits (`[[route.rate_limit]]` on any store, then `[route.rls]`), the
/// limiter (at once, or after a bounded wait in the queue). Either the ticket, with the
/// tier, the route's counters of this worker and the deadline, or the refusal's answer
/// (already counted, traced and noted by [`Observe`]).
///
/// [`Admission::admit`]: tailwater_tower::admission::Admission::admit
pub(crate) async fn admit<'r>(
    conn: &Conn,
    route: &'r Route,
    req: &impl RequestView,
    start: Instant,
    span: &tracing::Span,
) -> Result<Admitted<'r>, Response<ProxyBody>> {
    let metrics = route.metrics.shard(conn.worker);
    span.record("route", route.name.as_str());
    crate::access_log::note_route(&route.name);
    let arrival = Arrival::new(Some(conn.peer.ip()), start);
    let rates = RouteRates {
        route,
        worker: conn.worker,
    };
    let mut observe = Observe {
        metrics,
        start,
        span,
    };
    match route
        .admission
        .admit(req, &arrival, &rates, &mut observe)
        .await
    {
        Ok(a) => Ok((a.ticket, a.tier, metrics, a.deadline)),
        Err(refusal) => Err(refusal.response(req.is_grpc()).map(ProxyBody::local)),
    }
}

/// The tier of `req` from a client at `peer` on `route`: its `x-criticality` claim,
/// capped by the route's `[route.criticality]` (the admission's `TierPolicy`).
#[inline]
pub(crate) fn tier(route: &Route, peer: SocketAddr, req: &impl RequestView) -> Criticality {
    route.admission.tier_policy().tier(req, Some(peer.ip()))
}

/// What admission gives a request: its ticket, tier, the route's counters of this worker,
/// and the client's deadline if it stated one.
pub(crate) type Admitted<'r> = (
    Ticket,
    Criticality,
    &'r Arc<RouteCounters>,
    Option<Deadline>,
);

/// The proxy's observer of admission: the route's counters, the tracing span's fields and
/// the access log's notes.
struct Observe<'a> {
    metrics: &'a RouteCounters,
    start: Instant,
    span: &'a tracing::Span,
}

impl AdmitObserver for Observe<'_> {
    #[inline]
    fn tier(&mut self, tier: Criticality) {
        self.span.record("tier", tier.as_str());
    }

    fn refused(&mut self, refusal: &Refusal, tier: Criticality, waited: Option<Duration>) {
        let (decision, field) = match refusal {
            Refusal::BodyTooLarge => (Decision::BodyTooLarge, "rejected"),
            Refusal::DeadlineExceeded => (Decision::DeadlineExceeded, "rejected"),
            Refusal::RateLimited { .. } => (Decision::RateLimited, "rate_limited"),
            Refusal::Shed(rejection) => {
                crate::access_log::note_shed(rejection.limit, waited);
                tracing::debug!(
                    limit = rejection.limit,
                    in_flight = rejection.in_flight,
                    "shed"
                );
                (Decision::Shed(rejection.reason), "shed")
            }
        };
        self.metrics.record(decision, tier, self.start.elapsed());
        self.span.record("decision", field);
        self.span.record("rejection_reason", refusal.reason());
    }

    #[inline]
    fn admitted(&mut self, info: &AdmittedInfo, waited: Option<Duration>) {
        self.span.record("decision", "admitted");
        crate::access_log::note_admitted(info.tier, info.limit, waited);
    }
}

/// A route's rate limits as tailwater-tower's step 4: `[[route.rate_limit]]` (every one
/// must admit), then `[route.rls]`.
struct RouteRates<'a> {
    route: &'a Route,
    worker: usize,
}

impl<V: RequestView> RateLimits<V> for RouteRates<'_> {
    #[inline]
    fn is_empty(&self) -> bool {
        self.route.rate_limits.is_empty() && self.route.rls.is_none()
    }

    async fn check(&self, req: &V, _tier: Criticality, arrival: &Arrival) -> Option<Refusal> {
        let route = self.route;
        let peer = arrival.peer?;
        if !route.rate_limits.is_empty() {
            let ip = peer.to_string();
            let refused = if route.rate_limits_remote {
                Box::pin(rate_limited_remote(route, self.worker, req, &ip)).await
            } else {
                rate_limited(route, req, &ip)
            };
            if refused.is_some() {
                return refused;
            }
        }
        match &route.rls {
            Some(rls) => crate::rls::check(rls, self.worker, peer, req).await,
            None => None,
        }
    }
}

/// The refusal of the first rate limit of `route` that refuses the request, if any, when
/// every store of the route is in this process (they answer at once).
fn rate_limited(route: &Route, req: &impl RequestView, ip: &str) -> Option<Refusal> {
    route.rate_limits.iter().find_map(|rl| {
        let result = rl.check_local(ip, req)?;
        refused(rl, result)
    })
}

/// [`rate_limited`] for a route with a Redis store: its calls are awaited (boxed by the
/// caller, so that a request's future stays small on routes without one).
async fn rate_limited_remote(
    route: &Route,
    worker: usize,
    req: &impl RequestView,
    ip: &str,
) -> Option<Refusal> {
    for rl in &route.rate_limits {
        let result = match rl.check_local(ip, req) {
            Some(r) => r,
            None => rl.check_remote(worker, &route.name, ip, req).await,
        };
        if let Some(refusal) = refused(rl, result) {
            return Some(refusal);
        }
    }
    None
}

/// One store's answer judged by tailwater-tower's `rate_verdict`: `None` admits, `Some`
/// is the refusal (429, or 503 when a store that fails closed cannot decide).
fn refused(rl: &RateLimit, result: Result<RateDecision, StoreError>) -> Option<Refusal> {
    let rejected = match rate_verdict(result, rl.on_error, Some(&rl.policies)) {
        RateVerdict::Admit(_) => return None,
        RateVerdict::FailedOpen(e) => {
            tracing::warn!(limit = %rl.name, error = %e, "rate limit store failed; admitted");
            return None;
        }
        RateVerdict::Reject(r) => r,
    };
    if let Some(e) = rejected.store_error() {
        tracing::warn!(limit = %rl.name, error = %e, "rate limit store failed; refused");
    }
    tracing::debug!(limit = %rl.name, "rate limited");
    Some(Refusal::rate_limited(rejected))
}

/// The guard of an admitted request: it settles the permit exactly once, with the outcome
/// the request's end gives (`crate::outcome`), and counts it on the route.
pub(crate) fn guard(
    ticket: Ticket,
    metrics: &Arc<RouteCounters>,
    tier: Criticality,
    start: Instant,
) -> Guard {
    Guard {
        ticket,
        metrics: Arc::clone(metrics),
        tier,
        start,
        lease: None,
        attempt: None,
    }
}
