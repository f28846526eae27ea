//! Peak-sensitive EWMA of response latency (Finagle's and Linkerd's `PeakEwma`, as in
//! tower's `load::PeakEwma`).
//!
//! A latency above the estimate is adopted at once (the peak); a lower one is blended in
//! with weight `1 − exp(−Δt / decay)`, so the estimate falls back smoothly. Between samples
//! the estimate decays towards zero with the same factor, so an endpoint that was slow and
//! then stopped being chosen is tried again after a while instead of being starved for ever.
//! The load an endpoint reports is `estimate × (pending + 1)`.

use std::time::Duration;

/// One endpoint's latency estimate. Times are readings of the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PeakEwma {
    /// The estimate, nanoseconds.
    estimate: f64,
    /// When the estimate was last updated.
    at: Duration,
}

impl PeakEwma {
    /// An estimate of `default_rtt` starting at `now`.
    pub(crate) fn new(default_rtt: Duration, now: Duration) -> Self {
        Self {
            estimate: nanos(default_rtt),
            at: now,
        }
    }

    /// Blends in a sample `rtt` observed at `now`.
    pub(crate) fn observe(&mut self, rtt: Duration, now: Duration, decay: Duration) {
        let rtt = nanos(rtt);
        if rtt > self.estimate {
            self.estimate = rtt;
        } else {
            let w = weight(now.saturating_sub(self.at), decay);
            self.estimate = self.estimate * w + rtt * (1.0 - w);
        }
        self.at = self.at.max(now);
    }

    /// The estimate at `now`, decayed since the last sample (not stored: reading it does
    /// not change it).
    pub(crate) fn estimate(&self, now: Duration, decay: Duration) -> f64 {
        self.estimate * weight(now.saturating_sub(self.at), decay)
    }
}

/// `exp(−elapsed / decay)`: how much of the old estimate a sample `elapsed` later keeps.
fn weight(elapsed: Duration, decay: Duration) -> f64 {
    if decay.is_zero() {
        return 0.0;
    }
    (-(elapsed.as_secs_f64() / decay.as_secs_f64())).exp()
}

pub(crate) fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[test]
    fn a_peak_is_adopted_at_once_and_a_drop_blends_in() {
        let mut e = PeakEwma::new(Duration::from_millis(30), Duration::ZERO);
        e.observe(Duration::from_millis(100), Duration::from_millis(1), DECAY);
        assert!((e.estimate(Duration::from_millis(1), DECAY) - 100e6).abs() < 1.0);
        // 10 s later (one decay constant) a 10 ms sample: 100·e⁻¹ + 10·(1 − e⁻¹) ms.
        e.observe(
            Duration::from_millis(10),
            Duration::from_millis(10_001),
            DECAY,
        );
        let want = 100e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
        let got = e.estimate(Duration::from_millis(10_001), DECAY);
        assert!((got - want).abs() < 1e3, "{got} vs {want}");
    }

    #[test]
    fn the_estimate_decays_without_samples() {
        let e = PeakEwma::new(Duration::from_millis(30), Duration::ZERO);
        let later = e.estimate(Duration::from_secs(20), DECAY);
        assert!((later - 30e6 * (-2f64).exp()).abs() < 1e3, "{later}");
    }
}
