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
        let mean = self.first.mean();
        (self.first.count() >= DISPERSION_MIN_SAMPLES && mean > 0.0)
            .then(|| (self.second.mean() - mean * mean).max(0.0).sqrt() / mean)
    }
}
