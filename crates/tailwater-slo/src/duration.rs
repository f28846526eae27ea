//! Prometheus durations (`5m`, `1h`, `3d`): parsed from specs and printed into range selectors.

use std::fmt;
use std::str::FromStr;

/// A whole number of seconds, printed in the largest Prometheus unit that divides it
/// (`300` → `5m`, `86400` → `1d`) so generated rule names match Sloth's (`ratio_rate1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(u64);

const UNITS: [(&str, u64); 5] = [
    ("w", 604_800),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

impl PromDuration {
    /// A duration of `secs` seconds (must be > 0 to be useful as a window).
    pub const fn from_secs(secs: u64) -> Self {
        PromDuration(secs)
    }

    /// Whole seconds.
    pub const fn secs(self) -> u64 {
        self.0
    }

    /// Seconds as `f64`, for arithmetic on rates.
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        // Prefer the unit Sloth uses for its window names: days, not weeks, below 30d.
        for (unit, secs) in UNITS.iter().skip(1) {
            if self.0.is_multiple_of(*secs) {
                return write!(f, "{}{unit}", self.0 / secs);
            }
        }
        write!(f, "{}s", self.0)
    }
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration like 30s, 5m, 1h, 3d or 4w")]
pub struct DurationError(pub String);

impl FromStr for PromDuration {
    type Err = DurationError;

    /// Parses one number and one unit (`s`, `m`, `h`, `d`, `w`); zero is rejected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.to_owned());
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let mult = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, m)| *m)
            .ok_or_else(err)?;
        match n.checked_mul(mult) {
            Some(v) if v > 0 => Ok(PromDuration(v)),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_in_the_largest_unit() {
        for (text, secs, shown) in [
            ("5m", 300, "5m"),
            ("30m", 1800, "30m"),
            ("1h", 3600, "1h"),
            ("24h", 86_400, "1d"),
            ("3d", 259_200, "3d"),
            ("30d", 2_592_000, "30d"),
            ("90s", 90, "90s"),
            ("1w", 604_800, "7d"),
        ] {
            let d: PromDuration = text.parse().unwrap();
            assert_eq!(d.secs(), secs, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "5",
            "m",
            "0m",
            "1y",
            "1.5h",
            "-1h",
            "5m3s",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<PromDuration>().is_err(), "{bad}");
        }
    }
}
