//! A backend that fails hard for 10 s and recovers, called by `CLIENTS` clients, each with
//! its own circuit breaker (tailwater-core's [`CircuitBreaker`], seeded per client).
//!
//! Every client sends Poisson traffic; a healthy call succeeds in 5 ms, a call during the
//! outage (`OUTAGE`) fails in 1 ms. The anchors' defaults are modelled with the same state
//! machine, their numbers mapped onto its knobs:
//!
//! | row | window | min calls | trip | open | half-open |
//! |---|---|---|---|---|---|
//! | resilience4j | count 100 | 100 | ≥ 50 % failed | 60 s, no jitter | 10 probes, re-open at 5 failed |
//! | Polly v8 | time 30 s | 100 | ≥ 10 % failed | 5 s, no jitter | 1 probe |
//! | failsafe-go | count 1 | 1 | 1 failure | 60 s, no jitter | 1 probe |
//! | tailwater, no jitter | time 10 s | 20 | ≥ 50 % | 5 s doubling to 60 s | 3 probes |
//! | tailwater | time 10 s | 20 | ≥ 50 % | 5 s doubling, ±20 % | 3 probes |
//!
//! Figures: the calls that reached the backend during the outage after each client's first
//! trip, per open interval (goal: ≤ the probe count); how long after recovery each client's
//! breaker closed, in units of the open interval it was in (goal: ≤ 2); and the herd: the
//! most half-open probes the backend received in any 100 ms, against `CLIENTS`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tailwater_core::algorithm::Outcome;
use tailwater_core::clock::{Clock, ManualClock};
use tailwater_core::outbound::{
    BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker, Transition, Window,
};

use super::events::{Events, ns};
use crate::error::SimError;
use crate::rng::Xoshiro256PlusPlus;

/// Clients, each with its own breaker.
pub const CLIENTS: usize = 20;
/// Requests per second per client.
pub const RATE: f64 = 50.0;
/// The outage: [10 s, 20 s).
pub const OUTAGE: (f64, f64) = (10.0, 20.0);
/// Simulated seconds (long enough for a 60 s open interval to end).
pub const SECONDS: f64 = 100.0;

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerRow {
    /// Whose defaults.
    pub clients: &'static str,
    /// The probe bound per open interval.
    pub probes: u32,
    /// Max over clients: calls reaching the backend during the outage after the first trip,
    /// per open interval.
    pub leaked_per_open: f64,
    /// Max over clients: seconds from recovery until the breaker closed.
    pub closed_after_s: f64,
    /// Max over clients: that delay in units of the open interval in force at recovery.
    pub closed_after_intervals: f64,
    /// The most half-open probes the backend received in one 100 ms bucket (after the
    /// first trip).
    pub peak_probes_per_100ms: u32,
    /// Calls refused locally while open, over all clients.
    pub refused: u64,
}

/// The anchors' defaults mapped onto [`BreakerConfig`] (see the [module docs](self)).
pub fn configs() -> Vec<(&'static str, BreakerConfig)> {
    let fixed = |open: u64| (Duration::from_secs(open), Duration::from_secs(open));
    let (r4j_base, r4j_max) = fixed(60);
    let (polly_base, polly_max) = fixed(5);
    vec![
        (
            "resilience4j defaults",
            BreakerConfig {
                window: Window::Count(100),
                min_calls: 100,
                failure_rate: 0.5,
                slow_call_rate: 1.0,
                open_base: r4j_base,
                open_max: r4j_max,
                jitter: 0.0,
                probes: 10,
                reopen_after: 5,
                ..Default::default()
            },
        ),
        (
            "Polly v8 defaults",
            BreakerConfig {
                window: Window::Time {
                    size: Duration::from_secs(30),
                    buckets: 30,
                },
                min_calls: 100,
                failure_rate: 0.1,
                open_base: polly_base,
                open_max: polly_max,
                jitter: 0.0,
                probes: 1,
                reopen_after: 1,
                ..Default::default()
            },
        ),
        (
            "failsafe-go defaults",
            BreakerConfig {
                window: Window::Count(1),
                min_calls: 1,
                failure_rate: 1.0,
                open_base: r4j_base,
                open_max: r4j_max,
                jitter: 0.0,
                probes: 1,
                reopen_after: 1,
                ..Default::default()
            },
        ),
        (
            "tailwater, no jitter",
            BreakerConfig {
                jitter: 0.0,
                ..Default::default()
            },
        ),
        ("tailwater defaults", BreakerConfig::default()),
    ]
}

#[derive(Debug)]
enum Ev {
    Arrival(usize),
    Done(usize),
}

#[derive(Default)]
struct ClientLog {
    /// (time, transition).
    transitions: Vec<(f64, Transition)>,
}

/// Runs one configuration.
pub fn run_config(
    clients: &'static str,
    cfg: &BreakerConfig,
    seed: u64,
) -> Result<BreakerRow, SimError> {
    let clock = ManualClock::new();
    let logs: Vec<Arc<Mutex<ClientLog>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut breakers = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let log = Arc::clone(log);
        let c = clock.clone();
        let config = BreakerConfig {
            seed: seed.wrapping_add(i as u64 * 7919),
            ..cfg.clone()
        };
        breakers.push(CircuitBreaker::with_observer(
            config,
            clock.clone(),
            Arc::new(move |t: Transition| {
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .transitions
                    .push((c.now().as_secs_f64(), t));
            }),
        )?);
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut ev = Events::new();
    for c in 0..CLIENTS {
        ev.push(ns(rng.exp1() / RATE), Ev::Arrival(c));
    }
    let mut pending: Vec<Option<(BreakerPermit<ManualClock>, bool)>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut first_trip = [f64::INFINITY; CLIENTS];
    let mut leaked = [0u64; CLIENTS];
    let mut probe_buckets = vec![0u32; (SECONDS * 10.0) as usize + 1];
    let mut refused = 0u64;
    let end = ns(SECONDS);
    while let Some((t, e)) = ev.pop() {
        clock.set(Duration::from_nanos(t));
        let now = t as f64 / 1e9;
        match e {
            Ev::Arrival(c) => {
                if t > end {
                    continue;
                }
                ev.push(t + ns(rng.exp1() / RATE), Ev::Arrival(c));
                let permit = match breakers[c].try_acquire() {
                    Ok(p) => p,
                    Err(_) => {
                        refused += 1;
                        continue;
                    }
                };
                let failing = now >= OUTAGE.0 && now < OUTAGE.1;
                if first_trip[c].is_finite() {
                    if failing {
                        leaked[c] += 1;
                    }
                    if permit.is_probe() {
                        probe_buckets[(now * 10.0) as usize] += 1;
                    }
                }
                let slot = free.pop().unwrap_or_else(|| {
                    pending.push(None);
                    pending.len() - 1
                });
                pending[slot] = Some((permit, failing));
                let took = if failing { 0.001 } else { 0.005 };
                ev.push(t + ns(took), Ev::Done(slot));
            }
            Ev::Done(slot) => {
                if let Some((p, failed)) = pending[slot].take() {
                    p.record(if failed {
                        Outcome::Dropped
                    } else {
                        Outcome::Success
                    });
                }
                free.push(slot);
            }
        }
        for (c, log) in logs.iter().enumerate() {
            if first_trip[c].is_infinite() {
                let l = log.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((at, _)) = l
                    .transitions
                    .iter()
                    .find(|(_, t)| t.to == BreakerState::Open)
                {
                    first_trip[c] = *at;
                }
            }
        }
    }
    let (mut leaked_per_open, mut closed_after, mut closed_intervals) = (0f64, 0f64, 0f64);
    for (c, log) in logs.iter().enumerate() {
        let l = log.lock().unwrap_or_else(PoisonError::into_inner);
        let opens_in_outage = l
            .transitions
            .iter()
            .filter(|(at, t)| t.to == BreakerState::Open && *at < OUTAGE.1)
            .count()
            .max(1);
        leaked_per_open = leaked_per_open.max(leaked[c] as f64 / opens_in_outage as f64);
        let interval = l
            .transitions
            .iter()
            .filter(|(at, t)| t.to == BreakerState::Open && *at < OUTAGE.1)
            .filter_map(|(_, t)| t.open_for)
            .next_back()
            .map_or(0.0, |d| d.as_secs_f64());
        let closed = l
            .transitions
            .iter()
            .find(|(at, t)| t.to == BreakerState::Closed && *at >= OUTAGE.1)
            .map_or(SECONDS, |(at, _)| *at);
        if first_trip[c].is_finite() {
            closed_after = closed_after.max(closed - OUTAGE.1);
            if interval > 0.0 {
                closed_intervals = closed_intervals.max((closed - OUTAGE.1) / interval);
            }
        }
    }
    Ok(BreakerRow {
        clients,
        probes: cfg.probes,
        leaked_per_open,
        closed_after_s: closed_after,
        closed_after_intervals: closed_intervals,
        peak_probes_per_100ms: probe_buckets.iter().copied().max().unwrap_or(0),
        refused,
    })
}

/// Every configuration side by side.
pub fn run(seed: u64) -> Result<Vec<BreakerRow>, SimError> {
    configs()
        .iter()
        .map(|(name, cfg)| run_config(name, cfg, seed))
        .collect()
}
