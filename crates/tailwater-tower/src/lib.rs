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
//! | [`outbound`] | the client side: circuit breaker, retries and hedging within one budget, adaptive throttling (see its docs for the stack) |
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
//! use tailwater_core::Limiter;
//! use tailwater_tower::{ConcurrencyLayer, CriticalityLayer};
//! use tower::ServiceBuilder;
//!
//! // The recommended algorithm (`tailwater_core::algorithm::recommended()`), as everywhere.
//! let limiter = Limiter::builder()
//!     .tiers(Default::default())
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(CriticalityLayer::new())
//!     .layer(ConcurrencyLayer::new(limiter).route("api"));
//! # let _ = stack;
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```
//!
//! ## With a hyper 1 service
//!
//! The layers are generic over the request and response bodies, so a hand-written hyper
//! service (`Request<Incoming>` → `Response<BoxBody>`) takes them as an axum router does.
//! The response body type becomes the layers' wrappers (which hold the concurrency permit
//! until the body ends); hyper serves it as is.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::combinators::BoxBody;
//! use hyper::body::Incoming;
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use tailwater_core::limiter::QueueConfig;
//! use tailwater_core::rate::{KeyedLimiter, MemoryStore, Quota};
//! use tailwater_core::{Limiter, TierThresholds};
//! use tailwater_tower::rate_limit::{PeerAddr, PeerIp};
//! use tailwater_tower::{ConcurrencyLayer, CriticalityLayer, RateLimitLayer};
//! use tower::ServiceBuilder;
//!
//! async fn upstream(
//!     req: Request<Incoming>,
//! ) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
//!     Ok(Response::new(BoxBody::new(req.into_body()))) // echo
//! }
//!
//! # async fn run(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::builder() // the recommended algorithm
//!     .tiers(TierThresholds::default())
//!     .queue(QueueConfig::codel(64)?)
//!     .build()?;
//! let quota = Quota::per_second(100)?;
//! let store = MemoryStore::new(KeyedLimiter::<String>::builder(quota).build()?);
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(store, quota, PeerIp::new()))
//!     .layer(CriticalityLayer::new())
//!     .layer(ConcurrencyLayer::new(limiter).wait(Duration::from_millis(50)))
//!     .service_fn(upstream);
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     // PeerIp reads the connection's address from the request extensions.
//!     let svc = ServiceBuilder::new()
//!         .map_request(move |mut req: Request<Incoming>| {
//!             req.extensions_mut().insert(PeerAddr(peer));
//!             req
//!         })
//!         .service(svc.clone());
//!     tokio::spawn(async move {
//!         let conn = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
//!         let _ = conn.await;
//!     });
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

/// The `get_ref`, `get_mut` and `into_inner` accessors of a middleware service whose
/// wrapped service is its field `inner` of type `S` (as tower's own middleware has them);
/// expands inside the service's inherent `impl` block.
macro_rules! inner_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub mod admission;
pub mod burn;
pub mod classify;
pub mod concurrency;
pub mod criticality;
pub mod deadline;
pub mod edge;
pub mod observe;
pub mod outbound;
pub mod per_message;
pub mod rate_limit;
mod rejection;
mod view;
mod wire;

pub use classify::{Classify, DefaultClassifier};
pub use concurrency::{Concurrency, ConcurrencyLayer};
pub use criticality::{CriticalityLayer, SetCriticality};
pub use rate_limit::{RateLimit, RateLimitLayer};

/// The boxed error type used when a layer is configured to return errors
/// ([`edge::ReturnError`]), as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
