//! Offline evaluation: replays a series through the alert logic of the generated rules and
//! reports, per tier and per alert, when it fires, when it resets and how much error budget
//! was spent by then — the SRE Workbook's detection/reset/budget framework, computed.
//!
//! The condition is the rules' own: error ratio over the long **and** the short window above
//! `factor × budget`, plus the traffic guard when one is set. Window sums are exact (the
//! series is piecewise constant), so with `eval_interval = None` the instants are found to
//! about a millisecond: the workbook's continuous-time figures. With an interval they are
//! quantised like Prometheus's rule evaluation (its default is 1m; 15s–30s is common).

use crate::model::MinEvents;
use crate::series::Series;
use crate::tier::{Severity, Tier};

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    /// Objective in percent, e.g. 99.9.
    pub objective: f64,
    /// SLO period in seconds (for the budget).
    pub period: f64,
    /// The tiers.
    pub tiers: Vec<Tier>,
    /// Traffic guard, if any.
    pub guard: Option<MinEvents>,
    /// Rule evaluation interval in seconds; `None` = continuous.
    pub eval_interval: Option<f64>,
}

/// When something fired and reset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Firing {
    /// Seconds after the reference start (incident start, or series start) when it fired.
    pub detected_after: Option<f64>,
    /// Seconds after the reference end (incident end) when it stopped firing.
    pub reset_after: Option<f64>,
    /// Share of the period's budget spent from the reference start to detection.
    pub budget_at_detection: Option<f64>,
}

/// The result for one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierOutcome {
    /// The tier.
    pub tier: Tier,
    /// When it fired and reset.
    pub firing: Firing,
    /// The workbook's closed form for a constant error ratio `r` from a clean start:
    /// `factor × budget × long / r` (None if `r` never exceeds the threshold).
    pub predicted_detection: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Per tier.
    pub tiers: Vec<TierOutcome>,
    /// Per alert (the OR of a severity's tiers).
    pub alerts: Vec<(Severity, Firing)>,
    /// Share of the budget the whole reference span spent.
    pub budget_spent: f64,
    /// Length of the reference span (the incident), seconds.
    pub span: f64,
}

struct Ctx<'a> {
    series: &'a Series,
    budget: f64,
    guard: Option<MinEvents>,
}

impl Ctx<'_> {
    fn fires(&self, tier: &Tier, t: f64) -> bool {
        let thr = tier.factor * self.budget;
        let (lt, le) = self.series.window(t, tier.long.as_f64());
        let (st, se) = self.series.window(t, tier.short.as_f64());
        if lt <= 0.0 || st <= 0.0 {
            return false;
        }
        if let Some(g) = self.guard
            && lt < g.for_tier(tier.factor, self.budget) as f64
        {
            return false;
        }
        le / lt > thr && se / st > thr
    }
}

/// Finds the first instant in `[from, to]` where `pred` equals `want`: scans every `step`
/// and, when `refine`, bisects the last step to 1 ms.
fn first(
    pred: &dyn Fn(f64) -> bool,
    from: f64,
    to: f64,
    step: f64,
    want: bool,
    refine: bool,
) -> Option<f64> {
    if pred(from) == want {
        return Some(from);
    }
    let mut prev = from;
    let mut t = from;
    while t < to {
        t = (t + step).min(to);
        if pred(t) == want {
            if !refine {
                return Some(t);
            }
            let (mut lo, mut hi) = (prev, t);
            while hi - lo > 1e-3 {
                let mid = (lo + hi) / 2.0;
                if pred(mid) == want {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return Some(hi);
        }
        prev = t;
    }
    None
}

/// Evaluates `spec` on `series`. `start`/`end` bound the reference span (the incident):
/// detection is measured from `start` (scanning from there), reset from `end` (scanning from
/// the later of `end` and detection), budget from `start`.
pub fn evaluate(series: &Series, spec: &EvalSpec, start: f64, end: f64) -> Report {
    let budget = crate::tier::round_sig((100.0 - spec.objective) / 100.0);
    let ctx = Ctx {
        series,
        budget,
        guard: spec.guard,
    };
    let step = spec.eval_interval.unwrap_or(1.0);
    let refine = spec.eval_interval.is_none();
    let stop = series.end();
    let budget_events = budget * series.mean_rate() * spec.period;
    let spent = |t: f64| {
        let (_, e1) = series.cumulative(t);
        let (_, e0) = series.cumulative(start);
        if budget_events > 0.0 {
            (e1 - e0) / budget_events
        } else {
            0.0
        }
    };
    let firing = |pred: &dyn Fn(f64) -> bool| {
        // Rule evaluations happen on a grid anchored at the series start.
        let from = if refine {
            start
        } else {
            series.start() + ((start - series.start()) / step).ceil() * step
        };
        let detected = first(pred, from, stop, step, true, refine);
        let reset = detected.and_then(|d| {
            let from = if refine {
                d.max(end)
            } else {
                d.max(series.start() + ((end - series.start()) / step).ceil() * step)
            };
            first(pred, from, stop, step, false, refine)
        });
        Firing {
            detected_after: detected.map(|d| d - start),
            reset_after: reset.map(|r| r - end),
            budget_at_detection: detected.map(spent),
        }
    };
    let (it, ie) = series.window(end, end - start);
    let ratio = if it > 0.0 { ie / it } else { 0.0 };
    let tiers = spec
        .tiers
        .iter()
        .map(|tier| TierOutcome {
            tier: *tier,
            firing: firing(&|t| ctx.fires(tier, t)),
            predicted_detection: (ratio > tier.factor * budget)
                .then(|| tier.factor * budget * tier.long.as_f64() / ratio),
        })
        .collect();
    let alerts = [Severity::Page, Severity::Ticket]
        .into_iter()
        .filter(|sev| spec.tiers.iter().any(|t| t.severity == *sev))
        .map(|sev| {
            let pred = |t: f64| {
                spec.tiers
                    .iter()
                    .filter(|x| x.severity == sev)
                    .any(|x| ctx.fires(x, t))
            };
            (sev, firing(&pred))
        })
        .collect();
    Report {
        tiers,
        alerts,
        budget_spent: spent(end),
        span: end - start,
    }
}

fn minutes(s: Option<f64>) -> String {
    match s {
        None => "never".into(),
        Some(s) if s < 60.0 => format!("{s:.2} s ({:.3} min)", s / 60.0),
        Some(s) if s < 7200.0 => format!("{:.3} min", s / 60.0),
        Some(s) => format!("{:.2} h", s / 3600.0),
    }
}

impl Report {
    /// The table: one row per tier, then one per alert.
    pub fn to_table(&self) -> String {
        let mut s = String::from(
            "| Alert | Long/short | Factor | Detection | Workbook formula | Reset after the incident | Budget spent at detection |\n|---|---|---|---|---|---|---|\n",
        );
        let pct = |b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.2}%", b * 100.0));
        for t in &self.tiers {
            s.push_str(&format!(
                "| {} tier | {}/{} | {} | {} | {} | {} | {} |\n",
                t.tier.severity,
                t.tier.long,
                t.tier.short,
                t.tier.factor,
                minutes(t.firing.detected_after),
                match t.predicted_detection {
                    Some(p) if p > self.span => format!("never (needs {})", minutes(Some(p))),
                    p => minutes(p),
                },
                if t.firing.detected_after.is_some() {
                    minutes(t.firing.reset_after)
                } else {
                    "-".into()
                },
                pct(t.firing.budget_at_detection),
            ));
        }
        for (sev, f) in &self.alerts {
            s.push_str(&format!(
                "| **{sev}** | any | | {} | | {} | {} |\n",
                minutes(f.detected_after),
                if f.detected_after.is_some() {
                    minutes(f.reset_after)
                } else {
                    "-".into()
                },
                pct(f.budget_at_detection),
            ));
        }
        s.push_str(&format!(
            "\nBudget spent by the whole incident: {:.2}%\n",
            self.budget_spent * 100.0
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Incident;

    fn run(
        error_ratio: f64,
        duration: f64,
        eval_interval: Option<f64>,
        guard: Option<MinEvents>,
        rate: f64,
    ) -> Report {
        let lead = 3.0 * 86_400.0;
        let inc = Incident {
            rate,
            error_ratio,
            duration,
            background: 0.0,
            lead,
            tail: 3.5 * 86_400.0,
        };
        let series = Series::synthetic(&inc);
        let spec = EvalSpec {
            objective: 99.9,
            period: 30.0 * 86_400.0,
            tiers: Tier::workbook(30),
            guard,
            eval_interval,
        };
        evaluate(&series, &spec, lead, lead + duration)
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn workbook_total_outage_pages_in_0_864_minutes_and_resets_in_5() {
        let r = run(1.0, 3600.0, None, None, 100.0);
        let page = &r.tiers[0];
        let d = page.firing.detected_after.unwrap();
        // 14.4 × 0.001 × 60 min = 0.864 min = 51.84 s.
        assert!(close(d, 51.84, 0.001), "{d}");
        assert!(close(page.predicted_detection.unwrap(), 51.84, 1e-9));
        // 2 % of the budget, the workbook's Table 5-8.
        assert!(close(page.firing.budget_at_detection.unwrap(), 0.02, 0.001));
        // Reset: the 5m window falls under 1.44 % after 5 min × (1 − 0.0144) = 295.68 s.
        assert!(
            close(page.firing.reset_after.unwrap(), 295.68, 0.001),
            "{:?}",
            page.firing
        );
        // The 6h/30m tier: 6 × 0.001 × 6 h = 129.6 s; tickets 3 × 0.001 × 1 d = 1 × 0.001 × 3 d = 259.2 s.
        for (i, want) in [(1, 129.6), (2, 259.2), (3, 259.2)] {
            let got = r.tiers[i].firing.detected_after.unwrap();
            assert!(close(got, want, 0.001), "tier {i}: {got}");
        }
        assert_eq!(r.alerts[0].0, Severity::Page);
        assert!(close(r.alerts[0].1.detected_after.unwrap(), 51.84, 0.001));
    }

    #[test]
    fn slow_burns_only_ticket() {
        // 0.2 % errors = a 2× burn: under 3× and 6×, over 1×: only the 3d/6h ticket tier,
        // after 1 × 0.001 × 3 d / 0.002 = 36 h.
        let r = run(0.002, 3.0 * 86_400.0, None, None, 100.0);
        assert_eq!(r.tiers[0].firing.detected_after, None);
        assert_eq!(r.tiers[1].firing.detected_after, None);
        assert_eq!(r.tiers[2].firing.detected_after, None);
        let d = r.tiers[3].firing.detected_after.unwrap();
        assert!(close(d, 36.0 * 3600.0, 0.001), "{d}");
        assert_eq!(r.alerts[0].1.detected_after, None);
    }

    #[test]
    fn an_eval_interval_quantises_detection() {
        let r = run(1.0, 3600.0, Some(60.0), None, 100.0);
        assert_eq!(r.tiers[0].firing.detected_after, Some(60.0));
    }

    #[test]
    fn the_guard_keeps_a_quiet_service_from_paging() {
        // 1 request per 100 s: the 1h window holds 36 events, fewer than the 70 it needs.
        let quiet = run(1.0, 600.0, None, Some(MinEvents::Auto), 0.01);
        assert_eq!(quiet.tiers[0].firing.detected_after, None);
        let unguarded = run(1.0, 600.0, None, None, 0.01);
        assert!(unguarded.tiers[0].firing.detected_after.is_some());
    }

    #[test]
    fn table_lists_tiers_and_alerts() {
        let t = run(1.0, 3600.0, None, None, 100.0).to_table();
        assert!(
            t.contains("| page tier | 1h/5m | 14.4 | 51.84 s (0.864 min) | 51.84 s (0.864 min) |"),
            "{t}"
        );
        assert!(t.contains("| **page** | any |"), "{t}");
        // A burn that stops before a tier's formula time is reported as such.
        let short = run(0.01, 6.0 * 3600.0, None, None, 100.0).to_table();
        assert!(
            short.contains("| ticket tier | 1d/2h | 3 | never | never (needs 7.20 h) |"),
            "{short}"
        );
    }
}
