//! Human-readable durations in configuration files: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Parses `"<number><unit>"` with the project's one parser
/// ([`tailwater_core::duration::parse`]; no unit is an error: a bare number in a duration
/// field is almost always a units mistake).
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    tailwater_core::duration::parse(s).map_err(String::from)
}

/// Formats a duration the way [`parse`] reads it back.
pub(crate) fn format(d: Duration) -> String {
    tailwater_core::duration::format(d)
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
