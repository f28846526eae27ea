//! Pass/fail thresholds on a run (`--fail-on "p99<200ms,errors<1%"`), so a load test can gate a
//! pipeline the way k6's thresholds do, with a non-zero exit when one is missed.
//!
//! Latency thresholds apply to the **successful** (2xx) responses, measured from the intended
//! send time (coordinated-omission corrected): a service cannot meet a latency goal by
//! answering 503 quickly. Grammar: `metric op value`, comma-separated, where
//!
//! | metric | value | meaning |
//! |---|---|---|
//! | `p50` `p90` `p99` `p99.9` `p99.99` `max` `mean` | a duration (`200ms`, `1.5s`, `250us`) | latency of 2xx responses |
//! | `errors` | a share (`1%` or `0.01`) | requests without a 2xx response (any other status, or no response) |
//! | `rejected` | a share | 429 and 503 answers (shed or rate-limited) |
//! | `success` | a share | 2xx responses |
//! | `rate` | requests/s | achieved rate of responses |
//!
//! and `op` is one of `<`, `<=`, `>`, `>=`.
//!
//! ```
//! use tailwater_load::Thresholds;
//! let t = Thresholds::parse("p99<200ms, errors<1%").unwrap();
//! assert_eq!(t.len(), 2);
//! assert_eq!(Thresholds::parse("p99<200").unwrap_err().field(), "fail_on");
//! ```

use std::fmt;

use tailwater_core::ConfigError;

use crate::parse::parse_duration;
use crate::report::Report;
use crate::stats::Percentiles;

const FIELD: &str = "fail_on";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// A latency percentile of 2xx responses (0..=1; 1 is the maximum), or the mean.
    Latency(LatencyStat),
    Errors,
    Rejected,
    Success,
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LatencyStat {
    P50,
    P90,
    P99,
    P99_9,
    P99_99,
    Max,
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, actual: f64, bound: f64) -> bool {
        match self {
            Op::Lt => actual < bound,
            Op::Le => actual <= bound,
            Op::Gt => actual > bound,
            Op::Ge => actual >= bound,
        }
    }
}

/// One threshold, as written.
#[derive(Debug, Clone, PartialEq)]
struct Threshold {
    metric: Metric,
    op: Op,
    /// Microseconds for latency, a fraction for shares, requests/s for `rate`.
    bound: f64,
    text: String,
}

/// A parsed `--fail-on` list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Thresholds {
    items: Vec<Threshold>,
}

/// The verdict on one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The threshold as written (`p99<200ms`).
    pub threshold: String,
    /// The measured value, formatted in the threshold's unit (`"183.2ms"`, `"0.40%"`), or
    /// `"n/a"` when the run has nothing to measure it on (no 2xx response for a latency).
    pub actual: String,
    /// Whether the run met the threshold. A latency threshold with no 2xx response fails.
    pub passed: bool,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "pass" } else { "FAIL" };
        write!(f, "{mark}  {:<20} actual {}", self.threshold, self.actual)
    }
}

fn split_op(item: &str) -> Option<(&str, Op, &str)> {
    for (token, op) in [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)] {
        if let Some(at) = item.find(token) {
            return Some((&item[..at], op, &item[at + token.len()..]));
        }
    }
    None
}

fn parse_share(text: &str) -> Result<f64, ConfigError> {
    let t = text.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(FIELD, format!("`{t}` is not a share (use 1% or 0.01)")))?;
    let v = v * scale;
    if !(0.0..=1.0).contains(&v) {
        return Err(ConfigError::new(
            FIELD,
            format!("`{t}` is not a share between 0% and 100%"),
        ));
    }
    Ok(v)
}

impl Thresholds {
    /// Parses a comma-separated list. Errors name the field `fail_on` and the bad item.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut items = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, op, value) = split_op(raw).ok_or_else(|| {
                ConfigError::new(
                    FIELD,
                    format!("`{raw}` has no comparison (write e.g. p99<200ms or errors<1%)"),
                )
            })?;
            let name = name.trim().to_ascii_lowercase();
            let latency = |s| Metric::Latency(s);
            let metric = match name.as_str() {
                "p50" => latency(LatencyStat::P50),
                "p90" => latency(LatencyStat::P90),
                "p99" => latency(LatencyStat::P99),
                "p99.9" => latency(LatencyStat::P99_9),
                "p99.99" => latency(LatencyStat::P99_99),
                "max" => latency(LatencyStat::Max),
                "mean" => latency(LatencyStat::Mean),
                "errors" => Metric::Errors,
                "rejected" => Metric::Rejected,
                "success" => Metric::Success,
                "rate" => Metric::Rate,
                other => {
                    return Err(ConfigError::new(
                        FIELD,
                        format!(
                            "`{other}` is not a metric (use p50, p90, p99, p99.9, p99.99, max, mean, errors, rejected, success or rate)"
                        ),
                    ));
                }
            };
            let bound = match metric {
                Metric::Latency(_) => parse_duration(FIELD, value)?.as_secs_f64() * 1e6,
                Metric::Errors | Metric::Rejected | Metric::Success => parse_share(value)?,
                Metric::Rate => {
                    let v: f64 = value.trim().trim_end_matches("/s").parse().map_err(|_| {
                        ConfigError::new(FIELD, format!("`{value}` is not a rate in requests/s"))
                    })?;
                    if !v.is_finite() || v < 0.0 {
                        return Err(ConfigError::new(
                            FIELD,
                            format!("`{value}` must be a non-negative rate"),
                        ));
                    }
                    v
                }
            };
            items.push(Threshold {
                metric,
                op,
                bound,
                text: raw.to_string(),
            });
        }
        if items.is_empty() {
            return Err(ConfigError::new(FIELD, "no threshold given"));
        }
        Ok(Self { items })
    }

    /// Number of thresholds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no threshold.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Judges `report` against every threshold, in the order given.
    pub fn check(&self, report: &Report) -> Vec<Verdict> {
        let t = &report.total;
        let requests = t.requests.max(1) as f64;
        let success = Percentiles::of(&t.success);
        self.items
            .iter()
            .map(|th| {
                let (actual, shown) = match th.metric {
                    Metric::Latency(stat) => {
                        if success.count == 0 {
                            (None, "n/a (no 2xx response)".to_string())
                        } else {
                            let us = match stat {
                                LatencyStat::P50 => success.p50 as f64,
                                LatencyStat::P90 => success.p90 as f64,
                                LatencyStat::P99 => success.p99 as f64,
                                LatencyStat::P99_9 => success.p99_9 as f64,
                                LatencyStat::P99_99 => success.p99_99 as f64,
                                LatencyStat::Max => success.max as f64,
                                LatencyStat::Mean => success.mean,
                            };
                            (Some(us), format!("{:.2}ms", us / 1000.0))
                        }
                    }
                    Metric::Errors | Metric::Rejected | Metric::Success => {
                        let n = match th.metric {
                            Metric::Errors => t.requests.saturating_sub(t.successes()),
                            Metric::Rejected => t.rejections(),
                            _ => t.successes(),
                        };
                        let share = if t.requests == 0 {
                            0.0
                        } else {
                            n as f64 / requests
                        };
                        (Some(share), format!("{:.2}%", share * 100.0))
                    }
                    Metric::Rate => (
                        Some(report.achieved_rate),
                        format!("{:.1}/s", report.achieved_rate),
                    ),
                };
                Verdict {
                    threshold: th.text.clone(),
                    actual: shown,
                    passed: actual.is_some_and(|a| th.op.holds(a, th.bound)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_metric_and_operator() {
        let t =
            Thresholds::parse("p50<=1ms, p99.9>2s,errors<1%,rejected>=0.5,success>99%,rate>=100/s")
                .unwrap();
        assert_eq!(t.len(), 6);
        assert_eq!(t.items[0].metric, Metric::Latency(LatencyStat::P50));
        assert_eq!(t.items[0].op, Op::Le);
        assert!((t.items[0].bound - 1000.0).abs() < 1e-6);
        assert_eq!(t.items[1].op, Op::Gt);
        assert!((t.items[1].bound - 2e6).abs() < 1e-3);
        assert!((t.items[2].bound - 0.01).abs() < 1e-12);
        assert!((t.items[3].bound - 0.5).abs() < 1e-12);
        assert!((t.items[5].bound - 100.0).abs() < 1e-12);
    }

    #[test]
    fn bad_items_name_the_field_and_the_item() {
        for bad in [
            "",
            "p99",
            "p99<200",
            "p42<1ms",
            "errors<150%",
            "errors<x",
            "rate<-1",
            "latency<1ms",
        ] {
            let err = Thresholds::parse(bad).unwrap_err();
            assert_eq!(err.field(), "fail_on", "{bad}: {err}");
        }
        let err = Thresholds::parse("p42<1ms").unwrap_err();
        assert!(err.to_string().contains("p42"), "{err}");
    }
}
