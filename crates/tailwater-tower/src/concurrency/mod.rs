//! Adaptive concurrency limiting that holds its permit until the response body ends.
//!
//! [`ConcurrencyLayer`] admits each request through a core
//! [`Limiter`](tailwater_core::Limiter) (any algorithm of the core; by default, as
//! `Limiter::builder()` and [`ConcurrencyLayer::default`], the
//! [`recommended`](tailwater_core::algorithm::recommended) one):
//!
//! - **Reject fast** (the default): a request that finds the limiter full is answered at
//!   once with the shed response (`503` + `Retry-After`, or gRPC `UNAVAILABLE`), without
//!   touching the inner service.
//! - **Wait with a deadline** ([`ConcurrencyLayer::wait`]): the request waits in the
//!   limiter's bounded queue (FIFO, LIFO, adaptive LIFO or CoDel, configured on the limiter)
//!   for at most the timeout, then is shed with reason `queue_timeout` (or `queue_full`,
//!   `queue_codel`, `displaced`). A gRPC request's own deadline (`grpc-timeout`) shortens
//!   the wait.
//!
//! The tier comes from the request extensions ([`Criticality`](tailwater_core::Criticality),
//! set by [`CriticalityLayer`](crate::CriticalityLayer); `Critical` if absent), and so do the
//! optional [`PartitionId`](tailwater_core::limiter::PartitionId) and the [`Bypass`] marker.
//!
//! ## Why the permit lives in the response body
//!
//! tower's `ConcurrencyLimit` releases its permit when the response *future* resolves,
//! i.e. when the headers are ready, before the body is sent (tower-http #447). A streaming
//! response, a large download or a gRPC server stream then runs unlimited, and the latency
//! an adaptive algorithm learns from is the time to first byte. Here the permit moves into
//! the response body ([`ResponseBody`]) and is released when the body ends:
//!
//! - end of stream (or trailers) → the outcome of the response head, possibly turned into
//!   `Dropped` by a gRPC status trailer; RTT measured until this moment;
//! - a body error → `Dropped` (by default, see [`Classify`](crate::Classify));
//! - the body dropped before its end (client went away) → `Ignored`, or `Dropped` if the
//!   head already said so;
//! - the response future dropped before the response (client cancelled) → `Ignored`;
//! - the inner service failed → `Dropped`.
//!
//! Failure modes: a panicking inner service unwinds through the future, whose permit is
//! released as `Ignored` on drop; the queue is bounded by the limiter's `QueueConfig`;
//! a cancelled waiter leaves the queue (or hands back a permit it was just granted).

mod body;
pub mod error;
pub mod future;
mod layer;
mod service;

pub use body::ResponseBody;
pub use layer::ConcurrencyLayer;
pub use service::Concurrency;

/// A request extension that makes the concurrency layer admit the request without limiting
/// it (health checks, admin calls). The request is still counted in metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bypass;
