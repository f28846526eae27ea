//! A decorator that turns many samples into one per time window, as Netflix
//! concurrency-limits' `WindowedLimit`.
//!
//! Per-request samples are noisy; Gradient2 and Vegas are meant to see one aggregate per
//! window. Rule, per sample (the sample's completion time is `now`):
//!
//! 1. an RTT below `min_rtt_threshold` (100 µs) is discarded, drops included (Netflix's
//!    workaround for #176: fast failures then never reach the inner algorithm);
//! 2. the sample joins the current window: sample count, the RTTs (for the average or a
//!    percentile), the smallest RTT (the "candidate"), the largest in-flight, any drop;
//! 3. when `now` passes the window's end, the window closes. The next one ends at
//!    `now + clamp(2 · candidate, min_window, max_window)` (both 1 s by default, so 1 s).
//!    A closed window with at least `window_size` (10) samples is forwarded to the inner
//!    algorithm as one sample: `rtt` = average (or the chosen percentile), `in_flight` = the
//!    largest, `outcome` = dropped if any sample was. Smaller windows are discarded (#152: a
//!    lightly loaded service then never updates its limit).
//!
//! As in Netflix, the very first sample closes an initial empty window (its end is time 0),
//! so the first real window starts with the first sample. Ignored samples are not counted.
//! Percentile windows keep up to 4096 RTTs (a uniform reservoir beyond that) and use the
//! nearest-rank percentile.

use std::time::Duration;

use super::util::{DEFAULT_SEED, Reservoir};
use super::{Estimates, LimitAlgorithm, Outcome, Sample};
use crate::error::{ConfigError, check_range};

const MAX_SAMPLES: usize = 4096;

/// How a window's RTTs are reduced to one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    /// The arithmetic mean (Netflix's `AverageSampleWindowFactory`, the default).
    Average,
    /// A percentile in `(0, 1]` (Netflix's `PercentileSampleWindowFactory`), e.g. `0.9`.
    Percentile(f64),
}

#[derive(Debug, Clone)]
struct Window {
    count: u64,
    sum: Duration,
    candidate: Option<Duration>,
    max_in_flight: usize,
    did_drop: bool,
}

impl Window {
    const EMPTY: Window = Window {
        count: 0,
        sum: Duration::ZERO,
        candidate: None,
        max_in_flight: 0,
        did_drop: false,
    };
}

/// Netflix's `WindowedLimit` around any [`LimitAlgorithm`], itself a `LimitAlgorithm` (so
/// `Windowed<Box<dyn LimitAlgorithm>>` works). Its [`name`](LimitAlgorithm::name) and
/// [`estimates`](LimitAlgorithm::estimates) are the inner algorithm's.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{Gradient2, LimitAlgorithm, Sample, Windowed};
/// let mut w = Windowed::builder().build(Gradient2::corrected()).unwrap();
/// let ms = Duration::from_millis;
/// for i in 0..100 {
///     w.update(&Sample::success(ms(20 * i), ms(10), 20));
/// }
/// assert_eq!(w.windows_forwarded(), 1); // 2 s of samples: one full 1 s window
/// ```
#[derive(Debug, Clone)]
pub struct Windowed<A> {
    inner: A,
    min_window: Duration,
    max_window: Duration,
    window_size: u64,
    min_rtt_threshold: Duration,
    aggregate: Aggregate,
    next_update: Duration,
    window: Window,
    rtts: Reservoir,
    forwarded: u64,
}

impl Windowed<()> {
    /// A builder with Netflix's defaults.
    pub fn builder() -> WindowedBuilder {
        WindowedBuilder::default()
    }
}

impl<A: LimitAlgorithm> Windowed<A> {
    /// `inner` with Netflix's defaults.
    pub fn new(inner: A) -> Self {
        WindowedBuilder::default()
            .build(inner)
            .expect("the default Windowed configuration is valid")
    }

    /// The wrapped algorithm.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// How many windows were forwarded to the inner algorithm.
    pub fn windows_forwarded(&self) -> u64 {
        self.forwarded
    }

    fn close_window(&mut self, now: Duration) {
        let w = std::mem::replace(&mut self.window, Window::EMPTY);
        let candidate = w.candidate.unwrap_or(self.max_window);
        let len = candidate
            .saturating_mul(2)
            .clamp(self.min_window, self.max_window);
        self.next_update = now.saturating_add(len);
        let rtt = match self.aggregate {
            Aggregate::Average => match u32::try_from(w.count) {
                Ok(n) if n > 0 => Some(w.sum / n),
                _ => Duration::try_from_secs_f64(w.sum.as_secs_f64() / w.count.max(1) as f64).ok(),
            },
            Aggregate::Percentile(p) => self.rtts.percentile(p),
        };
        self.rtts.clear();
        if w.count < self.window_size || w.candidate.is_none() {
            return;
        }
        let Some(rtt) = rtt else { return };
        let outcome = if w.did_drop {
            Outcome::Dropped
        } else {
            Outcome::Success
        };
        self.forwarded += 1;
        self.inner.update(&Sample {
            now,
            rtt,
            in_flight: w.max_in_flight,
            limit: 0,
            outcome,
            weight: 1,
            refused: 0,
        });
    }
}

impl<A: LimitAlgorithm> LimitAlgorithm for Windowed<A> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn limit(&self) -> usize {
        self.inner.limit()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.outcome == Outcome::Ignored || sample.rtt < self.min_rtt_threshold {
            return self.inner.limit();
        }
        let w = &mut self.window;
        w.count += 1;
        w.sum = w.sum.saturating_add(sample.rtt);
        w.candidate = Some(w.candidate.map_or(sample.rtt, |c| c.min(sample.rtt)));
        w.max_in_flight = w.max_in_flight.max(sample.in_flight);
        w.did_drop |= sample.is_drop();
        if matches!(self.aggregate, Aggregate::Percentile(_)) {
            self.rtts.push(sample.rtt);
        }
        if sample.now > self.next_update {
            self.close_window(sample.now);
        }
        self.inner.limit()
    }

    fn estimates(&self) -> Estimates {
        self.inner.estimates()
    }

    /// A window is reduced to one average or percentile.
    fn aggregates_samples(&self) -> bool {
        true
    }
}

/// Builder for [`Windowed`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct WindowedBuilder {
    min_window: Duration,
    max_window: Duration,
    window_size: usize,
    min_rtt_threshold: Duration,
    aggregate: Aggregate,
    seed: u64,
}

impl Default for WindowedBuilder {
    fn default() -> Self {
        Self {
            min_window: Duration::from_secs(1),
            max_window: Duration::from_secs(1),
            window_size: 10,
            min_rtt_threshold: Duration::from_micros(100),
            aggregate: Aggregate::Average,
            seed: DEFAULT_SEED,
        }
    }
}

impl WindowedBuilder {
    /// The shortest window (default 1 s, greater than zero).
    pub fn min_window(mut self, v: Duration) -> Self {
        self.min_window = v;
        self
    }
    /// The longest window (default 1 s, at least `min_window`).
    pub fn max_window(mut self, v: Duration) -> Self {
        self.max_window = v;
        self
    }
    /// Windows with fewer samples are discarded (default 10, at least 1).
    pub fn window_size(mut self, v: usize) -> Self {
        self.window_size = v;
        self
    }
    /// Samples faster than this are discarded (default 100 µs).
    pub fn min_rtt_threshold(mut self, v: Duration) -> Self {
        self.min_rtt_threshold = v;
        self
    }
    /// Average (default) or a percentile of each window's RTTs.
    pub fn aggregate(mut self, v: Aggregate) -> Self {
        self.aggregate = v;
        self
    }
    /// Shorthand for `aggregate(Aggregate::Percentile(p))`.
    pub fn percentile(self, p: f64) -> Self {
        self.aggregate(Aggregate::Percentile(p))
    }
    /// Seed of the reservoir that bounds percentile windows.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }

    /// Validates and wraps `inner`.
    pub fn build<A: LimitAlgorithm>(self, inner: A) -> Result<Windowed<A>, ConfigError> {
        if self.min_window.is_zero() {
            return Err(ConfigError::new("min_window", "must be greater than zero"));
        }
        if self.max_window < self.min_window {
            return Err(ConfigError::new(
                "max_window",
                format!(
                    "max_window {:?} is shorter than min_window {:?}",
                    self.max_window, self.min_window
                ),
            ));
        }
        if self.window_size == 0 {
            return Err(ConfigError::new("window_size", "must be at least 1"));
        }
        if let Aggregate::Percentile(p) = self.aggregate {
            check_range("percentile", p, f64::MIN_POSITIVE, 1.0)?;
        }
        Ok(Windowed {
            inner,
            min_window: self.min_window,
            max_window: self.max_window,
            window_size: self.window_size as u64,
            min_rtt_threshold: self.min_rtt_threshold,
            aggregate: self.aggregate,
            next_update: Duration::ZERO,
            window: Window::EMPTY,
            rtts: Reservoir::new(MAX_SAMPLES, self.seed),
            forwarded: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is fed.
    #[derive(Debug, Default)]
    struct Spy {
        seen: Vec<Sample>,
    }

    impl LimitAlgorithm for Spy {
        fn name(&self) -> &'static str {
            "spy"
        }
        fn limit(&self) -> usize {
            7
        }
        fn update(&mut self, sample: &Sample) -> usize {
            self.seen.push(*sample);
            7
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn table_average_max_in_flight_any_drop() {
        let mut w = Windowed::new(Spy::default());
        // The first sample closes the initial window (1 sample: discarded); the next window
        // ends at 10 + clamp(2·10 ms, 1 s, 1 s) = 1010 ms.
        w.update(&Sample::success(ms(10), ms(10), 1));
        assert_eq!(w.inner().seen.len(), 0);
        // Ten samples in (10, 1010]: RTTs 10..=100 ms (avg 55), in-flight up to 9, one drop,
        // one ignored and one below the threshold (neither counted).
        for i in 1..=10u64 {
            let s = if i == 5 {
                Sample::dropped(ms(10 + i * 50), ms(i * 10), i as usize - 1)
            } else {
                Sample::success(ms(10 + i * 50), ms(i * 10), i as usize - 1)
            };
            w.update(&s);
        }
        w.update(&Sample {
            outcome: Outcome::Ignored,
            ..Sample::success(ms(600), ms(500), 99)
        });
        w.update(&Sample::success(ms(700), Duration::from_micros(50), 99));
        assert_eq!(w.inner().seen.len(), 0);
        // The sample at 1011 ms closes it: 11 samples (this one included).
        w.update(&Sample::success(ms(1011), ms(55), 3));
        let seen = &w.inner().seen;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].rtt, ms(55)); // (550 + 55) / 11
        assert_eq!(seen[0].in_flight, 9);
        assert_eq!(seen[0].outcome, Outcome::Dropped);
        assert_eq!(seen[0].now, ms(1011));
        assert_eq!(w.windows_forwarded(), 1);
        assert_eq!(w.limit(), 7);
    }

    #[test]
    fn small_windows_are_discarded_and_window_length_follows_candidate() {
        let mut w = Windowed::builder()
            .min_window(ms(100))
            .max_window(ms(1000))
            .build(Spy::default())
            .unwrap();
        // First sample: closes the initial window; the next ends at 1 + 2·300 = 601 ms.
        w.update(&Sample::success(ms(1), ms(300), 1));
        for i in 0..5 {
            w.update(&Sample::success(ms(10 + i), ms(300), 1));
        }
        w.update(&Sample::success(ms(602), ms(300), 1)); // 6 samples < 10: discarded
        assert_eq!(w.inner().seen.len(), 0);
        // Next ends at 602 + 600 = 1202 ms.
        for i in 0..10 {
            w.update(&Sample::success(ms(700 + i), ms(300), 1));
        }
        w.update(&Sample::success(ms(1202), ms(300), 1)); // not past the end yet
        assert_eq!(w.inner().seen.len(), 0);
        w.update(&Sample::success(ms(1203), ms(300), 1));
        assert_eq!(w.inner().seen.len(), 1);
        assert_eq!(w.inner().seen[0].rtt, ms(300));
    }

    #[test]
    fn percentile_window() {
        let mut w = Windowed::builder()
            .percentile(0.9)
            .build(Spy::default())
            .unwrap();
        w.update(&Sample::success(ms(1), ms(1), 1));
        for i in 1..=19u64 {
            w.update(&Sample::success(ms(1 + i), ms(i), 1));
        }
        w.update(&Sample::success(ms(2000), ms(20), 1));
        // 20 samples 1..=20 ms: nearest rank ceil(0.9·20) = 18.
        assert_eq!(w.inner().seen[0].rtt, ms(18));
    }

    #[test]
    fn works_with_boxed_dyn() {
        let inner: Box<dyn LimitAlgorithm> = Box::new(super::super::Vegas::default());
        let mut w: Windowed<Box<dyn LimitAlgorithm>> = Windowed::new(inner);
        assert_eq!(w.name(), "vegas");
        for i in 0..3000 {
            w.update(&Sample::success(ms(i), ms(10), 20));
        }
        assert!(w.windows_forwarded() >= 2);
        assert!(w.limit() > 20);
    }

    #[test]
    fn bad_config_names_the_field() {
        let field = |b: WindowedBuilder| b.build(Spy::default()).unwrap_err().field();
        let b = Windowed::builder;
        assert_eq!(field(b().min_window(Duration::ZERO)), "min_window");
        assert_eq!(field(b().max_window(ms(10))), "max_window");
        assert_eq!(field(b().window_size(0)), "window_size");
        assert_eq!(field(b().percentile(0.0)), "percentile");
        assert_eq!(field(b().percentile(f64::NAN)), "percentile");
        assert_eq!(field(b().percentile(1.01)), "percentile");
    }
}
