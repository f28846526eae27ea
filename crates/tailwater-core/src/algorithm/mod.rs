//! Limit algorithms: pure state machines that turn samples into a concurrency limit.
//!
//! An algorithm never reads a clock and never touches shared state: it is handed one
//! [`Sample`] at a time (the time of the sample is part of it) and answers with the new limit.
//! The [`Limiter`](crate::Limiter) owns one algorithm, serialises calls to it, and publishes
//! the limit it returns. The simulator drives the very same algorithm objects on virtual time.
//!
//! | Algorithm | Origin | Use it when |
//! |---|---|---|
//! | [`Fixed`] | — | you know the right number, or as a baseline |
//! | [`Aimd`] | Netflix concurrency-limits `AIMDLimit` | the signal is errors/timeouts, not latency |
//!
//! Decorators such as `Windowed` wrap another algorithm and change what it sees.

mod aimd;
mod fixed;

pub use aimd::{Aimd, AimdBuilder};
pub use fixed::Fixed;

use std::fmt;
use std::time::Duration;

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

/// One observation fed to an algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the request completed, by the limiter's clock.
    pub now: Duration,
    /// How long the request held its permit (or the RTT the caller reported).
    pub rtt: Duration,
    /// How many permits were in flight when this request acquired its own (itself included).
    pub in_flight: usize,
    /// How the request ended.
    pub outcome: Outcome,
}

impl Sample {
    /// A successful sample.
    pub fn success(now: Duration, rtt: Duration, in_flight: usize) -> Self {
        Self {
            now,
            rtt,
            in_flight,
            outcome: Outcome::Success,
        }
    }

    /// A dropped sample.
    pub fn dropped(now: Duration, rtt: Duration, in_flight: usize) -> Self {
        Self {
            now,
            rtt,
            in_flight,
            outcome: Outcome::Dropped,
        }
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
