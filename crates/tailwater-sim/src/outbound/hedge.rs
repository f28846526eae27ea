//! Hedged requests on a heavy-tailed fan-out ("The Tail at Scale").
//!
//! Each user request fans out to `FANOUT` leaf calls and completes when the last one does.
//! A leaf call takes about 5 ms (lognormal, σ 0.3), except 0.5 % of calls that take 1–2 s
//! (a GC pause, a cold cache: independent per attempt, so a second attempt elsewhere is
//! fast). Latencies do not depend on load, as in the paper's measurement.
//!
//! Side by side, on the same arrivals and latencies:
//!
//! - **no hedging**;
//! - **Polly v8 defaults**: one hedge after a fixed 2 s, no budget;
//! - **tower `Hedge`**: after the p95 of the previous period, recording only the *winner's*
//!   latency, no budget;
//! - **tailwater**: tailwater-core's [`Hedger`] (p95, every attempt recorded, the loser's
//!   time until it was cancelled) within the shared [`RetryBudget`] (hedges ≤ 5 % of calls).
//!
//! The loser is cancelled as soon as the winner answers: it is not waited for.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tailwater_core::clock::ManualClock;
use tailwater_core::outbound::{BudgetConfig, Extra, HedgeConfig, Hedger, RetryBudget};

use super::events::{Events, ns};
use crate::error::SimError;
use crate::rng::Xoshiro256PlusPlus;

/// Leaf calls per user request.
pub const FANOUT: usize = 10;
/// User requests per second.
pub const RATE: f64 = 500.0;
/// Simulated seconds.
pub const SECONDS: f64 = 30.0;
/// Requests arriving before this are not measured: the hedgers' first period (1 s) must
/// fill before any hedging starts (as with tower's `min_data_points`).
pub const WARM_UP: f64 = 2.0;

/// How the client hedges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HedgeMode {
    /// Never.
    None,
    /// After a fixed delay, unbudgeted (Polly v8's `Delay` default 2 s).
    Fixed(Duration),
    /// tower's `Hedge`: p95 of the winners' latencies, unbudgeted.
    TowerWinnerOnly,
    /// tailwater: p95 of every attempt, within the shared budget.
    Tailwater,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct HedgeRow {
    /// The client.
    pub clients: &'static str,
    /// User-request latency quantiles, milliseconds.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// Hedges sent per leaf call.
    pub extra_load: f64,
}

#[derive(Debug)]
enum Ev {
    Arrival,
    Hedge(usize),
    Done(usize, bool),
}

struct Leaf {
    req: usize,
    start: u64,
    hedge_start: Option<u64>,
    done: bool,
}

fn leaf_latency(rng: &mut Xoshiro256PlusPlus) -> f64 {
    if rng.uniform() < 0.005 {
        1.0 + rng.uniform()
    } else {
        0.005 * (0.3 * rng.normal()).exp()
    }
}

/// Runs one client mode; every mode sees the same arrivals and the same latency stream
/// for primaries (hedges draw from their own stream).
pub fn run_mode(clients: &'static str, mode: HedgeMode, seed: u64) -> Result<HedgeRow, SimError> {
    let clock = ManualClock::new();
    let hedger = Hedger::with_clock(HedgeConfig::default(), clock.clone())?;
    let budget = RetryBudget::with_clock(BudgetConfig::default(), clock.clone())?;
    let mut arrivals = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut primary = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x1EAF);
    let mut second = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x4ED6E);
    let end = ns(SECONDS);
    let mut ev = Events::new();
    ev.push(ns(arrivals.exp1() / RATE), Ev::Arrival);
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut reqs: Vec<(u64, usize)> = Vec::new(); // (arrival, leaves left)
    let mut lat = Histogram::<u64>::new_with_max(60_000_000, 3)
        .map_err(|e| SimError::invalid("histogram", e.to_string()))?;
    let (mut calls, mut hedges) = (0u64, 0u64);
    while let Some((t, e)) = ev.pop() {
        clock.set(Duration::from_nanos(t));
        match e {
            Ev::Arrival => {
                if t > end {
                    continue;
                }
                reqs.push((t, FANOUT));
                for _ in 0..FANOUT {
                    let id = leaves.len();
                    leaves.push(Leaf {
                        req: reqs.len() - 1,
                        start: t,
                        hedge_start: None,
                        done: false,
                    });
                    calls += 1;
                    budget.deposit();
                    ev.push(t + ns(leaf_latency(&mut primary)), Ev::Done(id, false));
                    let delay = match mode {
                        HedgeMode::None => None,
                        HedgeMode::Fixed(d) => Some(d),
                        HedgeMode::TowerWinnerOnly | HedgeMode::Tailwater => hedger.delay(),
                    };
                    if let Some(d) = delay {
                        ev.push(t + ns(d.as_secs_f64()), Ev::Hedge(id));
                    }
                }
                ev.push(t + ns(arrivals.exp1() / RATE), Ev::Arrival);
            }
            Ev::Hedge(id) => {
                if leaves[id].done {
                    continue;
                }
                if mode == HedgeMode::Tailwater && !budget.try_withdraw(Extra::Hedge) {
                    continue;
                }
                hedges += 1;
                leaves[id].hedge_start = Some(t);
                ev.push(t + ns(leaf_latency(&mut second)), Ev::Done(id, true));
            }
            Ev::Done(id, is_hedge) => {
                let leaf = &mut leaves[id];
                if leaf.done {
                    continue; // the loser: cancelled when the winner answered
                }
                leaf.done = true;
                let own_start = if is_hedge {
                    leaf.hedge_start.unwrap_or(leaf.start)
                } else {
                    leaf.start
                };
                hedger.record(Duration::from_nanos(t - own_start));
                if mode == HedgeMode::Tailwater {
                    // The loser's time until it was cancelled: a lower bound of its latency.
                    let loser_start = if is_hedge {
                        Some(leaf.start)
                    } else {
                        leaf.hedge_start
                    };
                    if let Some(s) = loser_start {
                        hedger.record(Duration::from_nanos(t - s));
                    }
                }
                let r = &mut reqs[leaf.req];
                r.1 -= 1;
                if r.1 == 0 && r.0 >= ns(WARM_UP) {
                    lat.saturating_record((t - r.0) / 1000);
                }
            }
        }
    }
    let q = |x: f64| lat.value_at_quantile(x) as f64 / 1000.0;
    Ok(HedgeRow {
        clients,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        extra_load: hedges as f64 / calls.max(1) as f64,
    })
}

/// The four clients side by side.
pub fn run(seed: u64) -> Result<Vec<HedgeRow>, SimError> {
    [
        ("no hedging", HedgeMode::None),
        (
            "Polly v8 (2 s delay)",
            HedgeMode::Fixed(Duration::from_secs(2)),
        ),
        (
            "tower Hedge (p95, winners only)",
            HedgeMode::TowerWinnerOnly,
        ),
        ("tailwater (p95, all, 5 % budget)", HedgeMode::Tailwater),
    ]
    .into_iter()
    .map(|(name, mode)| run_mode(name, mode, seed))
    .collect()
}
