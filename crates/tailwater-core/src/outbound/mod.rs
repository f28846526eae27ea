//! Outbound resilience: what a *caller* does about a dependency in trouble.
//!
//! The rest of tailwater protects a server from its callers; this module protects the
//! callers and, through them, the server. Each mechanism is an I/O-free state machine on a
//! [`Clock`](crate::clock::Clock), so the tower layers (tailwater-tower's `outbound`) and the
//! simulator (tailwater-sim's `client`) run this exact code:
//!
//! | type | mechanism | anchors |
//! |---|---|---|
//! | [`CircuitBreaker`] | count- or time-window breaker on failure *and* slow-call rates; jittered, growing open intervals; bounded half-open probes with a deadline | resilience4j, Polly v8, Linkerd, SmallRye #319, resilience4j #903/#1432 |
//! | [`RetryBudget`] | one budget for retries and hedges: 10 % of requests + 10/s over 10 s, charged before backoff | SRE book (10 %), Finagle, Linkerd, tower `TpsBudget` (the floor and window), Envoy #30205 |
//! | [`RetryPolicy`] | capped attempts, full-jitter backoff, `Retry-After` / `grpc-retry-pushback-ms` | SRE book, Envoy, gRPC A6 |
//! | [`Hedger`] | hedge delay = the p95 of the previous period's latencies (all attempts recorded) | tower `Hedge`, "The Tail at Scale" |
//! | [`TieRegistry`] | tied requests, server side: the copy that starts first cancels the other's queued copy; bounded, expiring | "The Tail at Scale" |
//! | [`AdaptiveThrottle`] | reject locally with p = max(0, (req − K·acc)/(req + 1)), per tier | Google SRE book |
//!
//! Every default is documented on its config type with the anchor it comes from
//! (`research/outbound.md` beside the architecture notes has the sources).

pub mod breaker;
pub mod breaker_config;
pub mod budget;
pub mod hedge;
pub mod jitter;
pub mod retry;
pub mod throttle;
pub mod tie;
pub mod window;

pub use breaker::{
    BreakerOpen, BreakerPermit, BreakerState, BreakerStats, CircuitBreaker, Transition,
    TransitionObserver,
};
pub use breaker_config::BreakerConfig;
pub use budget::{BudgetConfig, BudgetStats, Extra, RetryBudget};
pub use hedge::{HedgeConfig, Hedger};
pub use jitter::Jitter;
pub use retry::{
    GiveUp, Pushback, RetryDecision, RetryPolicy, parse_grpc_pushback_ms, parse_retry_after,
};
pub use throttle::{AdaptiveThrottle, ThrottleConfig};
pub use tie::{Arrival, TieConfig, TieRegistry, TieStats, TieTicket};
pub use window::{Tally, Window};
