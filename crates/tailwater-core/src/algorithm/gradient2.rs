//! Gradient between a long-term and the current RTT, as Netflix concurrency-limits'
//! `Gradient2Limit` (the README's choice for servers, normally wrapped in
//! [`Windowed`](super::Windowed)), in two selectable [`Variant`]s.
//!
//! # Reference (Netflix `Gradient2Limit`)
//!
//! `short` is the sample's RTT; `long` is Netflix's `ExpAvgMeasurement`: a plain average of the
//! first 10 samples, then an exponential average with factor `2/(long_window + 1)` (≈ 0.0033
//! for 600). Per sample:
//!
//! 1. update `long`; if `long / short > 2`, `long *= 0.95` (recover quickly after a spell of
//!    overload);
//! 2. `in_flight < L/2`: hold (app-limited: do not grow an unused limit);
//! 3. `g = clamp(tolerance · long / short, 0.5, 1)`;
//! 4. `new = L·g + queue`, `L' = (1 − s)·L + s·new`, clamped to `[min, max]`.
//!
//! Defaults: initial 20, min 20, max 200, smoothing 0.2, queue 4, long window 600, tolerance
//! 1.5. The outcome of the sample is not looked at: a drop is fed as an ordinary RTT.
//!
//! Its three known failure modes (Netflix concurrency-limits issues), each reproduced in the
//! `failure_modes` tests:
//!
//! - **#176, drops ignored.** A request rejected or failed fast by an overloaded backend has a
//!   tiny RTT; the reference reads it as "no queueing" (`g = 1`) and *raises* the limit.
//! - **#134, creep under modest overload.** `long` follows any sustained RTT (its window is
//!   ~600 samples), and with tolerance 1.5 an RTT up to 1.5× `long` counts as no queueing.
//!   Once `long` has caught up with an elevated RTT, `g = 1` and the fixed `+queue` adds
//!   `s·queue` = 0.8 per sample, for ever: the limit walks up to `max` while the service is
//!   overloaded.
//! - **#137, stable timeout.** When every request times out at the client's deadline, every RTT
//!   is the same (e.g. 5 s), so `long = short`, `g = 1`, and the limit climbs to `max`.
//!
//! # Corrected
//!
//! Same estimator, three changes, each aimed at one failure mode:
//!
//! - **(a) drops back off** (#176): a dropped sample multiplies the limit by `backoff`
//!   (default 0.9, as AIMD) regardless of in-flight, and its RTT is kept out of every RTT
//!   estimate, because it is not a latency measurement.
//! - **(b) an anchor that does not drift, and headroom only without queueing** (#134): the
//!   gradient is `min(tolerance·long/short, noload_tolerance·noload/short)` where `noload` is
//!   the minimum RTT over the last `baseline_window`..`2·baseline_window` successful samples
//!   (default 1000) and `noload_tolerance` is 1.5 (Netflix's tolerance, applied to an anchor
//!   that does not drift). A sustained elevated RTT pulls `long` up but not `noload`, so queueing
//!   stays visible. The `+queue` headroom is added only when the unclamped gradient is ≥ 1,
//!   i.e. when neither estimate sees queueing; with a gradient of 0.8 the limit now falls
//!   instead of creeping up. A lasting change of the service's own latency is accepted once
//!   it has lasted `2·baseline_window` samples.
//! - **(c) timeouts are drops** (#137): a sample with `rtt ≥ timeout` (default 5 s, as AIMD) is
//!   treated as a drop, so a service where everything times out is backed off to `min`.

use std::time::Duration;

use super::util::{ExpAvg, WindowedMin, ratio, setters};
use super::{Estimates, LimitAlgorithm, Outcome, Sample, Variant};
use crate::error::{ConfigError, check_backoff, check_limits, check_nonzero, check_range};

/// The Gradient2 limit. Build it with [`Gradient2::builder`]; [`Gradient2::reference`] and
/// [`Gradient2::corrected`] give the defaults of each [`Variant`].
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{Gradient2, LimitAlgorithm, Sample};
/// let mut g = Gradient2::corrected();
/// let ms = Duration::from_millis(10);
/// g.update(&Sample::success(ms, ms, 20));
/// assert_eq!(g.limit(), 20);
/// // A drop backs off in the corrected variant (the floor is 20 by default).
/// let mut g = Gradient2::builder().corrected().min_limit(1).build().unwrap();
/// assert_eq!(g.update(&Sample::dropped(ms, Duration::ZERO, 20)), 18);
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2 {
    variant: Variant,
    estimated: f64,
    min: usize,
    max: usize,
    smoothing: f64,
    queue: f64,
    tolerance: f64,
    long_rtt: ExpAvg,
    last_rtt: Option<Duration>,
    last_gradient: Option<f64>,
    // Corrected variant only.
    noload: WindowedMin,
    noload_tolerance: f64,
    backoff: f64,
    timeout: Duration,
}

impl Gradient2 {
    /// A builder with Netflix's defaults and the [`Variant::Reference`] behaviour.
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder::default()
    }

    /// Netflix's `Gradient2Limit` with its defaults.
    pub fn reference() -> Self {
        Gradient2Builder::default()
            .build()
            .expect("the default Gradient2 configuration is valid")
    }

    /// The corrected variant with its defaults.
    pub fn corrected() -> Self {
        Gradient2Builder::default()
            .corrected()
            .build()
            .expect("the default corrected Gradient2 configuration is valid")
    }

    /// Which variant this is.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    fn current(&self) -> usize {
        super::clamp_limit(self.estimated, self.min, self.max)
    }

    /// The unrounded limit (for a decorator that steers it, as [`LlGuard`](super::LlGuard)).
    pub(crate) fn estimated(&self) -> f64 {
        self.estimated
    }

    /// Overrides the limit (clamped to `[min, max]`): a decorator's decision becomes the
    /// point the gradient continues from.
    pub(crate) fn set_limit(&mut self, v: f64) -> usize {
        self.set(v)
    }

    fn set(&mut self, new: f64) -> usize {
        if new.is_finite() {
            self.estimated = new.clamp(self.min as f64, self.max as f64);
        }
        self.current()
    }

    fn update_reference(&mut self, sample: &Sample) -> usize {
        let short = sample.rtt.as_secs_f64();
        self.last_rtt = Some(sample.rtt);
        let long = self.long_rtt.add(short);
        if ratio(long, short) > 2.0 {
            self.long_rtt.scale(0.95);
        }
        if (sample.in_flight as f64) < self.estimated / 2.0 {
            return self.current();
        }
        // With short = 0 Netflix computes inf (or NaN for 0/0) and breaks; we read an RTT of 0
        // as "no queueing visible".
        let g = (self.tolerance * ratio(long, short)).clamp(0.5, 1.0);
        self.last_gradient = Some(g);
        let l = self.estimated;
        let new = l * g + self.queue;
        self.set(l * (1.0 - self.smoothing) + new * self.smoothing)
    }

    fn update_corrected(&mut self, sample: &Sample) -> usize {
        // (a) and (c): drops and timeouts back off and teach the estimators nothing.
        if sample.is_drop() || sample.rtt >= self.timeout {
            self.last_gradient = Some(self.backoff);
            let l = self.estimated;
            return self.set(l * self.backoff);
        }
        let short = sample.rtt.as_secs_f64();
        self.last_rtt = Some(sample.rtt);
        let long = self.long_rtt.add(short);
        if ratio(long, short) > 2.0 {
            self.long_rtt.scale(0.95);
        }
        self.noload.add(sample.rtt);
        if (sample.in_flight as f64) < self.estimated / 2.0 {
            return self.current();
        }
        // (b): the gradient also looks at the no-load anchor, and headroom needs no queueing.
        let noload = self.noload.get().map_or(short, |d| d.as_secs_f64());
        let raw =
            (self.tolerance * ratio(long, short)).min(self.noload_tolerance * ratio(noload, short));
        let g = raw.clamp(0.5, 1.0);
        self.last_gradient = Some(g);
        let headroom = if raw >= 1.0 { self.queue } else { 0.0 };
        let l = self.estimated;
        let new = l * g + headroom;
        self.set(l * (1.0 - self.smoothing) + new * self.smoothing)
    }
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self::reference()
    }
}

impl LimitAlgorithm for Gradient2 {
    fn name(&self) -> &'static str {
        match self.variant {
            Variant::Reference => "gradient2",
            Variant::Corrected => "gradient2-corrected",
        }
    }

    fn limit(&self) -> usize {
        self.current()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.outcome == Outcome::Ignored {
            return self.current();
        }
        match self.variant {
            Variant::Reference => self.update_reference(sample),
            Variant::Corrected => self.update_corrected(sample),
        }
    }

    fn estimates(&self) -> Estimates {
        let long = (!self.long_rtt.is_empty())
            .then(|| self.long_rtt.get())
            .and_then(|v| Duration::try_from_secs_f64(v).ok());
        Estimates {
            min_rtt: match self.variant {
                Variant::Reference => None,
                Variant::Corrected => self.noload.get(),
            },
            short_rtt: self.last_rtt,
            long_rtt: long,
            gradient: self.last_gradient,
            queue: Some(self.queue),
            probing: Some(false),
        }
    }
}

/// Builder for [`Gradient2`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct Gradient2Builder {
    variant: Variant,
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    queue: usize,
    long_window: usize,
    tolerance: f64,
    noload_tolerance: f64,
    baseline_window: usize,
    backoff: f64,
    timeout: Duration,
}

impl Default for Gradient2Builder {
    fn default() -> Self {
        Self {
            variant: Variant::Reference,
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue: 4,
            long_window: 600,
            tolerance: 1.5,
            noload_tolerance: 1.5,
            baseline_window: 1000,
            backoff: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Gradient2Builder {
    /// Shorthand for `variant(Variant::Corrected)`.
    pub fn corrected(self) -> Self {
        self.variant(Variant::Corrected)
    }
    setters! {
        /// Reference or corrected behaviour (default [`Variant::Reference`]).
        variant(variant: Variant);
        /// The starting limit (default 20).
        initial_limit(initial: usize);
        /// The floor (default 20, as Netflix).
        min_limit(min: usize);
        /// The ceiling (default 200).
        max_limit(max: usize);
        /// Weight of the new estimate, in `(0, 1]` (default 0.2).
        smoothing(smoothing: f64);
        /// The fixed headroom added at each update (default 4; Netflix #189).
        queue_size(queue: usize);
        /// Samples in the long RTT's exponential average (default 600, at least 1).
        long_window(long_window: usize);
        /// How much slower than the long RTT a sample may be before it counts as queueing, in
        /// `[1, 100]` (default 1.5).
        rtt_tolerance(tolerance: f64);
        /// Corrected only: how much slower than the no-load RTT a sample may be before it counts
        /// as queueing, in `[1, 100]` (default 1.5, Netflix's tolerance).
        noload_tolerance(noload_tolerance: f64);
        /// Corrected only: the no-load RTT is the minimum of the last `baseline_window` to
        /// `2·baseline_window` successful samples (default 1000, at least 1).
        baseline_window(baseline_window: usize);
        /// Corrected only: multiplicative decrease on a drop, in `[0.5, 1)` (default 0.9).
        backoff_ratio(backoff: f64);
        /// Corrected only: an RTT at or above this is a drop (default 5 s).
        timeout(timeout: Duration);
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Gradient2, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_range("smoothing", self.smoothing, f64::MIN_POSITIVE, 1.0)?;
        check_range("rtt_tolerance", self.tolerance, 1.0, 100.0)?;
        check_range("noload_tolerance", self.noload_tolerance, 1.0, 100.0)?;
        if self.long_window == 0 {
            return Err(ConfigError::new("long_window", "must be at least 1"));
        }
        if self.baseline_window == 0 {
            return Err(ConfigError::new("baseline_window", "must be at least 1"));
        }
        check_backoff(self.backoff)?;
        check_nonzero("timeout", self.timeout)?;
        Ok(Gradient2 {
            variant: self.variant,
            estimated: self.initial as f64,
            min: self.min,
            max: self.max,
            smoothing: self.smoothing,
            queue: self.queue as f64,
            tolerance: self.tolerance,
            long_rtt: ExpAvg::new(self.long_window, 10),
            last_rtt: None,
            last_gradient: None,
            noload: WindowedMin::new(self.baseline_window as u64),
            noload_tolerance: self.noload_tolerance,
            backoff: self.backoff,
            timeout: self.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn secs(d: Option<Duration>) -> f64 {
        d.expect("estimate present").as_secs_f64()
    }

    #[test]
    fn reference_table() {
        // min 1 so that decreases are visible; otherwise Netflix defaults.
        // (rtt ms, in_flight, expected limit, expected estimated limit)
        let mut g = Gradient2::builder().min_limit(1).build().unwrap();
        let steps = [
            // long 10 (avg), g = clamp(1.5) = 1: new 24, L = 16 + 4.8 = 20.8
            (10, 20, 20, 20.8),
            // g = 1: new 24.8, L = 16.64 + 4.96 = 21.6
            (10, 20, 21, 21.6),
            // long = 50/3 = 16.67, g = 1.5·16.67/30 = 0.8333: new 22, L = 17.28 + 4.4 = 21.68
            (30, 20, 21, 21.68),
            // long = 110/4 = 27.5, g = 0.6875: new 18.905, L = 17.344 + 3.781 = 21.125
            (60, 20, 21, 21.125),
            // long = 510/5 = 102, g = 1.5·102/400 = 0.3825 → 0.5: new 14.5625,
            // L = 16.9 + 2.9125 = 19.8125
            (400, 20, 19, 19.8125),
            // in_flight 5 < L/2: hold
            (400, 5, 19, 19.8125),
        ];
        for (i, (rtt, inf, want, est)) in steps.into_iter().enumerate() {
            assert_eq!(
                g.update(&Sample::success(ms(0), ms(rtt), inf)),
                want,
                "step {i}"
            );
            assert!(
                (g.estimated - est).abs() < 1e-9,
                "step {i}: {}",
                g.estimated
            );
        }
    }

    #[test]
    fn reference_long_rtt_warmup_then_ema_then_decay() {
        let mut g = Gradient2::reference();
        for _ in 0..10 {
            g.update(&Sample::success(ms(0), ms(100), 0));
        }
        assert!((secs(g.estimates().long_rtt) - 0.1).abs() < 1e-9);
        // EMA: 100·(1 − 2/601) + 10·2/601 = 99.7005 ms; long/short = 9.97 > 2: ×0.95.
        g.update(&Sample::success(ms(0), ms(10), 0));
        let want = (100.0 * (1.0 - 2.0 / 601.0) + 10.0 * 2.0 / 601.0) * 0.95 / 1000.0;
        assert!((secs(g.estimates().long_rtt) - want).abs() < 1e-9);
    }

    #[test]
    fn reference_clamps_to_min_and_max() {
        let mut g = Gradient2::builder()
            .initial_limit(20)
            .min_limit(20)
            .max_limit(22)
            .build()
            .unwrap();
        for _ in 0..20 {
            g.update(&Sample::success(ms(0), ms(10), 100));
        }
        assert_eq!(g.limit(), 22);
        for _ in 0..20 {
            g.update(&Sample::success(ms(0), ms(1000), 100));
        }
        assert_eq!(g.limit(), 20);
    }

    #[test]
    fn corrected_table() {
        // min 1; baseline window large. (rtt ms, in_flight, drop, expected limit, estimated)
        let mut g = Gradient2::builder()
            .corrected()
            .min_limit(1)
            .build()
            .unwrap();
        let steps = [
            // as the reference: long 10, noload 10, raw = min(1.5, 1.5) ≥ 1: +4 → 20.8
            (10, 20, false, 20, 20.8),
            // long = 30/2 = 15: 1.5·15/20 = 1.125; noload 1.5·10/20 = 0.75 → g 0.75, no
            // headroom: new 15.6, L = 16.64 + 3.12 = 19.76
            (20, 20, false, 19, 19.76),
            // long = 55/3: 1.1; noload 1.5·10/25 = 0.6 → g 0.6: new 11.856,
            // L = 15.808 + 2.3712 = 18.1792
            (25, 20, false, 18, 18.1792),
            // drop: × 0.9 = 16.36128
            (1, 20, true, 16, 16.36128),
            // timeout (5 s ≥ timeout): × 0.9 = 14.725152
            (5000, 20, false, 14, 14.725152),
            // back to 10 ms: long = 65/4 = 16.25 (the drop and the timeout were not fed):
            // 1.5·16.25/10 = 2.44, noload 1.5: raw 1.5 → g 1, +4: new 18.725152,
            // L = 11.7801216 + 3.7450304 = 15.525152
            (10, 20, false, 15, 15.525152),
        ];
        for (i, (rtt, inf, drop, want, est)) in steps.into_iter().enumerate() {
            let s = if drop {
                Sample::dropped(ms(0), ms(rtt), inf)
            } else {
                Sample::success(ms(0), ms(rtt), inf)
            };
            assert_eq!(g.update(&s), want, "step {i}");
            assert!(
                (g.estimated - est).abs() < 1e-9,
                "step {i}: {}",
                g.estimated
            );
        }
        assert_eq!(g.estimates().min_rtt, Some(ms(10)));
    }

    #[test]
    fn ignored_samples_change_nothing() {
        let mut g = Gradient2::reference();
        let s = Sample {
            outcome: Outcome::Ignored,
            ..Sample::success(ms(0), ms(1), 100)
        };
        assert_eq!(g.update(&s), 20);
        assert_eq!(g.estimates().short_rtt, None);
    }

    #[test]
    fn zero_rtt_does_not_produce_nan() {
        for mut g in [Gradient2::reference(), Gradient2::corrected()] {
            for _ in 0..5 {
                g.update(&Sample::success(ms(0), Duration::ZERO, 100));
            }
            assert!(g.estimated.is_finite());
            assert!((20..=200).contains(&g.limit()));
        }
    }

    #[test]
    fn bad_config_names_the_field() {
        let field = |b: Gradient2Builder| b.build().unwrap_err().field();
        assert_eq!(field(Gradient2::builder().smoothing(0.0)), "smoothing");
        assert_eq!(field(Gradient2::builder().smoothing(f64::NAN)), "smoothing");
        assert_eq!(
            field(Gradient2::builder().rtt_tolerance(0.5)),
            "rtt_tolerance"
        );
        assert_eq!(
            field(Gradient2::builder().noload_tolerance(f64::INFINITY)),
            "noload_tolerance"
        );
        assert_eq!(field(Gradient2::builder().long_window(0)), "long_window");
        assert_eq!(
            field(Gradient2::builder().baseline_window(0)),
            "baseline_window"
        );
        assert_eq!(
            field(Gradient2::builder().backoff_ratio(1.0)),
            "backoff_ratio"
        );
        assert_eq!(
            field(Gradient2::builder().timeout(Duration::ZERO)),
            "timeout"
        );
        assert_eq!(field(Gradient2::builder().min_limit(0)), "min_limit");
        assert_eq!(
            field(Gradient2::builder().min_limit(300).max_limit(200)),
            "min_limit"
        );
        assert_eq!(
            field(Gradient2::builder().initial_limit(10)),
            "initial_limit"
        );
    }
}
