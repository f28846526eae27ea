//! Delay-based limit after TCP Vegas, as Netflix concurrency-limits' `VegasLimit` (the default
//! limit of every Netflix limiter builder).
//!
//! TCP Vegas (Brakmo and Peterson, 1995) estimates how many packets sit in queues from the gap
//! between the expected and the actual throughput. Netflix applies the same idea to requests:
//!
//! ```text
//! queue = ceil(L · (1 − rtt_noload / rtt))
//! ```
//!
//! where `rtt_noload` is the smallest RTT seen. With `log10(L) = max(1, floor(log10 L))`
//! (Netflix `Log10RootIntFunction`), α = 3·log10 L, β = 6·log10 L and threshold = log10 L,
//! each sample moves the limit (in this order):
//!
//! 1. every `jitter · probe_multiplier · L` samples (jitter uniform in `[0.5, 1)`, redrawn at
//!    each probe) `rtt_noload` is reset to the current sample's RTT, and nothing else happens
//!    (so that a baseline that rose for good is eventually learned, Netflix #165);
//! 2. the first sample, or one faster than `rtt_noload`, only lowers `rtt_noload`;
//! 3. a drop: `L − log10 L`;
//! 4. `in_flight · 2 < L`: hold (the service is not using its limit; do not inflate it);
//! 5. `queue ≤ threshold`: `L + β` (no queueing: grow fast);
//! 6. `queue < α`: `L + log10 L`;
//! 7. `queue > β`: `L − log10 L`;
//! 8. otherwise hold.
//!
//! The new value is clamped to `[min_limit, max_limit]` and smoothed:
//! `L' = (1 − s)·L + s·new`. The limit kept internally is a real number; [`limit`] is its
//! integer part, as in Netflix.
//!
//! Defaults are Netflix's: initial 20, max 1000, smoothing 1.0, probe multiplier 30, and no
//! floor other than 1 (`min_limit` is our addition, default 1). The probe jitter comes from a
//! seeded PRNG ([`VegasBuilder::seed`]) instead of `ThreadLocalRandom`, so runs repeat.
//!
//! Known weaknesses (see the research notes): no slow start (#35), so a high-concurrency
//! service ramps up by β per sample at best; `rtt_noload` can drift up between probes (#165).
//!
//! [`limit`]: LimitAlgorithm::limit

use std::time::Duration;

use super::util::{DEFAULT_SEED, SplitMix64, log10_root, setters};
use super::{Estimates, LimitAlgorithm, Outcome, Sample, clamp_limit};
use crate::error::{ConfigError, check_limits, check_range};

/// The Vegas limit. Build it with [`Vegas::builder`] or take Netflix's defaults with
/// [`Vegas::default`].
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{LimitAlgorithm, Sample, Vegas};
/// let mut vegas = Vegas::default();
/// let ms = Duration::from_millis;
/// vegas.update(&Sample::success(ms(10), ms(10), 20)); // first sample: sets rtt_noload
/// assert_eq!(vegas.update(&Sample::success(ms(20), ms(10), 20)), 26); // no queue: + β
/// ```
#[derive(Debug, Clone)]
pub struct Vegas {
    estimated: f64,
    min: usize,
    max: usize,
    smoothing: f64,
    probe_multiplier: usize,
    rtt_noload: Option<Duration>,
    probe_count: u64,
    probe_jitter: f64,
    rng: SplitMix64,
    last_rtt: Option<Duration>,
    last_queue: Option<f64>,
}

impl Vegas {
    /// A builder with Netflix's defaults.
    pub fn builder() -> VegasBuilder {
        VegasBuilder::default()
    }

    fn should_probe(&self) -> bool {
        self.probe_jitter * self.probe_multiplier as f64 * self.estimated <= self.probe_count as f64
    }

    fn current(&self) -> usize {
        clamp_limit(self.estimated, self.min, self.max)
    }
}

impl Default for Vegas {
    fn default() -> Self {
        VegasBuilder::default()
            .build()
            .expect("the default Vegas configuration is valid")
    }
}

impl LimitAlgorithm for Vegas {
    fn name(&self) -> &'static str {
        "vegas"
    }

    fn limit(&self) -> usize {
        self.current()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        // Netflix rejects rtt <= 0 with an exception; an ignored sample never reaches it.
        if sample.outcome == Outcome::Ignored || sample.rtt.is_zero() {
            return self.current();
        }
        let rtt = sample.rtt;
        self.last_rtt = Some(rtt);

        self.probe_count += 1;
        if self.should_probe() {
            self.probe_jitter = self.rng.range_f64(0.5, 1.0);
            self.probe_count = 0;
            self.rtt_noload = Some(rtt);
            return self.current();
        }

        let noload = match self.rtt_noload {
            Some(n) if rtt >= n => n,
            _ => {
                self.rtt_noload = Some(rtt);
                return self.current();
            }
        };

        let l = self.estimated;
        let queue = (l * (1.0 - noload.as_secs_f64() / rtt.as_secs_f64())).ceil();
        self.last_queue = Some(queue);
        let log = log10_root(l as usize) as f64;

        let new = if sample.is_drop() {
            l - log
        } else if (sample.in_flight as f64) * 2.0 < l {
            return self.current();
        } else {
            let alpha = 3.0 * log;
            let beta = 6.0 * log;
            let threshold = log;
            if queue <= threshold {
                l + beta
            } else if queue < alpha {
                l + log
            } else if queue > beta {
                l - log
            } else {
                return self.current();
            }
        };
        let new = new.clamp(self.min as f64, self.max as f64);
        self.estimated = (1.0 - self.smoothing) * l + self.smoothing * new;
        self.current()
    }

    fn estimates(&self) -> Estimates {
        Estimates {
            min_rtt: self.rtt_noload,
            short_rtt: self.last_rtt,
            long_rtt: None,
            gradient: None,
            queue: self.last_queue,
            probing: Some(false),
        }
    }
}

/// Builder for [`Vegas`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct VegasBuilder {
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    probe_multiplier: usize,
    seed: u64,
}

impl Default for VegasBuilder {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 1,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: DEFAULT_SEED,
        }
    }
}

impl VegasBuilder {
    setters! {
        /// The starting limit (default 20).
        initial_limit(initial: usize);
        /// The floor (default 1: Netflix's Vegas has none).
        min_limit(min: usize);
        /// The ceiling (default 1000).
        max_limit(max: usize);
        /// Weight of the new estimate, in `(0, 1]` (default 1.0: no smoothing).
        smoothing(smoothing: f64);
        /// `rtt_noload` is re-measured every `jitter · probe_multiplier · limit` samples, jitter
        /// in `[0.5, 1)` (default 30, at least 1).
        probe_multiplier(probe_multiplier: usize);
        /// Seed of the probe jitter (a fixed default, so that runs repeat).
        seed(seed: u64);
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Vegas, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_range("smoothing", self.smoothing, f64::MIN_POSITIVE, 1.0)?;
        if self.probe_multiplier == 0 {
            return Err(ConfigError::new("probe_multiplier", "must be at least 1"));
        }
        let mut rng = SplitMix64::new(self.seed);
        let probe_jitter = rng.range_f64(0.5, 1.0);
        Ok(Vegas {
            estimated: self.initial as f64,
            min: self.min,
            max: self.max,
            smoothing: self.smoothing,
            probe_multiplier: self.probe_multiplier,
            rtt_noload: None,
            probe_count: 0,
            probe_jitter,
            rng,
            last_rtt: None,
            last_queue: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    #[test]
    fn table() {
        // Defaults: initial 20, max 1000, smoothing 1. log10 L = 1 below 100: α 3, β 6.
        // (rtt ms, in_flight, drop, expected limit, why)
        let steps: [(f64, usize, bool, usize); 9] = [
            (10.0, 10, false, 20), // first sample: rtt_noload = 10, hold
            (10.0, 10, false, 26), // queue ceil(20·0) = 0 ≤ 1: + β (6)
            (10.0, 5, false, 26),  // 5·2 < 26: hold
            (20.0, 20, false, 25), // queue ceil(26·0.5) = 13 > β: − 1
            (20.0, 20, true, 24),  // drop: − 1
            (12.5, 20, false, 24), // queue ceil(24·0.2) = 5 in [α, β]: hold
            (10.5, 20, false, 25), // queue ceil(24·0.0476) = 2 < α: + 1
            (5.0, 20, false, 25),  // faster than rtt_noload: new baseline 5 ms, hold
            (5.0, 13, false, 31),  // queue 0: + β
        ];
        let mut v = Vegas::default();
        let mut now = Duration::ZERO;
        for (i, (rtt, inf, drop, want)) in steps.into_iter().enumerate() {
            now += ms(rtt);
            let s = if drop {
                Sample::dropped(now, ms(rtt), inf)
            } else {
                Sample::success(now, ms(rtt), inf)
            };
            assert_eq!(v.update(&s), want, "step {i}");
            assert_eq!(v.limit(), want, "step {i}");
        }
        assert_eq!(v.estimates().min_rtt, Some(ms(5.0)));
    }

    #[test]
    fn log10_steps_above_100() {
        // At L = 100, log10 L = 2: β = 12, α = 6.
        let mut v = Vegas::builder().initial_limit(100).build().unwrap();
        let t = Duration::from_millis(10);
        v.update(&Sample::success(t, t, 100));
        assert_eq!(v.update(&Sample::success(t, t, 100)), 112);
        assert_eq!(v.update(&Sample::dropped(t, t, 100)), 110);
    }

    #[test]
    fn smoothing_blends_old_and_new() {
        // smoothing 0.5: L' = 0.5·20 + 0.5·26 = 23.
        let mut v = Vegas::builder().smoothing(0.5).build().unwrap();
        let t = Duration::from_millis(10);
        v.update(&Sample::success(t, t, 20));
        assert_eq!(v.update(&Sample::success(t, t, 20)), 23);
    }

    #[test]
    fn probe_resets_rtt_noload_within_jitter_bounds() {
        // probe_multiplier 1, L = 10: the probe comes after jitter·10 ∈ [5, 10) samples.
        let mut v = Vegas::builder()
            .initial_limit(10)
            .probe_multiplier(1)
            .build()
            .unwrap();
        let t = Duration::from_millis(10);
        let slow = Duration::from_millis(20);
        v.update(&Sample::success(t, t, 0)); // sample 1: baseline 10 ms
        let mut reset_at = None;
        for i in 2..=12 {
            v.update(&Sample::success(t, slow, 0)); // in_flight 0: the limit holds
            if v.estimates().min_rtt == Some(slow) {
                reset_at = Some(i);
                break;
            }
        }
        let at = reset_at.expect("a probe happened within 10 samples");
        assert!((5..=10).contains(&at), "probe at sample {at}");
        assert_eq!(v.limit(), 10);
    }

    #[test]
    fn bad_config_names_the_field() {
        let field = |b: VegasBuilder| b.build().unwrap_err().field();
        assert_eq!(field(Vegas::builder().smoothing(0.0)), "smoothing");
        assert_eq!(field(Vegas::builder().smoothing(f64::NAN)), "smoothing");
        assert_eq!(field(Vegas::builder().smoothing(1.5)), "smoothing");
        assert_eq!(
            field(Vegas::builder().probe_multiplier(0)),
            "probe_multiplier"
        );
        assert_eq!(field(Vegas::builder().min_limit(0)), "min_limit");
        assert_eq!(
            field(Vegas::builder().min_limit(50).max_limit(10)),
            "min_limit"
        );
        assert_eq!(field(Vegas::builder().initial_limit(2000)), "initial_limit");
    }
}
