//! # tailwater-redis
//!
//! Global rate limits on Redis (and Redis Cluster), for fleets that outgrow one machine.
//!
//! TODO: full docs.
#![forbid(unsafe_code)]

mod atomic;
mod call;
mod conn;
mod error;
mod key;
mod leased;
mod policy;
mod script;
mod stats;

pub use atomic::{Checked, DecisionSource, RedisRateStore, RedisRateStoreBuilder, ScriptOutcome};
pub use call::MAX_REDIS_TOLERANCE_NANOS;
pub use conn::{ConnectionOptions, RedisConnection};
pub use error::{BackendError, RedisStoreError};
pub use key::KeyLayout;
pub use leased::{LeasedLimiter, LeasedLimiterBuilder};
pub use policy::FailurePolicy;
pub use stats::RedisStats;
