//! Small parsers shared by the schedule, the CLI and the backend: durations and rates.

use std::time::Duration;

use tailwater_core::ConfigError;

/// Parses a duration such as `10s`, `500ms`, `250us`, `1.5s`, `2m` or `1h`.
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
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        .ok_or_else(|| {
            ConfigError::new(
                field,
                format!("`{t}` has no unit (use ns, us, ms, s, m or h)"),
            )
        })?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(field, format!("`{t}` is not a duration")))?;
    if !value.is_finite() || value < 0.0 {
        return Err(ConfigError::new(
            field,
            format!("`{t}` must be a non-negative duration"),
        ));
    }
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(ConfigError::new(
                field,
                format!("`{t}` has an unknown unit `{unit}` (use ns, us, ms, s, m or h)"),
            ));
        }
    };
    let secs = value * scale;
    if secs > 1e9 {
        return Err(ConfigError::new(field, format!("`{t}` is too long")));
    }
    Ok(Duration::from_secs_f64(secs))
}

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
