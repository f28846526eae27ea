//! Small parsers shared by the schedule, the CLI and the backend: durations and rates.

use tailwater_core::ConfigError;

/// Parses a duration such as `10s`, `500ms`, `250us`, `1.5s`, `2m` or `1h`, naming `field`
/// in the error: the project's one parser, [`tailwater_core::duration::parse_field`].
///
/// A bare number is refused: the unit is part of the value.
///
/// ```
/// use std::time::Duration;
/// use tailwater_load::parse_duration;
/// assert_eq!(parse_duration("duration", "1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("duration", "250us").unwrap(), Duration::from_micros(250));
/// assert_eq!(parse_duration("duration", "-1s").unwrap_err().field(), "duration");
/// ```
pub use tailwater_core::duration::parse_field as parse_duration;

/// Parses a request rate in requests per second (`500`, `2.5`, `500/s`); zero is allowed.
pub(crate) fn parse_rate(field: &'static str, text: &str) -> Result<f64, ConfigError> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let value: f64 = t
        .parse()
        .map_err(|_| ConfigError::new(field, format!("`{text}` is not a rate (requests/s)")))?;
    check_rate(field, value)
}

/// Checks that a rate is finite and non-negative.
pub(crate) fn check_rate(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if !value.is_finite() || value < 0.0 {
        return Err(ConfigError::new(
            field,
            format!("must be a finite, non-negative rate in requests/s, got {value}"),
        ));
    }
    if value > 1e8 {
        return Err(ConfigError::new(
            field,
            format!("{value} requests/s is beyond what one process can send"),
        ));
    }
    Ok(value)
}
