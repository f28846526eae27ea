//! Arrivals: the piecewise-linear rate (with on/off modulation) and the arrival event, which
//! draws the tier and passes the client's throttle.

use tailwater_core::Criticality;

use super::Sim;
use super::event::{Kind, ns};
use crate::scenario::{RetryMode, Scenario};

/// The piecewise-linear arrival rate, with optional on/off modulation.
#[derive(Debug)]
pub(super) struct RateFn {
    /// (start s, end s, rate at start, rate at end) in requests/s.
    phases: Vec<(f64, f64, f64, f64)>,
    on_off: Option<(f64, f64)>,
    end: f64,
}

impl RateFn {
    pub(super) fn new(sc: &Scenario) -> Self {
        let base = sc.arrival.rate.unwrap_or_else(|| sc.capacity_rps());
        let mut t = 0.0;
        let mut phases = Vec::new();
        for p in &sc.phase {
            let d = p.duration.as_secs_f64();
            phases.push((t, t + d, base * p.load, base * p.ramp_to.unwrap_or(p.load)));
            t += d;
        }
        let on_off = if sc.arrival.process == "on_off" {
            match (sc.arrival.on, sc.arrival.off) {
                (Some(on), Some(off)) => Some((on.as_secs_f64(), off.as_secs_f64())),
                _ => None,
            }
        } else {
            None
        };
        Self {
            phases,
            on_off,
            end: t,
        }
    }

    /// The mean rate at `t` (on/off averaged out).
    pub(super) fn mean_rate(&self, t: f64) -> f64 {
        for &(s, e, a, b) in &self.phases {
            if t < e {
                return a + (b - a) * (t - s) / (e - s);
            }
        }
        0.0
    }

    /// (rate at t, slope, end of the linear segment containing t).
    pub(super) fn segment(&self, t: f64) -> (f64, f64, f64) {
        let Some(&(s, e, a, b)) = self.phases.iter().find(|p| t < p.1) else {
            return (0.0, 0.0, f64::INFINITY);
        };
        let slope = (b - a) / (e - s);
        let rate = a + slope * (t - s);
        match self.on_off {
            None => (rate, slope, e),
            Some((on, off)) => {
                let cycle = on + off;
                let pos = t % cycle;
                if pos < on {
                    let m = cycle / on;
                    (rate * m, slope * m, e.min(t + on - pos))
                } else {
                    (0.0, 0.0, e.min(t + cycle - pos))
                }
            }
        }
    }

    /// The time at which `need` units of integrated rate have accumulated after `t`.
    pub(super) fn advance(&self, mut t: f64, mut need: f64) -> Option<f64> {
        loop {
            if t >= self.end {
                return None;
            }
            let (a, b, seg_end) = self.segment(t);
            let len = seg_end - t;
            let area = a * len + 0.5 * b * len * len;
            if area >= need && area > 0.0 {
                let disc = (a * a + 2.0 * b * need).max(0.0);
                let dx = 2.0 * need / (a + disc.sqrt());
                return Some(t + dx.min(len));
            }
            need -= area;
            // Step past the segment end, guarding against a zero-length segment.
            t = if seg_end > t { seg_end } else { t + 1e-9 };
        }
    }
}

impl Sim<'_> {
    /// Whether the offered load at `t` (ns) is at or above the capacity (with the server's
    /// current speed and workers), as the overload accounting of [`Self::on_tick`] judges it.
    pub(super) fn overloaded_at(&self, t: u64) -> bool {
        let capacity = self.workers as f64 / self.sc.server.service.mean.as_secs_f64() * self.speed;
        self.rate.mean_rate(t as f64 / 1e9) >= capacity
    }

    pub(super) fn on_arrival(&mut self) {
        let u = self.rng_arrival.uniform();
        let tier = self.mix_cdf.iter().position(|&c| u < c).unwrap_or(3) as u8;
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        self.m.offered[tier as usize] += 1;
        if self.overloaded_at(self.now) {
            self.m.ov_offered[tier as usize] += 1;
        }
        if self.sc.client.retry == RetryMode::Budgeted {
            self.retry_tokens = (self.retry_tokens + self.sc.client.budget).min(10.0);
        }
        let admitted = match &self.throttle {
            Some((t, jitter)) => t.admit(Criticality::ALL[tier as usize], jitter.next_f64()),
            None => true,
        };
        if admitted {
            if let Some((budget, _, _)) = &self.budget {
                budget.deposit();
            }
            self.new_attempt(req, tier, 1, self.now);
        }
        let gap = self.gap.sample(&mut self.rng_arrival);
        if let Some(t) = self.rate.advance(self.now as f64 / 1e9, gap) {
            self.schedule(ns(t).max(self.now), Kind::Arrival);
        }
    }
}
