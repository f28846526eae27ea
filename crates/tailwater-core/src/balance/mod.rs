//! Load balancing over a route's endpoints, with no I/O: the caller passes the time.
//!
//! - **P2C over PeakEWMA** ([`Policy::PeakEwma`], the default; Linkerd's balancer and
//!   tower's `p2c` + `PeakEwma`): two endpoints drawn at random, the one with the lower
//!   `latency estimate × (pending + 1)` wins. Linkerd's defaults: decay 10 s, default RTT
//!   30 ms (`ewma`).
//! - **Least request** ([`Policy::LeastRequest`], Envoy's `LEAST_REQUEST` with
//!   `choice_count` 2): P2C on `pending + 1`.
//! - **Round robin** ([`Policy::RoundRobin`]): the baseline the others are measured against.
//!
//! Every policy skips ejected endpoints ([`Outlier`]: Envoy's consecutive-failure
//! detectors) and divides the cost of an endpoint back from ejection by its [`SlowStart`]
//! weight. When every candidate is ejected the balancer picks among all of them anyway
//! (Envoy's panic mode): a request is never refused for want of an endpoint.
//!
//! Failures never lower an endpoint's estimate (a fast-failing endpoint must not look fast:
//! the trap least-latency balancers fall into); ejection is what takes it out.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tailwater_core::balance::{Balancer, BalanceConfig, Outcome};
//!
//! let b = Arc::new(Balancer::new(3, BalanceConfig::default(), Duration::ZERO)?);
//! let now = Duration::from_millis(1);
//! let picked = b.select(now, 0).expect("three endpoints");
//! // ... send the request to endpoint `picked.index()` ...
//! picked.finish(Duration::from_millis(4), Some(Duration::from_millis(3)), Outcome::Success);
//! let selected: u64 = (0..3).map(|i| b.stats(i, now).selected).sum();
//! assert_eq!(selected, 1);
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```

mod ewma;
mod outlier;
mod slow_start;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use outlier::Outlier;
pub use slow_start::SlowStart;

use crate::ConfigError;
use crate::names::UnknownName;
// std, not `crate::sync`: the balancer is not part of the loom models, and `self: &Arc<Self>`
// needs std's `Arc`.
use ewma::PeakEwma;
use outlier::Detector;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Most endpoints one balancer takes (a request's tried endpoints are a 64-bit mask).
pub const MAX_ENDPOINTS: usize = 64;

/// How the balancer chooses, by its one name (`peak-ewma`, `least-request`, `round-robin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Power of two choices over `PeakEWMA × (pending + 1)` (Linkerd).
    #[default]
    PeakEwma,
    /// Power of two choices over pending requests (Envoy's least request).
    LeastRequest,
    /// Each endpoint in turn.
    RoundRobin,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 3] = [Policy::PeakEwma, Policy::LeastRequest, Policy::RoundRobin];
    /// Every name, in the order of [`ALL`](Self::ALL).
    pub const NAMES: [&'static str; 3] = ["peak-ewma", "least-request", "round-robin"];

    /// The policy's one name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Policy::PeakEwma => "peak-ewma",
            Policy::LeastRequest => "least-request",
            Policy::RoundRobin => "round-robin",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::names::parse_name("balance policy", s, &Self::ALL, Self::as_str, &Self::NAMES)
    }
}

/// How a request sent to an endpoint ended, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response that is not a 5xx.
    Success,
    /// A 5xx other than 502, 503 and 504.
    ServerError,
    /// 502, 503, 504, a failed connect, a reset or a timeout.
    GatewayError,
    /// Says nothing about the endpoint (the client went away, or its request was bad).
    Ignored,
}

impl Outcome {
    /// The outcome of a response with `status`.
    pub fn of_status(status: u16) -> Self {
        match status {
            502..=504 => Outcome::GatewayError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }
}

/// The balancer's settings. [`Default`]: P2C over PeakEWMA with Linkerd's decay (10 s) and
/// default RTT (30 ms), Envoy's outlier detection, a 10 s slow start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceConfig {
    /// How to choose.
    pub policy: Policy,
    /// PeakEWMA decay: how fast an old latency is forgotten.
    pub decay: Duration,
    /// The estimate of an endpoint not measured yet (and of one back from ejection).
    pub default_rtt: Duration,
    /// When to eject an endpoint.
    pub outlier: Outlier,
    /// The ramp of an endpoint back from ejection.
    pub slow_start: SlowStart,
    /// Seed of the random draws (P2C), for reproducible runs.
    pub seed: u64,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            policy: Policy::PeakEwma,
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
            outlier: Outlier::default(),
            slow_start: SlowStart::default(),
            seed: 0x5eed_ba1a,
        }
    }
}

impl BalanceConfig {
    fn check(&self, n: usize) -> Result<(), ConfigError> {
        if n == 0 || n > MAX_ENDPOINTS {
            return Err(ConfigError::new(
                "endpoints",
                format!("must be 1 to {MAX_ENDPOINTS}, got {n}"),
            ));
        }
        if self.decay.is_zero() {
            return Err(ConfigError::new("decay", "must be greater than zero"));
        }
        if self.default_rtt.is_zero() {
            return Err(ConfigError::new("default_rtt", "must be greater than zero"));
        }
        if self.outlier.max_ejection_percent > 100 {
            return Err(ConfigError::new(
                "max_ejection_percent",
                format!(
                    "must be at most 100, got {}",
                    self.outlier.max_ejection_percent
                ),
            ));
        }
        if self.outlier.base_ejection.is_zero() {
            return Err(ConfigError::new(
                "base_ejection_time",
                "must be greater than zero",
            ));
        }
        let s = &self.slow_start;
        if !(s.min_weight > 0.0 && s.min_weight <= 1.0) {
            return Err(ConfigError::new(
                "slow_start_min_weight",
                format!("must be in (0, 1], got {}", s.min_weight),
            ));
        }
        if !(s.aggression.is_finite() && s.aggression > 0.0) {
            return Err(ConfigError::new(
                "slow_start_aggression",
                format!("must be a positive number, got {}", s.aggression),
            ));
        }
        Ok(())
    }
}

/// A snapshot of one endpoint, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointStats {
    /// Requests sent to it so far.
    pub selected: u64,
    /// Times it was ejected so far.
    pub ejections: u64,
    /// Requests in progress on it.
    pub pending: usize,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// Its latency estimate now.
    pub ewma: Duration,
    /// Its slow-start weight now (1 outside the window).
    pub weight: f64,
}

#[derive(Debug)]
struct Endpoint {
    pending: AtomicUsize,
    selected: AtomicU64,
    ejections: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    ewma: PeakEwma,
    outlier: Detector,
}

/// The balancer of one set of endpoints (indexes `0..n`), shared by every thread that
/// sends to them. Selection takes a short lock on the two candidates' state; nothing waits.
#[derive(Debug)]
pub struct Balancer {
    endpoints: Box<[Endpoint]>,
    config: BalanceConfig,
    max_ejected: usize,
    ejected: AtomicUsize,
    next: AtomicU64,
    turn: AtomicUsize,
}

impl Balancer {
    /// A balancer over `n` endpoints (1 to [`MAX_ENDPOINTS`]) whose clock reads `now`.
    /// Errors name the offending setting.
    pub fn new(n: usize, config: BalanceConfig, now: Duration) -> Result<Self, ConfigError> {
        config.check(n)?;
        let endpoints = (0..n)
            .map(|_| Endpoint {
                pending: AtomicUsize::new(0),
                selected: AtomicU64::new(0),
                ejections: AtomicU64::new(0),
                state: Mutex::new(State {
                    ewma: PeakEwma::new(config.default_rtt, now),
                    outlier: Detector::default(),
                }),
            })
            .collect();
        Ok(Self {
            endpoints,
            max_ejected: config.outlier.max_ejected(n),
            config,
            ejected: AtomicUsize::new(0),
            next: AtomicU64::new(config.seed),
            turn: AtomicUsize::new(0),
        })
    }

    /// How many endpoints it balances.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Never: a balancer has at least one endpoint (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The settings.
    pub fn config(&self) -> &BalanceConfig {
        &self.config
    }

    /// Chooses an endpoint for a request at `now`, skipping those in the bit mask
    /// `exclude` (the ones this request already failed to reach); `None` when every
    /// endpoint is excluded. The returned [`Selected`] counts the request as pending until
    /// it is finished (or dropped, which counts as [`Outcome::Ignored`]).
    pub fn select(self: &Arc<Self>, now: Duration, exclude: u64) -> Option<Selected> {
        let index = self.pick(now, exclude)?;
        let e = &self.endpoints[index];
        e.pending.fetch_add(1, Ordering::Relaxed);
        e.selected.fetch_add(1, Ordering::Relaxed);
        Some(Selected {
            balancer: Arc::clone(self),
            index,
            done: false,
        })
    }

    /// The index [`select`](Self::select) would take (without counting it).
    fn pick(&self, now: Duration, exclude: u64) -> Option<usize> {
        let n = self.endpoints.len();
        let open = |i: usize| exclude & (1u64 << i) == 0;
        let r = self.random();
        let found = match self.config.policy {
            Policy::RoundRobin => {
                // A shared counter rather than the random draw: an exact rotation.
                let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| open(i) && self.cost(i, now).is_some())
            }
            Policy::PeakEwma | Policy::LeastRequest => {
                let a0 = usize::try_from(r % n as u64).unwrap_or(0);
                let b0 = if n > 1 {
                    let b = usize::try_from((r >> 32) % (n as u64 - 1)).unwrap_or(0);
                    if b >= a0 { b + 1 } else { b }
                } else {
                    a0
                };
                let a = self.first_available(a0, now, open);
                let b = a.and_then(|(a, _)| self.first_available(b0, now, |i| open(i) && i != a));
                match (a, b) {
                    (Some((a, ca)), Some((b, cb))) => Some(if cb < ca { b } else { a }),
                    (Some((a, _)), None) => Some(a),
                    _ => None,
                }
            }
        };
        // Panic mode: every open endpoint is ejected; use one anyway.
        found.or_else(|| {
            let start = usize::try_from(r % n as u64).unwrap_or(0);
            (0..n).map(|k| (start + k) % n).find(|&i| open(i))
        })
    }

    /// The first endpoint from `from` (cyclically) that `open` allows and that is in
    /// service, with its cost.
    fn first_available(
        &self,
        from: usize,
        now: Duration,
        open: impl Fn(usize) -> bool,
    ) -> Option<(usize, f64)> {
        let n = self.endpoints.len();
        (0..n)
            .map(|k| (from + k) % n)
            .filter(|&i| open(i))
            .find_map(|i| self.cost(i, now).map(|c| (i, c)))
    }

    /// Endpoint `i`'s cost at `now`, or `None` while it is ejected (an ejection that has
    /// ended is ended here).
    fn cost(&self, i: usize, now: Duration) -> Option<f64> {
        let e = &self.endpoints[i];
        let mut s = e
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ejected, returned) = s.outlier.ejected(now);
        if ejected {
            return None;
        }
        if returned {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            // Its old estimate says nothing about it now.
            s.ewma = PeakEwma::new(self.config.default_rtt, now);
        }
        let pending = e.pending.load(Ordering::Relaxed) as f64 + 1.0;
        let weight = match s.outlier.returned_at {
            Some(back) => self.config.slow_start.weight(now.saturating_sub(back)),
            None => 1.0,
        };
        let base = match self.config.policy {
            Policy::PeakEwma => s.ewma.estimate(now, self.config.decay).max(1.0),
            Policy::LeastRequest | Policy::RoundRobin => 1.0,
        };
        Some(base * pending / weight)
    }

    /// Settles a request on endpoint `i`.
    fn finish(&self, i: usize, now: Duration, rtt: Option<Duration>, outcome: Outcome) {
        let e = &self.endpoints[i];
        e.pending.fetch_sub(1, Ordering::Relaxed);
        if outcome == Outcome::Ignored && rtt.is_none() {
            return;
        }
        let mut s = e
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rtt) = rtt {
            // A failure may raise the estimate, never lower it.
            let est = s.ewma.estimate(now, self.config.decay);
            if outcome == Outcome::Success || ewma::nanos(rtt) > est {
                s.ewma.observe(rtt, now, self.config.decay);
            }
        }
        if s.outlier.record(outcome, &self.config.outlier) {
            let allowed = self
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
                    (k < self.max_ejected).then_some(k + 1)
                })
                .is_ok();
            if allowed {
                s.outlier.eject(now, &self.config.outlier);
                e.ejections.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A snapshot of endpoint `i` (`i < len()`) as of `now`.
    pub fn stats(&self, i: usize, now: Duration) -> EndpointStats {
        let e = &self.endpoints[i];
        let s = e
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let estimate = s.ewma.estimate(now, self.config.decay).max(0.0) / 1e9;
        EndpointStats {
            selected: e.selected.load(Ordering::Relaxed),
            ejections: e.ejections.load(Ordering::Relaxed),
            pending: e.pending.load(Ordering::Relaxed),
            ejected: s.outlier.ejected_until.is_some_and(|u| now < u),
            ewma: Duration::from_secs_f64(estimate),
            weight: s.outlier.returned_at.map_or(1.0, |b| {
                self.config.slow_start.weight(now.saturating_sub(b))
            }),
        }
    }

    /// Times endpoint `i` has been ejected, less the intervals since spent healthy.
    pub fn ejection_multiplier(&self, i: usize) -> u32 {
        let s = self.endpoints[i]
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.outlier.times_ejected()
    }

    /// A 64-bit draw (splitmix64 over a shared counter: lock-free, reproducible from the
    /// seed when one thread draws).
    fn random(&self) -> u64 {
        let mut z = self
            .next
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A request in progress on one endpoint. Finish it with its outcome; dropping it
/// unfinished counts as [`Outcome::Ignored`] (the request is no longer pending, and says
/// nothing about the endpoint).
#[derive(Debug)]
pub struct Selected {
    balancer: Arc<Balancer>,
    index: usize,
    done: bool,
}

impl Selected {
    /// The endpoint's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Settles the request at `now`: `rtt` (time to the response head, if one came)
    /// feeds the latency estimate, `outcome` the outlier detection. Only a success may
    /// lower the estimate; a failure or an ignored request with an `rtt` (one cut short
    /// by its own deadline) may only raise it.
    pub fn finish(mut self, now: Duration, rtt: Option<Duration>, outcome: Outcome) {
        self.done = true;
        self.balancer.finish(self.index, now, rtt, outcome);
    }
}

impl Drop for Selected {
    fn drop(&mut self) {
        if !self.done {
            self.balancer
                .finish(self.index, Duration::ZERO, None, Outcome::Ignored);
        }
    }
}
