//! Averages over many samples, pooled across windows: the pooled RTT dispersion (rule 5's
//! room below the floor) and the usual drop share (rule 12).

/// How many samples a [`Pooled`] average remembers.
const SAMPLES: f64 = 1024.0;

/// The successes before the pooled RTT CV counts (see [`Dispersion::cv`]): a bimodal
/// service's first 64 held no slow request in one seed of `default-limit`, and read 0.46.
const DISPERSION_MIN_SAMPLES: f64 = 100.0;

/// An average over about [`SAMPLES`] values: every value counts 1/n until n reaches it (the
/// plain mean of the first ones), then 1/[`SAMPLES`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pooled {
    n: f64,
    mean: f64,
}

impl Pooled {
    /// Adds one value.
    pub(super) fn push(&mut self, x: f64) {
        self.n = (self.n + 1.0).min(SAMPLES);
        self.mean += (x - self.mean) / self.n;
    }

    /// The average (0 before any value).
    pub(super) fn mean(&self) -> f64 {
        self.mean
    }

    /// How many values it stands for, at most [`SAMPLES`].
    pub(super) fn count(&self) -> f64 {
        self.n
    }
}

/// The RTT's first two moments, [`Pooled`] over about 1,000 successes: the coefficient of
/// variation of the service's RTTs pooled over many windows. The per-window CV's average
/// reads a bimodal service (5 % of requests 10× slower, CV 1.6) as 0.5 whenever most windows
/// hold no slow one.
#[derive(Debug, Clone, Default)]
pub(super) struct Dispersion {
    first: Pooled,
    second: Pooled,
}

impl Dispersion {
    /// Adds one success's RTT, seconds.
    pub(super) fn push(&mut self, x: f64) {
        self.first.push(x);
        self.second.push(x * x);
    }

    /// The pooled CV, or `None` before [`DISPERSION_MIN_SAMPLES`] successes.
    pub(super) fn cv(&self) -> Option<f64> {
        (self.first.count() >= DISPERSION_MIN_SAMPLES)
            .then(|| cv_of(self.first.mean(), self.second.mean()))
            .flatten()
    }
}

/// The coefficient of variation from the first two moments (`None` for a mean that is not
/// positive).
fn cv_of(m1: f64, m2: f64) -> Option<f64> {
    (m1 > 0.0).then(|| (m2 - m1 * m1).max(0.0).sqrt() / m1)
}

/// The in-flight counts [`ByInFlight`] keeps apart: a small pool's (rule 13 is for pools
/// below the burst floor, 20 by default).
const LEVELS: usize = 32;

/// A [`Dispersion`] per in-flight count each success was admitted at (itself included), 1
/// to [`LEVELS`], each over about 1,000 of its own.
///
/// Why apart: which counts found no queue ahead (at most the pool's workers) is known only
/// once the knee is, a few seconds into a slow small pool's life, and by then a queue may
/// stand, during which no request is admitted at so few. Kept apart, the early successes
/// count as soon as the knee says which they are (a bimodal 4-worker pool at 0.9× load:
/// 9 such successes in its first 6 s, then none for 10 s while its own queue stood).
#[derive(Debug, Clone)]
pub(super) struct ByInFlight {
    levels: [Dispersion; LEVELS],
}

impl Default for ByInFlight {
    fn default() -> Self {
        Self {
            levels: std::array::from_fn(|_| Dispersion::default()),
        }
    }
}

impl ByInFlight {
    /// Adds one success's RTT (seconds) at the in-flight count it was admitted at; counts
    /// past [`LEVELS`] (and 0, unknown) are not kept.
    pub(super) fn push(&mut self, in_flight: usize, x: f64) {
        if let Some(level) = in_flight
            .checked_sub(1)
            .and_then(|i| self.levels.get_mut(i))
        {
            level.push(x);
        }
    }

    /// The CV of the RTTs admitted at 1 to `up_to` in flight, pooled (each level weighted by
    /// the values it stands for), or `None` before `min` values.
    pub(super) fn cv(&self, up_to: usize, min: f64) -> Option<f64> {
        let (mut n, mut m1, mut m2) = (0.0, 0.0, 0.0);
        for level in self.levels.iter().take(up_to) {
            let k = level.first.count();
            n += k;
            m1 += k * level.first.mean();
            m2 += k * level.second.mean();
        }
        if n < min || n == 0.0 {
            return None;
        }
        cv_of(m1 / n, m2 / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_in_flight_pools_only_the_levels_asked_for() {
        let mut b = ByInFlight::default();
        // At 1-4 in flight (no queue): 0.2 s, and one in twenty 2 s (a bimodal service).
        for i in 0..400 {
            let x = if i % 20 == 19 { 2.0 } else { 0.2 };
            b.push(1 + i % 4, x);
        }
        // At 10 in flight (queued): 1.5 s each, a constant wait plus service.
        for _ in 0..400 {
            b.push(10, 1.5);
        }
        // Out of range: not kept, no panic.
        b.push(0, 9.0);
        b.push(LEVELS + 1, 9.0);
        let unqueued = b.cv(4, 30.0).expect("400 values");
        assert!((1.3..1.6).contains(&unqueued), "{unqueued}");
        // Pooled with the queued ones the CV falls: a queue hides the service's tail.
        let all = b.cv(LEVELS, 30.0).expect("800 values");
        assert!(all < 0.8 * unqueued, "{all} against {unqueued}");
        assert_eq!(b.cv(4, 500.0), None);
        assert_eq!(ByInFlight::default().cv(4, 0.0), None);
    }
}
