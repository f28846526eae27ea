//! A constant limit.

use super::{LimitAlgorithm, Sample};
use crate::error::ConfigError;

/// A limit that never changes: a plain semaphore, and the baseline every adaptive algorithm
/// is compared with.
///
/// ```
/// use tailwater_core::algorithm::{Fixed, LimitAlgorithm};
/// let f = Fixed::new(8).unwrap();
/// assert_eq!(f.limit(), 8);
/// assert!(Fixed::new(0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    limit: usize,
}

impl Fixed {
    /// A fixed limit of `limit` (at least 1).
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new("limit", "must be at least 1"));
        }
        Ok(Self { limit })
    }
}

impl LimitAlgorithm for Fixed {
    fn name(&self) -> &'static str {
        "static"
    }
    fn limit(&self) -> usize {
        self.limit
    }
    fn update(&mut self, _sample: &Sample) -> usize {
        self.limit
    }
    /// Samples change nothing, so the limiter may skip measuring most of them.
    fn aggregates_samples(&self) -> bool {
        true
    }
}
