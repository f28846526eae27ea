//! Metrics and tracing emitted by the layers.
//!
//! Metrics go through the [`metrics`] facade (install any recorder, e.g.
//! `metrics-exporter-prometheus`; without one they cost a branch). Names follow Prometheus
//! conventions: a `tailwater_` prefix, base units, `_total` on counters.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | [`DECISIONS_TOTAL`] `tailwater_decisions_total` | counter | `mechanism`, `decision`, `reason`, `tier`, `route` | admission decisions: `decision` is `admitted`, `rejected`, `bypassed` (concurrency), `unkeyed` or `store_error` (rate limit, failing open); `reason` is the rejection reason, the store error kind, or `none` |
//! | [`OUTCOMES_TOTAL`] `tailwater_outcomes_total` | counter | `outcome`, `tier`, `route` | how admitted requests ended: `success`, `dropped`, `ignored` |
//! | [`LIMITER_LIMIT`] `tailwater_limiter_limit` | gauge | `route` | the current concurrency limit |
//! | [`LIMITER_IN_FLIGHT`] `tailwater_limiter_in_flight` | gauge | `route` | permits held (until the response body ends) |
//! | [`LIMITER_QUEUE_DEPTH`] `tailwater_limiter_queue_depth` | gauge | `route` | requests waiting for a permit |
//! | [`REQUEST_DURATION_SECONDS`] `tailwater_request_duration_seconds` | histogram | `outcome`, `route` | from admission to the end of the response body |
//! | [`QUEUE_WAIT_SECONDS`] `tailwater_queue_wait_seconds` | histogram | `decision`, `route` | time spent waiting in the queue |
//! | [`BREAKER_STATE`](crate::outbound::breaker::BREAKER_STATE) `tailwater_breaker_state` | gauge | `breaker` | outbound circuit breaker: 0 closed, 1 half-open, 2 open |
//! | [`BREAKER_TRANSITIONS_TOTAL`](crate::outbound::breaker::BREAKER_TRANSITIONS_TOTAL) `tailwater_breaker_transitions_total` | counter | `breaker`, `from`, `to` | breaker state changes |
//! | [`BREAKER_REJECTIONS_TOTAL`](crate::outbound::breaker::BREAKER_REJECTIONS_TOTAL) `tailwater_breaker_rejections_total` | counter | `breaker` | calls refused by an open (or full half-open) breaker |
//! | [`RETRIES_TOTAL`](crate::outbound::retry::RETRIES_TOTAL) `tailwater_retries_total` | counter | `decision` | retryable failures: `retried` or why not (`budget`, `attempts`, `deadline`, `server_said_no`, `not_retryable`) |
//! | [`HEDGES_TOTAL`](crate::outbound::hedge::HEDGES_TOTAL) `tailwater_hedges_total` | counter | `decision` | hedge timers that fired: `sent` or `budget` |
//! | [`THROTTLED_TOTAL`](crate::outbound::throttle::THROTTLED_TOTAL) `tailwater_throttled_total` | counter | `tier` | requests rejected locally by client-side throttling |
//!
//! `mechanism` is `concurrency` or `rate_limit`; `tier` is the criticality
//! (`critical_plus`, `critical`, `sheddable_plus`, `sheddable`).
//!
//! Tracing: every decision is a `DEBUG` event with target `tailwater` and the fields
//! `mechanism`, `decision`, `rejection_reason` (empty when admitted), `tier` and `route`;
//! every finished request a `TRACE` event with `outcome` and `duration_ms`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, SharedString};
use tailwater_core::algorithm::Outcome;
use tailwater_core::{Criticality, RejectReason};

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

fn decision_counter(
    mechanism: Mechanism,
    route: &Route,
    tier: Criticality,
    decision: &'static str,
    reason: Option<&'static str>,
) -> Counter {
    metrics::counter!(
        DECISIONS_TOTAL,
        "mechanism" => mechanism.as_str(),
        "decision" => decision,
        "reason" => reason.unwrap_or("none"),
        "tier" => tier.as_str(),
        "route" => route.label(),
    )
}

fn trace_decision(
    mechanism: Mechanism,
    route: &Route,
    tier: Criticality,
    decision: &'static str,
    reason: Option<&'static str>,
) {
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

/// Metric handles of one concurrency layer, registered on first use (so that a recorder
/// installed after the layer was built is still used) and then reused: the hot path does
/// no key building or allocation.
pub(crate) struct LimiterMetrics {
    route: Route,
    admitted: [OnceLock<Counter>; 4],
    bypassed: [OnceLock<Counter>; 4],
    rejected: [[OnceLock<Counter>; 4]; RejectReason::ALL.len()],
    outcomes: [[OnceLock<Counter>; 4]; 3],
    durations: [OnceLock<Histogram>; 3],
    queue_wait: [OnceLock<Histogram>; 2],
    limit: OnceLock<Gauge>,
    in_flight: OnceLock<Gauge>,
    queue_depth: OnceLock<Gauge>,
}

const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Dropped => 1,
        Outcome::Ignored => 2,
    }
}

impl LimiterMetrics {
    pub(crate) fn new(route: Route) -> Self {
        Self {
            route,
            admitted: [const { OnceLock::new() }; 4],
            bypassed: [const { OnceLock::new() }; 4],
            rejected: [const { [const { OnceLock::new() }; 4] }; RejectReason::ALL.len()],
            outcomes: [const { [const { OnceLock::new() }; 4] }; 3],
            durations: [const { OnceLock::new() }; 3],
            queue_wait: [const { OnceLock::new() }; 2],
            limit: OnceLock::new(),
            in_flight: OnceLock::new(),
            queue_depth: OnceLock::new(),
        }
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    fn decision_counter(
        &self,
        slot: &OnceLock<Counter>,
        tier: Criticality,
        decision: &'static str,
        reason: Option<&'static str>,
    ) {
        slot.get_or_init(|| {
            decision_counter(Mechanism::Concurrency, &self.route, tier, decision, reason)
        })
        .increment(1);
        trace_decision(Mechanism::Concurrency, &self.route, tier, decision, reason);
    }

    pub(crate) fn admitted(&self, tier: Criticality, bypass: bool) {
        let i = tier.index();
        if bypass {
            self.decision_counter(&self.bypassed[i], tier, "bypassed", None);
        } else {
            self.decision_counter(&self.admitted[i], tier, "admitted", None);
        }
    }

    pub(crate) fn rejected(&self, tier: Criticality, reason: RejectReason) {
        let slot = &self.rejected[reason.index()][tier.index()];
        self.decision_counter(slot, tier, "rejected", Some(reason.as_str()));
    }

    pub(crate) fn outcome(&self, tier: Criticality, outcome: Outcome, duration: Duration) {
        let o = outcome_index(outcome);
        self.outcomes[o][tier.index()]
            .get_or_init(|| {
                metrics::counter!(
                    OUTCOMES_TOTAL,
                    "outcome" => outcome.as_str(),
                    "tier" => tier.as_str(),
                    "route" => self.route.label(),
                )
            })
            .increment(1);
        self.durations[o]
            .get_or_init(|| {
                metrics::histogram!(
                    REQUEST_DURATION_SECONDS,
                    "outcome" => outcome.as_str(),
                    "route" => self.route.label(),
                )
            })
            .record(duration.as_secs_f64());
        tracing::trace!(
            target: "tailwater",
            outcome = outcome.as_str(),
            duration_ms = duration.as_secs_f64() * 1e3,
            tier = tier.as_str(),
            route = self.route.as_str(),
            "request finished"
        );
    }

    pub(crate) fn gauges(&self, limit: usize, in_flight: usize, queue_depth: usize) {
        let route = &self.route;
        self.limit
            .get_or_init(|| metrics::gauge!(LIMITER_LIMIT, "route" => route.label()))
            .set(limit as f64);
        self.in_flight
            .get_or_init(|| metrics::gauge!(LIMITER_IN_FLIGHT, "route" => route.label()))
            .set(in_flight as f64);
        self.queue_depth
            .get_or_init(|| metrics::gauge!(LIMITER_QUEUE_DEPTH, "route" => route.label()))
            .set(queue_depth as f64);
    }

    pub(crate) fn queue_wait(&self, admitted: bool, waited: Duration) {
        let decision = if admitted { "admitted" } else { "rejected" };
        self.queue_wait[usize::from(!admitted)]
            .get_or_init(|| {
                metrics::histogram!(
                    QUEUE_WAIT_SECONDS,
                    "decision" => decision,
                    "route" => self.route.label(),
                )
            })
            .record(waited.as_secs_f64());
    }
}

impl fmt::Debug for LimiterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// The `(decision, reason)` pairs a rate-limit layer reports, whose counters are cached.
const RATE_DECISIONS: [(&str, Option<&str>); 10] = [
    ("admitted", None),
    ("unkeyed", None),
    ("rejected", Some("rate_exceeded")),
    ("rejected", Some("exceeds_burst")),
    ("rejected", Some("key_capacity")),
    ("rejected", Some("store_error")),
    ("store_error", Some("unavailable")),
    ("store_error", Some("timeout")),
    ("store_error", Some("protocol")),
    ("store_error", Some("invalid_request")),
];

/// Metric handles of one rate-limit layer, registered on first use (as
/// [`LimiterMetrics`]).
pub(crate) struct RateLimitMetrics {
    route: Route,
    decisions: [[OnceLock<Counter>; 4]; RATE_DECISIONS.len()],
}

impl RateLimitMetrics {
    pub(crate) fn new(route: Route) -> Self {
        Self {
            route,
            decisions: [const { [const { OnceLock::new() }; 4] }; RATE_DECISIONS.len()],
        }
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    pub(crate) fn decision(
        &self,
        tier: Criticality,
        decision: &'static str,
        reason: Option<&'static str>,
    ) {
        let slot = RATE_DECISIONS
            .iter()
            .position(|(d, r)| *d == decision && *r == reason);
        match slot {
            Some(i) => self.decisions[i][tier.index()]
                .get_or_init(|| {
                    decision_counter(Mechanism::RateLimit, &self.route, tier, decision, reason)
                })
                .increment(1),
            None => decision_counter(Mechanism::RateLimit, &self.route, tier, decision, reason)
                .increment(1),
        }
        trace_decision(Mechanism::RateLimit, &self.route, tier, decision, reason);
    }
}

impl fmt::Debug for RateLimitMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}
