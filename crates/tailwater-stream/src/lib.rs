//! # tailwater-stream
//!
//! Streams with end-to-end backpressure, the seed's "stream-processing pipeline" product:
//!
//! - [`pipeline`]: source → stages → sink over **bounded** queues, per-stage concurrency
//!   (fixed, or driven by a tailwater [`Limiter`](tailwater_core::Limiter)), batching stages
//!   (size and linger) and a drain that loses nothing admitted. Every stage accounts its time
//!   as *busy*, *backpressured* (blocked handing an item to the next stage) or *idle*
//!   (waiting for input), as Apache Flink's backpressure view does, so the bottleneck is named
//!   by [`PipelineStats::bottleneck`](pipeline::PipelineStats::bottleneck), not guessed.
//! - [`keyed`]: a keyed dispatcher (the seed's Kafka appendix `KeyedDispatcher`): per-key
//!   order over a shared pool of workers with bounded queues, a slow or hot key confined to
//!   one worker and reported, and an explicit policy when a worker's queue is full.
//! - [`request_n`]: Reactive Streams' `request(n)`: the subscriber grants credits and the
//!   publisher never has more than the granted number of items outstanding. The adaptors
//!   are plain [`Stream`](futures_util::Stream)s, so they run over tonic's streaming calls
//!   (the credits travel on the opposite half of a bidi call).
//!
//! - [`broker`]: broker consumers that push back: the fetch size is the free credit of a
//!   tailwater limiter, so a slow downstream shrinks what is pulled; lag and its growth
//!   rate as metrics; at-least-once with redeliveries counted. Redis Streams consumer
//!   groups behind the `redis-streams` feature, NATS JetStream pull consumers behind `nats`.
//!
//! Every queue here is bounded and every component has a `stats()` snapshot; metrics go
//! through the [`metrics`] facade with the `tailwater_` names listed in
//! [`pipeline::metrics`].
#![forbid(unsafe_code)]

pub mod broker;
pub mod keyed;
pub mod pipeline;
pub mod request_n;

pub use keyed::{FullPolicy, KeyedConfig, KeyedDispatcher};
pub use pipeline::{Concurrency, Pipeline, PipelineHandle, PipelineStats, StageConfig};
pub use request_n::{Demand, RequestN, Subscriber};
