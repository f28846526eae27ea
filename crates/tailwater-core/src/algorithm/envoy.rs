//! The gradient controller of Envoy's adaptive concurrency filter
//! (`envoy.filters.http.adaptive_concurrency`, `gradient_controller.cc`), as a pure state
//! machine driven by `sample.now`, in two selectable [`Variant`]s.
//!
//! # Reference
//!
//! Envoy keeps two timers; here they are deadlines compared with each sample's `now` (a timer
//! "fires" at its deadline, before the sample that reveals it is recorded):
//!
//! - **minRTT window.** The controller starts in one. On entry the current limit is put
//!   aside and the limit is **pinned to `min_concurrency` (3)**; samples from requests that
//!   started before the window are discarded (Envoy PR #11579). Once `request_count` (50)
//!   samples have arrived, `minRTT` = the configured percentile of them, the put-aside limit
//!   is restored, the next window is scheduled `min_rtt_interval + rand[0, jitter·interval)`
//!   later (jitter 15 %), and the update timer is re-armed.
//! - **update interval** (`concurrency_update_interval`, default here 100 ms as Envoy's docs
//!   example): outside a window, if samples arrived, `sampleRTT` = their percentile (p50)
//!   and
//!
//!   ```text
//!   gradient  = clamp(minRTT · (1 + buffer) / sampleRTT, 0.5, 2.0)     buffer = 25 %
//!   limit     = L · gradient
//!   new limit = clamp(floor(limit + sqrt(limit)), min_limit, max_limit)   max 1000
//!   ```
//!
//! - after **5 consecutive updates that leave the limit at the floor** a new minRTT window
//!   starts at once (Envoy suspects a wrong minRTT).
//!
//! The floor (`min_limit`, Envoy's `min_concurrency_limit`) defaults to `min_concurrency`,
//! which is also the initial limit. Envoy uses an approximate histogram (circllhist) for the
//! percentiles; we keep up to 4096 samples per interval (a uniform reservoir beyond that) and
//! take the exact nearest-rank percentile.
//!
//! **Known failure mode** (Envoy #8337, #9007, #46532): every minRTT window pins the limit to
//! 3, however healthy the service and however many requests are in flight, until 50 requests
//! have completed. A service that needs 50 concurrent requests answers 503 to most of them
//! for the length of the window, every minute or so; jitter (#8337) and raising the pinned
//! value from 1 to 3 (#9007) made it rarer, not gone, and #46532 asks to split the probe
//! concurrency from the floor. The `failure_modes` tests measure it.
//!
//! # Corrected
//!
//! The minRTT window no longer pins to the floor: it probes at
//! `max(min_concurrency, ceil(L · probe_fraction))` (default `probe_fraction` 0.5, never above
//! `L`). Halving is the largest cut the controller itself makes in one interval (gradient ≥
//! 0.5), so a probe costs no more than one ordinary bad interval; and a limit that is binding
//! still drops enough for its queue to drain, so the window sees a near no-load RTT. When
//! the limit is far above the demand (healthy service) the probe does not bind at all and the
//! minRTT is measured from live traffic, with no 503s. The price: when the service was
//! queueing at `L/2`, the measured minRTT includes part of that queue and the limit settles
//! higher than the reference would; the 25 % buffer and the next windows bound that error.
//! Everything else (timers, formula, 5-at-floor rule) is the reference's.

use std::time::Duration;

use super::util::{DEFAULT_SEED, Reservoir, SplitMix64, ratio};
use super::{Estimates, LimitAlgorithm, Outcome, Sample, Variant, clamp_limit};
use crate::error::{ConfigError, check_range};

/// How many RTTs are kept per update interval or minRTT window; beyond it a uniform reservoir.
const MAX_SAMPLES: usize = 4096;

/// Envoy's adaptive-concurrency gradient controller. Build it with
/// [`EnvoyGradient::builder`]; [`EnvoyGradient::reference`] and [`EnvoyGradient::corrected`]
/// give the defaults of each [`Variant`].
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{EnvoyGradient, LimitAlgorithm, Sample};
/// let mut envoy = EnvoyGradient::reference();
/// assert_eq!(envoy.limit(), 3); // starts in a minRTT window, pinned to min_concurrency
/// let ms = Duration::from_millis;
/// for i in 1..=50 {
///     envoy.update(&Sample::success(ms(10 * i), ms(10), 3));
/// }
/// assert_eq!(envoy.estimates().min_rtt, Some(ms(10)));
/// assert_eq!(envoy.estimates().probing, Some(false));
/// ```
#[derive(Debug, Clone)]
pub struct EnvoyGradient {
    variant: Variant,
    update_interval: Duration,
    min_rtt_interval: Duration,
    request_count: u64,
    jitter: f64,
    min_concurrency: usize,
    floor: usize,
    max: usize,
    buffer: f64,
    percentile: f64,
    probe_fraction: f64,

    limit: usize,
    deferred: Option<usize>,
    samples: Reservoir,
    min_rtt: Option<Duration>,
    sample_rtt: Option<Duration>,
    gradient: Option<f64>,
    headroom: Option<f64>,
    next_update: Option<Duration>,
    next_min_rtt: Option<Duration>,
    epoch: Duration,
    consecutive_at_floor: u32,
    rng: SplitMix64,
}

impl EnvoyGradient {
    /// A builder with Envoy's defaults and the [`Variant::Reference`] behaviour.
    pub fn builder() -> EnvoyGradientBuilder {
        EnvoyGradientBuilder::default()
    }

    /// Envoy's gradient controller with its defaults.
    pub fn reference() -> Self {
        EnvoyGradientBuilder::default()
            .build()
            .expect("the default Envoy gradient configuration is valid")
    }

    /// The corrected variant with its defaults.
    pub fn corrected() -> Self {
        EnvoyGradientBuilder::default()
            .corrected()
            .build()
            .expect("the default corrected Envoy gradient configuration is valid")
    }

    /// Which variant this is.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Whether a minRTT window is in progress.
    pub fn in_min_rtt_window(&self) -> bool {
        self.deferred.is_some()
    }

    fn set_limit(&mut self, new: usize, at: Duration) {
        let old = self.limit;
        self.limit = new;
        if !self.in_min_rtt_window() && old == self.floor && new == self.floor {
            self.consecutive_at_floor += 1;
        } else {
            self.consecutive_at_floor = 0;
        }
        if self.consecutive_at_floor >= 5 {
            self.next_min_rtt = Some(at);
        }
    }

    fn probe_limit(&self) -> usize {
        let l = self.limit;
        match self.variant {
            Variant::Reference => self.min_concurrency,
            Variant::Corrected => {
                let lo = self.min_concurrency.min(l);
                let p = (l as f64 * self.probe_fraction).ceil();
                clamp_limit(p, lo, l)
            }
        }
    }

    fn enter_window(&mut self, at: Duration) {
        if self.in_min_rtt_window() {
            return;
        }
        let probe = self.probe_limit();
        self.deferred = Some(self.limit);
        self.set_limit(probe, at);
        self.samples.clear();
        self.epoch = at;
        self.next_min_rtt = None;
        self.next_update = None;
    }

    fn finish_window(&mut self, now: Duration) {
        if let Some(rtt) = self.samples.percentile(self.percentile) {
            self.min_rtt = Some(rtt);
        }
        self.samples.clear();
        let restored = self.deferred.unwrap_or(self.limit);
        self.set_limit(restored, now);
        self.deferred = None;
        let next = self.jittered_interval();
        self.next_min_rtt = Some(now.saturating_add(next));
        self.next_update = Some(now.saturating_add(self.update_interval));
    }

    fn jittered_interval(&mut self) -> Duration {
        let base = self.min_rtt_interval;
        if self.jitter == 0.0 {
            return base;
        }
        let range = (base.as_nanos() as f64 * self.jitter).ceil() as u64;
        base.saturating_add(Duration::from_nanos(self.rng.below(range)))
    }

    fn on_update_timer(&mut self, at: Duration, now: Duration) {
        if self.in_min_rtt_window() {
            self.next_update = None;
            return;
        }
        if let Some(rtt) = self.samples.percentile(self.percentile) {
            self.samples.clear();
            self.sample_rtt = Some(rtt);
            let new = self.calculate_new_limit(rtt);
            self.set_limit(new, at);
        }
        // The timer re-arms itself every interval; intervals without samples do nothing, so
        // jump straight to the first deadline after `now`.
        // At the end of representable time the timer stops rather than spin.
        let step = self.update_interval.as_nanos().max(1);
        let behind = now.saturating_sub(at).as_nanos() / step;
        let next = at.as_nanos() + step * (behind + 1);
        self.next_update = duration_from_nanos(next).filter(|&t| t > now);
    }

    fn calculate_new_limit(&mut self, sample_rtt: Duration) -> usize {
        let Some(min_rtt) = self.min_rtt else {
            return self.limit;
        };
        let buffered = min_rtt.as_secs_f64() * (1.0 + self.buffer);
        let g = ratio(buffered, sample_rtt.as_secs_f64()).clamp(0.5, 2.0);
        self.gradient = Some(g);
        let l = self.limit as f64 * g;
        let headroom = l.sqrt();
        self.headroom = Some(headroom);
        clamp_limit(l + headroom, self.floor, self.max)
    }

    fn run_timers(&mut self, now: Duration) {
        loop {
            let update = self.next_update.filter(|t| *t <= now);
            let probe = self.next_min_rtt.filter(|t| *t <= now);
            match (update, probe) {
                (None, None) => break,
                (Some(u), Some(p)) if p < u => self.enter_window(p),
                (Some(u), _) => self.on_update_timer(u, now),
                (None, Some(p)) => self.enter_window(p),
            }
        }
    }
}

/// `ns` nanoseconds as a `Duration`, or `None` beyond `Duration::MAX`.
fn duration_from_nanos(ns: u128) -> Option<Duration> {
    let secs = u64::try_from(ns / 1_000_000_000).ok()?;
    let nanos = u32::try_from(ns % 1_000_000_000).ok()?;
    Some(Duration::new(secs, nanos))
}

impl Default for EnvoyGradient {
    fn default() -> Self {
        Self::reference()
    }
}

impl LimitAlgorithm for EnvoyGradient {
    fn name(&self) -> &'static str {
        match self.variant {
            Variant::Reference => "envoy-gradient",
            Variant::Corrected => "envoy-gradient-corrected",
        }
    }

    fn limit(&self) -> usize {
        self.limit
    }

    fn update(&mut self, sample: &Sample) -> usize {
        self.run_timers(sample.now);
        // Envoy cancels the sample of a reset stream; every response (even a 503) is a
        // latency sample.
        if sample.outcome == Outcome::Ignored {
            return self.limit;
        }
        if sample.now.saturating_sub(sample.rtt) < self.epoch {
            return self.limit;
        }
        self.samples.push(sample.rtt);
        if self.in_min_rtt_window() && self.samples.count() >= self.request_count {
            self.finish_window(sample.now);
        }
        self.limit
    }

    fn estimates(&self) -> Estimates {
        Estimates {
            min_rtt: self.min_rtt,
            short_rtt: self.sample_rtt,
            long_rtt: None,
            gradient: self.gradient,
            queue: self.headroom,
            probing: Some(self.in_min_rtt_window()),
        }
    }

    /// Envoy's controller takes a percentile of each interval's samples.
    fn aggregates_samples(&self) -> bool {
        true
    }
}

/// Builder for [`EnvoyGradient`]; every setter is checked in [`build`](Self::build). Field
/// names follow Envoy's `GradientControllerConfig`.
#[derive(Debug, Clone)]
pub struct EnvoyGradientBuilder {
    variant: Variant,
    update_interval: Duration,
    min_rtt_interval: Duration,
    request_count: usize,
    jitter: f64,
    min_concurrency: usize,
    min_limit: Option<usize>,
    max: usize,
    buffer: f64,
    percentile: f64,
    probe_fraction: f64,
    seed: u64,
}

impl Default for EnvoyGradientBuilder {
    fn default() -> Self {
        Self {
            variant: Variant::Reference,
            update_interval: Duration::from_millis(100),
            min_rtt_interval: Duration::from_secs(60),
            request_count: 50,
            jitter: 0.15,
            min_concurrency: 3,
            min_limit: None,
            max: 1000,
            buffer: 0.25,
            percentile: 0.5,
            probe_fraction: 0.5,
            seed: DEFAULT_SEED,
        }
    }
}

impl EnvoyGradientBuilder {
    /// Reference or corrected behaviour (default [`Variant::Reference`]).
    pub fn variant(mut self, v: Variant) -> Self {
        self.variant = v;
        self
    }
    /// Shorthand for `variant(Variant::Corrected)`.
    pub fn corrected(self) -> Self {
        self.variant(Variant::Corrected)
    }
    /// `concurrency_update_interval`: how often the limit is recomputed (default 100 ms, the
    /// value in Envoy's docs example; Envoy requires it).
    pub fn update_interval(mut self, v: Duration) -> Self {
        self.update_interval = v;
        self
    }
    /// `min_rtt_calc_params.interval`: time between minRTT windows, at least 1 ms (default
    /// 60 s, the value in Envoy's docs example; Envoy requires it).
    pub fn min_rtt_interval(mut self, v: Duration) -> Self {
        self.min_rtt_interval = v;
        self
    }
    /// `min_rtt_calc_params.request_count`: samples per minRTT window (default 50).
    pub fn request_count(mut self, v: usize) -> Self {
        self.request_count = v;
        self
    }
    /// `min_rtt_calc_params.jitter` as a fraction in `[0, 1]` (default 0.15).
    pub fn jitter(mut self, v: f64) -> Self {
        self.jitter = v;
        self
    }
    /// `min_rtt_calc_params.min_concurrency`: the pinned limit during a reference minRTT
    /// window, the initial limit and the default floor (default 3).
    pub fn min_concurrency(mut self, v: usize) -> Self {
        self.min_concurrency = v;
        self
    }
    /// `concurrency_limit_params.min_concurrency_limit`: the floor of the computed limit
    /// (default: `min_concurrency`).
    pub fn min_limit(mut self, v: usize) -> Self {
        self.min_limit = Some(v);
        self
    }
    /// `concurrency_limit_params.max_concurrency_limit` (default 1000).
    pub fn max_limit(mut self, v: usize) -> Self {
        self.max = v;
        self
    }
    /// `min_rtt_calc_params.buffer` as a fraction in `[0, 1]` (default 0.25).
    pub fn buffer(mut self, v: f64) -> Self {
        self.buffer = v;
        self
    }
    /// `sample_aggregate_percentile` as a fraction in `(0, 1]` (default 0.5).
    pub fn percentile(mut self, v: f64) -> Self {
        self.percentile = v;
        self
    }
    /// Corrected only: the probe limit as a fraction of the current limit, in `(0, 1]`
    /// (default 0.5).
    pub fn probe_fraction(mut self, v: f64) -> Self {
        self.probe_fraction = v;
        self
    }
    /// Seed of the minRTT-interval jitter (a fixed default, so that runs repeat).
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<EnvoyGradient, ConfigError> {
        if self.update_interval.is_zero() {
            return Err(ConfigError::new(
                "update_interval",
                "must be greater than zero",
            ));
        }
        if self.min_rtt_interval < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "min_rtt_interval",
                "must be at least 1 ms",
            ));
        }
        if self.request_count == 0 {
            return Err(ConfigError::new("request_count", "must be at least 1"));
        }
        check_range("jitter", self.jitter, 0.0, 1.0)?;
        if self.min_concurrency == 0 {
            return Err(ConfigError::new("min_concurrency", "must be at least 1"));
        }
        if self.min_concurrency > self.max {
            return Err(ConfigError::new(
                "min_concurrency",
                format!(
                    "min_concurrency {} is greater than max_limit {}",
                    self.min_concurrency, self.max
                ),
            ));
        }
        let floor = self.min_limit.unwrap_or(self.min_concurrency);
        if floor == 0 {
            return Err(ConfigError::new("min_limit", "must be at least 1"));
        }
        if floor > self.max {
            return Err(ConfigError::new(
                "min_limit",
                format!("min_limit {floor} is greater than max_limit {}", self.max),
            ));
        }
        check_range("buffer", self.buffer, 0.0, 1.0)?;
        check_range("percentile", self.percentile, f64::MIN_POSITIVE, 1.0)?;
        check_range(
            "probe_fraction",
            self.probe_fraction,
            f64::MIN_POSITIVE,
            1.0,
        )?;
        let mut rng = SplitMix64::new(self.seed);
        let reservoir_seed = rng.next_u64();
        Ok(EnvoyGradient {
            variant: self.variant,
            update_interval: self.update_interval,
            min_rtt_interval: self.min_rtt_interval,
            request_count: self.request_count as u64,
            jitter: self.jitter,
            min_concurrency: self.min_concurrency,
            floor,
            max: self.max,
            buffer: self.buffer,
            percentile: self.percentile,
            probe_fraction: self.probe_fraction,
            // Envoy starts inside a minRTT window, with the limit at min_concurrency.
            limit: self.min_concurrency,
            deferred: Some(self.min_concurrency),
            samples: Reservoir::new(MAX_SAMPLES, reservoir_seed),
            min_rtt: None,
            sample_rtt: None,
            gradient: None,
            headroom: None,
            next_update: None,
            next_min_rtt: None,
            epoch: Duration::ZERO,
            consecutive_at_floor: 0,
            rng,
        })
    }
}

#[cfg(test)]
mod tests;
