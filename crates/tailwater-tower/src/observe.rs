//! Metrics and tracing emitted by the layers.
//!
//! Metrics go through the [`metrics`] facade (install any recorder, e.g.
//! `metrics-exporter-prometheus`; without one they cost a branch). Names follow Prometheus
//! conventions: a `tailwater_` prefix, base units, `_total` on counters.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | [`DECISIONS_TOTAL`] `tailwater_decisions_total` | counter | `mechanism`, `decision`, `reason`, `tier`, `route` | admission decisions: `decision` is `admitted`, `rejected`, `bypassed` or `unkeyed`; `reason` is the rejection reason or `none` |
//! | [`OUTCOMES_TOTAL`] `tailwater_outcomes_total` | counter | `outcome`, `tier`, `route` | how admitted requests ended: `success`, `dropped`, `ignored` |
//! | [`LIMITER_LIMIT`] `tailwater_limiter_limit` | gauge | `route` | the current concurrency limit |
//! | [`LIMITER_IN_FLIGHT`] `tailwater_limiter_in_flight` | gauge | `route` | permits held (until the response body ends) |
//! | [`LIMITER_QUEUE_DEPTH`] `tailwater_limiter_queue_depth` | gauge | `route` | requests waiting for a permit |
//! | [`REQUEST_DURATION_SECONDS`] `tailwater_request_duration_seconds` | histogram | `outcome`, `route` | from admission to the end of the response body |
//! | [`QUEUE_WAIT_SECONDS`] `tailwater_queue_wait_seconds` | histogram | `decision`, `route` | time spent waiting in the queue |
//!
//! `mechanism` is `concurrency` or `rate_limit`; `tier` is the criticality
//! (`critical_plus`, `critical`, `sheddable_plus`, `sheddable`).
//!
//! Tracing: every decision is a `DEBUG` event with target `tailwater` and the fields
//! `mechanism`, `decision`, `rejection_reason` (empty when admitted), `tier` and `route`;
//! every finished request a `TRACE` event with `outcome` and `duration_ms`.

use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tailwater_core::Criticality;
use tailwater_core::algorithm::Outcome;

/// `tailwater_decisions_total`.
pub const DECISIONS_TOTAL: &str = "tailwater_decisions_total";
/// `tailwater_outcomes_total`.
pub const OUTCOMES_TOTAL: &str = "tailwater_outcomes_total";
/// `tailwater_limiter_limit`.
pub const LIMITER_LIMIT: &str = "tailwater_limiter_limit";
/// `tailwater_limiter_in_flight`.
pub const LIMITER_IN_FLIGHT: &str = "tailwater_limiter_in_flight";
/// `tailwater_limiter_queue_depth`.
pub const LIMITER_QUEUE_DEPTH: &str = "tailwater_limiter_queue_depth";
/// `tailwater_request_duration_seconds`.
pub const REQUEST_DURATION_SECONDS: &str = "tailwater_request_duration_seconds";
/// `tailwater_queue_wait_seconds`.
pub const QUEUE_WAIT_SECONDS: &str = "tailwater_queue_wait_seconds";

/// The `route` label value of a layer (default `default`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Route(SharedString);

impl Route {
    /// A route label.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(SharedString::from_shared(Arc::<str>::from(name.as_ref())))
    }

    /// The label value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn label(&self) -> SharedString {
        self.0.clone()
    }
}

impl Default for Route {
    fn default() -> Self {
        Self(SharedString::const_str("default"))
    }
}

/// Which layer made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Concurrency,
    RateLimit,
}

impl Mechanism {
    const fn as_str(self) -> &'static str {
        match self {
            Mechanism::Concurrency => "concurrency",
            Mechanism::RateLimit => "rate_limit",
        }
    }
}

/// Records one decision: metrics counter and tracing event.
pub(crate) fn decision(
    mechanism: Mechanism,
    route: &Route,
    tier: Criticality,
    decision: &'static str,
    reason: Option<&'static str>,
) {
    metrics::counter!(
        DECISIONS_TOTAL,
        "mechanism" => mechanism.as_str(),
        "decision" => decision,
        "reason" => reason.unwrap_or("none"),
        "tier" => tier.as_str(),
        "route" => route.label(),
    )
    .increment(1);
    tracing::debug!(
        target: "tailwater",
        mechanism = mechanism.as_str(),
        decision,
        rejection_reason = reason.unwrap_or(""),
        tier = tier.as_str(),
        route = route.as_str(),
        "admission decision"
    );
}

/// Records the limiter's gauges.
pub(crate) fn gauges(route: &Route, limit: usize, in_flight: usize, queue_depth: usize) {
    metrics::gauge!(LIMITER_LIMIT, "route" => route.label()).set(limit as f64);
    metrics::gauge!(LIMITER_IN_FLIGHT, "route" => route.label()).set(in_flight as f64);
    metrics::gauge!(LIMITER_QUEUE_DEPTH, "route" => route.label()).set(queue_depth as f64);
}

/// Records how an admitted request ended.
pub(crate) fn outcome(route: &Route, tier: Criticality, outcome: Outcome, duration: Duration) {
    metrics::counter!(
        OUTCOMES_TOTAL,
        "outcome" => outcome.as_str(),
        "tier" => tier.as_str(),
        "route" => route.label(),
    )
    .increment(1);
    metrics::histogram!(
        REQUEST_DURATION_SECONDS,
        "outcome" => outcome.as_str(),
        "route" => route.label(),
    )
    .record(duration.as_secs_f64());
    tracing::trace!(
        target: "tailwater",
        outcome = outcome.as_str(),
        duration_ms = duration.as_secs_f64() * 1e3,
        tier = tier.as_str(),
        route = route.as_str(),
        "request finished"
    );
}

/// Records a queue wait.
pub(crate) fn queue_wait(route: &Route, decision: &'static str, waited: Duration) {
    metrics::histogram!(
        QUEUE_WAIT_SECONDS,
        "decision" => decision,
        "route" => route.label(),
    )
    .record(waited.as_secs_f64());
}
