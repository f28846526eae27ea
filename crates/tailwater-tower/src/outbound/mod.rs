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
//! | [`TieLayer`], [`TieStartLayer`], [`TieCancelService`] | *server side* of tied requests: the copy started first cancels the peer's queued copy |
//!
//! Order, outermost first: throttle → breaker → retry → hedge → client. One
//! [`RetryBudget`](tailwater_core::outbound::RetryBudget) (in an `Arc`) is shared by the
//! retry and hedge layers of one downstream; under a retry layer, the hedge layer does not
//! deposit ([`HedgeLayer::deposits`]`(false)`), so each request counts once.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use http::{Request, Response};
//! use tailwater_core::clock::MonotonicClock;
//! use tailwater_core::outbound::*;
//! use tailwater_tower::outbound::{breaker::observed_breaker, *};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Stands in for an HTTP client (bodies must be `Clone` to be sent again).
//! let http_client = tower::service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("hello")))
//! });
//! let budget = Arc::new(RetryBudget::new(BudgetConfig::default())?);
//! let hedger = Arc::new(Hedger::new(HedgeConfig::default())?);
//! let breaker = observed_breaker("users", BreakerConfig::default(), MonotonicClock::new())?;
//! let throttle = Arc::new(AdaptiveThrottle::new(ThrottleConfig::default())?);
//! let mut client = ServiceBuilder::new()
//!     .layer(ThrottleLayer::new(throttle))
//!     .layer(CircuitBreakerLayer::new(breaker, "users"))
//!     .layer(RetryLayer::new(budget.clone(), RetryPolicy::default()))
//!     .layer(HedgeLayer::new(hedger, budget.clone()).deposits(false))
//!     .service(http_client);
//! let res = client.ready().await?.call(Request::new(String::new())).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(budget.stats().requests, 1); // deposited once, by the retry layer
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(demo()).unwrap();
//! ```

pub mod breaker;
pub mod hedge;
pub mod retry;
pub mod signals;
pub mod throttle;
pub mod tie;

pub use breaker::{CircuitBreakerLayer, CircuitBreakerService};
pub use hedge::{HedgeLayer, HedgeService};
pub use retry::{RetryLayer, RetryService};
pub use throttle::{ThrottleLayer, ThrottleService};
pub use tie::{TieCancelService, TieLayer, TieStartLayer};
