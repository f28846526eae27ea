//! Metrics and tracing emitted by the layers.
//!
//! Metrics go through the [`metrics`] facade (install any recorder, e.g.
//! `metrics-exporter-prometheus`; without one they cost a branch). Names follow Prometheus
//! conventions: a `tailwater_` prefix, base units, `_total` on counters.
//!
//! The names, labels and units shared with the proxy are defined once, in tailwater-core's
//! [`tailwater_core::vocabulary`]; the layers emit this part of it:
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | [`REQUESTS_TOTAL`] `tailwater_requests_total` | counter | `route`, `outcome`, `reason`, `tier` | how requests ended: `success`, `upstream_error` (classified `Dropped`), `cancelled` (classified `Ignored`), `shed` (concurrency rejection, `reason` = why), `rate_limited`, `rejected` (`reason` = `deadline_exceeded`: the caller's own deadline was spent) |
//! | [`REQUEST_DURATION_SECONDS`] `tailwater_request_duration_seconds` | histogram | `route`, `outcome` | from admission to the end of the response body, by the same `outcome` |
//! | [`DECISIONS_TOTAL`] `tailwater_decisions_total` | counter | `mechanism`, `decision`, `reason`, `tier`, `route` | admission decisions: `decision` is `admitted`, `rejected`, `bypassed` (concurrency), `unkeyed` or `store_error` (rate limit, failing open); `reason` is the rejection reason, the store error kind, or `none` |
//! | [`LIMITER_SAMPLES_TOTAL`] `tailwater_limiter_samples_total` | counter | `route`, `outcome` | permits released, by outcome fed to the algorithm: `success`, `dropped`, `ignored` |
//! | [`LIMITER_LIMIT`] `tailwater_limiter_limit` | gauge | `route`, `algorithm` | the current concurrency limit |
//! | [`LIMITER_IN_FLIGHT`] `tailwater_limiter_in_flight` | gauge | `route`, `algorithm` | permits held (until the response body ends) |
//! | [`LIMITER_QUEUE_DEPTH`] `tailwater_limiter_queue_depth` | gauge | `route`, `algorithm` | requests waiting for a permit |
//! | [`QUEUE_WAIT_SECONDS`] `tailwater_queue_wait_seconds` | histogram | `decision`, `route` | time spent waiting in the queue |
//! | [`SLO_BURN_RATE`](crate::burn::SLO_BURN_RATE) `tailwater_slo_burn_rate` | gauge | `route`, `window` | with [`burn_rates`](crate::ConcurrencyLayer::burn_rates) |
//! | [`SLO_ERROR_BUDGET_REMAINING`](crate::burn::SLO_ERROR_BUDGET_REMAINING) `tailwater_slo_error_budget_remaining` | gauge | `route` | with [`burn_rates`](crate::ConcurrencyLayer::burn_rates) |
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
use tailwater_core::vocabulary::{self, outcome as out};
use tailwater_core::{Criticality, RejectReason};

/// `tailwater_requests_total`.
pub const REQUESTS_TOTAL: &str = vocabulary::REQUESTS.name;
/// `tailwater_decisions_total`.
pub const DECISIONS_TOTAL: &str = vocabulary::DECISIONS.name;
/// `tailwater_limiter_samples_total` (was `tailwater_outcomes_total{outcome,tier,route}`
/// before the vocabulary was shared with the proxy; that name is gone: its per-tier view
/// is `tailwater_requests_total`).
pub const LIMITER_SAMPLES_TOTAL: &str = vocabulary::LIMITER_SAMPLES.name;
/// `tailwater_limiter_limit`.
pub const LIMITER_LIMIT: &str = vocabulary::LIMITER_LIMIT.name;
/// `tailwater_limiter_in_flight`.
pub const LIMITER_IN_FLIGHT: &str = vocabulary::LIMITER_IN_FLIGHT.name;
/// `tailwater_limiter_queue_depth`.
pub const LIMITER_QUEUE_DEPTH: &str = vocabulary::LIMITER_QUEUE_DEPTH.name;
/// `tailwater_request_duration_seconds`.
pub const REQUEST_DURATION_SECONDS: &str = vocabulary::REQUEST_DURATION.name;
/// `tailwater_queue_wait_seconds`.
pub const QUEUE_WAIT_SECONDS: &str = vocabulary::QUEUE_WAIT.name;

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
    samples: [OnceLock<Counter>; 3],
    shed: [[OnceLock<Counter>; 4]; RejectReason::ALL.len()],
    /// Refused for a spent deadline: the decision and the request, per tier.
    expired: [[OnceLock<Counter>; 4]; 2],
    durations: [OnceLock<Histogram>; 3],
    algorithm: OnceLock<&'static str>,
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

/// The vocabulary's `outcome` and `reason` of a request the layer admitted and classified.
const fn request_outcome(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Success => (out::SUCCESS, ""),
        Outcome::Dropped => (out::UPSTREAM_ERROR, "dropped"),
        Outcome::Ignored => (out::CANCELLED, "client_gone"),
    }
}

/// `tailwater_requests_total` with the vocabulary's labels.
fn requests_counter(
    route: &Route,
    outcome: &'static str,
    reason: &'static str,
    tier: Criticality,
) -> Counter {
    metrics::counter!(
        REQUESTS_TOTAL,
        "route" => route.label(),
        "outcome" => outcome,
        "reason" => reason,
        "tier" => tier.as_str(),
    )
}

impl LimiterMetrics {
    pub(crate) fn new(route: Route) -> Self {
        Self {
            route,
            admitted: [const { OnceLock::new() }; 4],
            bypassed: [const { OnceLock::new() }; 4],
            rejected: [const { [const { OnceLock::new() }; 4] }; RejectReason::ALL.len()],
            outcomes: [const { [const { OnceLock::new() }; 4] }; 3],
            samples: [const { OnceLock::new() }; 3],
            shed: [const { [const { OnceLock::new() }; 4] }; RejectReason::ALL.len()],
            expired: [const { [const { OnceLock::new() }; 4] }; 2],
            durations: [const { OnceLock::new() }; 3],
            algorithm: OnceLock::new(),
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
        self.shed[reason.index()][tier.index()]
            .get_or_init(|| requests_counter(&self.route, out::SHED, reason.as_str(), tier))
            .increment(1);
    }

    /// A request refused because its own deadline was spent (on arrival or in the queue):
    /// `decision="rejected"` and `outcome="rejected"`, reason `deadline_exceeded` (as the
    /// proxy counts it).
    pub(crate) fn deadline_refused(&self, tier: Criticality) {
        let reason = vocabulary::reason::DEADLINE_EXCEEDED;
        self.decision_counter(
            &self.expired[0][tier.index()],
            tier,
            "rejected",
            Some(reason),
        );
        self.expired[1][tier.index()]
            .get_or_init(|| requests_counter(&self.route, out::REJECTED, reason, tier))
            .increment(1);
    }

    pub(crate) fn outcome(&self, tier: Criticality, outcome: Outcome, duration: Duration) {
        let o = outcome_index(outcome);
        let (label, reason) = request_outcome(outcome);
        self.outcomes[o][tier.index()]
            .get_or_init(|| requests_counter(&self.route, label, reason, tier))
            .increment(1);
        self.samples[o]
            .get_or_init(|| {
                metrics::counter!(
                    LIMITER_SAMPLES_TOTAL,
                    "route" => self.route.label(),
                    "outcome" => outcome.as_str(),
                )
            })
            .increment(1);
        self.durations[o]
            .get_or_init(|| {
                metrics::histogram!(
                    REQUEST_DURATION_SECONDS,
                    "route" => self.route.label(),
                    "outcome" => label,
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

    /// Sets the limiter gauges; `algorithm` names the limiter's algorithm (asked once).
    pub(crate) fn gauges(
        &self,
        algorithm: impl FnOnce() -> &'static str,
        limit: usize,
        in_flight: usize,
        queue_depth: usize,
    ) {
        let route = &self.route;
        let algorithm = *self.algorithm.get_or_init(algorithm);
        let gauge = |slot: &OnceLock<Gauge>, name: &'static str, v: usize| {
            slot.get_or_init(
                || metrics::gauge!(name, "route" => route.label(), "algorithm" => algorithm),
            )
            .set(v as f64);
        };
        gauge(&self.limit, LIMITER_LIMIT, limit);
        gauge(&self.in_flight, LIMITER_IN_FLIGHT, in_flight);
        gauge(&self.queue_depth, LIMITER_QUEUE_DEPTH, queue_depth);
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
    limited: [OnceLock<Counter>; 4],
}

impl RateLimitMetrics {
    pub(crate) fn new(route: Route) -> Self {
        Self {
            route,
            decisions: [const { [const { OnceLock::new() }; 4] }; RATE_DECISIONS.len()],
            limited: [const { OnceLock::new() }; 4],
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
        if decision == "rejected" {
            // A request the layer answered itself: one of the vocabulary's outcomes.
            match reason.unwrap_or("none") {
                "rate_exceeded" => self.limited[tier.index()]
                    .get_or_init(|| {
                        requests_counter(&self.route, out::RATE_LIMITED, "rate_exceeded", tier)
                    })
                    .increment(1),
                other => requests_counter(&self.route, out::RATE_LIMITED, other, tier).increment(1),
            }
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
