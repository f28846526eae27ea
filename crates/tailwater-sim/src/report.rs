//! Results, the comparison table, CSV and SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use tailwater_chart::{Axis, LineChart, Series};

use crate::scenario::Scenario;

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Quantiles {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// Goodput of one criticality tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierResult {
    /// Tier name.
    pub tier: String,
    /// Requests offered.
    pub offered: u64,
    /// Requests that succeeded before their client's timeout.
    pub successes: u64,
    /// successes / offered.
    pub goodput: f64,
    /// Requests that arrived while the offered load was at or above capacity.
    pub overload_offered: u64,
    /// The share of those that succeeded (none without overload): the tiers' order under
    /// contention, which the whole run's `goodput` blurs with the unloaded phases (at 0.5×
    /// every tier is served, and that share differs between tiers by chance).
    pub overload_goodput: Option<f64>,
}

/// One point of the time series (one sample interval).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// End of the interval, seconds.
    pub t: f64,
    /// The limiter's limit (0 without a limiter).
    pub limit: usize,
    /// Requests in flight (holding a permit, or in the server without a limiter).
    pub in_flight: usize,
    /// Waiters in the limiter's queue.
    pub limiter_queue: usize,
    /// Requests in the server's own FIFO.
    pub server_queue: usize,
    /// Attempts per second in the interval.
    pub offered_rps: f64,
    /// Successes per second in the interval.
    pub goodput_rps: f64,
    /// The server's capacity in the interval.
    pub capacity_rps: f64,
    /// Mean latency of the successes that completed in the interval.
    pub mean_latency_ms: f64,
    /// Whether the scheduled load was at or above capacity.
    pub overloaded: bool,
}

/// Everything measured for one policy in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyResult {
    /// Policy name.
    pub policy: String,
    /// Requests offered by clients (first attempts).
    pub offered: u64,
    /// Attempts, retries included.
    pub attempts: u64,
    /// Retries.
    pub retries: u64,
    /// Attempts admitted to the server.
    pub admitted: u64,
    /// Requests that completed before their client's timeout (goodput).
    pub successes: u64,
    /// successes per second of the whole run.
    pub goodput_rps: f64,
    /// successes / offered.
    pub goodput_ratio: f64,
    /// Successes during overloaded intervals / capacity × their length.
    pub overload_goodput: Option<f64>,
    /// Attempts shed by the limiter.
    pub shed_total: u64,
    /// Shed attempts by reason.
    pub shed: BTreeMap<String, u64>,
    /// Attempts whose client gave up.
    pub timeouts: u64,
    /// Server seconds spent on requests whose client had given up.
    pub wasted_work_s: f64,
    /// wasted / all server work.
    pub wasted_fraction: f64,
    /// Latency of successes (arrival of the attempt to completion).
    pub latency: Quantiles,
    /// p99 of the service times of all attempts at the speed of their arrival (no waiting):
    /// the unloaded p99, the same for every policy of a scenario without retries.
    pub unloaded_p99_ms: f64,
    /// latency p99 / unloaded p99.
    pub p99_ratio: f64,
    /// Mean time from arrival to the start of service, over started requests.
    pub wait_mean_ms: f64,
    /// Waiting time quantiles, over started requests.
    pub wait: Quantiles,
    /// Mean response time of successes.
    pub response_mean_ms: f64,
    /// Goodput per tier.
    pub tiers: Vec<TierResult>,
    /// attempts / offered.
    pub retry_amplification: f64,
    /// Seconds after the step until the limit stays within ±10 % of its settled value.
    pub convergence_s: Option<f64>,
    /// The settled limit after the step.
    pub settled_limit: Option<f64>,
    /// Time-averaged limit.
    pub mean_limit: Option<f64>,
    /// Most requests in the server at once.
    pub peak_in_flight: usize,
    /// Events processed.
    pub events: u64,
    /// The time series (only when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Point>,
}

/// The goal the instrument exists for.
pub mod goal {
    /// Overload goodput must reach this fraction of capacity.
    pub const GOODPUT: f64 = 0.95;
    /// Admitted p99 at most this many times the unloaded p99.
    pub const P99_RATIO: f64 = 2.0;
    /// Convergence after a step, seconds.
    pub const CONVERGENCE_S: f64 = 1.0;
}

impl PolicyResult {
    /// Whether the goodput and latency parts of the goal are met.
    pub fn meets_overload_goal(&self) -> bool {
        self.overload_goodput.is_some_and(|g| g >= goal::GOODPUT)
            && self.successes > 0
            && self.p99_ratio <= goal::P99_RATIO
    }

    /// Whether the convergence part of the goal is met.
    pub fn meets_convergence_goal(&self) -> bool {
        self.convergence_s.is_some_and(|c| c <= goal::CONVERGENCE_S)
    }
}

/// A scenario's description in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioSummary {
    /// Name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Seed.
    pub seed: u64,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Nominal capacity.
    pub capacity_rps: f64,
}

impl ScenarioSummary {
    /// From a scenario.
    pub fn of(s: &Scenario) -> Self {
        Self {
            name: s.name.clone(),
            description: s.description.clone(),
            seed: s.seed,
            duration_s: s.duration().as_secs_f64(),
            capacity_rps: s.capacity_rps(),
        }
    }
}

/// All policies of one scenario, and the best.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: ScenarioSummary,
    /// One result per policy, in the order given.
    pub policies: Vec<PolicyResult>,
    /// The best policy: among those with p99 ≤ 2× unloaded, the highest overload goodput
    /// (goodput ratio when never overloaded); if none keeps the latency, the highest goodput.
    /// With several criticality tiers, tier goodputs decide first, most important tier
    /// first (rounded to 1 %), as tiered shedding promises.
    pub best: Option<String>,
    /// The best policy with an adaptive limit (not `none`, not `static`), by the same rule.
    pub best_adaptive: Option<String>,
    /// Whether the step scenario measured convergence.
    pub has_step: bool,
}

impl ScenarioResult {
    /// Picks the best policy.
    pub fn new(scenario: &Scenario, policies: Vec<PolicyResult>) -> Self {
        let score = |p: &PolicyResult| p.overload_goodput.unwrap_or(p.goodput_ratio);
        let tiers = |p: &PolicyResult| -> Vec<i64> {
            if p.tiers.len() > 1 {
                p.tiers
                    .iter()
                    .map(|t| (t.goodput * 100.0).round() as i64)
                    .collect()
            } else {
                Vec::new()
            }
        };
        let pick = |pool: Vec<&PolicyResult>| {
            pool.into_iter()
                .max_by(|a, b| {
                    tiers(a)
                        .cmp(&tiers(b))
                        .then(score(a).total_cmp(&score(b)))
                        .then(b.latency.p99_ms.total_cmp(&a.latency.p99_ms))
                })
                .map(|p| p.policy.clone())
        };
        let choose = |pool: Vec<&PolicyResult>| {
            let fast: Vec<&PolicyResult> = pool
                .iter()
                .copied()
                .filter(|p| p.successes > 0 && p.p99_ratio <= goal::P99_RATIO)
                .collect();
            if fast.is_empty() {
                pick(pool)
            } else {
                pick(fast)
            }
        };
        let best = choose(policies.iter().collect());
        let best_adaptive = choose(
            policies
                .iter()
                .filter(|p| p.policy != "none" && !p.policy.starts_with("static"))
                .collect(),
        );
        Self {
            scenario: ScenarioSummary::of(scenario),
            has_step: scenario.step_at.is_some(),
            policies,
            best,
            best_adaptive,
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn ms(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.2}s", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0}ms")
    } else {
        format!("{x:.1}ms")
    }
}

/// The comparison table of one scenario, as printed by `tailwater sim`.
pub fn table(r: &ScenarioResult) -> String {
    let s = &r.scenario;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} — {} (capacity {:.0} req/s, {:.0} s, seed {})",
        s.name, s.description, s.capacity_rps, s.duration_s, s.seed
    );
    let mut header = vec![
        "policy", "goodput", "ovl-gp", "p50", "p99", "p99.9", "p99/unl", "shed", "t/o", "waste",
        "amp", "limit",
    ];
    if r.has_step {
        header.push("conv");
    }
    let tiered = r.policies.first().is_some_and(|p| p.tiers.len() > 1);
    if tiered {
        header.push("tier goodput (c+/c/s+/s)");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for p in &r.policies {
        let attempts = p.attempts.max(1) as f64;
        let mut row = vec![
            format!(
                "{}{}",
                p.policy,
                if r.best.as_deref() == Some(p.policy.as_str()) {
                    " *"
                } else {
                    ""
                }
            ),
            pct(p.goodput_ratio),
            p.overload_goodput.map_or("-".into(), pct),
            ms(p.latency.p50_ms),
            ms(p.latency.p99_ms),
            ms(p.latency.p999_ms),
            format!("{:.1}x", p.p99_ratio),
            pct(p.shed_total as f64 / attempts),
            pct(p.timeouts as f64 / attempts),
            pct(p.wasted_fraction),
            format!("{:.2}", p.retry_amplification),
            p.mean_limit.map_or("-".into(), |l| format!("{l:.0}")),
        ];
        if r.has_step {
            row.push(match (p.convergence_s, p.mean_limit) {
                (_, None) => "-".into(),
                (Some(c), _) => format!("{c:.2}s"),
                (None, _) => "never".into(),
            });
        }
        if tiered {
            row.push(
                p.tiers
                    .iter()
                    .map(|t| format!("{:.0}", t.goodput * 100.0))
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
    let verdict = |name: &str| -> String {
        let Some(p) = r.policies.iter().find(|p| p.policy == name) else {
            return String::new();
        };
        let mut v = Vec::new();
        if p.overload_goodput.is_some() {
            v.push(if p.meets_overload_goal() {
                "meets the goal (overload goodput >= 95% of capacity, p99 <= 2x unloaded)"
            } else {
                "misses the goal (overload goodput >= 95% of capacity, p99 <= 2x unloaded)"
            });
        }
        if r.has_step {
            v.push(if p.meets_convergence_goal() {
                "converges within 1 s"
            } else {
                "does not converge within 1 s"
            });
        }
        if v.is_empty() {
            String::new()
        } else {
            format!(": {}", v.join("; "))
        }
    };
    if let Some(best) = &r.best {
        let _ = writeln!(out, "best: {best}{}", verdict(best));
    }
    if let Some(best) = &r.best_adaptive
        && r.best.as_ref() != Some(best)
    {
        let _ = writeln!(out, "best adaptive: {best}{}", verdict(best));
    }
    out
}

/// The goal, per policy: overload goodput and p99 ratio in `spike-10x` and
/// `drastic-slowdown`, convergence in `step-1.4x` (whichever of them were run).
pub fn goal_matrix(results: &[ScenarioResult]) -> Option<String> {
    let find = |name: &str| results.iter().find(|r| r.scenario.name == name);
    let spike = find("spike-10x");
    let slow = find("drastic-slowdown");
    let step = find("step-1.4x");
    let first = spike.or(slow).or(step)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== goal: spike-10x and drastic-slowdown with overload goodput >= 95% of capacity and p99 <= 2x unloaded; step-1.4x converging within 1 s"
    );
    let cell = |r: Option<&ScenarioResult>, policy: &str| -> String {
        let Some(p) = r.and_then(|r| r.policies.iter().find(|p| p.policy == policy)) else {
            return "n/a".into();
        };
        format!(
            "{} {:>6} {:>5}",
            if p.meets_overload_goal() {
                "yes"
            } else {
                "no "
            },
            p.overload_goodput.map_or("-".into(), pct),
            format!("{:.1}x", p.p99_ratio)
        )
    };
    let conv = |policy: &str| -> String {
        let Some(p) = step.and_then(|r| r.policies.iter().find(|p| p.policy == policy)) else {
            return "n/a".into();
        };
        match (p.mean_limit, p.convergence_s) {
            (None, _) => "no limit".into(),
            (Some(_), Some(c)) => format!(
                "{} {c:.2}s",
                if c <= goal::CONVERGENCE_S {
                    "yes"
                } else {
                    "no "
                }
            ),
            (Some(_), None) => "no  never".into(),
        }
    };
    let mut rows = vec![vec![
        "policy".to_string(),
        "spike-10x".into(),
        "drastic-slowdown".into(),
        "step-1.4x conv".into(),
        "all".into(),
    ]];
    for p in &first.policies {
        let name = p.policy.as_str();
        let ok = |r: Option<&ScenarioResult>| {
            r.and_then(|r| r.policies.iter().find(|x| x.policy == name))
                .is_some_and(PolicyResult::meets_overload_goal)
        };
        let conv_ok = step
            .and_then(|r| r.policies.iter().find(|x| x.policy == name))
            .is_some_and(|x| x.mean_limit.is_some() && x.meets_convergence_goal());
        rows.push(vec![
            name.to_string(),
            cell(spike, name),
            cell(slow, name),
            conv(name),
            if ok(spike) && ok(slow) && conv_ok {
                "MET"
            } else {
                "-"
            }
            .into(),
        ]);
    }
    out.push_str(&crate::text::text_table(&rows, false));
    Some(out)
}

/// Column legend printed under the tables.
pub const LEGEND: &str = "goodput = successes before the client timeout / requests offered; ovl-gp = successes while the \
scheduled load is at or above capacity / (capacity x that time); p50..p99.9 = latency of successes; p99/unl = p99 / \
p99 of service time alone; shed, t/o (client timeouts) = share of attempts; waste = server time spent on requests \
whose client had left; amp = attempts per request; limit = time-averaged limit; conv = time after the step until the \
limit stays within +-10% of its settled value; * = best (highest ovl-gp among policies with p99 <= 2x unloaded; \
with several tiers, tier goodputs first); best adaptive = the same among policies with an adaptive limit (static is \
an oracle that knows the worker count).";

/// The time series of one policy as CSV.
pub fn series_csv(p: &PolicyResult) -> String {
    let mut out = String::from(
        "t_s,limit,in_flight,limiter_queue,server_queue,offered_rps,goodput_rps,capacity_rps,mean_latency_ms,overloaded\n",
    );
    for pt in &p.series {
        let _ = writeln!(
            out,
            "{:.3},{},{},{},{},{:.1},{:.1},{:.1},{:.3},{}",
            pt.t,
            pt.limit,
            pt.in_flight,
            pt.limiter_queue,
            pt.server_queue,
            pt.offered_rps,
            pt.goodput_rps,
            pt.capacity_rps,
            pt.mean_latency_ms,
            u8::from(pt.overloaded)
        );
    }
    out
}

/// One summary row per scenario and policy, as CSV.
pub fn summary_csv(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "scenario,policy,offered,attempts,admitted,successes,goodput_ratio,overload_goodput,shed,timeouts,wasted_fraction,p50_ms,p99_ms,p999_ms,p99_ratio,retry_amplification,convergence_s,mean_limit\n",
    );
    for r in results {
        for p in &r.policies {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{:.4},{},{},{},{:.4},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}",
                r.scenario.name,
                p.policy,
                p.offered,
                p.attempts,
                p.admitted,
                p.successes,
                p.goodput_ratio,
                p.overload_goodput
                    .map_or(String::new(), |g| format!("{g:.4}")),
                p.shed_total,
                p.timeouts,
                p.wasted_fraction,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.p999_ms,
                p.p99_ratio,
                p.retry_amplification,
                p.convergence_s.map_or(String::new(), |c| format!("{c:.3}")),
                p.mean_limit.map_or(String::new(), |l| format!("{l:.1}")),
            );
        }
    }
    out
}

/// An SVG with, per scenario, the limit and the mean latency of every policy over time.
/// Policies without a time series are skipped.
pub fn plot(results: &[ScenarioResult]) -> String {
    let mut charts = Vec::new();
    for r in results {
        let with: Vec<&PolicyResult> = r.policies.iter().filter(|p| !p.series.is_empty()).collect();
        charts.push(
            LineChart::new(
                format!("{}: limit (in-flight without a limiter)", r.scenario.name),
                Axis::linear("seconds"),
                Axis::linear("requests"),
            )
            .extend(with.iter().map(|p| {
                let pts = p
                    .series
                    .iter()
                    .map(|pt| {
                        let v = if p.mean_limit.is_some() {
                            pt.limit
                        } else {
                            pt.in_flight
                        };
                        (pt.t, v as f64)
                    })
                    .collect();
                Series::new(p.policy.clone(), pts)
            })),
        );
        charts.push(
            LineChart::new(
                format!("{}: mean latency of successes (log scale)", r.scenario.name),
                Axis::linear("seconds"),
                Axis::log("ms"),
            )
            .extend(with.iter().map(|p| {
                let pts = p
                    .series
                    .iter()
                    .filter(|pt| pt.mean_latency_ms > 0.0)
                    .map(|pt| (pt.t, pt.mean_latency_ms))
                    .collect();
                Series::new(p.policy.clone(), pts)
            })),
        );
    }
    LineChart::stack(&charts)
}
