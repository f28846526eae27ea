//! The proxy's admission path, on tailwater-tower's transport-neutral steps
//! ([`tailwater_tower::admission`]): the tier, the body cap, the client's own deadline, the
//! route's rate limits (`[[route.rate_limit]]` on any store, then `[route.rls]`), and the limiter with its queue wait cut
//! to the deadline. Both engines (hyper's and the lean HTTP/1.1 path) call [`admit`] with a
//! [`RequestView`] of their head, so both decide alike; the refusals are tailwater-tower's
//! edge answers (503/429/413/504, or their gRPC statuses), counted on the route, traced, and
//! noted in the access log.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderValue;
use http::{Response, StatusCode};
use tailwater_core::limiter::{Acquire, Request as LimiterRequest};
use tailwater_core::rate::{RateDecision, StoreError};
use tailwater_core::{Criticality, OwnedPermit, Rejection};
pub(crate) use tailwater_tower::admission::RequestView;
use tailwater_tower::admission::{RateVerdict, Ticket, body_too_large, rate_verdict};
use tailwater_tower::edge;
use tailwater_tower::edge::EdgeResponse;
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

/// The admission steps of `route`, in order: tier, 413 for a declared body over
/// `max_body`, local rate limits, the limiter (at once, or after a bounded wait in the
/// queue). Either a permit, with the tier and the route's counters of this worker, or
/// the response that rejects the request (already counted and traced).
pub(crate) async fn admit<'r>(
    conn: &Conn,
    route: &'r Route,
    max_body: Option<u64>,
    req: &impl RequestView,
    start: Instant,
    span: &tracing::Span,
) -> Result<Admitted<'r>, Response<ProxyBody>> {
    let metrics = route.metrics.shard(conn.worker);
    span.record("route", route.name.as_str());
    crate::access_log::note_route(&route.name);
    let tier = tier(route, conn.peer, req);
    span.record("tier", tier.as_str());

    // 413 before anything is admitted or read.
    if body_too_large(req, max_body) {
        metrics.record(Decision::BodyTooLarge, tier, start.elapsed());
        span.record("decision", "rejected");
        span.record("rejection_reason", "body_too_large");
        return Err(edge::body_too_large_response().map(ProxyBody::local));
    }

    // The client's own deadline, spent already: refused before it costs anything.
    let deadline = Deadline::stated(req, route.deadline_header.as_ref(), start);
    if let Some(d) = &deadline
        && d.remaining().is_zero()
    {
        return Err(deadline_refused(metrics, tier, start, span, req.is_grpc()));
    }

    // Local rate limits: every one must admit.
    if !route.rate_limits.is_empty() {
        let ip = conn.peer.ip().to_string();
        let tally = Tally {
            metrics,
            tier,
            start,
            span,
        };
        let refused = if route.rate_limits_remote {
            Box::pin(rate_limited_remote(route, conn.worker, req, &ip, &tally)).await
        } else {
            rate_limited(route, req, &ip, &tally)
        };
        if let Some(resp) = refused {
            return Err(resp);
        }
    }
    if let Some(rls) = &route.rls
        && let Some(resp) = crate::rls::check(
            rls,
            conn.worker,
            conn.peer.ip(),
            req,
            metrics,
            tier,
            start,
            span,
        )
        .await
    {
        return Err(resp);
    }

    // Admission: a permit at once, or (rarely) a wait in the queue, boxed so that the
    // request's future stays small.
    let request = LimiterRequest::new().tier(tier);
    let budget = deadline.as_ref().map(Deadline::remaining);
    let mut waited = None;
    let acquired = match route.admission.acquire(request, budget) {
        Ok(Acquire::Ready(permit)) => Ok(permit),
        Ok(Acquire::Queued(waiter)) => {
            let queued = Instant::now();
            let r = Box::pin(waiter.wait()).await;
            waited = Some(queued.elapsed());
            r
        }
        Err(rejection) => Err(rejection),
    };
    match acquired {
        // Admitted after the budget ran out in the queue: nobody waits for the answer.
        Ok(permit) if deadline.is_some_and(|d| d.remaining().is_zero()) => {
            permit.ignore();
            Err(deadline_refused(metrics, tier, start, span, req.is_grpc()))
        }
        Ok(permit) => {
            span.record("decision", "admitted");
            crate::access_log::note_admitted(tier, route.admission.limiter().limit(), waited);
            Ok((permit, tier, metrics, deadline))
        }
        Err(rejection) => {
            crate::access_log::note_shed(rejection.limit, waited);
            metrics.record(Decision::Shed(rejection.reason), tier, start.elapsed());
            span.record("decision", "shed");
            span.record("rejection_reason", rejection.reason.as_str());
            tracing::debug!(
                limit = rejection.limit,
                in_flight = rejection.in_flight,
                "shed"
            );
            Err(shed(&rejection, req.is_grpc()))
        }
    }
}

/// The tier of `req` from a client at `peer` on `route`: its `x-criticality` claim,
/// capped by the route's `[route.criticality]` (tailwater-tower's `TierPolicy`).
#[inline]
pub(crate) fn tier(route: &Route, peer: SocketAddr, req: &impl RequestView) -> Criticality {
    route.tier_policy.tier(req, Some(peer.ip()))
}

/// What admission gives a request: its permit, tier, the route's counters of this worker,
/// and the client's deadline if it stated one.
pub(crate) type Admitted<'r> = (
    OwnedPermit,
    Criticality,
    &'r Arc<RouteCounters>,
    Option<Deadline>,
);

/// Counts and answers a request whose own deadline is spent (504 / `DEADLINE_EXCEEDED`).
fn deadline_refused(
    metrics: &RouteCounters,
    tier: Criticality,
    start: Instant,
    span: &tracing::Span,
    grpc: bool,
) -> Response<ProxyBody> {
    metrics.record(Decision::DeadlineExceeded, tier, start.elapsed());
    span.record("decision", "rejected");
    span.record("rejection_reason", "deadline_exceeded");
    crate::deadline::exceeded(grpc)
}

/// What counting and tracing a refusal needs: the route's counters, the tier, when the
/// request started, its span.
struct Tally<'a> {
    metrics: &'a RouteCounters,
    tier: Criticality,
    start: Instant,
    span: &'a tracing::Span,
}

/// The answer of the first rate limit of `route` that refuses the request, if any, when
/// every store of the route is in this process (they answer at once).
fn rate_limited(
    route: &Route,
    req: &impl RequestView,
    ip: &str,
    tally: &Tally<'_>,
) -> Option<Response<ProxyBody>> {
    route.rate_limits.iter().find_map(|rl| {
        let result = rl.check_local(ip, req)?;
        refused(rl, result, req, tally)
    })
}

/// [`rate_limited`] for a route with a Redis store: its calls are awaited (boxed by the
/// caller, so that a request's future stays small on routes without one).
async fn rate_limited_remote(
    route: &Route,
    worker: usize,
    req: &impl RequestView,
    ip: &str,
    tally: &Tally<'_>,
) -> Option<Response<ProxyBody>> {
    for rl in &route.rate_limits {
        let result = match rl.check_local(ip, req) {
            Some(r) => r,
            None => rl.check_remote(worker, &route.name, ip, req).await,
        };
        if let Some(resp) = refused(rl, result, req, tally) {
            return Some(resp);
        }
    }
    None
}

/// One store's answer judged by tailwater-tower's `rate_verdict`: `None` admits, `Some`
/// is the refusal (429, or 503 when a store that fails closed cannot decide), counted
/// and traced.
fn refused(
    rl: &RateLimit,
    result: Result<RateDecision, StoreError>,
    req: &impl RequestView,
    tally: &Tally<'_>,
) -> Option<Response<ProxyBody>> {
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
    let Tally {
        metrics,
        tier,
        start,
        span,
    } = tally;
    metrics.record(Decision::RateLimited, *tier, start.elapsed());
    span.record("decision", "rate_limited");
    span.record("rejection_reason", rejected.reason());
    tracing::debug!(limit = %rl.name, "rate limited");
    let resp: Response<bytes::Bytes> = rejected.edge_response(req.is_grpc());
    Some(resp.map(ProxyBody::local))
}

/// The guard of an admitted request: it settles the permit exactly once, with the outcome
/// the request's end gives (`crate::outcome`), and counts it on the route.
pub(crate) fn guard(
    permit: OwnedPermit,
    metrics: &Arc<RouteCounters>,
    tier: Criticality,
    start: Instant,
) -> Guard {
    Guard {
        ticket: Ticket::new(permit),
        metrics: Arc::clone(metrics),
        tier,
        start,
        lease: None,
        attempt: None,
    }
}

/// 503 with `Retry-After` (whole seconds, at least 1) and the reason, or for gRPC
/// `UNAVAILABLE` with `grpc-retry-pushback-ms` (tailwater-tower's edge mapping).
fn shed(rejection: &Rejection, grpc: bool) -> Response<ProxyBody> {
    let mut resp =
        edge::shed_response("overloaded", rejection.retry_after, grpc).map(ProxyBody::local);
    resp.headers_mut().insert(
        "x-tailwater-rejection",
        HeaderValue::from_static(rejection.reason.as_str()),
    );
    resp
}
