//! Finding an external target's capacity before drilling it: a short, bounded ramp.
//!
//! The drill offers multiples of a capacity; for a service you run, you may not know it. The
//! ramp offers short open-loop steps, doubling from [`START_RATE`], and stops at the first
//! step that shows overload — more than 1 % of requests without a 2xx within the timeout,
//! the successes' median above [`P50_INFLATION`]× the first step's (a queue has formed: the
//! median moves when one does, and unlike a one-second p99 it is not two samples' noise on a
//! busy machine), or fewer than 90 % of the step's requests succeeding — then bisects twice between the last healthy rate and that
//! one. Between steps it pauses one client timeout so a backlog cannot leak into the next
//! step.
//!
//! The capacity is the larger of the highest rate sustained without those signs and the
//! highest goodput *completed during* an overloaded step (a server that keeps serving at
//! capacity while overloaded shows it there). It is an estimate, good to the ramp's
//! resolution (a bisected doubling: about 25 %); give `--capacity` when you know better.

use std::time::Duration;

use tailwater_load::{Config as LoadConfig, Percentiles, Schedule};

use crate::DrillError;
use crate::config::{DrillConfig, ExternalTarget};

/// The first step's rate, requests/s.
pub(crate) const START_RATE: f64 = 50.0;
/// Length of each step.
pub(crate) const STEP: Duration = Duration::from_secs(1);
/// A step whose successes' median exceeds this multiple of the first step's is overloaded.
pub(crate) const P50_INFLATION: f64 = 3.0;
/// Bisection steps after the first overloaded one.
const BISECTIONS: usize = 2;

/// One step of the ramp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KneeStep {
    /// Offered rate, requests/s.
    pub offered: f64,
    /// 2xx responses completed during the step, per second.
    pub goodput: f64,
    /// Median of the successes' latency from the intended send time, µs.
    pub success_p50_us: u64,
    /// p99 of the successes' latency from the intended send time, µs.
    pub success_p99_us: u64,
    /// Share of the step's requests without a 2xx response (shed, errors, timeouts).
    pub failed_share: f64,
    /// Whether the step showed overload.
    pub overloaded: bool,
}

/// What the ramp found.
#[derive(Debug, Clone, PartialEq)]
pub struct Knee {
    /// Estimated capacity, requests/s.
    pub capacity: f64,
    /// Every step, in the order run.
    pub steps: Vec<KneeStep>,
}

async fn step(
    target: &ExternalTarget,
    config: &DrillConfig,
    rate: f64,
    baseline_p50: Option<u64>,
) -> Result<KneeStep, DrillError> {
    let schedule = Schedule::constant(rate, STEP)?;
    let mut load = LoadConfig::new(&target.url, schedule)?;
    load.tls.ca_file = target.ca_file.clone();
    load.timeout = config.timeout;
    load.connections = config.connections;
    load.seed = config.seed;
    let report = tailwater_load::run(load, std::future::pending::<()>()).await?;
    let phase = report
        .phases
        .first()
        .ok_or(DrillError::Internal("a ramp step has one phase"))?;
    let stats = &phase.stats;
    let success = Percentiles::of(&stats.success);
    let failed = stats.requests.saturating_sub(stats.successes());
    let failed_share = if stats.requests == 0 {
        1.0
    } else {
        failed as f64 / stats.requests as f64
    };
    let inflated = baseline_p50.is_some_and(|b| {
        success.count == 0 || success.p50 as f64 > P50_INFLATION * b.max(1_000) as f64
    });
    let short = (stats.successes() as f64) < 0.9 * phase.scheduled as f64;
    Ok(KneeStep {
        offered: rate,
        goodput: phase.goodput(),
        success_p50_us: success.p50,
        success_p99_us: success.p99,
        failed_share,
        overloaded: failed_share > 0.01 || inflated || short,
    })
}

/// Ramps up against `target` until it shows overload and returns its estimated capacity.
///
/// Bounded: the ramp never offers more than `target.max_rate / peak multiplier` (so the
/// drill that follows stays under `max_rate`), and runs at most about a dozen one-second
/// steps.
///
/// # Errors
/// [`DrillError::Config`] (field `capacity`) when even the first step is overloaded, or when
/// the target is still healthy at the highest rate the bound allows; the message says which
/// and suggests `--capacity` or `--max-rate`. Load generator errors as they come.
pub async fn find_capacity(
    target: &ExternalTarget,
    config: &DrillConfig,
) -> Result<Knee, DrillError> {
    let peak_multiplier = config.multipliers.iter().copied().fold(1.0, f64::max);
    let ceiling = target.max_rate / peak_multiplier;
    let mut steps = Vec::new();
    let mut rate = START_RATE.min(ceiling);
    let mut baseline: Option<u64> = None;
    let mut healthy: Option<f64> = None;
    let overloaded_at = loop {
        let s = step(target, config, rate, baseline).await?;
        steps.push(s);
        tokio::time::sleep(config.timeout).await;
        if s.overloaded {
            break rate;
        }
        baseline.get_or_insert(s.success_p50_us);
        healthy = Some(rate);
        if rate >= ceiling {
            return Err(crate::ConfigError::new(
                "capacity",
                format!(
                    "the target was still healthy at {rate:.0} requests/s, the most --max-rate ({:.0}) allows for a {peak_multiplier}× phase; give --capacity or raise --max-rate",
                    target.max_rate
                ),
            )
            .into());
        }
        rate = (rate * 2.0).min(ceiling);
    };
    let Some(mut good) = healthy else {
        return Err(crate::ConfigError::new(
            "capacity",
            format!(
                "the target was overloaded at the first step ({overloaded_at:.0} requests/s: {:.1} % failed, success p50 {} µs); give --capacity",
                100.0 * steps[0].failed_share,
                steps[0].success_p50_us
            ),
        )
        .into());
    };
    let mut bad = overloaded_at;
    for _ in 0..BISECTIONS {
        let mid = (good + bad) / 2.0;
        let s = step(target, config, mid, baseline).await?;
        steps.push(s);
        tokio::time::sleep(config.timeout).await;
        if s.overloaded {
            bad = mid;
        } else {
            good = mid;
        }
    }
    let served_while_overloaded = steps
        .iter()
        .filter(|s| s.overloaded)
        .map(|s| s.goodput)
        .fold(0.0, f64::max);
    Ok(Knee {
        capacity: good.max(served_while_overloaded),
        steps,
    })
}

/// Longest wait for an external target to recover between the drill's two sides.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// Length of one recovery probe (at [`PROBE_RATE`]).
const PROBE: Duration = Duration::from_millis(500);
/// Rate of the recovery probes, requests/s: light enough not to slow a recovering target.
const PROBE_RATE: f64 = 20.0;

/// Waits until an external target is healthy again after the unprotected side: a synthetic
/// backend is replaced between the sides, a service you run is not, and the backlog the
/// unprotected overload left in it would otherwise be charged to the protected side.
///
/// Probes at 20 requests/s in half-second rounds until a round has every request succeed
/// with p99 under half the client timeout; gives up after [`RECOVERY_LIMIT`]. Returns how
/// long recovery took, or `None` when the target had not recovered by then (the drill goes
/// on and says so).
///
/// # Errors
/// Load generator errors as they come.
pub async fn wait_until_recovered(
    target: &ExternalTarget,
    config: &DrillConfig,
) -> Result<Option<Duration>, DrillError> {
    let started = std::time::Instant::now();
    while started.elapsed() < RECOVERY_LIMIT {
        let mut load = LoadConfig::new(&target.url, Schedule::constant(PROBE_RATE, PROBE)?)?;
        load.tls.ca_file = target.ca_file.clone();
        load.timeout = config.timeout;
        load.connections = std::num::NonZeroUsize::new(4).unwrap_or(std::num::NonZeroUsize::MIN);
        let report = tailwater_load::run(load, std::future::pending::<()>()).await?;
        let t = &report.total;
        let p99 = Percentiles::of(&t.success).p99;
        if t.requests > 0
            && t.successes() == t.requests
            && Duration::from_micros(p99) < config.timeout / 2
        {
            return Ok(Some(started.elapsed()));
        }
    }
    Ok(None)
}
