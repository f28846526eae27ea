//! Rate limits: GCRA quotas, local (direct) and keyed limiters, and a store seam for
//! global limits.
//!
//! Module docs are completed below the GCRA step; see [`gcra`] for the exact arithmetic.

mod decision;
mod direct;
pub mod gcra;
mod keyed;
mod quota;
mod store;

pub use decision::{DenyReason, RateDecision};
pub use direct::DirectLimiter;
pub use keyed::{
    DEFAULT_MAX_KEYS, KeyedLimiter, KeyedLimiterBuilder, KeyedStats, MAX_SHARDS, OnFull,
};
pub use quota::{MAX_TOLERANCE_NANOS, MONTH, MultiQuota, Quota};
pub use store::{MemoryStore, RateStore, StoreError, StoreLimiter};

#[cfg(test)]
mod tests;
