//! Alert tiers: a long window, a short window and a burn-rate factor, grouped by severity.
//!
//! The defaults are the SRE Workbook's (ch. 5, Table 5-8 plus the 1d/2h pair of its final
//! PromQL), the same as Sloth's `google-30d` windows. A factor is derived from the share of
//! the budget a tier lets burn before it fires: `factor = budget_share × period / long`,
//! e.g. 2 % × 720 h / 1 h = 14.4.

use std::fmt;
use std::str::FromStr;

use crate::duration::PromDuration;

/// Who is told: a page wakes someone up, a ticket waits for working hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Fast burns: act now.
    Page,
    /// Slow burns: act this week.
    Ticket,
}

impl Severity {
    /// The label value (`sloth_severity`), `page` or `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One long/short window pair with its burn-rate factor. The tier fires when the error ratio
/// over **both** windows exceeds `factor × (1 − objective)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    /// Page or ticket.
    pub severity: Severity,
    /// The long window: how much evidence the tier wants (it sets the budget consumed).
    pub long: PromDuration,
    /// The short window: how fast the tier resets once errors stop.
    pub short: PromDuration,
    /// Burn-rate factor: multiple of the error budget rate that trips the tier.
    pub factor: f64,
}

/// The budget shares (of a 30-day budget) behind the workbook's four tiers.
const WORKBOOK: [(Severity, u64, u64, f64, f64); 4] = [
    (Severity::Page, 3_600, 300, 14.4, 0.02),
    (Severity::Page, 21_600, 1_800, 6.0, 0.05),
    (Severity::Ticket, 86_400, 7_200, 3.0, 0.10),
    (Severity::Ticket, 259_200, 21_600, 1.0, 0.10),
];

const DAY: u64 = 86_400;

impl Tier {
    /// The workbook's four tiers for an SLO period of `period_days` days. For 30 days the
    /// factors are exactly 14.4, 6, 3 and 1; for another period they keep the same budget
    /// shares (2 %, 5 %, 10 %, 10 %), as Sloth's `google-28d` windows do.
    pub fn workbook(period_days: u32) -> Vec<Tier> {
        WORKBOOK
            .iter()
            .map(|&(severity, long, short, factor30, share)| {
                let factor = if period_days == 30 {
                    factor30
                } else {
                    round_sig(share * f64::from(period_days) * DAY as f64 / long as f64)
                };
                Tier {
                    severity,
                    long: PromDuration::from_secs(long),
                    short: PromDuration::from_secs(short),
                    factor,
                }
            })
            .collect()
    }

    /// Share of the period's error budget spent when the tier fires on a burn that has just
    /// reached its threshold over the whole long window: `factor × long / period`.
    pub fn budget_consumed(&self, period: PromDuration) -> f64 {
        self.factor * self.long.as_f64() / period.as_f64()
    }

    /// Time to exhaust the whole budget at exactly the tier's threshold: `period / factor`.
    pub fn exhaustion_secs(&self, period: PromDuration) -> f64 {
        period.as_f64() / self.factor
    }

    /// A short name for tables and labels: `page-1h-5m`.
    pub fn name(&self) -> String {
        format!("{}-{}-{}", self.severity, self.long, self.short)
    }
}

/// Rounds to 12 significant digits, so derived constants print as `13.44`, not
/// `13.440000000000001`.
pub fn round_sig(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// Why a `--tier` argument did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tier `{0}`: expected SEVERITY:LONG:SHORT:FACTOR, e.g. page:1h:5m:14.4 (short <= long, factor > 0)"
)]
pub struct TierError(pub String);

impl FromStr for Tier {
    type Err = TierError;

    /// Parses `page:1h:5m:14.4`. A single-window tier has `short == long`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TierError(s.to_owned());
        let parts: Vec<&str> = s.split(':').collect();
        let [sev, long, short, factor] = parts.as_slice() else {
            return Err(err());
        };
        let severity = match *sev {
            "page" => Severity::Page,
            "ticket" => Severity::Ticket,
            _ => return Err(err()),
        };
        let long: PromDuration = long.parse().map_err(|_| err())?;
        let short: PromDuration = short.parse().map_err(|_| err())?;
        let factor: f64 = factor.parse().map_err(|_| err())?;
        if short > long || !(factor.is_finite() && factor > 0.0) {
            return Err(err());
        }
        Ok(Tier {
            severity,
            long,
            short,
            factor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workbook_factors_and_budget_shares() {
        let period = PromDuration::from_secs(30 * DAY);
        let tiers = Tier::workbook(30);
        let got: Vec<(String, f64, f64)> = tiers
            .iter()
            .map(|t| (t.name(), t.factor, round_sig(t.budget_consumed(period))))
            .collect();
        assert_eq!(
            got,
            vec![
                ("page-1h-5m".to_owned(), 14.4, 0.02),
                ("page-6h-30m".to_owned(), 6.0, 0.05),
                ("ticket-1d-2h".to_owned(), 3.0, 0.10),
                ("ticket-3d-6h".to_owned(), 1.0, 0.10),
            ]
        );
        // 14.4x exhausts a 30-day budget in 50 h.
        assert_eq!(round_sig(tiers[0].exhaustion_secs(period) / 3600.0), 50.0);
    }

    #[test]
    fn other_periods_keep_the_budget_shares() {
        let factors: Vec<f64> = Tier::workbook(28).iter().map(|t| t.factor).collect();
        assert_eq!(factors, vec![13.44, 5.6, 2.8, round_sig(0.1 * 28.0 / 3.0)]);
    }

    #[test]
    fn parses_tiers_and_rejects_bad_ones() {
        let t: Tier = "page:1h:5m:14.4".parse().unwrap();
        assert_eq!(
            (t.severity, t.long.secs(), t.short.secs(), t.factor),
            (Severity::Page, 3600, 300, 14.4)
        );
        for bad in [
            "page:1h:5m",
            "alert:1h:5m:1",
            "page:5m:1h:1",
            "page:1h:5m:0",
            "page:1h:5m:x",
            "page:1h:5m:-1",
        ] {
            assert!(bad.parse::<Tier>().is_err(), "{bad}");
        }
    }
}
