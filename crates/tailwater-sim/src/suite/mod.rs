//! Named suites: scenarios, each with the goal a policy must meet in it, and a pass/fail table.
//!
//! `default-limit` is the bar an adaptive limit must clear to be the default (issue 16):
//!
//! - **do no harm**: a healthy service at 0.5× and 0.9× of its capacity, for service times
//!   lognormal with CV 0.25 / 0.5 / 1 / 2, exponential and bimodal (5 % of requests 10× slower:
//!   CV 1.6), on 4 / 48 / 500 workers, with mean service 2 ms / 30 ms / 300 ms. The figure is
//!   the share of requests the limiter sheds, over the whole run (warm-up from the algorithm's
//!   initial limit included). Goal: ≤ 0.5 % at 0.5×, ≤ 2 % at 0.9×. The client timeout is
//!   `max(1 s, 60 × mean service)`, so a healthy service does not time out;
//! - **overload**: `spike-10x`, `steady-2x`, uniform slowdowns ×2 / ×4 / ×8 at 0.6× and 0.9×
//!   load, `bottleneck-24` (the workers halve: the limit must fall), `cpu-thrash`, `drill-exp`
//!   (the drill's ramp on 8 workers at 40 ms exponential, where a standing queue must not
//!   ratchet the limit up), `small-pool-4w-5x` and `-10x` (4 workers at 20 ms, a sudden 5× or
//!   10× with a 500 ms client timeout: a limit floored far above the workers queues). Goal:
//!   goodput while overloaded ≥ 95 % of capacity and success p99 ≤ 2× the unloaded p99;
//! - **settle**: `step-1.4x`: the limit settles (±10 %) within 1 s of the step;
//! - **replicas**: four limiters, each its own instance of the policy, in front of one server
//!   behind round robin, 0.5× then 1.4×: aggregate goodput while overloaded ≥ 95 % and the
//!   sum of the four limits settles (±10 %) rather than oscillating;
//! - **tiers**: the policy with criticality tiers in `tiered-overload` (3×): its overload
//!   goodput within 2 points of the same policy without tiers (a tier's reservation holds
//!   only under contention, so it should cost little), and every tier's goodput at least that
//!   of every less important tier, counted over the requests that arrived while the load was
//!   at or above capacity; in `tiered-10x` the same order.
//!
//! Run it with `tailwater sim --suite default-limit` (release build: about 25 s for the eight
//! default policies, most of it in the 500-worker cells).

mod tables;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Serialize;

use crate::engine::{self, RunOptions};
use crate::error::SimError;
use crate::policy::PolicySpec;
use crate::report::{PolicyResult, goal};
use crate::scenario::{self, CapacityChange, Phase, Scenario, ServiceConfig, TierMix};

pub use tables::{no_harm_table, summary_table};

/// The names of the suites.
pub const SUITES: [&str; 1] = ["default-limit"];

/// The policies `default-limit` compares unless told otherwise: the reference algorithms and
/// tailwater's candidates.
pub const DEFAULT_LIMIT_POLICIES: [&str; 8] = [
    "static",
    "aimd",
    "gradient2",
    "gradient2-corrected-fast",
    "vegas",
    "envoy",
    "ll-guard",
    "headroom",
];

/// Do no harm: the largest share shed at 0.5× load.
pub const NO_HARM_SHED_HALF: f64 = 0.005;
/// Do no harm: the largest share shed at 0.9× load.
pub const NO_HARM_SHED_NINE: f64 = 0.02;
/// Tiers: the most overload goodput (share of capacity) they may cost in `tiered-overload`.
pub const TIERS_MAX_LOSS: f64 = 0.02;

/// What a policy must achieve in a check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Goal {
    /// Shed at most this share of attempts.
    NoHarm {
        /// The largest share shed.
        max_shed: f64,
    },
    /// Overload goodput ≥ 95 % of capacity and p99 ≤ 2× unloaded.
    Overload,
    /// The limit settles within 1 s of the scenario's step.
    Settle,
    /// Overload goodput ≥ 95 % of capacity, and the (summed) limit settles.
    Replicas,
    /// The policy with tiers: every tier served at least as well as every less important
    /// one, and (when `max_loss` is given) overload goodput within `max_loss` of the same
    /// policy without tiers.
    Tiers {
        /// The most overload goodput the tiers may cost, as a share of capacity.
        max_loss: Option<f64>,
    },
}

/// One scenario and its goal.
#[derive(Debug, Clone)]
pub struct Check {
    /// Which part of the suite (`no-harm`, `overload`, `settle`, `tiers`, `replicas`).
    pub group: &'static str,
    /// The scenario.
    pub scenario: Scenario,
    /// The goal.
    pub goal: Goal,
}

/// The checks of a suite by name.
pub fn suite(name: &str) -> Option<Vec<Check>> {
    match name {
        "default-limit" => Some(default_limit()),
        _ => None,
    }
}

/// The service-time shapes of the do-no-harm matrix: (label, config at mean 1 s).
fn no_harm_services() -> Vec<(&'static str, ServiceConfig)> {
    let logn = |cv: f64| ServiceConfig {
        dist: "lognormal".into(),
        mean: Duration::from_secs(1),
        cv: Some(cv),
        slow_fraction: None,
        slow_factor: None,
    };
    vec![
        ("logn0.25", logn(0.25)),
        ("logn0.5", logn(0.5)),
        ("logn1", logn(1.0)),
        ("logn2", logn(2.0)),
        (
            "exp",
            ServiceConfig {
                dist: "exponential".into(),
                cv: None,
                ..logn(1.0)
            },
        ),
        (
            "bimodal",
            ServiceConfig {
                dist: "bimodal".into(),
                slow_fraction: Some(0.05),
                slow_factor: Some(10.0),
                ..logn(0.5)
            },
        ),
    ]
}

/// How long a do-no-harm cell runs: enough samples for the slow cells, bounded for the fast
/// ones (a 500-worker, 2 ms cell handles 250 000 requests a second).
fn no_harm_duration(mean: Duration) -> Duration {
    match mean.as_millis() {
        0..=9 => Duration::from_secs(3),
        10..=99 => Duration::from_secs(20),
        _ => Duration::from_secs(120),
    }
}

/// One do-no-harm cell.
pub fn no_harm_cell(
    label: &str,
    service: &ServiceConfig,
    workers: i64,
    mean: Duration,
    load: f64,
) -> Scenario {
    let name = format!("no-harm {label} w{workers} {}ms {load}x", mean.as_millis());
    let mut s = Scenario::new(
        &name,
        "a healthy service below capacity: the limiter should shed nothing",
        vec![Phase::constant(no_harm_duration(mean), load)],
    );
    s.server.workers = workers;
    s.server.service = ServiceConfig {
        mean,
        ..service.clone()
    };
    s.client.timeout = Duration::from_secs(1).max(mean * 60);
    s.sample_interval = Duration::from_millis(10).max(mean / 3);
    s
}

fn overload(name: &str, description: &str, load: f64, slow: f64) -> Scenario {
    let mut s = Scenario::new(
        name,
        description,
        vec![Phase::constant(Duration::from_secs(10), load)],
    );
    s.capacity = vec![
        CapacityChange::speed(Duration::from_secs(3), 1.0 / slow),
        CapacityChange::speed(Duration::from_secs(8), 1.0),
    ];
    s
}

/// `tailwater drill --service-dist exponential` in the simulator: 8 workers at 40 ms
/// exponential (200 requests/s), the drill's criticality mix and its load phases 0.5×, 1×,
/// 2×, 5×, 10× of 6 s each. Twenty-four seconds at or over capacity: long enough for a
/// baseline learned from queued windows to let the limit creep up.
pub fn drill_exponential() -> Scenario {
    let mut s = Scenario::new(
        "drill-exp",
        "the drill's ramp on 8 workers at 40 ms exponential: 0.5x, 1x, 2x, 5x, 10x for 6 s each",
        [0.5, 1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|load| Phase::constant(Duration::from_secs(6), load))
            .collect(),
    );
    s.server.workers = 8;
    s.server.service = ServiceConfig {
        dist: "exponential".into(),
        mean: Duration::from_millis(40),
        cv: None,
        slow_fraction: None,
        slow_factor: None,
    };
    s.mix = TierMix {
        critical_plus: 0.1,
        critical: 0.5,
        sheddable_plus: 0.25,
        sheddable: 0.15,
    };
    s
}

/// A small pool under sudden overload: 4 workers at 20 ms (lognormal, CV 0.5: 200
/// requests/s), 1 s at 0.5× then `load` for 6 s, clients that give up after 500 ms. Found on
/// real sockets (`tailwater drill --target` against `tailwater backend --workers 4
/// --service-time 20ms`): a limit held at a floor of 20, five times the workers, keeps a
/// queue of four service times behind every request, and a slow start that overshoots to 40
/// puts the successes' p99 past the clients' timeout.
pub fn small_pool(load: f64) -> Scenario {
    let mut s = Scenario::new(
        &format!("small-pool-4w-{load}x"),
        "4 workers x 20 ms, 0.5x for 1 s then a sudden overload for 6 s; 500 ms client timeout",
        vec![
            Phase::constant(Duration::from_secs(1), 0.5),
            Phase::constant(Duration::from_secs(6), load),
        ],
    );
    s.server.workers = 4;
    s.server.service.mean = Duration::from_millis(20);
    s.client.timeout = Duration::from_millis(500);
    s
}

/// `tiered-overload` at 10× instead of 3×: the critical tiers alone (50 % of the traffic)
/// ask for 5× the capacity, so a less important request served is a more important one
/// refused.
pub fn tiered_10x() -> Scenario {
    let mut s = scenario::builtin("tiered-overload").expect("a built-in scenario");
    s.name = "tiered-10x".into();
    s.description =
        "10x load with the criticality mix 10/40/25/25%: shedding must follow the tiers".into();
    s.phase[1].load = 10.0;
    s
}

fn default_limit() -> Vec<Check> {
    let mut out = Vec::new();
    for (label, service) in no_harm_services() {
        for workers in [4, 48, 500] {
            for mean_ms in [2, 30, 300] {
                for (load, max_shed) in [(0.5, NO_HARM_SHED_HALF), (0.9, NO_HARM_SHED_NINE)] {
                    out.push(Check {
                        group: "no-harm",
                        scenario: no_harm_cell(
                            label,
                            &service,
                            workers,
                            Duration::from_millis(mean_ms),
                            load,
                        ),
                        goal: Goal::NoHarm { max_shed },
                    });
                }
            }
        }
    }
    let builtin = |name: &str| scenario::builtin(name).expect("a built-in scenario");
    for name in ["spike-10x", "steady-2x"] {
        out.push(Check {
            group: "overload",
            scenario: builtin(name),
            goal: Goal::Overload,
        });
    }
    for slow in [2.0, 4.0, 8.0] {
        for load in [0.6, 0.9] {
            out.push(Check {
                group: "overload",
                scenario: overload(
                    &format!("slowdown-{slow}x@{load}"),
                    "the service becomes uniformly slower from 3 s to 8 s; the workers stay",
                    load,
                    slow,
                ),
                goal: Goal::Overload,
            });
        }
    }
    let mut bottleneck = Scenario::new(
        "bottleneck-24",
        "0.7x load; from 3 s on only 24 of the 48 workers remain (1.4x): the limit must fall",
        vec![Phase::constant(Duration::from_secs(10), 0.7)],
    );
    bottleneck.capacity = vec![CapacityChange {
        at: Duration::from_secs(3),
        factor: 1.0,
        workers: Some(24),
    }];
    out.push(Check {
        group: "overload",
        scenario: bottleneck,
        goal: Goal::Overload,
    });
    out.push(Check {
        group: "overload",
        scenario: builtin("cpu-thrash"),
        goal: Goal::Overload,
    });
    out.push(Check {
        group: "overload",
        scenario: drill_exponential(),
        goal: Goal::Overload,
    });
    for load in [5.0, 10.0] {
        out.push(Check {
            group: "overload",
            scenario: small_pool(load),
            goal: Goal::Overload,
        });
    }
    out.push(Check {
        group: "settle",
        scenario: builtin("step-1.4x"),
        goal: Goal::Settle,
    });
    out.push(Check {
        group: "tiers",
        scenario: builtin("tiered-overload"),
        goal: Goal::Tiers {
            max_loss: Some(TIERS_MAX_LOSS),
        },
    });
    out.push(Check {
        group: "tiers",
        scenario: tiered_10x(),
        goal: Goal::Tiers { max_loss: None },
    });
    let mut replicas = builtin("step-1.4x");
    replicas.name = "replicas-4".into();
    replicas.description =
        "4 limiters behind round robin in front of one 48-worker server, 0.5x then 1.4x".into();
    replicas.replicas = 4;
    out.push(Check {
        group: "replicas",
        scenario: replicas,
        goal: Goal::Replicas,
    });
    out
}

/// Gives every check's scenario `seed` (`tailwater sim --suite ... --seed N`): the suite's
/// scenarios are built with seed 1, and a figure that holds for one seed only is luck.
pub fn reseed(checks: &mut [Check], seed: u64) {
    for c in checks {
        c.scenario.seed = seed;
    }
}

/// How one policy did in one check.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The policy.
    pub policy: String,
    /// Whether the goal is met.
    pub pass: bool,
    /// The figure in short (`0.3%`, `97.1% 1.2x`, `0.22s`).
    pub figure: String,
    /// Share of attempts shed.
    pub shed: f64,
    /// The full result.
    #[serde(skip)]
    pub result: PolicyResult,
}

/// One check and every policy's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The group.
    pub group: &'static str,
    /// Scenario name.
    pub name: String,
    /// The goal.
    pub goal: Goal,
    /// One per policy, in order.
    pub outcomes: Vec<Outcome>,
}

/// A tier's goodput as the tiers check judges it: over the requests that arrived while the
/// load was at or above capacity (the whole run's if there were none).
fn tier_goodput(t: &crate::report::TierResult) -> f64 {
    t.overload_goodput.unwrap_or(t.goodput)
}

/// Whether every tier's goodput under overload is at least that of every less important
/// tier, up to sampling noise: a less important tier is ahead only if by more than two
/// standard errors of the difference of the two shares. Under overload only: in the unloaded
/// phases every tier is served, and which tier got a little more of that is chance
/// (`sheddable` 3 % against `sheddable_plus` 2 % over a whole `tiered-overload` run). The
/// noise term is for the few requests of every tier served in the first milliseconds of the
/// overload, before anything contends (`static` and `aimd` in `tiered-10x` served both
/// sheddable tiers 0.0 % to one decimal, yet failed the exact comparison); a tier served a
/// point more than a more important one fails.
fn tiers_in_order(r: &PolicyResult) -> bool {
    r.tiers.windows(2).all(|w| {
        let (more, less) = (&w[0], &w[1]);
        let n = |t: &crate::report::TierResult| {
            (if t.overload_goodput.is_some() {
                t.overload_offered
            } else {
                t.offered
            })
            .max(1) as f64
        };
        let (p1, p2) = (tier_goodput(more), tier_goodput(less));
        let pooled = (p1 * n(more) + p2 * n(less)) / (n(more) + n(less));
        let se = (pooled * (1.0 - pooled) * (1.0 / n(more) + 1.0 / n(less))).sqrt();
        p1 + 2.0 * se >= p2
    })
}

/// `r` run with tiers, `plain` the same policy without (for [`Goal::Tiers`]).
fn judge(goal: Goal, r: PolicyResult, plain: Option<&PolicyResult>) -> Outcome {
    let shed = r.shed_total as f64 / r.attempts.max(1) as f64;
    let gp = r.overload_goodput.unwrap_or(0.0);
    let (pass, figure) = match goal {
        Goal::NoHarm { max_shed } => (shed <= max_shed, format!("{:.2}%", shed * 100.0)),
        Goal::Overload => (
            r.meets_overload_goal(),
            format!("{:.1}% {:.1}x", gp * 100.0, r.p99_ratio),
        ),
        Goal::Settle => (
            r.mean_limit.is_some() && r.meets_convergence_goal(),
            match r.convergence_s {
                Some(c) => format!("{c:.2}s L={:.0}", r.settled_limit.unwrap_or(0.0)),
                None => "never".into(),
            },
        ),
        Goal::Tiers { max_loss } => {
            let order = tiers_in_order(&r);
            let base = plain.and_then(|p| p.overload_goodput);
            let within = match (max_loss, base) {
                (Some(max), Some(b)) => gp >= b - max,
                (Some(_), None) => false,
                (None, _) => true,
            };
            let tiers: Vec<String> = r
                .tiers
                .iter()
                .map(|t| format!("{:.1}", tier_goodput(t) * 100.0))
                .collect();
            (
                order && within,
                format!(
                    "{:.1}%{} tiers in overload {}%{}",
                    gp * 100.0,
                    base.map_or(String::new(), |b| format!(" vs {:.1}%", b * 100.0)),
                    tiers.join("/"),
                    if order { "" } else { " out of order" }
                ),
            )
        }
        Goal::Replicas => {
            let settled = r.mean_limit.is_some() && r.convergence_s.is_some();
            (
                gp >= goal::GOODPUT && settled,
                format!(
                    "{:.1}% {:.1}x sum {}",
                    gp * 100.0,
                    r.p99_ratio,
                    r.convergence_s
                        .map_or("never settles".to_string(), |c| format!("settles {c:.2}s"))
                ),
            )
        }
    };
    Outcome {
        policy: r.policy.clone(),
        pass,
        figure,
        shed,
        result: r,
    }
}

/// Runs every policy through every check (checks whose group is not in `groups`, when given,
/// are skipped).
pub fn run(
    checks: &[Check],
    policies: &[PolicySpec],
    groups: &[String],
) -> Result<Vec<CheckResult>, SimError> {
    let mut out = Vec::new();
    for c in checks {
        if !groups.is_empty() && !groups.iter().any(|g| g == c.group) {
            continue;
        }
        let outcomes = policies
            .iter()
            .map(|p| run_one(c, p))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(CheckResult {
            group: c.group,
            name: c.scenario.name.clone(),
            goal: c.goal,
            outcomes,
        });
    }
    Ok(out)
}

/// One policy in one check: a [`Goal::Tiers`] check runs it with tiers (its name gains
/// `+tiers` if it had none) and, for the comparison, without.
fn run_one(c: &Check, p: &PolicySpec) -> Result<Outcome, SimError> {
    let Goal::Tiers { max_loss } = c.goal else {
        return engine::run(&c.scenario, p, RunOptions::default()).map(|r| judge(c.goal, r, None));
    };
    let mut tiered = p.clone();
    if !tiered.tiers {
        tiered.tiers = true;
        tiered.name = format!("{}+tiers", p.name);
    }
    let plain = match max_loss {
        Some(_) => {
            let mut plain = p.clone();
            plain.tiers = false;
            Some(engine::run(&c.scenario, &plain, RunOptions::default())?)
        }
        None => None,
    };
    let r = engine::run(&c.scenario, &tiered, RunOptions::default())?;
    let mut o = judge(c.goal, r, plain.as_ref());
    o.policy = p.name.clone();
    Ok(o)
}
