//! Human durations, one spelling everywhere: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.
//!
//! Every command-line flag and configuration field of the project that takes a duration reads
//! it with [`parse`] (or [`parse_field`], which names the field in its error), and every place
//! that prints a configured duration back uses [`format()`], which [`parse`] reads back to the
//! same value at millisecond precision. The accepted units are `ns`, `us` (or `µs`), `ms`,
//! `s`, `m` (or `min`) and `h`. A bare number is refused: in a duration field it is almost
//! always a units mistake, and guessing seconds or milliseconds would hide it.
//!
//! Measured latencies in reports are printed by [`format_compact`] (three significant
//! figures), which is for reading, not for parsing back.
//!
//! ```
//! use std::time::Duration;
//! use tailwater_core::duration;
//!
//! assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(duration::parse("1h"), Ok(Duration::from_secs(3600)));
//! assert!(duration::parse("10").is_err());
//! assert_eq!(duration::format(Duration::from_millis(1500)), "1.5s");
//! assert_eq!(duration::parse_field("timeout", "-1s").unwrap_err().field(), "timeout");
//! ```

use std::fmt;
use std::time::Duration;

use crate::ConfigError;

/// The longest duration accepted: about 31 years, far beyond any timeout or window, and small
/// enough that arithmetic on it never overflows a `Duration` or an `f64` second count.
pub const MAX_SECS: f64 = 1e9;

/// Why a duration did not parse. The message quotes the text and says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);

impl DurationError {
    /// The explanation, without the field name.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

impl From<DurationError> for String {
    fn from(e: DurationError) -> String {
        e.0
    }
}

const UNITS: &str = "ns, us, ms, s, m or h";

/// Parses `"<number><unit>"` (surrounding and inner spaces allowed: `"2 s"`), non-negative and
/// at most [`MAX_SECS`] seconds.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_alphabetic())
        .ok_or_else(|| DurationError(format!("`{t}` has no unit (use {UNITS})")))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| DurationError(format!("`{t}` does not start with a number")))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(DurationError(format!(
                "`{t}` has an unknown unit `{other}` (use {UNITS})"
            )));
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(DurationError(format!(
            "`{t}` must be a non-negative duration"
        )));
    }
    let secs = value * scale;
    if secs > MAX_SECS {
        return Err(DurationError(format!("`{t}` is too long")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// [`parse`], with the error naming `field` (the flag or configuration key).
pub fn parse_field(field: &'static str, text: &str) -> Result<Duration, ConfigError> {
    parse(text).map_err(|e| ConfigError::new(field, e))
}

/// Formats a configured duration so that [`parse`] reads it back: `"3s"`, `"1.5s"`,
/// `"250ms"`, `"10us"`, `"7ns"` (the largest unit that keeps it exact, up to three decimals
/// of a second).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos.is_multiple_of(1_000_000) {
        let ms = nanos / 1_000_000;
        if ms.is_multiple_of(1000) {
            return format!("{}s", ms / 1000);
        }
        if ms >= 1000 {
            let whole = ms / 1000;
            let frac = format!("{:03}", ms % 1000);
            return format!("{whole}.{}s", frac.trim_end_matches('0'));
        }
        return format!("{ms}ms");
    }
    if nanos.is_multiple_of(1000) {
        return format!("{}us", nanos / 1000);
    }
    format!("{nanos}ns")
}

/// Formats a measured duration for reading, with about three significant figures:
/// `"850us"`, `"12.3ms"`, `"250ms"`, `"1.50s"`.
pub fn format_compact(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2}s")
    } else if s >= 1e-3 {
        let ms = s * 1e3;
        if ms >= 100.0 {
            format!("{ms:.0}ms")
        } else {
            format!("{ms:.1}ms")
        }
    } else {
        format!("{:.0}us", s * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        for (text, want) in [
            ("7ns", Duration::from_nanos(7)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            (" 2 s ", Duration::from_secs(2)),
            ("2m", Duration::from_secs(120)),
            ("2min", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "10", "", "ms", "3 weeks", "1d", "-1s", "NaNs", "infs", "1e10s", "1.2.3s",
        ] {
            let e = parse(text).unwrap_err();
            assert!(!e.message().is_empty(), "{text}");
        }
        assert!(parse("10").unwrap_err().message().contains("no unit"));
        assert!(
            parse("3d")
                .unwrap_err()
                .message()
                .contains("unknown unit `d`")
        );
        let e = parse_field("timeout", "soon").unwrap_err();
        assert_eq!(e.field(), "timeout");
    }

    #[test]
    fn format_reads_back_to_the_same_value() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(7),
            Duration::from_micros(10),
            Duration::from_millis(250),
            Duration::from_millis(1500),
            Duration::from_millis(1005),
            Duration::from_millis(61_250),
            Duration::from_secs(3),
            Duration::from_secs(7200),
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(1005)), "1.005s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(3)), "3s");
    }

    #[test]
    fn compact_keeps_three_figures() {
        assert_eq!(format_compact(Duration::from_micros(850)), "850us");
        assert_eq!(format_compact(Duration::from_micros(12_345)), "12.3ms");
        assert_eq!(format_compact(Duration::from_millis(250)), "250ms");
        assert_eq!(format_compact(Duration::from_millis(1500)), "1.50s");
    }
}
