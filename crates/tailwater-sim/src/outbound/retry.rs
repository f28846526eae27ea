//! `retry-storm`, side by side: no retries, naive ×3, the SRE book's 10 % token bucket, the
//! Finagle / Linkerd budget defaults modelled with tailwater-core's shared
//! [`RetryBudget`](tailwater_core::outbound::RetryBudget), and the whole tailwater client
//! (budget, pushback against the deadline, adaptive throttle in front), each through the same
//! server, limiter and arrivals.
//!
//! **The storm.** The built-in `retry-storm` holds 1.5× for 4 s: too short for retries to
//! take over (naive ×3 reached 2.40× over the run, the premise is ≥ 2.5×). Here its
//! overload lasts [`OVERLOAD_S`] s at the same depth (1.5×), the phases before and after
//! unchanged: a storm that lasts long enough for every client to be retrying. The built-in
//! (used by the server-side suite) is not changed.
//!
//! **The tailwater client** is what the tower stack does (throttle → retry): the request's
//! deadline covers every attempt ([`DEADLINE`], 3 × the 500 ms per-try timeout: Envoy's route
//! `timeout` over `per_try_timeout`, gRPC's call deadline); the limiter's `Retry-After` is the
//! floor of the delay and a retry that would outlast the deadline is not made (gRPC A6); the
//! SRE book's adaptive throttle (K = 2, per tier) rejects locally in front. Requests it
//! rejects are never sent, so its amplification (attempts per offered request) can be below 1.

use std::time::Duration;

use serde::Serialize;
use tailwater_core::outbound::BudgetConfig;

use crate::engine::{self, RunOptions};
use crate::error::SimError;
use crate::policy::PolicySpec;
use crate::scenario::{self, RetryMode, Scenario};

/// The server sides of these runs: no limiter (the storm's worst case) and the project's
/// default limiter.
pub const POLICIES: [&str; 2] = ["none", "headroom"];

/// Seconds of 1.5× overload (the built-in `retry-storm` has 4).
pub const OVERLOAD_S: u64 = 12;

/// The tailwater client's whole-request deadline: 3 attempts × the 500 ms per-try timeout.
pub const DEADLINE: Duration = Duration::from_millis(1500);

/// The storm these rows run: `retry-storm` with its 1.5× phase lasting [`OVERLOAD_S`] s.
pub fn storm() -> Result<Scenario, SimError> {
    let mut s = scenario::builtin("retry-storm")
        .ok_or_else(|| SimError::invalid("scenario", "the built-in retry-storm is missing"))?;
    if let Some(p) = s.phase.get_mut(1) {
        p.duration = Duration::from_secs(OVERLOAD_S);
    }
    Ok(s)
}

/// How one row's clients behave.
#[derive(Debug, Clone, Copy)]
struct Clients {
    mode: RetryMode,
    budget: f64,
    /// Pushback against [`DEADLINE`] and the K = 2 throttle.
    tailwater: bool,
}

/// The rows: the anchors' defaults, then tailwater's client at its default ratio and at
/// Finagle's.
fn rows_spec() -> [(&'static str, Clients); 7] {
    let default = BudgetConfig::default().ratio;
    let c = |mode, budget, tailwater| Clients {
        mode,
        budget,
        tailwater,
    };
    [
        ("no retries", c(RetryMode::None, 0.1, false)),
        ("naive x3", c(RetryMode::Naive, 0.1, false)),
        (
            "SRE 10% tokens (anchor)",
            c(RetryMode::Budgeted, 0.1, false),
        ),
        (
            "budget alone, Finagle/Linkerd default 20%+10/s (anchor)",
            c(RetryMode::Budget, 0.2, false),
        ),
        (
            "budget alone, tailwater default 10%+10/s",
            c(RetryMode::Budget, default, false),
        ),
        (
            "tailwater client, defaults",
            c(RetryMode::Budget, default, true),
        ),
        (
            "tailwater client, budget at Finagle's 20%+10/s",
            c(RetryMode::Budget, 0.2, true),
        ),
    ]
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct RetryRow {
    /// Who the clients behave like.
    pub clients: &'static str,
    /// Attempts per offered request, over the whole run.
    pub amplification: f64,
    /// Attempts per offered request while overloaded (the 1.5× phase).
    pub amplification_overload: f64,
    /// Successful requests.
    pub successes: u64,
}

/// Runs the client behaviours through the storm ([`storm`]) behind `policy` (one of
/// [`POLICIES`]).
pub fn run(policy: &str) -> Result<Vec<RetryRow>, SimError> {
    let spec = PolicySpec::parse(policy)?;
    let base = storm()?;
    rows_spec()
        .into_iter()
        .map(|(clients, c)| {
            let mut s = base.clone();
            s.client.retry = c.mode;
            s.client.budget = c.budget;
            if c.tailwater {
                s.client.deadline = DEADLINE;
                s.client.pushback = true;
                s.client.throttle_k = 2.0;
            }
            let whole = engine::run(&s, &spec, RunOptions::default())?;
            // The overload phase alone: the same scenario cut to its first two phases, minus
            // the first phase run alone (same seed, same arrivals up to the cut).
            let mut head = s.clone();
            head.phase.truncate(2);
            let mut warm = s.clone();
            warm.phase.truncate(1);
            let (h, w) = (
                engine::run(&head, &spec, RunOptions::default())?,
                engine::run(&warm, &spec, RunOptions::default())?,
            );
            let offered = h.offered.saturating_sub(w.offered).max(1);
            Ok(RetryRow {
                clients,
                amplification: whole.retry_amplification,
                amplification_overload: h.attempts.saturating_sub(w.attempts) as f64
                    / offered as f64,
                successes: whole.successes,
            })
        })
        .collect()
}
