//! Rate limiting keyed by client, header, path or anything else, on any core
//! [`RateStore`](tailwater_core::rate::RateStore).
//!
//! [`RateLimitLayer`] extracts a key from each request ([`KeyExtractor`]: [`PeerIp`],
//! [`HeaderKey`], [`PathKey`] or a closure), asks the store for one cell under the
//! configured quotas (GCRA, see `tailwater_core::rate`), and either calls the inner service
//! or answers `429 Too Many Requests` with `Retry-After` and the draft-10 `RateLimit-Policy`
//! / `RateLimit` headers (gRPC: `RESOURCE_EXHAUSTED` + `grpc-retry-pushback-ms`). Admitted
//! responses carry the two `RateLimit*` headers too, unless turned off.
//!
//! The store is in memory ([`MemoryStore`](tailwater_core::rate::MemoryStore): sharded,
//! bounded by `max_keys`) or shared (the Redis store of `tailwater-redis`); the layer does
//! not change. A store error follows [`OnStoreError`]: fail open (the default: rate limits
//! protect, they should not take the service down with their backend) or fail closed
//! (`503`).
//!
//! A request without a key follows [`MissingKey`]: not limited (the default, counted as
//! `decision="unkeyed"`), or limited under one shared key.
//!
//! Keys from different layers sharing one store must not collide: give each layer its own
//! [`key_prefix`](RateLimitLayer::key_prefix).
//!
//! [`RemoteRateLimitLayer`] asks a remote service instead (an Envoy rate limit service,
//! through `tailwater-rls`'s client with its `client` feature): same answers, same
//! [`OnStoreError`] policy, the limits and keys defined by the service.

pub mod error;
pub mod future;
mod key;
mod layer;
pub mod remote;
mod service;

pub(crate) use key::peer_addr;
pub use key::{HeaderKey, KeyExtractor, PathKey, PeerAddr, PeerIp};
pub use layer::{MissingKey, OnStoreError, RateLimitLayer};
pub use remote::{RemoteDecision, RemoteLimiter, RemoteRateLimit, RemoteRateLimitLayer};
pub use service::RateLimit;
