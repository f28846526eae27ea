//! Metrics: the counters and histograms of a run, the time series sampled every tick, and the
//! final [`PolicyResult`].

use hdrhistogram::Histogram;
use tailwater_core::{Criticality, RejectReason};

use super::Sim;
use super::event::{Handle, Kind, handle};
use super::slot::Stage;
use crate::policy::PolicySpec;
use crate::report::{Point, PolicyResult, Quantiles, TierResult};
use crate::scenario::ServerModel;

pub(super) struct Metrics {
    pub(super) offered: [u64; 4],
    pub(super) success: [u64; 4],
    /// Per tier, requests that arrived overloaded and those of them that succeeded.
    pub(super) ov_offered: [u64; 4],
    pub(super) ov_tier_success: [u64; 4],
    pub(super) attempts: u64,
    pub(super) retries: u64,
    pub(super) admitted: u64,
    pub(super) shed: [u64; 7],
    pub(super) timeouts: u64,
    pub(super) wasted: f64,
    pub(super) busy_work: f64,
    pub(super) latency: Histogram<u64>,
    pub(super) unloaded: Histogram<u64>,
    pub(super) waits: Histogram<u64>,
    pub(super) wait_sum: f64,
    pub(super) wait_n: u64,
    pub(super) resp_sum: f64,
    // Current bucket.
    pub(super) b_attempts: u64,
    pub(super) b_success: u64,
    pub(super) b_lat_sum: f64,
    // Overload accounting.
    pub(super) ov_success: u64,
    pub(super) ov_capacity: f64,
    pub(super) series: Vec<Point>,
    pub(super) limit_sum: f64,
    pub(super) limit_n: u64,
    pub(super) peak_in_flight: usize,
}

pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(3_600_000_000, 3).expect("static histogram bounds are valid")
}

impl Sim<'_> {
    pub(super) fn on_tick(&mut self, tick: u64) {
        let dt = tick as f64 / 1e9;
        let t = self.now as f64 / 1e9;
        let mid = (t - dt / 2.0).max(0.0);
        let capacity = self.workers as f64 / self.sc.server.service.mean.as_secs_f64() * self.speed;
        let offered_rate = self.rate.mean_rate(mid);
        let overloaded = offered_rate >= capacity;
        if overloaded {
            self.m.ov_success += self.m.b_success;
            self.m.ov_capacity += capacity * dt;
        }
        let (limit, in_flight, lq) = if self.limiters.is_empty() {
            (0, self.busy + self.fifo.len() + self.ps.heap.len(), 0)
        } else {
            self.limiters.iter().fold((0, 0, 0), |(a, b, c), l| {
                (a + l.limit(), b + l.in_flight(), c + l.queue_depth())
            })
        };
        if !self.limiters.is_empty() {
            self.m.limit_sum += limit as f64;
            self.m.limit_n += 1;
        }
        if self.opts.series || self.sc.step_at.is_some() {
            let mean_latency_ms = if self.m.b_success > 0 {
                self.m.b_lat_sum / self.m.b_success as f64 / 1e6
            } else {
                0.0
            };
            self.m.series.push(Point {
                t,
                limit,
                in_flight,
                limiter_queue: lq,
                server_queue: self.fifo.len(),
                offered_rps: self.m.b_attempts as f64 / dt,
                goodput_rps: self.m.b_success as f64 / dt,
                capacity_rps: capacity,
                mean_latency_ms,
                overloaded,
            });
        }
        self.m.b_attempts = 0;
        self.m.b_success = 0;
        self.m.b_lat_sum = 0.0;
        if self.now < self.end {
            self.schedule((self.now + tick).min(self.end), Kind::Tick);
        }
    }

    /// Work done on requests still in service when the run ends: counted as busy, and as
    /// wasted when their client already left (a thrashing server may finish nothing at all).
    pub(super) fn account_in_progress(&mut self) {
        if self.sc.server.model == ServerModel::ProcessorSharing {
            self.ps_advance();
        }
        let v = self.ps.v;
        let now = self.now;
        let (mut busy, mut wasted) = (0.0, 0.0);
        let ps_starts: std::collections::HashMap<Handle, f64> =
            self.ps.heap.iter().map(|e| (e.h, e.finish)).collect();
        for (i, s) in self.slots.iter().enumerate() {
            if !s.live || s.stage != Stage::Running {
                continue;
            }
            let h = handle(i as u32, s.generation);
            let done = match ps_starts.get(&h) {
                // Attained work since its start, in seconds at full speed, scaled like `service`.
                Some(finish) => (v - (finish - s.work)).max(0.0) / self.speed,
                None => (now.saturating_sub(s.started) as f64 / 1e9).min(s.service),
            };
            busy += done;
            if s.abandoned || now > s.deadline {
                wasted += done;
            }
        }
        self.m.busy_work += busy;
        self.m.wasted += wasted;
    }

    pub(super) fn finish(mut self, policy: &PolicySpec) -> PolicyResult {
        self.account_in_progress();
        let m = self.m;
        let q = |h: &Histogram<u64>| Quantiles {
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1e3 },
            p50_ms: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1e3,
            p999_ms: h.value_at_quantile(0.999) as f64 / 1e3,
            max_ms: h.max() as f64 / 1e3,
        };
        let offered: u64 = m.offered.iter().sum();
        let successes: u64 = m.success.iter().sum();
        let duration = self.end as f64 / 1e9;
        let latency = q(&m.latency);
        let unloaded_p99 = m.unloaded.value_at_quantile(0.99) as f64 / 1e3;
        let (convergence_s, settled_limit) = match self.sc.step_at {
            Some(step) if !self.limiters.is_empty() => convergence(&m.series, step.as_secs_f64()),
            _ => (None, None),
        };
        let tiers = Criticality::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| m.offered[*i] > 0)
            .map(|(i, c)| TierResult {
                tier: c.as_str().to_string(),
                offered: m.offered[i],
                successes: m.success[i],
                goodput: m.success[i] as f64 / m.offered[i] as f64,
                overload_offered: m.ov_offered[i],
                overload_goodput: (m.ov_offered[i] > 0)
                    .then(|| m.ov_tier_success[i] as f64 / m.ov_offered[i] as f64),
            })
            .collect();
        let shed = RejectReason::ALL
            .iter()
            .filter(|r| m.shed[r.index()] > 0)
            .map(|r| (r.as_str().to_string(), m.shed[r.index()]))
            .collect();
        let series = if self.opts.series {
            m.series
        } else {
            Vec::new()
        };
        PolicyResult {
            policy: policy.name.clone(),
            offered,
            attempts: m.attempts,
            retries: m.retries,
            admitted: m.admitted,
            successes,
            goodput_rps: successes as f64 / duration,
            goodput_ratio: if offered > 0 {
                successes as f64 / offered as f64
            } else {
                0.0
            },
            overload_goodput: (m.ov_capacity > 0.0).then(|| m.ov_success as f64 / m.ov_capacity),
            shed_total: m.shed.iter().sum(),
            shed,
            timeouts: m.timeouts,
            wasted_work_s: m.wasted,
            wasted_fraction: if m.busy_work > 0.0 {
                m.wasted / m.busy_work
            } else {
                0.0
            },
            latency,
            unloaded_p99_ms: unloaded_p99,
            p99_ratio: if unloaded_p99 > 0.0 {
                latency.p99_ms / unloaded_p99
            } else {
                0.0
            },
            wait_mean_ms: if m.wait_n > 0 {
                m.wait_sum / m.wait_n as f64 / 1e6
            } else {
                0.0
            },
            wait: q(&m.waits),
            response_mean_ms: if successes > 0 {
                m.resp_sum / successes as f64 / 1e6
            } else {
                0.0
            },
            tiers,
            retry_amplification: if offered > 0 {
                m.attempts as f64 / offered as f64
            } else {
                0.0
            },
            convergence_s,
            settled_limit,
            mean_limit: (m.limit_n > 0).then(|| m.limit_sum / m.limit_n as f64),
            peak_in_flight: m.peak_in_flight,
            events: self.events,
            series,
        }
    }
}

/// Time after `step` until the limit stays within ±10 % (at least ±1) of its settled value,
/// the median over the last 30 % of the run after the step. `None` if it never settles.
fn convergence(series: &[Point], step: f64) -> (Option<f64>, Option<f64>) {
    let after: Vec<&Point> = series.iter().filter(|p| p.t > step).collect();
    if after.len() < 4 {
        return (None, None);
    }
    let tail_start = after.len() - (after.len() * 3 / 10).max(1);
    let mut tail: Vec<usize> = after[tail_start..].iter().map(|p| p.limit).collect();
    tail.sort_unstable();
    let settled = tail[tail.len() / 2] as f64;
    let band = (0.1 * settled).max(1.0);
    let outside = after
        .iter()
        .rposition(|p| (p.limit as f64 - settled).abs() > band);
    let conv = match outside {
        None => Some(0.0),
        Some(i) if i + 1 < tail_start => Some(after[i + 1].t - step),
        Some(_) => None,
    };
    (conv, Some(settled))
}
