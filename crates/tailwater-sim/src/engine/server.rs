//! The server models: a FIFO in front of a fixed pool of workers, and processor sharing with
//! a slowdown past the worker count; capacity changes mid-run.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

use tailwater_core::Criticality;
use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::OwnedPermit;

use super::Sim;
use super::event::{Handle, Kind, ns, us};
use super::slot::Stage;
use crate::scenario::ServerModel;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PsEntry {
    pub(super) finish: f64,
    pub(super) seq: u64,
    pub(super) h: Handle,
}
impl Eq for PsEntry {}
impl PartialOrd for PsEntry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for PsEntry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other
            .finish
            .total_cmp(&self.finish)
            .then(other.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Default)]
pub(super) struct Ps {
    /// Work (seconds at full speed) every active request has received since the start.
    pub(super) v: f64,
    pub(super) last: u64,
    pub(super) heap: BinaryHeap<PsEntry>,
    pub(super) generation: u64,
}

impl Sim<'_> {
    pub(super) fn send_to_server(&mut self, h: Handle, permit: Option<OwnedPermit<ManualClock>>) {
        self.m.admitted += 1;
        let model = self.sc.server.model;
        {
            let Some(s) = self.slot(h) else { return };
            s.permit = permit;
        }
        match model {
            ServerModel::Workers => {
                if self.busy < self.workers {
                    self.start(h);
                } else {
                    if let Some(s) = self.slot(h) {
                        s.stage = Stage::ServerQueue;
                    }
                    self.fifo.push_back(h);
                }
            }
            ServerModel::ProcessorSharing => self.ps_add(h),
        }
        let in_flight = self.busy + self.fifo.len() + self.ps.heap.len();
        self.m.peak_in_flight = self.m.peak_in_flight.max(in_flight);
    }

    pub(super) fn record_start(&mut self, h: Handle) -> f64 {
        let now = self.now;
        let speed = self.speed;
        let s = self.slot(h).expect("started requests are live");
        s.stage = Stage::Running;
        s.service = s.work / speed;
        s.started = now;
        let (wait, service) = (now - s.arrival, s.service);
        self.m.wait_sum += wait as f64;
        self.m.wait_n += 1;
        self.m.waits.saturating_record(us(wait));
        service
    }

    pub(super) fn start(&mut self, h: Handle) {
        self.busy += 1;
        let service = self.record_start(h);
        self.schedule(self.now + ns(service).max(1), Kind::Done(h));
    }

    pub(super) fn on_done(&mut self, h: Handle) {
        self.busy -= 1;
        self.complete(h);
        while self.busy < self.workers {
            let Some(next) = self.fifo.pop_front() else {
                break;
            };
            if self.slot(next).is_some() {
                self.start(next);
            }
        }
    }

    pub(super) fn complete(&mut self, h: Handle) {
        let now = self.now;
        let Some(s) = self.slot(h) else { return };
        let permit = s.permit.take();
        let (arrival, deadline, abandoned, service, tier, overloaded) = (
            s.arrival,
            s.deadline,
            s.abandoned,
            s.service,
            s.tier,
            s.overloaded,
        );
        self.m.busy_work += service;
        if !abandoned && now <= deadline {
            let lat = now - arrival;
            self.m.success[tier as usize] += 1;
            if overloaded {
                self.m.ov_tier_success[tier as usize] += 1;
            }
            if let Some((t, _)) = &self.throttle {
                t.accepted(Criticality::ALL[tier as usize]);
            }
            self.m.latency.saturating_record(us(lat).max(1));
            self.m.resp_sum += lat as f64;
            self.m.b_success += 1;
            self.m.b_lat_sum += lat as f64;
            if let Some(p) = permit {
                p.success();
            }
        } else {
            self.m.wasted += service;
            if let Some(p) = permit {
                p.dropped();
            }
        }
        self.release(h);
    }

    pub(super) fn ps_rate(&self, n: usize) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let c = self.workers as f64;
        let n = n as f64;
        let share = (c / n).min(1.0);
        let eff = 1.0 / (1.0 + self.sc.server.slowdown * ((n - c).max(0.0) / c));
        self.speed * share * eff
    }

    pub(super) fn ps_advance(&mut self) {
        let rate = self.ps_rate(self.ps.heap.len());
        self.ps.v += (self.now - self.ps.last) as f64 / 1e9 * rate;
        self.ps.last = self.now;
    }

    pub(super) fn ps_reschedule(&mut self) {
        self.ps.generation += 1;
        if let Some(top) = self.ps.heap.peek() {
            let rate = self.ps_rate(self.ps.heap.len());
            let dt = ((top.finish - self.ps.v) / rate).max(0.0);
            let generation = self.ps.generation;
            self.schedule(
                self.now + (dt * 1e9).ceil() as u64,
                Kind::PsDone(generation),
            );
        }
    }

    pub(super) fn ps_add(&mut self, h: Handle) {
        self.ps_advance();
        self.record_start(h);
        let work = self.slot(h).map_or(0.0, |s| s.work);
        self.seq += 1;
        self.ps.heap.push(PsEntry {
            finish: self.ps.v + work,
            seq: self.seq,
            h,
        });
        self.ps_reschedule();
    }

    pub(super) fn on_ps_done(&mut self, generation: u64) {
        if generation != self.ps.generation {
            return;
        }
        self.ps_advance();
        let eps = 1e-12 * self.ps.v.abs().max(1.0);
        while let Some(top) = self.ps.heap.peek() {
            if top.finish > self.ps.v + eps {
                break;
            }
            let h = top.h;
            self.ps.heap.pop();
            self.complete(h);
        }
        self.ps_reschedule();
    }

    pub(super) fn on_capacity(&mut self, i: usize) {
        let Some(change) = self.sc.capacity.get(i) else {
            return;
        };
        let (factor, workers) = (change.factor, change.workers);
        let workers = workers.map_or(self.workers, |w| w.max(1) as usize);
        if self.sc.server.model == ServerModel::ProcessorSharing {
            self.ps_advance();
            self.speed = factor;
            self.workers = workers;
            self.ps_reschedule();
        } else {
            self.speed = factor;
            self.workers = workers;
            while self.busy < self.workers {
                let Some(next) = self.fifo.pop_front() else {
                    break;
                };
                if self.slot(next).is_some() {
                    self.start(next);
                }
            }
        }
    }
}
