//! Error types.

pub use crate::rejection::{DeadlineExceeded, Overloaded};
