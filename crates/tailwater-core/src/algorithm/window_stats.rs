//! Short measurement windows that also count completions per second, for the algorithms that
//! apply Little's law ([`LlGuard`](super::LlGuard), [`Headroom`](super::Headroom)).
//!
//! A window lasts at least `clamp(2 × the previous window's fastest RTT, min_window,
//! max_window)` (as Netflix's `WindowedLimit`) and holds at least `needed` successes, where
//! `needed = clamp(dispersion_samples × CV², min_samples, max_samples)` with the CV of the
//! previous window's RTTs: the standard error of a window mean is then about
//! `1/√dispersion_samples` of it whatever the service's variance. A window is never discarded
//! for being small: it waits for its samples. A drop (or an RTT at or above `timeout`) closes
//! the window as soon as its time is up, and marks it.

use std::time::Duration;

use super::{Outcome, Sample};

/// What one closed window measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Closed {
    /// When it closed.
    pub(crate) now: Duration,
    /// Mean RTT of its successes, seconds (none if it held only drops).
    pub(crate) mean: Option<f64>,
    /// Coefficient of variation of those RTTs.
    pub(crate) cv: Option<f64>,
    /// Successes.
    pub(crate) count: u64,
    /// Successes per second over the window.
    pub(crate) rate: Option<f64>,
    /// The largest in-flight count a sample saw when it acquired its permit.
    pub(crate) max_in_flight: usize,
    /// Drops and timeouts.
    pub(crate) drops: u64,
}

impl Closed {
    /// Whether the window held a drop or a timeout.
    pub(crate) fn dropped(&self) -> bool {
        self.drops > 0
    }

    /// The mean as a duration (zero for a window of drops only).
    pub(crate) fn mean_duration(&self) -> Duration {
        self.mean
            .and_then(|m| Duration::try_from_secs_f64(m).ok())
            .unwrap_or(Duration::ZERO)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    start: Option<Duration>,
    count: u64,
    /// Completions the successes stand for (their [`Sample::weight`]s): the rate's count.
    completions: u64,
    sum: f64,
    sum_sq: f64,
    fastest: Option<Duration>,
    max_in_flight: usize,
    drops: u64,
}

/// The window bounds; checked by the owning algorithm's builder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowConfig {
    pub(crate) min_window: Duration,
    pub(crate) max_window: Duration,
    pub(crate) min_samples: u64,
    pub(crate) max_samples: u64,
    pub(crate) dispersion_samples: f64,
    pub(crate) timeout: Duration,
}

/// The running window.
#[derive(Debug, Clone)]
pub(crate) struct Windows {
    cfg: WindowConfig,
    acc: Acc,
    next_end: Duration,
    needed: u64,
    closed: u64,
}

impl Windows {
    pub(crate) fn new(cfg: WindowConfig) -> Self {
        Self {
            cfg,
            acc: Acc::default(),
            next_end: Duration::ZERO,
            needed: cfg.min_samples,
            closed: 0,
        }
    }

    /// How many windows closed.
    pub(crate) fn closed(&self) -> u64 {
        self.closed
    }

    /// Adds a sample; returns the window it closed, if any. Ignored samples are skipped.
    pub(crate) fn push(&mut self, sample: &Sample) -> Option<Closed> {
        if sample.outcome == Outcome::Ignored {
            return None;
        }
        let a = &mut self.acc;
        if a.start.is_none() {
            a.start = Some(sample.now);
            self.next_end = sample.now.saturating_add(self.cfg.min_window);
        }
        a.max_in_flight = a.max_in_flight.max(sample.in_flight);
        if sample.is_drop() || sample.rtt >= self.cfg.timeout {
            a.drops += 1;
        } else {
            let r = sample.rtt.as_secs_f64();
            a.count += 1;
            a.completions += u64::from(sample.weight.max(1));
            a.sum += r;
            a.sum_sq += r * r;
            a.fastest = Some(a.fastest.map_or(sample.rtt, |f| f.min(sample.rtt)));
        }
        let full = a.count >= self.needed || a.drops > 0;
        if sample.now >= self.next_end && full {
            Some(self.close(sample.now))
        } else {
            None
        }
    }

    fn close(&mut self, now: Duration) -> Closed {
        let a = std::mem::take(&mut self.acc);
        self.acc.start = Some(now);
        let len = a
            .fastest
            .unwrap_or(self.cfg.max_window)
            .saturating_mul(2)
            .clamp(self.cfg.min_window, self.cfg.max_window);
        self.next_end = now.saturating_add(len);
        self.closed += 1;
        let elapsed = a.start.map_or(0.0, |s| now.saturating_sub(s).as_secs_f64());
        let (mean, cv2) = if a.count > 0 {
            let n = a.count as f64;
            let mean = a.sum / n;
            let var = (a.sum_sq / n - mean * mean).max(0.0);
            (Some(mean), (mean > 0.0).then(|| var / (mean * mean)))
        } else {
            (None, None)
        };
        let cv = cv2.map(f64::sqrt);
        self.needed = match cv2 {
            Some(cv2) if self.cfg.dispersion_samples > 0.0 => {
                // Rounding noise must not add a sample: 25 × 0.2 is 5, not 6.
                let want = (self.cfg.dispersion_samples * cv2 - 1e-9).ceil();
                if want.is_finite() {
                    (want as u64).clamp(self.cfg.min_samples, self.cfg.max_samples)
                } else {
                    self.cfg.max_samples
                }
            }
            _ => self.cfg.min_samples,
        };
        Closed {
            now,
            mean,
            cv,
            count: a.count,
            rate: (elapsed > 0.0 && a.completions > 0).then(|| a.completions as f64 / elapsed),
            max_in_flight: a.max_in_flight,
            drops: a.drops,
        }
    }
}

/// A test bench: a pool of `workers` workers with service time `service`, whose demand fills
/// any limit. Per window the algorithm's limit `L` is all in flight, the RTT is
/// `service × max(1, L / workers)` (a FIFO queue beyond the workers) and completions arrive
/// every `RTT / L` (Little's law). Runs `windows` windows and returns the limit after each.
#[cfg(test)]
pub(crate) fn fluid_pool(
    alg: &mut dyn super::LimitAlgorithm,
    t: &mut Duration,
    workers: usize,
    service: Duration,
    samples: usize,
) -> Vec<usize> {
    let mut out = Vec::new();
    for _ in 0..samples {
        let l = alg.limit().max(1);
        let rtt = service.mul_f64((l as f64 / workers as f64).max(1.0));
        *t += rtt / l as u32;
        alg.update(&Sample::success(*t, rtt, l));
        out.push(alg.limit());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn cfg() -> WindowConfig {
        WindowConfig {
            min_window: ms(20),
            max_window: ms(100),
            min_samples: 4,
            max_samples: 100,
            dispersion_samples: 25.0,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn table_mean_cv_rate_and_next_size() {
        let mut w = Windows::new(cfg());
        // Opens at 0; ends at 20 ms with >= 4 samples. RTTs 10, 30, 10, 30: mean 20, sd 10.
        let rtts = [10, 30, 10, 30];
        for (i, r) in rtts.iter().enumerate() {
            assert!(
                w.push(&Sample::success(ms(5 * i as u64), ms(*r), i + 1))
                    .is_none()
            );
        }
        let c = w.push(&Sample::success(ms(20), ms(20), 2)).expect("closes");
        // Five samples 10, 30, 10, 30, 20: mean 20, variance (4·100)/5 = 80.
        assert!((c.mean.unwrap() - 0.020).abs() < 1e-12);
        assert!((c.cv.unwrap() - 80f64.sqrt() / 20.0).abs() < 1e-9);
        assert_eq!(c.count, 5);
        assert!((c.rate.unwrap() - 5.0 / 0.020).abs() < 1e-6); // 250/s
        assert_eq!(c.max_in_flight, 4);
        assert!(!c.dropped());
        // Next window needs ceil(25 · 0.2) = 5 samples (CV² = 80/400), at least 4.
        assert_eq!(w.needed, 5);
        // And lasts clamp(2 · 10 ms, 20, 100) = 20 ms.
        assert_eq!(w.next_end, ms(40));
    }

    #[test]
    fn a_sampled_success_counts_for_the_permits_it_stands_for() {
        // The limiter measures every 8th permit: five samples of weight 8 are 40
        // completions in 20 ms (2 000/s), while the RTT statistics still see five samples.
        let mut w = Windows::new(cfg());
        let weighted = |now, rtt| Sample {
            weight: 8,
            ..Sample::success(ms(now), ms(rtt), 1)
        };
        for (now, rtt) in [(0, 10), (5, 30), (10, 10), (15, 30)] {
            assert!(w.push(&weighted(now, rtt)).is_none());
        }
        let c = w.push(&weighted(20, 20)).expect("closes");
        assert_eq!(c.count, 5);
        assert!((c.mean.unwrap() - 0.020).abs() < 1e-12);
        assert!((c.rate.unwrap() - 40.0 / 0.020).abs() < 1e-6);
    }

    #[test]
    fn drops_and_timeouts_close_and_mark() {
        let mut w = Windows::new(cfg());
        w.push(&Sample::success(ms(0), ms(10), 1));
        assert!(
            w.push(&Sample::success(ms(25), Duration::from_secs(6), 1))
                .is_some_and(|c| c.dropped() && c.count == 1)
        );
        let c = w
            .push(&Sample::dropped(ms(100), ms(1), 1))
            .expect("a drop closes a window whose time is up");
        assert!(c.dropped() && c.mean.is_none() && c.rate.is_none());
        assert_eq!(c.mean_duration(), Duration::ZERO);
    }
}
