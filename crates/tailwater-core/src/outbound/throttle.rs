//! Client-side adaptive throttling (Google SRE book, "Handling Overload").
//!
//! The client keeps, over the last two minutes, the `requests` it attempted and the
//! `accepts` the backend accepted, and rejects a new request locally with probability
//! `max(0, (requests − K × accepts) / (requests + 1))`, K = 2. While the backend accepts
//! everything nothing is rejected; when it rejects most, the client sheds locally the
//! requests that would have been rejected anyway, at the cost of nothing but a local
//! decision. A locally rejected request still counts as a request, so the probability
//! keeps tracking the backend.
//!
//! The counts are kept **per criticality tier**: a backend that rejects `Sheddable` work
//! (tailwater's tiers shed it first) does not make the client throttle its `CriticalPlus`
//! calls. This is the "backend is rejecting" signal; the
//! [`CircuitBreaker`](super::CircuitBreaker) covers "the backend is broken".

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock, duration_to_nanos};
use crate::criticality::Criticality;
use crate::error::{ConfigError, check_range};

/// Throttle knobs.
///
/// | field | default | anchor |
/// |---|---|---|
/// | `k` | 2.0 | SRE book (K = 2; 1.1 is aggressive, larger is lenient) |
/// | `window` | 120 s | SRE book ("the last two minutes") |
/// | `buckets` | 12 | tailwater's choice (10 s each) |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    /// The multiplier K (≥ 1).
    pub k: f64,
    /// The history the counts cover.
    pub window: Duration,
    /// The window's buckets (1..=600).
    pub buckets: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 12,
        }
    }
}

impl ThrottleConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("k", self.k, 1.0, 1000.0)?;
        if self.buckets == 0 || self.buckets > 600 {
            return Err(ConfigError::new("buckets", "must be in 1..=600"));
        }
        if self.window < Duration::from_millis(u64::from(self.buckets)) {
            return Err(ConfigError::new(
                "window",
                "must be at least 1 ms per bucket",
            ));
        }
        Ok(())
    }
}

/// (bucket number, requests, accepts) per bucket, per tier.
type Buckets = Vec<[(u64, u64, u64); 4]>;

/// An adaptive throttle for one backend (see the [module docs](self)).
///
/// ```
/// use tailwater_core::Criticality;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::outbound::{AdaptiveThrottle, ThrottleConfig};
/// let t = AdaptiveThrottle::with_clock(ThrottleConfig::default(), ManualClock::new())?;
/// // 100 requests, 10 accepted: p = (100 − 2 × 10) / 101.
/// for i in 0..100 {
///     assert!(t.admit(Criticality::Critical, 0.999));
///     if i < 10 { t.accepted(Criticality::Critical); }
/// }
/// let p = t.reject_probability(Criticality::Critical);
/// assert!((p - 80.0 / 101.0).abs() < 1e-9);
/// assert_eq!(t.reject_probability(Criticality::CriticalPlus), 0.0); // per tier
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct AdaptiveThrottle<C: Clock = MonotonicClock> {
    config: ThrottleConfig,
    bucket_nanos: u64,
    clock: C,
    state: Mutex<Buckets>,
}

impl<C: Clock> fmt::Debug for AdaptiveThrottle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("config", &self.config)
            .finish()
    }
}

impl AdaptiveThrottle<MonotonicClock> {
    /// A throttle on the default clock.
    pub fn new(config: ThrottleConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl<C: Clock> AdaptiveThrottle<C> {
    /// A throttle reading `clock`.
    pub fn with_clock(config: ThrottleConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            bucket_nanos: (duration_to_nanos(config.window) / u64::from(config.buckets)).max(1),
            config,
            clock,
            state: Mutex::new(vec![[(u64::MAX, 0, 0); 4]; config.buckets as usize]),
        })
    }

    /// Runs `f` on the current bucket of `tier` with the window's (requests, accepts).
    fn with<R>(&self, tier: Criticality, f: impl FnOnce(&mut (u64, u64, u64), u64, u64) -> R) -> R {
        let n = self.clock.now_nanos() / self.bucket_nanos;
        let t = tier.index();
        let mut b = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let len = b.len() as u64;
        let oldest = n.saturating_sub(len - 1);
        let (mut req, mut acc) = (0, 0);
        for slot in b.iter() {
            let (e, r, a) = slot[t];
            if e != u64::MAX && e >= oldest && e <= n {
                req += r;
                acc += a;
            }
        }
        let cur = &mut b[(n % len) as usize][t];
        if cur.0 != n {
            *cur = (n, 0, 0);
        }
        f(cur, req, acc)
    }

    /// The probability that a request of `tier` is rejected locally now.
    pub fn reject_probability(&self, tier: Criticality) -> f64 {
        self.with(tier, |_, req, acc| self.probability(req, acc))
    }

    fn probability(&self, requests: u64, accepts: u64) -> f64 {
        let r = requests as f64;
        ((r - self.config.k * accepts as f64) / (r + 1.0)).max(0.0)
    }

    /// Counts one request of `tier` and decides it: `false` means reject it locally (do not
    /// send). `u` is uniform in `[0, 1)`.
    pub fn admit(&self, tier: Criticality, u: f64) -> bool {
        self.with(tier, |cur, req, acc| {
            cur.1 += 1;
            u >= self.probability(req, acc)
        })
    }

    /// The backend accepted a request of `tier` (answered anything but an overload signal).
    pub fn accepted(&self, tier: Criticality) {
        self.with(tier, |cur, _, _| cur.2 += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn probability_by_hand_and_the_window_forgets() {
        let clock = ManualClock::new();
        let t = AdaptiveThrottle::with_clock(ThrottleConfig::default(), clock.clone()).unwrap();
        let c = Criticality::Sheddable;
        // Cumulative (requests, accepts) -> p: max(0, (r − 2a)/(r + 1)).
        let rows = [
            (0u64, 0u64, 0.0),
            (10, 5, 0.0),
            (20, 5, 10.0 / 21.0),
            (30, 5, 20.0 / 31.0),
        ];
        let (mut r, mut a) = (0, 0);
        for (i, (req, acc, p)) in rows.into_iter().enumerate() {
            while r < req {
                t.admit(c, 0.999_999);
                r += 1;
            }
            while a < acc {
                t.accepted(c);
                a += 1;
            }
            assert!((t.reject_probability(c) - p).abs() < 1e-12, "row {i}");
        }
        // u below p rejects, above admits.
        assert!(!t.admit(c, 0.0));
        clock.advance(Duration::from_secs(120));
        assert_eq!(t.reject_probability(c), 0.0);
    }

    #[test]
    fn bad_k_names_the_field() {
        let bad = ThrottleConfig {
            k: 0.5,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "k");
    }
}
