//! Outbound layers: what a *client* stack does about a dependency in trouble, on
//! tailwater-core's [`outbound`](tailwater_core::outbound) state machines (the simulator runs
//! the same ones).
//!
//! | layer | mechanism |
//! |---|---|
//! | [`CircuitBreakerLayer`] | open → `503` / gRPC `UNAVAILABLE` at once; bounded half-open probes |
//! | [`RetryLayer`] | capped, full-jitter retries honouring pushback, within the shared budget |
//! | [`HedgeLayer`] | a second attempt after the p95, within the same budget; loser cancelled |
//! | [`ThrottleLayer`] | SRE adaptive throttling per criticality tier |
//!
//! Order, outermost first: throttle → breaker → retry → hedge → client. One
//! [`RetryBudget`](tailwater_core::outbound::RetryBudget) (in an `Arc`) is shared by the
//! retry and hedge layers of one downstream.

pub mod breaker;
pub mod hedge;
pub mod retry;
pub mod signals;
pub mod throttle;

pub use breaker::{CircuitBreakerLayer, CircuitBreakerService};
pub use hedge::{HedgeLayer, HedgeService};
pub use retry::{RetryLayer, RetryService};
pub use throttle::{ThrottleLayer, ThrottleService};
