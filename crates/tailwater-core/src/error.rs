//! Configuration errors.
//!
//! Every constructor and builder in tailwater validates its input and returns a
//! [`ConfigError`] naming the field, instead of panicking or silently clamping.

use std::fmt;

/// An invalid configuration value, with the field it came from.
///
/// ```
/// use tailwater_core::algorithm::Aimd;
/// let err = Aimd::builder().min_limit(50).max_limit(10).build().unwrap_err();
/// assert_eq!(err.field(), "min_limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{field}`: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// A new error for `field` with a human-readable `reason`.
    pub fn new(field: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }

    /// The name of the offending field, as spelt in the builder method or config key.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Checks that a float is finite and within `[lo, hi]` (inclusive bounds).
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
) -> Result<f64, ConfigError> {
    if !value.is_finite() {
        return Err(ConfigError::new(
            field,
            format!("must be finite, got {value}"),
        ));
    }
    if value < lo || value > hi {
        return Err(ConfigError::new(
            field,
            format!("must be within [{lo}, {hi}], got {value}"),
        ));
    }
    Ok(value)
}

/// Checks a multiplicative decrease on a drop (`backoff_ratio`): finite and within
/// `[0.5, 1)`, so that one drop neither halves the limit nor leaves it unchanged.
pub(crate) fn check_backoff(backoff: f64) -> Result<f64, ConfigError> {
    if !(backoff.is_finite() && (0.5..1.0).contains(&backoff)) {
        return Err(ConfigError::new(
            "backoff_ratio",
            format!("must be within [0.5, 1), got {backoff}"),
        ));
    }
    Ok(backoff)
}

/// Checks that a duration setting (`field`) is greater than zero.
pub(crate) fn check_nonzero(
    field: &'static str,
    value: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(field, "must be greater than zero"));
    }
    Ok(value)
}

/// Checks that `min <= initial <= max` and that `min >= 1`.
pub(crate) fn check_limits(min: usize, initial: usize, max: usize) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(ConfigError::new("min_limit", "must be at least 1"));
    }
    if min > max {
        return Err(ConfigError::new(
            "min_limit",
            format!("min_limit {min} is greater than max_limit {max}"),
        ));
    }
    if initial < min || initial > max {
        return Err(ConfigError::new(
            "initial_limit",
            format!("initial_limit {initial} is outside [min_limit {min}, max_limit {max}]"),
        ));
    }
    Ok(())
}
