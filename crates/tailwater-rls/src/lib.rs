//! # tailwater-rls
//!
//! An Envoy rate limit service (`envoy.service.ratelimit.v3.RateLimitService`) that reads
//! envoyproxy/ratelimit's YAML configuration unchanged and decides with GCRA, in memory
//! (exact, one process) or on Redis (one atomic script per call, shared by replicas).
//!
//! What it does differently from envoyproxy/ratelimit and Limitador:
//!
//! - **No fixed windows.** Each rule `N per unit` is a GCRA quota (rate `N` per unit, burst
//!   `N`): no 2x burst at a window edge.
//! - **Denied hits are never counted**, and a call's descriptors are charged **all or
//!   none** (one atomic step in memory, one Lua script on Redis).
//! - **Every `DescriptorStatus` field is filled** (code, `current_limit` with its `name`,
//!   `limit_remaining`, `duration_until_reset`), so Envoy's own `X-RateLimit-*` headers
//!   work; and draft-10 `RateLimit-Policy` / `RateLimit` headers are returned in
//!   `response_headers_to_add`.
//! - `hits_addend` per request and per descriptor, **0 = check without charging**.
//! - **Redis down is not a stall**: a per-call timeout (5 ms by default) and a failure
//!   policy (fail open, fail closed = gRPC `UNAVAILABLE` so that Envoy's
//!   `failure_mode_deny` applies, or a local `limit / N` fallback).
//! - Configuration errors carry `file:line`; a bad reload keeps the running configuration.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tailwater_rls::{ConfigWatcher, MemoryStore, RateLimiter, Store, serve_grpc};
//!
//! let watcher = ConfigWatcher::open(std::path::Path::new("/etc/ratelimit"))?;
//! let store = Store::Memory(Arc::new(MemoryStore::new(1_000_000)));
//! let limiter = RateLimiter::new(watcher.handle(), store);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! serve_grpc(listener, limiter, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! The protos in `proto/` are a trimmed, wire-compatible copy of Envoy's API
//! (Apache-2.0), compiled by `protox` (no `protoc`).
#![forbid(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod grpc;
pub mod headers;
pub mod http;
pub mod proto;
pub mod service;
pub mod stats;
pub mod store;

pub use config::{Config, ConfigError, ConfigWatcher};
pub use grpc::{
    GrpcServerOptions, GrpcService, GrpcThreads, serve_grpc, serve_grpc_with, spawn_grpc_threads,
};
pub use http::{router, serve_http};
pub use service::{RateLimiter, RlsError};
pub use store::leased::{self, LeasedOptions, LeasedStore};
pub use store::{MemoryStore, Store};
