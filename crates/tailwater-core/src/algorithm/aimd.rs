//! Additive increase, multiplicative decrease, as Netflix concurrency-limits' `AIMDLimit`.
//!
//! Rule (per sample): a drop, or an RTT above `timeout`, multiplies the limit by `backoff`
//! (rounded down); otherwise the limit grows by one, but only when the limiter was at least
//! half used (`in_flight · 2 ≥ limit`), so that an idle service does not inflate its limit.
//! The result is clamped to `[min_limit, max_limit]`.
//!
//! Defaults are Netflix's: initial 20, min 20, max 200, backoff 0.9 (allowed in `[0.5, 1)`),
//! timeout 5 s.

use std::time::Duration;

use super::util::setters;
use super::{Estimates, LimitAlgorithm, Sample, clamp_limit};
use crate::error::{ConfigError, check_backoff, check_limits, check_nonzero};

/// The AIMD limit. Build it with [`Aimd::builder`] or take the defaults with
/// [`Aimd::default`].
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{Aimd, LimitAlgorithm, Sample};
/// let mut aimd = Aimd::builder().initial_limit(20).min_limit(1).build().unwrap();
/// let ms = Duration::from_millis(1);
/// assert_eq!(aimd.update(&Sample::success(ms, ms, 10)), 21); // half used: grow
/// assert_eq!(aimd.update(&Sample::dropped(ms, ms, 10)), 18); // floor(21 * 0.9)
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: usize,
    min: usize,
    max: usize,
    backoff: f64,
    timeout: Duration,
}

impl Aimd {
    /// A builder with Netflix's defaults.
    pub fn builder() -> AimdBuilder {
        AimdBuilder::default()
    }
}

impl Default for Aimd {
    fn default() -> Self {
        AimdBuilder::default()
            .build()
            .expect("the default AIMD configuration is valid")
    }
}

impl LimitAlgorithm for Aimd {
    fn name(&self) -> &'static str {
        "aimd"
    }

    fn limit(&self) -> usize {
        self.limit
    }

    fn update(&mut self, sample: &Sample) -> usize {
        let next = if sample.is_drop() || sample.rtt > self.timeout {
            self.limit as f64 * self.backoff
        } else if sample.in_flight * 2 >= self.limit {
            self.limit as f64 + 1.0
        } else {
            self.limit as f64
        };
        self.limit = clamp_limit(next, self.min, self.max);
        self.limit
    }

    fn estimates(&self) -> Estimates {
        Estimates::default()
    }
}

/// Builder for [`Aimd`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct AimdBuilder {
    initial: usize,
    min: usize,
    max: usize,
    backoff: f64,
    timeout: Duration,
}

impl Default for AimdBuilder {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            backoff: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdBuilder {
    setters! {
        /// The starting limit (default 20).
        initial_limit(initial: usize);
        /// The floor (default 20, as Netflix).
        min_limit(min: usize);
        /// The ceiling (default 200).
        max_limit(max: usize);
        /// The multiplicative decrease on a drop, in `[0.5, 1)` (default 0.9).
        backoff_ratio(backoff: f64);
        /// An RTT above this counts as a drop (default 5 s).
        timeout(timeout: Duration);
    }

    /// Validates and builds. When only `min_limit` is lowered below the default initial
    /// limit, the initial limit is kept; an initial limit outside `[min, max]` is an error.
    pub fn build(self) -> Result<Aimd, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_backoff(self.backoff)?;
        check_nonzero("timeout", self.timeout)?;
        Ok(Aimd {
            limit: self.initial,
            min: self.min,
            max: self.max,
            backoff: self.backoff,
            timeout: self.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn table() {
        // (in_flight, outcome drop?, rtt, expected limit) starting from 20 with min 1.
        let mut a = Aimd::builder().min_limit(1).build().unwrap();
        let steps = [
            (10, false, MS, 21),                    // 10*2 >= 20: grow
            (5, false, MS, 21),                     // 5*2 < 21: hold
            (11, true, MS, 18),                     // drop: floor(21*0.9) = 18
            (9, false, Duration::from_secs(6), 16), // rtt above timeout: floor(18*0.9)
            (8, false, MS, 17),
        ];
        for (i, (inf, drop, rtt, want)) in steps.into_iter().enumerate() {
            let s = if drop {
                Sample::dropped(MS, rtt, inf)
            } else {
                Sample::success(MS, rtt, inf)
            };
            assert_eq!(a.update(&s), want, "step {i}");
        }
    }

    #[test]
    fn stays_within_bounds() {
        let mut a = Aimd::builder()
            .initial_limit(3)
            .min_limit(2)
            .max_limit(4)
            .build()
            .unwrap();
        for _ in 0..10 {
            a.update(&Sample::success(MS, MS, 100));
        }
        assert_eq!(a.limit(), 4);
        for _ in 0..10 {
            a.update(&Sample::dropped(MS, MS, 100));
        }
        assert_eq!(a.limit(), 2);
    }

    #[test]
    fn bad_config_names_the_field() {
        assert_eq!(
            Aimd::builder()
                .backoff_ratio(1.0)
                .build()
                .unwrap_err()
                .field(),
            "backoff_ratio"
        );
        assert_eq!(
            Aimd::builder()
                .backoff_ratio(f64::NAN)
                .build()
                .unwrap_err()
                .field(),
            "backoff_ratio"
        );
        assert_eq!(
            Aimd::builder().min_limit(0).build().unwrap_err().field(),
            "min_limit"
        );
        assert_eq!(
            Aimd::builder()
                .initial_limit(500)
                .build()
                .unwrap_err()
                .field(),
            "initial_limit"
        );
        assert_eq!(
            Aimd::builder()
                .timeout(Duration::ZERO)
                .build()
                .unwrap_err()
                .field(),
            "timeout"
        );
    }
}
