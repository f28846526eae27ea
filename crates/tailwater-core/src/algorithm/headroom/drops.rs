//! Rule 12: the drops a service always has are not overload.

use super::pooled::Pooled;

/// The highest drop share that counts as usual: above it drops always mean trouble.
const MAX_SHARE: f64 = 0.02;

/// How far above the usual count (in standard deviations of a Poisson count) a window's
/// drops must be to back the limit off, where the normal approximation holds (see
/// [`EXACT_BELOW`]).
const SIGMAS: f64 = 3.0;

/// How unlikely a window's drops must be, were they the usual share's, to back the limit
/// off: the one-sided tail of [`SIGMAS`] standard deviations of a normal distribution.
const UNLIKELY: f64 = 0.00135;

/// Below this many expected drops per window the Poisson tail is summed exactly: there a
/// count's distribution is far from normal. With 0.2 % usual drops, a window of 25 expects
/// 0.05, and one drop (in one window of 20) lay past the 3σ line of 0.72: a 48-worker pool
/// with lognormal CV 2 service at half load lost a tenth of its limit every few seconds
/// (71 → 20 in 100 s, 18 % shed; held-out seed 8 of `default-limit`).
const EXACT_BELOW: f64 = 50.0;

/// The share of samples that ended in a drop, [`Pooled`] over about 1,000 of them.
///
/// Why: every window with a drop backed the limit off by `backoff`. A service whose rare
/// slow requests outlast the client's timeout (`heavy-tail`: 0.5 % of requests 50× slower,
/// about 8 drops a second at 1.5× load) then lost a tenth of its limit in one window of
/// every few, and kept 52.5 % of its capacity where a static limit keeps 92.9 %.
#[derive(Debug, Clone, Default)]
pub(super) struct UsualDrops {
    share: Pooled,
}

impl UsualDrops {
    /// Counts one sample (a drop or not).
    pub(super) fn push(&mut self, dropped: bool) {
        self.share.push(f64::from(u8::from(dropped)));
    }

    /// Counts one window's samples, `drops` of them drops spread evenly among them (after
    /// judging it: a window's own drops must not excuse themselves). Spread, because the
    /// average forgets: drops counted first in a window of more samples than it remembers
    /// would be forgotten by its end.
    pub(super) fn record(&mut self, drops: u64, samples: u64) {
        let drops = u128::from(drops.min(samples));
        let n = u128::from(samples);
        for i in 0..n {
            self.push((i + 1) * drops / n > i * drops / n);
        }
    }

    /// Whether `drops` among `samples` are no more than this service usually has: at most
    /// the usual share (capped at [`MAX_SHARE`]) of them plus [`SIGMAS`] standard deviations.
    /// With no drops seen before, any drop is unusual.
    pub(super) fn usual(&self, drops: u64, samples: u64) -> bool {
        let expected = self.share.mean().min(MAX_SHARE) * samples as f64;
        if expected >= EXACT_BELOW {
            return drops as f64 <= expected + SIGMAS * expected.sqrt();
        }
        poisson_at_least(drops, expected) >= UNLIKELY
    }
}

/// P(X ≥ k) for X Poisson with mean `lambda` (below [`EXACT_BELOW`]): one minus the sum of
/// the terms below k; a k far past the mean gives 0, never a negative value.
fn poisson_at_least(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let mut term = (-lambda).exp();
    let mut below = 0.0;
    for i in 0..k {
        below += term;
        if below >= 1.0 || term == 0.0 && i as f64 > lambda {
            break;
        }
        term *= lambda / (i + 1) as f64;
    }
    (1.0 - below).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history of 5,000 samples with one drop in every `every` (none for 0).
    fn dropping_one_in(every: usize) -> UsualDrops {
        let mut d = UsualDrops::default();
        for i in 0..5000 {
            d.push(every > 0 && i % every == every - 1);
        }
        d
    }

    #[test]
    fn a_service_without_drops_finds_every_drop_unusual() {
        let d = dropping_one_in(0);
        assert!(!d.usual(1, 30));
        assert!(d.usual(0, 30));
    }

    #[test]
    fn one_drop_in_two_hundred_is_usual_for_a_service_that_always_had_them() {
        let d = dropping_one_in(200);
        // 0.5 % of 30 samples: 0.15 expected, so one or two drops in a window are its noise ...
        assert!(d.usual(1, 30));
        assert!(d.usual(2, 200));
        // ... five are not.
        assert!(!d.usual(5, 30));
    }

    #[test]
    fn a_lone_drop_is_usual_for_a_service_with_rare_drops() {
        let d = dropping_one_in(500);
        // 0.2 % of 25 samples: 0.05 expected, so one drop comes in one window of twenty
        // (3σ of the normal approximation said 0.72, and backed off at every one) ...
        assert!(d.usual(1, 25));
        // ... three in one window come once in 50,000.
        assert!(!d.usual(3, 25));
    }

    #[test]
    fn the_poisson_tail_is_exact_for_small_means() {
        assert!((poisson_at_least(0, 0.5) - 1.0).abs() < 1e-12);
        assert!((poisson_at_least(1, 0.5) - (1.0 - (-0.5f64).exp())).abs() < 1e-12);
        // P(X ≥ 2) for mean 1: 1 − 2/e.
        assert!((poisson_at_least(2, 1.0) - (1.0 - 2.0 / std::f64::consts::E)).abs() < 1e-12);
        assert_eq!(poisson_at_least(1, 0.0), 0.0);
        assert!(poisson_at_least(1_000, 3.0) < 1e-12);
    }

    #[test]
    fn a_service_that_drops_a_third_is_not_excused_past_two_percent() {
        let mut d = UsualDrops::default();
        for i in 0..5000 {
            d.push(i % 3 == 0);
        }
        // The usual share is capped at 2 %: 10 drops of 30 are trouble however common.
        assert!(!d.usual(10, 30));
        assert!(d.usual(1, 30));
    }
}
