//! When to hedge: the pXX of recent latency, from a rotating histogram.
//!
//! As tower's `Hedge`: latencies land in the current period's histogram; the hedge delay is
//! the chosen percentile of the *previous* full period, and there is no hedging until that
//! period held `min_data_points` latencies. Unlike tower, the caller records **every**
//! attempt's latency, the loser's too when it finishes (or the time it had run when it was
//! cancelled), so the histogram is not only the winners' tail and does not drift down
//! ("research/outbound.md" §2.3). The extra load is capped by the shared
//! [`RetryBudget`](super::RetryBudget) (`Extra::Hedge`), not here.
//!
//! The histogram is log-linear (16 sub-buckets per power of two of microseconds: about 6 %
//! resolution, 1 µs to 2⁴⁰ µs), fixed-size and allocation-free after construction.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock};
use crate::error::{ConfigError, check_range};

const SUB: u32 = 16;
const BUCKETS: usize = (SUB + (40 - 4 + 1) * SUB) as usize;

/// A log-linear latency histogram in microseconds.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish()
    }
}

fn index(micros: u64) -> usize {
    let v = micros.min((1 << 40) - 1);
    if v < u64::from(SUB) {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // ≥ 4
    let sub = (v >> (e - 4)) & u64::from(SUB - 1);
    ((e - 3) * SUB + sub as u32) as usize
}

/// The largest value in bucket `i` (so quantiles never under-estimate).
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < u64::from(SUB) {
        return i;
    }
    let e = i / u64::from(SUB) + 3;
    let sub = i % u64::from(SUB);
    ((u64::from(SUB) + sub + 1) << (e - 4)) - 1
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let c = &mut self.counts[index(micros)];
        *c = c.saturating_add(1);
        self.total += 1;
    }

    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), rounded up to its bucket's top; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(Duration::from_micros(upper(i)));
            }
        }
        None
    }

    fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }
}

/// Hedging knobs.
///
/// | field | default | anchor |
/// |---|---|---|
/// | `percentile` | 0.95 | "The Tail at Scale" (hedge after the p95: ≈ 5 % extra) |
/// | `min_data_points` | 100 | tower `Hedge::new(.., min_data_points, ..)` (tower leaves it to the caller) |
/// | `period` | 1 s | tower `Hedge`'s `period` (the rotation of its histogram) |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeConfig {
    /// The latency quantile after which a second attempt is sent, in (0, 1).
    pub percentile: f64,
    /// No hedging until the previous period held this many latencies.
    pub min_data_points: u64,
    /// How long each histogram collects before it becomes the one read.
    pub period: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            percentile: 0.95,
            min_data_points: 100,
            period: Duration::from_secs(1),
        }
    }
}

impl HedgeConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("percentile", self.percentile, 0.01, 0.9999)?;
        if self.period < Duration::from_millis(1) {
            return Err(ConfigError::new("period", "must be at least 1 ms"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Rotating {
    current: Histogram,
    previous: Histogram,
    rotated_at: Duration,
    delay: Option<Duration>,
}

/// The hedge delay of one downstream service (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::outbound::{HedgeConfig, Hedger};
/// let clock = ManualClock::new();
/// let h = Hedger::with_clock(HedgeConfig { min_data_points: 10, ..Default::default() }, clock.clone())?;
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// assert_eq!(h.delay(), None); // the first period is still collecting
/// clock.advance(Duration::from_secs(1));
/// let d = h.delay().unwrap(); // ≈ p95 = 95 ms (bucket top, ≤ 6 % above)
/// assert!(d >= Duration::from_millis(95) && d < Duration::from_millis(101), "{d:?}");
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct Hedger<C: Clock = MonotonicClock> {
    config: HedgeConfig,
    clock: C,
    state: Mutex<Rotating>,
}

impl<C: Clock> fmt::Debug for Hedger<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedger")
            .field("config", &self.config)
            .finish()
    }
}

impl Hedger<MonotonicClock> {
    /// A hedger on the default clock.
    pub fn new(config: HedgeConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl<C: Clock> Hedger<C> {
    /// A hedger reading `clock`.
    pub fn with_clock(config: HedgeConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let now = clock.now();
        Ok(Self {
            config,
            clock,
            state: Mutex::new(Rotating {
                current: Histogram::new(),
                previous: Histogram::new(),
                rotated_at: now,
                delay: None,
            }),
        })
    }

    fn rotated(&self) -> std::sync::MutexGuard<'_, Rotating> {
        let now = self.clock.now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_sub(s.rotated_at);
        if elapsed >= self.config.period {
            if elapsed >= 2 * self.config.period {
                s.current.clear(); // a whole idle period: nothing recent to read
            }
            let r = &mut *s;
            std::mem::swap(&mut r.current, &mut r.previous);
            r.current.clear();
            r.rotated_at = now;
            r.delay = if r.previous.len() >= self.config.min_data_points {
                r.previous.quantile(self.config.percentile)
            } else {
                None
            };
        }
        s
    }

    /// Records one attempt's latency (every attempt's, the hedge's and the loser's too).
    pub fn record(&self, latency: Duration) {
        self.rotated().current.record(latency);
    }

    /// How long to wait before hedging, or `None` while there is too little data.
    pub fn delay(&self) -> Option<Duration> {
        self.rotated().delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn buckets_cover_values_within_six_percent() {
        for v in [0u64, 1, 15, 16, 17, 31, 32, 100, 1000, 12_345, 1 << 30] {
            let i = index(v);
            assert!(upper(i) >= v, "{v}");
            assert!(
                upper(i) as f64 <= v as f64 * 1.0625 + 1.0,
                "{v} -> {}",
                upper(i)
            );
            assert!(i == 0 || upper(i - 1) < v, "{v}");
        }
    }

    #[test]
    fn quantiles_and_rotation_by_hand() {
        let clock = ManualClock::new();
        let h = Hedger::with_clock(
            HedgeConfig {
                percentile: 0.9,
                min_data_points: 10,
                ..Default::default()
            },
            clock.clone(),
        )
        .unwrap();
        // Ten latencies 1..=10 ms: p90 = 9 ms (rank 9), reported as its bucket's top.
        for ms in 1..=10 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.delay(), None);
        clock.advance(Duration::from_secs(1));
        let d = h.delay().unwrap();
        assert!(
            d >= Duration::from_millis(9) && d <= Duration::from_micros(9_216),
            "{d:?}"
        );
        // Nine more in the next period: below min_data_points, no hedging.
        for _ in 0..9 {
            h.record(Duration::from_millis(50));
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(h.delay(), None);
        // Two idle periods: nothing recent.
        clock.advance(Duration::from_secs(2));
        assert_eq!(h.delay(), None);
    }
}
