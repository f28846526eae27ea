//! Limit algorithms: pure state machines that turn samples into a concurrency limit.
//!
//! An algorithm never reads a clock and never touches shared state: it is handed one
//! [`Sample`] at a time (the time of the sample is part of it) and answers with the new limit.
//! The [`Limiter`](crate::Limiter) owns one algorithm, serialises calls to it, and publishes
//! the limit it returns. The simulator drives the very same algorithm objects on virtual time.
//! Algorithms that need randomness (Vegas' probe jitter, Envoy's minRTT jitter) draw it from
//! a small PRNG seeded by their builder's `seed` (fixed by default), so every run repeats.
//!
//! | Algorithm | Origin | What it does | Use it when |
//! |---|---|---|---|
//! | [`Fixed`] | — | a constant | you know the right number, or as a baseline |
//! | [`Aimd`] | Netflix concurrency-limits `AIMDLimit` | +1 per success at ≥ half use, ×0.9 on a drop or timeout | the signal is errors/timeouts, not latency |
//! | [`Vegas`] | Netflix `VegasLimit`, after TCP Vegas | estimates the queue from `1 − minRTT/RTT`, ±log10 L steps | latency is stable and its minimum means something; Netflix's default |
//! | [`Gradient2`] ([`Variant::Reference`]) | Netflix `Gradient2Limit` | limit × clamp(1.5·longRTT/RTT, 0.5, 1) + 4, smoothed | comparing with Netflix; wrap in [`Windowed`] |
//! | [`Gradient2`] ([`Variant::Corrected`]) | ours, on Netflix `Gradient2Limit` | adds back-off on drops and timeouts and a no-load anchor; headroom only without queueing | servers with noisy latency: our recommended latency-based choice, in [`Windowed`] |
//! | [`EnvoyGradient`] ([`Variant::Reference`]) | Envoy adaptive concurrency filter, gradient controller | p50 per interval vs a periodically re-measured minRTT, `L·g + √(L·g)` | comparing with Envoy (bursts of 503s at every minRTT window) |
//! | [`EnvoyGradient`] ([`Variant::Corrected`]) | ours, on Envoy's controller | probes minRTT at half the limit instead of pinning to 3 | you want Envoy's fast interval-based control without the periodic 503s |
//! | [`Headroom`] | ours, on Netflix `Gradient2Limit`, BBR and Little's law | corrects only a binding limit, against the service's own noise; a Little's-law guard holds it through a uniform slowdown | the default ([`recommended`]): a proxy or server that knows nothing of its backend |
//! | [`LlGuard`] | the research notes' "LL-guarded gradient" | corrected Gradient2 in short windows, guarded by `max rate × min mean RTT` with probing | comparing with [`Headroom`] |
//! | [`Windowed`] | Netflix `WindowedLimit` | one average (or percentile) sample per window, small windows and sub-100 µs samples discarded | in front of Vegas or Gradient2 at more than a few requests per second |
//!
//! By name (the same in the library, `tailwater sim`, the proxy's TOML and `tailwater drill`),
//! every configuration above is an [`AlgorithmName`](crate::names::AlgorithmName), built by
//! [`AlgorithmName::build`](crate::names::AlgorithmName::build).
//!
//! Choosing: start with [`recommended`] ([`Headroom`]); with a clear error signal (timeouts,
//! 429/503 from upstream) [`Aimd`] works; `Windowed<Gradient2>` with [`Variant::Corrected`]
//! reads a uniformly slower or a high-variance service as queueing;
//! when the service's latency floor is stable and traffic is steady, [`Vegas`] converges
//! fastest; [`EnvoyGradient`] recomputes on a fixed cadence and suits proxies.
//!
//! The reference variants keep the anchors' known failure modes on purpose, so that the
//! simulator can compare: Gradient2 ignores drops (Netflix #176), creeps upward under modest
//! overload (#134) and climbs to max when every request times out (#137); Envoy pins the
//! limit to 3 during every minRTT window (Envoy #8337, #9007, #46532). Each type's docs say
//! how the corrected variant avoids them, and the `failure_modes` tests show it.

mod aimd;
mod envoy;
mod fixed;
mod gradient2;
mod guard;
mod headroom;
pub(crate) mod util;
mod vegas;
mod window_stats;
mod windowed;

#[cfg(test)]
mod failure_modes;
#[cfg(test)]
mod proptests;

pub use aimd::{Aimd, AimdBuilder};
pub use envoy::{EnvoyGradient, EnvoyGradientBuilder};
pub use fixed::Fixed;
pub use gradient2::{Gradient2, Gradient2Builder};
pub use guard::{GAIN_CYCLE, LlGuard, LlGuardBuilder};
pub use headroom::{Headroom, HeadroomBuilder};
pub use vegas::{Vegas, VegasBuilder};
pub use windowed::{Aggregate, Windowed, WindowedBuilder};

pub(crate) use util::DEFAULT_SEED;

use std::fmt;
use std::time::Duration;

/// The algorithm tailwater recommends for a server-side, latency-driven limit, and the
/// [`Limiter`](crate::Limiter)'s default: [`Headroom`] with its defaults.
///
/// Why: it is the one algorithm that passes the simulator's `default-limit` suite (issue 16)
/// best — it corrects the limit only in windows where the limit bound, judges queueing against
/// the service's own noise, and a Little's-law guard keeps the limit through a uniform
/// slowdown. `tailwater sim --suite default-limit` prints the table; the README has it, with
/// the goals it does not reach yet (a processor-sharing server that thrashes past its cores,
/// and 4-worker pools with very dispersed service at 0.9× load).
///
/// ```
/// use tailwater_core::algorithm::{recommended, LimitAlgorithm};
/// assert_eq!(recommended().name(), "headroom");
/// ```
///
/// Every surface uses it when nothing else is configured: [`Limiter::builder`](crate::Limiter::builder),
/// the tower layers, the proxy's routes without `[route.limit]`, and `tailwater drill`. By
/// name it is `recommended` ([`AlgorithmName::Recommended`](crate::names::AlgorithmName)).
pub fn recommended() -> Recommended {
    Headroom::default()
}

/// The type [`recommended`] returns, for code that stores the default algorithm unboxed
/// (a tower layer's default type parameter, say). It changes when the recommendation does.
pub type Recommended = Headroom;

/// How a request that held a permit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It completed normally: its RTT is a valid latency measurement.
    Success,
    /// It failed in a way that signals overload (timeout, 503, 429, connection reset): the
    /// limit should come down. Its RTT is not a latency measurement.
    Dropped,
    /// It ended in a way that says nothing about load (client cancelled, 4xx): no update.
    Ignored,
}

impl Outcome {
    /// The lower-case name used in metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Dropped => "dropped",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Which behaviour of an anchor algorithm to run: the anchor's own, known failure modes
/// included, or tailwater's correction of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Variant {
    /// The anchor's behaviour, faithfully (for comparison in the simulator).
    #[default]
    Reference,
    /// The anchor with its documented failure modes fixed.
    Corrected,
}

/// One observation fed to an algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the request completed, by the limiter's clock.
    pub now: Duration,
    /// How long the request held its permit (or the RTT the caller reported).
    pub rtt: Duration,
    /// How many permits were in flight when this request acquired its own (itself included).
    pub in_flight: usize,
    /// The limit when this request acquired its permit (0: unknown). With `in_flight` it says
    /// whether the limit was binding at that moment (`in_flight >= limit`: the limiter was
    /// full, and the next request was refused or queued), which the limit at the time the
    /// sample arrives, a round trip later, cannot say.
    pub limit: usize,
    /// How the request ended.
    pub outcome: Outcome,
    /// How many completions this sample stands for: 1, or 2^k while the limiter measures
    /// only every 2^k-th permit ([`RttSampling::Adaptive`](crate::limiter::RttSampling)).
    /// Algorithms that count completions (a rate) add it; averages of RTTs ignore it.
    pub weight: u32,
    /// How many requests the limiter had refused since it was built, by the time this
    /// sample was recorded (0: unknown, or none yet). A running count, not a delta, so a
    /// sample skipped under contention loses nothing: an algorithm compares two samples'
    /// counts to learn how much demand it turned away in between (the offered load, which
    /// completions alone cannot show).
    pub refused: u64,
}

impl Sample {
    /// A successful sample.
    pub fn success(now: Duration, rtt: Duration, in_flight: usize) -> Self {
        Self {
            now,
            rtt,
            in_flight,
            limit: 0,
            outcome: Outcome::Success,
            weight: 1,
            refused: 0,
        }
    }

    /// A dropped sample.
    pub fn dropped(now: Duration, rtt: Duration, in_flight: usize) -> Self {
        Self {
            now,
            rtt,
            in_flight,
            limit: 0,
            outcome: Outcome::Dropped,
            weight: 1,
            refused: 0,
        }
    }

    /// The same sample, admitted under `limit`.
    pub fn at_limit(self, limit: usize) -> Self {
        Self { limit, ..self }
    }

    /// The same sample, recorded after the limiter had refused `refused` requests in all
    /// (see [`Sample::refused`]).
    pub fn after_refusals(self, refused: u64) -> Self {
        Self { refused, ..self }
    }

    /// Whether the limiter was full once this request was admitted: `in_flight >= limit`
    /// (false when the limit is unknown).
    pub fn filled_limit(&self) -> bool {
        self.limit > 0 && self.in_flight >= self.limit
    }

    /// Whether this sample is a drop.
    pub fn is_drop(&self) -> bool {
        self.outcome == Outcome::Dropped
    }
}

/// The internal estimates an algorithm exposes for observability (all optional).
///
/// Exported by adapters as gauges (`tailwater_limiter_min_rtt_seconds`, ...), so that an
/// operator can see *why* the limit is where it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimates {
    /// The no-load RTT estimate (minimum RTT, or Envoy's minRTT).
    pub min_rtt: Option<Duration>,
    /// The recent (short-window) RTT estimate.
    pub short_rtt: Option<Duration>,
    /// The long-window RTT estimate (Gradient2).
    pub long_rtt: Option<Duration>,
    /// The last gradient applied (1.0 = no change).
    pub gradient: Option<f64>,
    /// The estimated queue (Vegas' queue size, Gradient's headroom).
    pub queue: Option<f64>,
    /// Whether the algorithm is currently measuring its baseline (Envoy's minRTT window).
    pub probing: Option<bool>,
}

/// A concurrency-limit algorithm.
///
/// Contract:
/// - [`limit`](Self::limit) returns the current limit, at least 1 (a limit of 0 would stop
///   all traffic for ever, since no sample could then arrive to raise it);
/// - [`update`](Self::update) takes one sample and returns the new limit; it is called by one
///   thread at a time, with `sample.now` never decreasing between calls;
/// - it reads no clock and performs no I/O.
pub trait LimitAlgorithm: Send + fmt::Debug + 'static {
    /// A short stable name for metrics and reports, e.g. `"gradient2"`.
    fn name(&self) -> &'static str;

    /// The current limit.
    fn limit(&self) -> usize;

    /// Feeds one sample and returns the new limit.
    fn update(&mut self, sample: &Sample) -> usize;

    /// The algorithm's internal estimates, for observability.
    fn estimates(&self) -> Estimates {
        Estimates::default()
    }

    /// Whether the algorithm learns from aggregates of many samples (a window's average, an
    /// interval's percentile) rather than from each sample's order and count. If so, the
    /// [`Limiter`](crate::Limiter) may feed it a steady subset of successes at high request
    /// rates ([`RttSampling`](crate::limiter::RttSampling)); drops always reach it.
    fn aggregates_samples(&self) -> bool {
        false
    }
}

impl<A: LimitAlgorithm + ?Sized> LimitAlgorithm for Box<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn limit(&self) -> usize {
        (**self).limit()
    }
    fn update(&mut self, sample: &Sample) -> usize {
        (**self).update(sample)
    }
    fn estimates(&self) -> Estimates {
        (**self).estimates()
    }
    fn aggregates_samples(&self) -> bool {
        (**self).aggregates_samples()
    }
}

/// Clamps `value` into `[min, max]` after rounding down, treating NaN as `min`.
pub(crate) fn clamp_limit(value: f64, min: usize, max: usize) -> usize {
    if value.is_nan() {
        return min;
    }
    let v = value.floor();
    if v <= min as f64 {
        min
    } else if v >= max as f64 {
        max
    } else {
        v as usize
    }
}
