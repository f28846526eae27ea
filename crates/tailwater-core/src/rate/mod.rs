//! Rate limits: GCRA quotas, local (direct) and keyed limiters, and a store seam for
//! global limits.
//!
//! Module docs are completed below the GCRA step; see [`gcra`] for the exact arithmetic.

mod decision;
pub mod gcra;
mod quota;

pub use decision::{DenyReason, RateDecision};
pub use quota::{MAX_TOLERANCE_NANOS, MONTH, MultiQuota, Quota};
