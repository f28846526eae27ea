//! tailwater-test: support code for tailwater's own tests (not published).
//!
//! - [`redis`] (feature `redis`): launchers for a private `redis-server` and a three-master
//!   Redis Cluster on free loopback ports.

#[cfg(feature = "redis")]
pub mod redis;
