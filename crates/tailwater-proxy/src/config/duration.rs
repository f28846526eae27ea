//! Human-readable durations in configuration files: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Parses `"<number><unit>"` with unit `ns`, `us`, `ms`, `s`, `m` or `h` (no unit is an
/// error: a bare number in a duration field is almost always a units mistake).
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit (use ns, us, ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use ns, us, ms, s, m or h)"
            ));
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way [`parse`] reads it back.
pub(crate) fn format(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if d.as_nanos().is_multiple_of(1_000_000_000) {
        format!("{}s", d.as_secs())
    } else if ms.fract() == 0.0 {
        format!("{ms}ms")
    } else {
        format!("{}us", d.as_micros())
    }
}

struct DurVisitor;

impl Visitor<'_> for DurVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\" or \"2s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
}

/// `#[serde(deserialize_with = "duration::de")]`.
pub(crate) fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(DurVisitor)
}

/// `#[serde(deserialize_with = "duration::de_opt")]`.
pub(crate) fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_bare_numbers() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert!(parse("10").is_err());
        assert!(parse("ms").is_err());
        assert!(parse("3 weeks").is_err());
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(3)), "3s");
    }
}
