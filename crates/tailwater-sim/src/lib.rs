//! # tailwater-sim
//!
//! A deterministic discrete-event simulator that drives the *real* tailwater-core limiters,
//! algorithms and wait queues on virtual time (a [`ManualClock`]), to measure admission
//! policies under overload before production, and the queueing formulas of `tailwater plan`.
//!
//! - [`scenario`]: workloads (arrival processes, load schedules, service times, capacity
//!   changes, client timeouts and retries, criticality mix), built in or from TOML;
//! - [`policy`]: which limiter sits in front of the server (`gradient2-corrected+codel`, ...);
//! - [`engine`]: the event loop; [`report`]: results, tables, CSV and SVG;
//! - [`suite`]: named suites of scenarios with goals (`default-limit`: may a limit be the default?);
//! - [`balance`]: several endpoints behind tailwater-core's balancer (P2C over PeakEWMA,
//!   least request, round robin), one of them slow;
//! - [`theory`]: Little, Erlang B/C, Kingman, Allen–Cunneen, M/M/c/K, server sizing.
//!   (They live here rather than in tailwater-core because the planner and its validation
//!   are their only users so far.)
//!
//! Randomness is xoshiro256++ ([`rng`]), seeded per scenario, with separate streams for
//! arrivals and service times, so every policy sees the same arrivals and the same seed
//! gives byte-identical results.
//!
//! ```
//! use tailwater_sim::{engine::RunOptions, policy::PolicySpec, scenario};
//! let mut s = scenario::builtin("step-1.4x").unwrap();
//! s.phase.truncate(1); // keep the doctest short
//! s.step_at = None;
//! let r = tailwater_sim::engine::run(&s, &PolicySpec::parse("static").unwrap(), RunOptions::default()).unwrap();
//! assert!(r.successes > 0);
//! ```
//!
//! [`ManualClock`]: tailwater_core::clock::ManualClock
#![forbid(unsafe_code)]

pub mod balance;
pub mod dist;
pub mod engine;
pub mod error;
pub mod outbound;
pub mod plan;
pub mod policy;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod suite;
mod text;
pub mod theory;

use std::time::Duration;

pub use error::SimError;
pub use report::{PolicyResult, ScenarioResult};
pub use scenario::Scenario;

use engine::RunOptions;
use policy::PolicySpec;

/// The policies a scenario compares: its own list, or the standard lineup.
pub fn policies_for(scenario: &Scenario) -> Result<Vec<PolicySpec>, SimError> {
    match &scenario.policies {
        Some(list) => list.iter().map(|p| PolicySpec::parse(p)).collect(),
        None => policy::LINEUP
            .iter()
            .map(|p| PolicySpec::parse(p))
            .collect(),
    }
}

/// Runs every policy through a scenario.
pub fn run_scenario(
    scenario: &Scenario,
    policies: &[PolicySpec],
    opts: RunOptions,
) -> Result<ScenarioResult, SimError> {
    let results = policies
        .iter()
        .map(|p| engine::run(scenario, p, opts))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScenarioResult::new(scenario, results))
}

/// What the simulator measured for a planner model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Measured {
    /// Requests that started service.
    pub served: u64,
    /// Mean wait before service, seconds.
    pub wait_mean: f64,
    /// Wait p99, seconds.
    pub wait_p99: f64,
    /// Mean response time, seconds.
    pub response_mean: f64,
    /// Response p99, seconds.
    pub response_p99: f64,
    /// Fraction of arrivals turned away (bounded queue).
    pub blocked: f64,
    /// Requests completed per second.
    pub throughput: f64,
}

/// Simulates a planner model: `c` workers, gamma inter-arrival times (CV `ca`; exponential
/// for 1) and service times of the shape the planner assumes for its quantiles (CV `cs`:
/// constant for 0, exponential for 1, lognormal otherwise), for about `arrivals` arrivals,
/// with no client timeout. A queue bound K becomes a fixed limit of c with a FIFO of K
/// waiters in front (M/M/c/K).
pub fn simulate_model(m: &theory::Model, arrivals: u64, seed: u64) -> Result<Measured, SimError> {
    m.validate()?;
    let mut s = Scenario::new(
        "plan-validate",
        "",
        vec![scenario::Phase {
            duration: Duration::from_secs_f64(arrivals as f64 / m.rate),
            load: 1.0,
            ramp_to: None,
        }],
    );
    s.seed = seed;
    s.sample_interval = Duration::from_secs_f64((arrivals as f64 / m.rate / 10.0).max(0.001));
    s.server.workers = i64::try_from(m.servers).unwrap_or(i64::MAX);
    let dist = if m.cs == 0.0 {
        "constant"
    } else if (m.cs - 1.0).abs() < 1e-9 {
        "exponential"
    } else {
        "lognormal"
    };
    s.server.service = scenario::ServiceConfig {
        dist: dist.into(),
        mean: Duration::from_secs_f64(m.service),
        cv: Some(m.cs),
        slow_fraction: None,
        slow_factor: None,
    };
    s.arrival.process = "gamma".into();
    s.arrival.cv = Some(m.ca);
    s.arrival.rate = Some(m.rate);
    s.client.timeout = Duration::from_secs(1_000_000_000);
    let policy = match m.queue_bound {
        None => PolicySpec::parse("none")?,
        Some(k) => PolicySpec::parse(&format!("static:{}+fifo:{}", m.servers, k.max(1)))?,
    };
    if m.queue_bound == Some(0) {
        // No waiting room at all: a fixed limit of c that rejects at once.
        let p = PolicySpec::parse(&format!("static:{}", m.servers))?;
        return measured(&s, &p);
    }
    measured(&s, &policy)
}

fn measured(s: &Scenario, p: &PolicySpec) -> Result<Measured, SimError> {
    let r = engine::run(s, p, RunOptions::default())?;
    Ok(Measured {
        served: r.admitted,
        wait_mean: r.wait_mean_ms / 1e3,
        wait_p99: r.wait.p99_ms / 1e3,
        response_mean: r.response_mean_ms / 1e3,
        response_p99: r.latency.p99_ms / 1e3,
        blocked: if r.attempts > 0 {
            r.shed_total as f64 / r.attempts as f64
        } else {
            0.0
        },
        throughput: r.successes as f64 / s.duration().as_secs_f64(),
    })
}
