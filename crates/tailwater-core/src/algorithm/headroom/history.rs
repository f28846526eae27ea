//! The per-window history of [`Headroom`](super::Headroom): the remembered window means, whose
//! low percentile is the no-queue baseline (rule 2), and the recent completion rates, whose
//! maximum rule 3's fall test compares with (see [`History::record_rate`]).
//!
//! Both look back over the last `baseline_windows` windows (1 000 by default) and are read at
//! every window, so both are kept incrementally: the means in arrival order (a ring) beside
//! the same values in order, where one window's arrival and eviction move only the values
//! between the two places (not the whole tail twice); the rates as a sliding-window maximum
//! (a monotonic queue: Lemire, "Streaming maximum-minimum filter using no more than three
//! comparisons per element", 2006), instead of a scan of up to 1 000 rates per window. The
//! baseline is computed once per change of the means. The figures are exactly those of a
//! selection over the remembered means and a scan over the remembered rates (tests below).

use std::collections::VecDeque;

/// The percentile of recent window means taken as the no-queue baseline.
pub(super) const BASELINE_PERCENTILE: f64 = 0.1;

/// The remembered window means and completion rates of the last `capacity` windows.
#[derive(Debug, Clone)]
pub(super) struct History {
    /// How many windows are remembered (`baseline_windows`, at least 1).
    capacity: usize,
    /// The remembered window means, oldest first.
    means: VecDeque<f64>,
    /// The same values in `f64::total_cmp` order, so the baseline is an index.
    sorted: Vec<f64>,
    /// The baseline: the [`BASELINE_PERCENTILE`] of `sorted` (its minimum once
    /// [`restarted`](Self::restarted)), recomputed when the means change.
    baseline: Option<f64>,
    /// Whether the warm-up restarted (overloaded from the first request): the baseline is
    /// then the lowest remembered mean.
    restarted: bool,
    /// The candidates for the maximum rate: `(arrival, rate)` with the rates strictly
    /// decreasing from front to back; the front is the maximum of the last `capacity`.
    peaks: VecDeque<(u64, f64)>,
    /// Rates recorded so far (the arrival number of the next one).
    rates: u64,
}

impl History {
    /// An empty history of `capacity` windows (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let reserve = capacity.min(4096) + 1;
        Self {
            capacity,
            means: VecDeque::with_capacity(reserve),
            sorted: Vec::with_capacity(reserve),
            baseline: None,
            restarted: false,
            peaks: VecDeque::new(),
            rates: 0,
        }
    }

    /// The no-queue baseline (seconds): the [`BASELINE_PERCENTILE`] of the remembered means
    /// (rank `round(0.1 · (n − 1))`), or their minimum after a restart; none before the
    /// first.
    pub(super) fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    /// How many window means are remembered.
    pub(super) fn len(&self) -> usize {
        self.means.len()
    }

    /// Whether the warm-up restarted (see [`restart`](Self::restart)).
    pub(super) fn restarted(&self) -> bool {
        self.restarted
    }

    /// Remembers a window mean, forgetting the oldest beyond the capacity.
    pub(super) fn remember(&mut self, mean: f64) {
        let rank = |sorted: &[f64], v: f64| sorted.partition_point(|x| x.total_cmp(&v).is_lt());
        self.means.push_back(mean);
        if self.means.len() > self.capacity
            && let Some(old) = self.means.pop_front()
        {
            // One shift of the values between the old value's place and the new one's.
            let at = rank(&self.sorted, mean);
            let from = rank(&self.sorted, old);
            if at <= from {
                self.sorted.copy_within(at..from, at + 1);
                self.sorted[at] = mean;
            } else {
                self.sorted.copy_within(from + 1..at, from);
                self.sorted[at - 1] = mean;
            }
        } else {
            let at = rank(&self.sorted, mean);
            self.sorted.insert(at, mean);
        }
        self.baseline = self.rank_baseline();
    }

    /// Overloaded from the first request: every remembered mean was a queue's. They are
    /// forgotten, and from now on the baseline is the lowest remembered mean (a percentile
    /// would follow the standing queue up).
    pub(super) fn restart(&mut self) {
        self.restarted = true;
        self.means.clear();
        self.sorted.clear();
        self.baseline = None;
    }

    fn rank_baseline(&self) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let k = if self.restarted {
            0
        } else {
            ((n - 1) as f64 * BASELINE_PERCENTILE).round() as usize
        };
        self.sorted.get(k).copied()
    }

    /// Records this window's completion rate (the guard's mean rate) and returns the highest
    /// of the last `capacity` recorded, this one included (a NaN is never the highest, as
    /// with `f64::max`; `None` when every one is NaN).
    pub(super) fn record_rate(&mut self, now: f64) -> Option<f64> {
        let arrival = self.rates;
        self.rates += 1;
        if !now.is_nan() {
            while self.peaks.back().is_some_and(|&(_, r)| r <= now) {
                self.peaks.pop_back();
            }
            self.peaks.push_back((arrival, now));
        }
        // The last `capacity` arrivals are those after `arrival - capacity`.
        while self
            .peaks
            .front()
            .is_some_and(|&(a, _)| a + self.capacity as u64 <= arrival)
        {
            self.peaks.pop_front();
        }
        self.peaks.front().map(|&(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// The ordered baseline equals a selection over the remembered means, through the
    /// ring's wrap-around, with repeated values and a window of one; after a restart, the
    /// minimum.
    #[test]
    fn the_ordered_baseline_equals_a_selection_over_the_ring() {
        for windows in [1usize, 2, 7, 50] {
            let mut h = History::new(windows);
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for i in 0..400 {
                if i == 300 {
                    h.restart();
                    assert_eq!((h.baseline(), h.len()), (None, 0));
                }
                // Coarse values so that duplicates occur.
                let mean = (xorshift(&mut x) % 40) as f64 * 0.001;
                h.remember(mean);
                let mut v: Vec<f64> = h.means.iter().copied().collect();
                let k = if h.restarted() {
                    0
                } else {
                    ((v.len() - 1) as f64 * BASELINE_PERCENTILE).round() as usize
                };
                let (_, want, _) = v.select_nth_unstable_by(k, f64::total_cmp);
                assert_eq!(h.baseline(), Some(*want), "windows {windows}, step {i}");
                let mut all: Vec<f64> = h.means.iter().copied().collect();
                all.sort_by(f64::total_cmp);
                assert_eq!(h.sorted, all, "windows {windows}, step {i}");
            }
        }
    }

    /// The sliding maximum equals a scan over the last `capacity` rates, NaNs included.
    #[test]
    fn the_rate_peak_equals_a_scan_over_the_recent_rates() {
        for windows in [1usize, 3, 8, 100] {
            let mut h = History::new(windows);
            let mut recent: VecDeque<f64> = VecDeque::new();
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            for i in 0..1000 {
                let v = xorshift(&mut x) % 50;
                let rate = if v == 0 { f64::NAN } else { v as f64 };
                recent.push_back(rate);
                if recent.len() > windows {
                    recent.pop_front();
                }
                let want = recent.iter().copied().fold(rate, f64::max);
                let got = h.record_rate(rate);
                match got {
                    Some(g) => assert_eq!(g, want, "windows {windows}, step {i}"),
                    None => assert!(want.is_nan(), "windows {windows}, step {i}"),
                }
            }
        }
    }
}
