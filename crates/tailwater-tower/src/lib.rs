//! # tailwater-tower
//!
//! [tower] layers that put tailwater's overload control in front of any
//! `Service<http::Request<B>>`: axum routers, tonic servers, or a hand-written hyper 1
//! service (`Request<Incoming>` → `Response<BoxBody>`).
//!
//! One layer per mechanism, each in its own module laid out like tower's own middleware
//! (`mod.rs`, `layer.rs`, `service.rs`, `future.rs`, `error.rs`):
//!
//! | layer | what it does |
//! |---|---|
//! | [`CriticalityLayer`] | reads the request's tier (`x-criticality` header / gRPC metadata, or a closure), default `Critical`, and stores it in the request extensions |
//! | [`ConcurrencyLayer`] | adaptive concurrency on a core [`Limiter`](tailwater_core::Limiter): rejects at once or waits with a deadline in the core's queue; holds the permit **until the response body ends** and feeds the outcome back |
//! | [`RateLimitLayer`] | GCRA rate limits keyed by peer IP, a header, the path or a closure, on any [`RateStore`](tailwater_core::rate::RateStore) |
//!
//! Rejections become responses at the edge ([`edge`]): shed → `503` + `Retry-After`; rate
//! limited → `429` + `Retry-After` + the IETF draft-10 `RateLimit-Policy` / `RateLimit`
//! headers; gRPC requests get `200` with `grpc-status` 14 (`UNAVAILABLE`) or 8
//! (`RESOURCE_EXHAUSTED`) and `grpc-retry-pushback-ms`. By default the layers answer these
//! themselves, so they keep an `Infallible` error type (what axum requires); with
//! [`edge::ReturnError`] they return a typed error instead.
//!
//! Every decision emits a `tracing` event (fields `decision`, `rejection_reason`, `tier`,
//! `route`) and `metrics` facade counters, gauges and histograms named `tailwater_*`
//! ([`observe`] lists them). No exporter is installed by this crate.
//!
//! ## Order of layers
//!
//! Outermost first: rate limit (cheap, per client) → criticality → concurrency → service.
//! The rate limiter then answers abusive clients before they take a concurrency slot, and
//! the concurrency layer sees the tier set by the criticality layer.
//!
//! ```
//! use std::time::Duration;
//! use tailwater_core::{Limiter, algorithm::Aimd};
//! use tailwater_core::limiter::QueueConfig;
//! use tailwater_tower::{ConcurrencyLayer, CriticalityLayer};
//! use tower::ServiceBuilder;
//!
//! let limiter = Limiter::builder()
//!     .algorithm(Aimd::default())
//!     .tiers(Default::default())
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(CriticalityLayer::new())
//!     .layer(ConcurrencyLayer::new(limiter).route("api"));
//! # let _ = stack;
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```
#![forbid(unsafe_code)]

pub mod classify;
pub mod concurrency;
pub mod criticality;
pub mod edge;
pub mod observe;
pub mod rate_limit;

pub use classify::{Classify, DefaultClassifier};
pub use concurrency::{Concurrency, ConcurrencyLayer};
pub use criticality::{CriticalityLayer, SetCriticality};
pub use rate_limit::{RateLimit, RateLimitLayer};

/// The boxed error type used when a layer is configured to return errors
/// ([`edge::ReturnError`]), as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
