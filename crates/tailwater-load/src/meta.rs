//! What produced a report: the tool's version, the start time and the command line, so a
//! JSON or HTML file found weeks later still says where it came from.

use std::time::{SystemTime, UNIX_EPOCH};

/// The version of this crate (the workspace's version), written into every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Provenance of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    /// The tool's version.
    pub version: &'static str,
    /// Wall-clock start of the run.
    pub started_at: SystemTime,
    /// The command line that started the run, when the caller knows it.
    pub command: Option<String>,
}

impl RunMeta {
    /// Provenance for a run starting at `started_at`, without a command line.
    pub fn new(started_at: SystemTime) -> Self {
        Self {
            version: VERSION,
            started_at,
            command: None,
        }
    }

    /// The start time as RFC 3339 in UTC, to the second (`2026-12-02T12:09:13Z`).
    pub fn started_at_rfc3339(&self) -> String {
        rfc3339(self.started_at)
    }
}

/// Formats `t` as RFC 3339 UTC to the second; times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days` (eras of 400 years, March-based years).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a century leap year), 23:59:59.
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
        // 2026-12-02T12:09:13Z.
        assert_eq!(at(1_796_213_353), "2026-12-02T12:09:13Z");
        // 2100-03-01 (2100 is not a leap year).
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
