//! Rule 12: the drops a service always has are not overload.

use super::pooled::Pooled;

/// The highest drop share that counts as usual: above it drops always mean trouble.
const MAX_SHARE: f64 = 0.02;

/// How far above the usual count (in standard deviations of a Poisson count) a window's
/// drops must be to back the limit off.
const SIGMAS: f64 = 3.0;

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

    /// Whether `drops` among `samples` are no more than this service usually has: at most
    /// the usual share (capped at [`MAX_SHARE`]) of them plus [`SIGMAS`] standard deviations.
    /// With no drops seen before, any drop is unusual.
    pub(super) fn usual(&self, drops: u64, samples: u64) -> bool {
        let expected = self.share.mean().min(MAX_SHARE) * samples as f64;
        drops as f64 <= expected + SIGMAS * expected.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_without_drops_finds_every_drop_unusual() {
        let mut d = UsualDrops::default();
        for _ in 0..5000 {
            d.push(false);
        }
        assert!(!d.usual(1, 30));
        assert!(d.usual(0, 30));
    }

    #[test]
    fn one_drop_in_two_hundred_is_usual_for_a_service_that_always_had_them() {
        let mut d = UsualDrops::default();
        for i in 0..5000 {
            d.push(i % 200 == 199);
        }
        // 0.5 % of 30 samples: 0.15 expected, so one or two drops in a window are its noise ...
        assert!(d.usual(1, 30));
        assert!(d.usual(2, 200));
        // ... five are not.
        assert!(!d.usual(5, 30));
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
