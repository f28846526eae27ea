//! # tailwater-core
//!
//! Overload control primitives with no I/O: adaptive concurrency limits, RAII permits,
//! criticality tiers, bounded waiting queues and rate limits. Time is data: every stateful
//! type reads a [`Clock`](clock::Clock), every algorithm takes the time in its input, so the
//! same code runs in production, in tests on a [`ManualClock`](clock::ManualClock) and in the
//! simulator on virtual time.
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod clock;
pub mod criticality;
pub mod error;
pub mod limiter;
pub mod rate;
mod sync;

pub use criticality::{Criticality, TierThresholds};
pub use error::ConfigError;
pub use limiter::{Limiter, Permit, RejectReason, Rejection};
