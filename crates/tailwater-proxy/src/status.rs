//! The `/status` snapshot: every route's limiter and counters, as JSON.

use serde::Serialize;

use crate::config::duration;
use crate::conn::Shared;
use crate::decision::Decision;

/// One route's state at a moment.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    /// Route name.
    pub name: String,
    /// Host it matches, if any.
    pub host: Option<String>,
    /// Path prefix it matches.
    pub path_prefix: String,
    /// Upstream authority.
    pub upstream: String,
    /// Limit algorithm.
    pub algorithm: &'static str,
    /// Current limit.
    pub limit: usize,
    /// Permits held now.
    pub in_flight: usize,
    /// Most permits held at once.
    pub peak_in_flight: usize,
    /// Requests waiting in the queue now.
    pub queue_depth: usize,
    /// Queue capacity (0: no queue).
    pub queue_capacity: usize,
    /// The `Retry-After` hint of 503s.
    pub retry_after: String,
    /// Requests forwarded whose response completed.
    pub success: u64,
    /// Requests forwarded that counted as drops (upstream 5xx/429, errors, timeouts).
    pub dropped: u64,
    /// Requests shed with 503.
    pub shed: u64,
    /// Requests denied by a rate limit (429).
    pub rate_limited: u64,
    /// Requests admitted by the limiter (directly or from the queue).
    pub admitted: u64,
    /// Requests that waited in the queue and were then admitted.
    pub admitted_from_queue: u64,
    /// The route's SLO objective, burn rates and error budget left (in-process).
    pub budget: crate::burn::BudgetStatus,
}

pub(crate) fn snapshot(shared: &Shared) -> Vec<RouteStatus> {
    let state = shared.state.load();
    state
        .table
        .routes()
        .iter()
        .map(|r| {
            let s = r.admission.limiter().stats();
            let m = &r.metrics;
            let dropped = [
                Decision::UpstreamStatus,
                Decision::UpstreamError,
                Decision::UpstreamTimeout,
                Decision::BodyError,
            ]
            .iter()
            .map(|d| m.count(*d))
            .sum();
            let shed = tailwater_core::limiter::RejectReason::ALL
                .iter()
                .map(|reason| m.count(Decision::Shed(*reason)))
                .sum();
            RouteStatus {
                name: r.name.clone(),
                host: r.host.clone(),
                path_prefix: r.prefix.clone(),
                upstream: r.authority.to_string(),
                algorithm: s.algorithm,
                limit: s.limit,
                in_flight: s.in_flight,
                peak_in_flight: s.peak_in_flight,
                queue_depth: s.queue_depth,
                queue_capacity: s.queue_capacity,
                retry_after: duration::format(r.retry_after),
                success: m.count(Decision::Success),
                dropped,
                shed,
                rate_limited: m.count(Decision::RateLimited),
                admitted: s.counters.admitted_total(),
                admitted_from_queue: s.counters.admitted_from_queue,
                budget: crate::burn::status(m, crate::metrics::unix_secs()),
            }
        })
        .collect()
}
