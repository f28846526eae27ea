//! RTT sampling: which permits read the clock and feed the algorithm.
//!
//! Measuring an RTT costs two clock reads, and feeding it costs a turn at the algorithm's
//! lock; at hundreds of thousands of requests per second that is most of a limiter's cost.
//! Algorithms that aggregate samples anyway ([`Windowed`](crate::algorithm::Windowed) averages
//! a window, [`EnvoyGradient`](crate::algorithm::EnvoyGradient) takes a percentile per
//! interval) learn the same from a steady subset. So at high rates only every 2^k-th admission
//! (by the limiter's admission sequence, so it is deterministic and shared by all threads)
//! measures its RTT, with k chosen so that at least a target number of samples per second
//! still arrive; below that rate every permit is measured. Outcomes are counted for every
//! permit, and drops always reach the algorithm.

use std::time::Duration;

/// The most permits one sample may stand for: 2^8 = 256. Reached only above 512 000
/// requests per second at the default target; it also bounds how long a rate that fell
/// suddenly goes unseen (256 permits).
const MAX_SHIFT: u32 = 8;

/// How often the sampling rate is reconsidered, at the latest...
const PERIOD: Duration = Duration::from_millis(100);

/// ...or after this many samples, so that a sudden rise in traffic is followed within
/// a fraction of a millisecond at high rates.
const PERIOD_SAMPLES: u64 = 1024;

/// How many permits measure their RTT and feed the limit algorithm.
///
/// ```
/// use tailwater_core::{Limiter, limiter::RttSampling};
/// let limiter = Limiter::builder()
///     .rtt_sampling(RttSampling::All)
///     .build()
///     .unwrap();
/// assert!(limiter.try_acquire().unwrap().is_sampled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RttSampling {
    /// Every permit reads the clock when granted and when released, and feeds its sample.
    All,
    /// Every permit while fewer than `2 × target_per_sec` requests arrive per second; above
    /// that, every 2nd, 4th, … up to every 256th admission, keeping at least `target_per_sec`
    /// samples per second. Applies only to algorithms that aggregate samples
    /// ([`LimitAlgorithm::aggregates_samples`](crate::algorithm::LimitAlgorithm::aggregates_samples));
    /// per-sample algorithms (bare `Aimd`, `Vegas`, `Gradient2`) always see every permit.
    Adaptive {
        /// Samples per second to keep at least (when traffic allows).
        target_per_sec: u32,
    },
}

impl Default for RttSampling {
    /// `Adaptive` with 2 000 samples per second: a 20 ms window (the shortest of
    /// [`recommended`](crate::algorithm::recommended)) still sees 40 of them.
    fn default() -> Self {
        RttSampling::Adaptive {
            target_per_sec: 2000,
        }
    }
}

/// Chooses the sampling shift from the observed request rate. Runs under the limiter's
/// algorithm lock, once per fed sample.
#[derive(Debug)]
pub(crate) struct Sampler {
    target_per_sec: Option<f64>,
    period_start: Option<Duration>,
    /// Permits represented by the samples fed since `period_start`.
    permits: u64,
    /// Samples fed since `period_start`.
    samples: u64,
    shift: u32,
}

impl Sampler {
    pub(crate) fn new(policy: RttSampling, aggregates: bool) -> Self {
        let target_per_sec = match policy {
            RttSampling::Adaptive { target_per_sec } if aggregates => {
                Some(f64::from(target_per_sec.max(1)))
            }
            _ => None,
        };
        Self {
            target_per_sec,
            period_start: None,
            permits: 0,
            samples: 0,
            shift: 0,
        }
    }

    /// How many permits one fed success stands for now: 2^shift.
    pub(crate) fn weight(&self) -> u32 {
        1 << self.shift
    }

    /// Notes one fed sample at `now`; returns the new shift when it changes.
    pub(crate) fn on_sample(&mut self, now: Duration) -> Option<u32> {
        let target = self.target_per_sec?;
        let start = *self.period_start.get_or_insert(now);
        self.permits += 1 << self.shift;
        self.samples += 1;
        let elapsed = now.saturating_sub(start);
        if elapsed < PERIOD && (self.samples < PERIOD_SAMPLES || elapsed.is_zero()) {
            return None;
        }
        let rate = self.permits as f64 / elapsed.as_secs_f64();
        self.period_start = Some(now);
        self.permits = 0;
        self.samples = 0;
        let ratio = rate / target;
        let shift = if ratio < 2.0 {
            0
        } else {
            (ratio.log2().floor() as u32).min(MAX_SHIFT)
        };
        (shift != self.shift).then(|| {
            self.shift = shift;
            shift
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Feeds what a limiter would at `rate` requests/s for `secs` seconds; returns the final
    /// shift.
    fn run(s: &mut Sampler, from: Duration, rate: u64, secs: u64) -> (u32, Duration) {
        let mut now = from;
        let end = from + Duration::from_secs(secs);
        while now < end {
            s.on_sample(now);
            // The next sample comes 2^shift permits later.
            now += Duration::from_nanos((1_000_000_000 << s.shift) / rate);
        }
        (s.shift, now)
    }

    #[test]
    fn samples_everything_below_twice_the_target() {
        let mut s = Sampler::new(RttSampling::default(), true);
        assert_eq!(run(&mut s, ms(0), 3_999, 2).0, 0);
    }

    #[test]
    fn keeps_at_least_the_target_and_follows_the_rate_both_ways() {
        let mut s = Sampler::new(RttSampling::default(), true);
        let (shift, now) = run(&mut s, ms(0), 100_000, 2);
        // 100 000/s ÷ 2 000 = 50 → every 32nd permit: 3 125 samples/s ≥ 2 000.
        assert_eq!(shift, 5);
        let (shift, now) = run(&mut s, now, 1_000_000, 2);
        assert_eq!(shift, 8, "1 000 000/s ÷ 2 000 = 500 → every 256th");
        let (shift, now) = run(&mut s, now, 100_000_000, 2);
        assert_eq!(shift, MAX_SHIFT, "capped at 1 in 256");
        let (shift, _) = run(&mut s, now, 500, 2);
        assert_eq!(shift, 0, "back to every permit when traffic falls");
    }

    #[test]
    fn a_sudden_rise_is_followed_within_a_thousand_samples() {
        let mut s = Sampler::new(RttSampling::default(), true);
        let (_, now) = run(&mut s, ms(0), 1_000, 1);
        assert_eq!(s.shift, 0);
        // 10 M/s: 1 024 samples take about 0.1 ms.
        let (shift, end) = run(&mut s, now, 10_000_000, 0);
        assert_eq!((shift, end), (0, now));
        // (The first of them closes the 1 000/s period, which is 100 ms old by then.)
        for i in 0..=PERIOD_SAMPLES {
            s.on_sample(now + Duration::from_nanos(100 * (i + 1)));
        }
        assert_eq!(s.shift, MAX_SHIFT);
    }

    #[test]
    fn per_sample_algorithms_and_all_never_sample() {
        let mut s = Sampler::new(RttSampling::default(), false);
        assert_eq!(run(&mut s, ms(0), 1_000_000, 1).0, 0);
        let mut s = Sampler::new(RttSampling::All, true);
        assert_eq!(run(&mut s, ms(0), 1_000_000, 1).0, 0);
    }
}
