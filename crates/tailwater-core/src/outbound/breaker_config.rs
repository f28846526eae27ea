//! The circuit breaker's knobs, each with the anchor its default comes from.

use std::time::Duration;

use super::window::Window;
use crate::error::{ConfigError, check_range};

/// Configuration of a [`CircuitBreaker`](super::CircuitBreaker). Build it with
/// `BreakerConfig { field: value, ..Default::default() }`; the breaker validates it.
///
/// | field | default | anchor |
/// |---|---|---|
/// | `window` | time, 10 s in 1 s buckets | `research/outbound.md` §4 (resilience4j `TIME_BASED`) |
/// | `failure_rate` | 0.5 | resilience4j `failureRateThreshold` 50 % |
/// | `slow_call_rate` | 0.5 | `research/outbound.md` §4 (resilience4j's 100 % disables it) |
/// | `slow_call` | 60 s | resilience4j `slowCallDurationThreshold`; set it to your SLO |
/// | `min_calls` | 20 | `research/outbound.md` §4: r4j's and Polly's 100 never trip a low-traffic service (§3.3) |
/// | `open_base` / `open_max` | 5 s / 60 s, doubling per consecutive trip | Polly `BreakDuration` 5 s; Linkerd's 60 s max penalty |
/// | `jitter` | ±20 % | failsafe-go PR #142, stoplight PR #364 (de-synchronise instances) |
/// | `probes` | 3 | safe-client-gateway PR #3442 (the failures needed to re-open); SmallRye #319 |
/// | `reopen_after` | 2 (⌈probes/2⌉) | `research/outbound.md` §4 |
/// | `half_open_deadline` | 10 s | resilience4j `maxWaitDurationInHalfOpenState` (#903: 0 = stuck forever) |
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::outbound::{BreakerConfig, Window};
/// let cfg = BreakerConfig { window: Window::Count(50), probes: 5, reopen_after: 3, ..Default::default() };
/// assert!(cfg.validate().is_ok());
/// let bad = BreakerConfig { probes: 0, ..Default::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), "probes");
/// # let _ = Duration::ZERO;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// The calls the rates are computed over.
    pub window: Window,
    /// Trip when failures / calls ≥ this (0 < x ≤ 1).
    pub failure_rate: f64,
    /// Trip when slow calls / calls ≥ this (0 < x ≤ 1; 1 means "all calls slow").
    pub slow_call_rate: f64,
    /// A call that takes at least this long is slow (whatever its outcome).
    pub slow_call: Duration,
    /// No trip until the window holds at least this many calls (≥ 1).
    pub min_calls: u32,
    /// The first open interval.
    pub open_base: Duration,
    /// The longest open interval: each consecutive trip doubles the previous one up to this.
    pub open_max: Duration,
    /// Each open interval is multiplied by a uniform factor in `[1 − jitter, 1 + jitter]`
    /// (0 ≤ jitter < 1).
    pub jitter: f64,
    /// Probes let through per half-open episode (≥ 1): never more are in flight.
    pub probes: u32,
    /// Re-open once this many probes failed (1 ≤ x ≤ probes); close once
    /// `probes − reopen_after + 1` succeeded (the failures can no longer reach it).
    pub reopen_after: u32,
    /// A probe still out this long after half-open began (or after the last reclaim) counts
    /// as failed and its permit is reclaimed: leaked or hung probes cannot wedge the breaker.
    pub half_open_deadline: Duration,
    /// Seed of the jitter (breakers that share a dependency should get different seeds).
    pub seed: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Window::default(),
            failure_rate: 0.5,
            slow_call_rate: 0.5,
            slow_call: Duration::from_secs(60),
            min_calls: 20,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            jitter: 0.2,
            probes: 3,
            reopen_after: 2,
            half_open_deadline: Duration::from_secs(10),
            seed: crate::algorithm::util::DEFAULT_SEED,
        }
    }
}

impl BreakerConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.window.validate()?;
        if self.failure_rate <= 0.0 {
            return Err(ConfigError::new("failure_rate", "must be > 0"));
        }
        check_range("failure_rate", self.failure_rate, 0.0, 1.0)?;
        if self.slow_call_rate <= 0.0 {
            return Err(ConfigError::new("slow_call_rate", "must be > 0"));
        }
        check_range("slow_call_rate", self.slow_call_rate, 0.0, 1.0)?;
        if self.slow_call.is_zero() {
            return Err(ConfigError::new("slow_call", "must be > 0"));
        }
        if self.min_calls == 0 {
            return Err(ConfigError::new("min_calls", "must be at least 1"));
        }
        if self.open_base.is_zero() {
            return Err(ConfigError::new("open_base", "must be > 0"));
        }
        if self.open_max < self.open_base {
            return Err(ConfigError::new(
                "open_max",
                format!(
                    "{:?} is shorter than open_base {:?}",
                    self.open_max, self.open_base
                ),
            ));
        }
        check_range("jitter", self.jitter, 0.0, 0.99)?;
        if self.probes == 0 {
            return Err(ConfigError::new("probes", "must be at least 1"));
        }
        if self.reopen_after == 0 || self.reopen_after > self.probes {
            return Err(ConfigError::new(
                "reopen_after",
                format!("must be in 1..={}, got {}", self.probes, self.reopen_after),
            ));
        }
        if self.half_open_deadline.is_zero() {
            return Err(ConfigError::new("half_open_deadline", "must be > 0"));
        }
        Ok(())
    }

    /// The un-jittered open interval after `trips` consecutive trips (≥ 1).
    pub fn open_interval(&self, trips: u32) -> Duration {
        let doublings = trips.saturating_sub(1).min(30);
        self.open_base
            .saturating_mul(1u32 << doublings)
            .min(self.open_max)
    }
}
