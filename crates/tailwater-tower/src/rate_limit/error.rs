//! Error types.

pub use crate::rejection::RateLimited;
pub(crate) use crate::rejection::reset_secs;
