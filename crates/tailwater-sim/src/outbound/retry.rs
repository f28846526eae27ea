//! `retry-storm`, side by side: no retries, naive ×3, the SRE book's 10 % token bucket, and
//! tailwater-core's shared [`RetryBudget`](tailwater_core::outbound::RetryBudget) (Finagle /
//! Linkerd defaults), each through the same server, limiter and arrivals.

use serde::Serialize;

use crate::engine::{self, RunOptions};
use crate::error::SimError;
use crate::policy::PolicySpec;
use crate::scenario::{self, RetryMode};

/// The server sides of these runs: no limiter (the storm's worst case) and the project's
/// default limiter.
pub const POLICIES: [&str; 2] = ["none", "headroom"];

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

/// Runs the client behaviours through `retry-storm` behind `policy` (one of [`POLICIES`]).
pub fn run(policy: &str) -> Result<Vec<RetryRow>, SimError> {
    let spec = PolicySpec::parse(policy)?;
    let rows = [
        ("no retries", RetryMode::None, 0.1),
        ("naive x3", RetryMode::Naive, 0.1),
        ("SRE 10% tokens (anchor)", RetryMode::Budgeted, 0.1),
        (
            "tailwater budget, Finagle default 20%+10/s",
            RetryMode::Budget,
            0.2,
        ),
        ("tailwater budget at 10%+10/s", RetryMode::Budget, 0.1),
    ];
    rows.into_iter()
        .map(|(clients, mode, ratio)| {
            let mut s = scenario::builtin("retry-storm").ok_or_else(|| {
                SimError::invalid("scenario", "the built-in retry-storm is missing")
            })?;
            s.client.retry = mode;
            s.client.budget = ratio;
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
