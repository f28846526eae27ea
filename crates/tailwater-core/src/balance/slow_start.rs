//! Slow start for an endpoint that returns from ejection (Envoy's `slow_start_config`).
//!
//! For `window` after its return, the endpoint's weight grows from `min_weight` to 1 as
//! `max(min_weight, (t / window)^(1 / aggression))`; the balancer divides its cost by that
//! weight, so a returning endpoint is chosen less at first and fully after the window.
//! Envoy's defaults: aggression 1.0 (linear), `min_weight_percent` 10 %.

use std::time::Duration;

/// The ramp of a returning endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    /// How long the ramp lasts; zero turns slow start off.
    pub window: Duration,
    /// Curvature: 1.0 is linear; larger ramps up faster at first.
    pub aggression: f64,
    /// The weight at the start of the window, in (0, 1].
    pub min_weight: f64,
}

impl Default for SlowStart {
    /// A 10 s linear window from 10 % (Envoy's aggression and minimum weight; Envoy leaves
    /// the window unset, i.e. off, and tailwater turns it on because an endpoint returning
    /// from ejection is exactly the one that should be warmed up).
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            aggression: 1.0,
            min_weight: 0.1,
        }
    }
}

impl SlowStart {
    /// The endpoint's weight `since` its return.
    pub fn weight(&self, since: Duration) -> f64 {
        if self.window.is_zero() || since >= self.window {
            return 1.0;
        }
        let t = since.as_secs_f64() / self.window.as_secs_f64();
        t.powf(1.0 / self.aggression).max(self.min_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_ramps_linearly_from_the_floor() {
        let s = SlowStart::default();
        assert_eq!(s.weight(Duration::ZERO), 0.1);
        assert!((s.weight(Duration::from_secs(5)) - 0.5).abs() < 1e-9);
        assert_eq!(s.weight(Duration::from_secs(10)), 1.0);
        let off = SlowStart {
            window: Duration::ZERO,
            ..s
        };
        assert_eq!(off.weight(Duration::ZERO), 1.0);
    }
}
