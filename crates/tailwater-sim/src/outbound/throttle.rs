//! Client-side adaptive throttling against a backend that rejects most of what it gets.
//!
//! The backend accepts 1000 requests/s (100 per 100 ms): `Critical` first, `Sheddable` only
//! while fewer than 40 of the 100 are used (tailwater's tiers shed the least important
//! work first). Clients offer 600/s `Critical` and 2400/s `Sheddable`. Side by side:
//!
//! - **no throttle**: the backend receives (and must reject) everything;
//! - **one throttle for all tiers** (the SRE book's per-client statistic, failsafe-go's
//!   `adaptivethrottler`): `Sheddable` rejections make the client drop `Critical` work too;
//! - **tailwater, per tier**: [`AdaptiveThrottle`] keeps each tier's statistics apart.

use std::time::Duration;

use serde::Serialize;
use tailwater_core::Criticality;
use tailwater_core::clock::ManualClock;
use tailwater_core::outbound::{AdaptiveThrottle, Jitter, ThrottleConfig};

use crate::error::SimError;
use crate::rng::Xoshiro256PlusPlus;

/// Simulated seconds.
pub const SECONDS: f64 = 60.0;

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct ThrottleRow {
    /// The client.
    pub clients: &'static str,
    /// Requests the backend received per request it accepted (the last 30 s).
    pub backend_per_accept: f64,
    /// Share of `Critical` requests that succeeded (the last 30 s).
    pub critical_goodput: f64,
    /// `Critical` requests rejected locally (the last 30 s).
    pub critical_local_rejects: u64,
}

/// Runs one client mode: `None` no throttle, `Some(per_tier)`.
pub fn run_mode(
    clients: &'static str,
    mode: Option<bool>,
    seed: u64,
) -> Result<ThrottleRow, SimError> {
    let clock = ManualClock::new();
    let throttle = AdaptiveThrottle::with_clock(ThrottleConfig::default(), clock.clone())?;
    let jitter = Jitter::new(seed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (mut t, mut slot, mut used) = (0.0f64, u64::MAX, 0u32);
    let (mut received, mut accepted, mut crit, mut crit_ok, mut crit_local) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    while t < SECONDS {
        t += rng.exp1() / 3000.0;
        clock.set(Duration::from_secs_f64(t));
        let tier = if rng.uniform() < 0.2 {
            Criticality::Critical
        } else {
            Criticality::Sheddable
        };
        let stats_tier = match mode {
            Some(false) => Criticality::Critical, // one statistic for everything
            _ => tier,
        };
        let measured = t >= SECONDS / 2.0;
        if measured && tier == Criticality::Critical {
            crit += 1;
        }
        if mode.is_some() && !throttle.admit(stats_tier, jitter.next_f64()) {
            if measured && tier == Criticality::Critical {
                crit_local += 1;
            }
            continue;
        }
        let s = (t * 10.0) as u64;
        if s != slot {
            (slot, used) = (s, 0);
        }
        let cap = if tier == Criticality::Critical {
            100
        } else {
            40
        };
        let ok = used < cap;
        if ok {
            used += 1;
            throttle.accepted(stats_tier);
        }
        if measured {
            received += 1;
            accepted += u64::from(ok);
            if ok && tier == Criticality::Critical {
                crit_ok += 1;
            }
        }
    }
    Ok(ThrottleRow {
        clients,
        backend_per_accept: received as f64 / accepted.max(1) as f64,
        critical_goodput: crit_ok as f64 / crit.max(1) as f64,
        critical_local_rejects: crit_local,
    })
}

/// The three clients side by side.
pub fn run(seed: u64) -> Result<Vec<ThrottleRow>, SimError> {
    [
        ("no throttle", None),
        ("one throttle for all tiers (SRE, failsafe-go)", Some(false)),
        ("tailwater, per tier", Some(true)),
    ]
    .into_iter()
    .map(|(name, mode)| run_mode(name, mode, seed))
    .collect()
}
