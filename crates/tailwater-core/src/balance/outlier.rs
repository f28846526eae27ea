//! Outlier ejection (Envoy's outlier detection, consecutive-failure detectors).
//!
//! Each endpoint counts consecutive server errors (any 5xx, gateway errors included) and
//! consecutive gateway errors (502, 503, 504, a failed connect, a reset or a timeout); a
//! success resets both. When either count reaches its threshold the endpoint is ejected
//! for `base_ejection × times ejected` (capped at `max_ejection`), unless that would eject
//! more than `max_ejection_percent` of the endpoints; one endpoint may always be ejected,
//! so that a route of a few endpoints can eject its one bad one (Envoy ≥ 1.27 does the
//! same). Each `interval` an endpoint spends back in service takes one off its ejection
//! multiplier (Envoy decrements it at every detection interval). There is no half-open
//! state, as in Envoy: an ejected endpoint returns when its time is up, then ramps up
//! through [`SlowStart`](super::SlowStart).

use std::time::Duration;

use super::Outcome;

/// When to eject an endpoint and for how long. [`Default`] is Envoy's defaults, with the
/// gateway-error detector enforced (Envoy's `enforcing_consecutive_gateway_failure` is 0,
/// but there a failed connect counts towards `consecutive_5xx` anyway, so the effect is the
/// same at the same threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive 5xx (gateway errors included) that eject; 0 turns the detector off.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (502/503/504, connect failures, resets, timeouts) that
    /// eject; 0 turns the detector off.
    pub consecutive_gateway_errors: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection: Duration,
    /// The longest ejection (at least `base_ejection`).
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, percent (at least one may always be).
    pub max_ejection_percent: u32,
    /// Each interval back in service lowers the ejection multiplier by one.
    pub interval: Duration,
}

impl Default for Outlier {
    /// Envoy: 5 consecutive, 30 s base, 300 s max, 10 %, 10 s interval.
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 10,
            interval: Duration::from_secs(10),
        }
    }
}

impl Outlier {
    /// How many of `n` endpoints may be ejected at once: `n × percent / 100`, at least one
    /// (none of a single endpoint: with nowhere else to go, ejecting it helps nobody).
    pub fn max_ejected(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        (n * self.max_ejection_percent.min(100) as usize / 100).max(1)
    }
}

/// One endpoint's detector state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Detector {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    times_ejected: u32,
    /// While ejected: when it returns.
    pub(crate) ejected_until: Option<Duration>,
    /// When it last returned from an ejection.
    pub(crate) returned_at: Option<Duration>,
}

impl Detector {
    /// Counts `outcome`; whether a detector's threshold is reached (the caller decides
    /// whether the share of ejected endpoints allows an ejection).
    pub(crate) fn record(&mut self, outcome: Outcome, cfg: &Outlier) -> bool {
        match outcome {
            Outcome::Success => {
                self.consecutive_5xx = 0;
                self.consecutive_gateway = 0;
                return false;
            }
            Outcome::ServerError => {
                self.consecutive_5xx += 1;
                self.consecutive_gateway = 0;
            }
            Outcome::GatewayError => {
                self.consecutive_5xx += 1;
                self.consecutive_gateway += 1;
            }
            Outcome::Ignored => return false,
        }
        self.ejected_until.is_none()
            && ((cfg.consecutive_5xx > 0 && self.consecutive_5xx >= cfg.consecutive_5xx)
                || (cfg.consecutive_gateway_errors > 0
                    && self.consecutive_gateway >= cfg.consecutive_gateway_errors))
    }

    /// Ejects the endpoint at `now`; returns how long for.
    pub(crate) fn eject(&mut self, now: Duration, cfg: &Outlier) -> Duration {
        if let Some(back) = self.returned_at
            && !cfg.interval.is_zero()
        {
            let healthy = now.saturating_sub(back).as_nanos() / cfg.interval.as_nanos();
            let healthy = u32::try_from(healthy).unwrap_or(u32::MAX);
            self.times_ejected = self.times_ejected.saturating_sub(healthy);
        }
        self.times_ejected = self.times_ejected.saturating_add(1);
        let time = cfg
            .base_ejection
            .saturating_mul(self.times_ejected)
            .min(cfg.max_ejection.max(cfg.base_ejection));
        self.ejected_until = Some(now + time);
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        time
    }

    /// Whether the endpoint is out of service at `now`; one whose ejection ended returns
    /// (`Some(true)` the first time it is seen back, for the caller's bookkeeping).
    pub(crate) fn ejected(&mut self, now: Duration) -> (bool, bool) {
        match self.ejected_until {
            Some(until) if now < until => (true, false),
            Some(_) => {
                self.ejected_until = None;
                self.returned_at = Some(now);
                (false, true)
            }
            None => (false, false),
        }
    }

    /// Times ejected, less the intervals since spent healthy (as last computed).
    pub(crate) fn times_ejected(&self) -> u32 {
        self.times_ejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn five_consecutive_failures_eject_and_a_success_resets() {
        let cfg = Outlier::default();
        let mut d = Detector::default();
        for _ in 0..4 {
            assert!(!d.record(Outcome::ServerError, &cfg));
        }
        assert!(!d.record(Outcome::Success, &cfg), "a success resets");
        for _ in 0..4 {
            assert!(!d.record(Outcome::GatewayError, &cfg));
        }
        assert!(
            d.record(Outcome::ServerError, &cfg),
            "5xx counts gateway errors"
        );
        assert!(!d.record(Outcome::Ignored, &cfg));
    }

    #[test]
    fn ejection_time_grows_with_repeats_and_shrinks_with_health() {
        let cfg = Outlier::default();
        let mut d = Detector::default();
        assert_eq!(d.eject(S(0), &cfg), S(30));
        assert_eq!(d.ejected(S(29)), (true, false));
        assert_eq!(d.ejected(S(30)), (false, true));
        assert_eq!(d.eject(S(31), &cfg), S(60), "second in a row: 2 × 30 s");
        assert_eq!(d.ejected(S(91)), (false, true));
        // 25 s healthy: two intervals off the multiplier (2 → 0), so 1 × 30 s.
        assert_eq!(d.eject(S(116), &cfg), S(30));
        let mut many = Detector::default();
        for i in 0..20 {
            many.eject(S(i * 1000), &cfg);
            many.ejected_until = None;
            many.returned_at = None;
        }
        assert_eq!(
            many.eject(S(99_999), &cfg),
            S(300),
            "capped at max_ejection"
        );
    }

    #[test]
    fn at_least_one_of_few_may_be_ejected() {
        let cfg = Outlier::default();
        assert_eq!(cfg.max_ejected(1), 0);
        assert_eq!(cfg.max_ejected(3), 1);
        assert_eq!(cfg.max_ejected(25), 2);
    }
}
