//! The event loop: virtual time, a binary heap of events, and the real limiter in the middle.
//!
//! Each event sets the shared [`ManualClock`] to its time, then runs. Requests that wait in a
//! limiter's queue are [`Waiter`] futures polled once with a [`Waker`] that records the
//! request's handle in a ready list; after every event the ready list is drained with
//! [`Waiter::try_take`], so grants and queue rejections are picked up without scanning. Queue
//! deadlines are checked at each waiter's [`Waiter::next_check`] (and by the limiter itself on
//! every release), as the tokio driver in tailwater-core does.
//!
//! [`Waiter`]: tailwater_core::limiter::Waiter
//! [`Waiter::try_take`]: tailwater_core::limiter::Waiter::try_take
//! [`Waiter::next_check`]: tailwater_core::limiter::Waiter::next_check
//! [`Waker`]: std::task::Waker

mod arrival;
mod client;
mod event;
mod metrics;
mod server;
mod slot;
#[cfg(test)]
mod tests;

use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailwater_core::Limiter;
use tailwater_core::clock::ManualClock;
use tailwater_core::outbound::{
    AdaptiveThrottle, BudgetConfig, Jitter, RetryBudget, RetryPolicy, ThrottleConfig,
};

use crate::dist::{Sampler, Shape};
use crate::error::SimError;
use crate::policy::PolicySpec;
use crate::report::PolicyResult;
use crate::rng::Xoshiro256PlusPlus;
use crate::scenario::{RetryMode, Scenario};

use arrival::RateFn;
use event::{Event, Handle, Kind, ns};
use metrics::{Metrics, histogram};
use server::Ps;
use slot::Slot;

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Keep the time series of limit, in-flight, queues and goodput.
    pub series: bool,
}

struct Sim<'a> {
    sc: &'a Scenario,
    now: u64,
    end: u64,
    clock: ManualClock,
    /// One limiter per replica (empty without a limiter), taken turns by round robin.
    limiters: Vec<Limiter<ManualClock>>,
    next_replica: usize,
    has_queue: bool,
    heap: BinaryHeap<Event>,
    /// Client timeouts: every attempt gets `now + timeout`, so they fall due in the order they
    /// were scheduled and a FIFO replaces the heap for them (most are stale by then: skipped).
    timeouts: VecDeque<Event>,
    seq: u64,
    events: u64,
    rng_arrival: Xoshiro256PlusPlus,
    rng_service: Xoshiro256PlusPlus,
    gap: Sampler,
    service: Sampler,
    rate: RateFn,
    mix_cdf: [f64; 4],
    slots: Vec<Slot>,
    free: Vec<u32>,
    ready: Arc<Mutex<Vec<Handle>>>,
    // Server.
    workers: usize,
    busy: usize,
    fifo: VecDeque<Handle>,
    speed: f64,
    ps: Ps,
    // Clients.
    next_req: u32,
    retry_tokens: f64,
    /// `RetryMode::Budget`: the core's shared budget and retry policy, on the run's clock.
    budget: Option<(RetryBudget<ManualClock>, RetryPolicy, Jitter)>,
    /// `client.throttle_k`: the core's adaptive throttle in front of every request.
    throttle: Option<(AdaptiveThrottle<ManualClock>, Jitter)>,
    timeout_ns: u64,
    /// `client.deadline` (0: none).
    deadline_ns: u64,
    // Metrics.
    m: Metrics,
    opts: RunOptions,
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, policy: &PolicySpec, opts: RunOptions) -> Result<Self, SimError> {
        sc.validate()?;
        let clock = ManualClock::new();
        let workers = sc.server.workers as usize;
        let mut limiters = Vec::new();
        for i in 0..sc.replicas.max(1) as u64 {
            let seed = sc.seed.wrapping_add(i);
            if let Some(l) = policy.build(&clock, workers, sc.client.timeout, seed)? {
                limiters.push(l);
            }
        }
        let gap = Sampler::new(sc.arrival_shape()?, 1.0);
        let service = Sampler::new(
            sc.server.service.shape("server.service")?,
            sc.server.service.mean.as_secs_f64(),
        );
        let shares = sc.mix.shares();
        let total: f64 = shares.iter().sum();
        let mut mix_cdf = [0.0; 4];
        let mut acc = 0.0;
        for (i, s) in shares.iter().enumerate() {
            acc += s / total;
            mix_cdf[i] = acc;
        }
        mix_cdf[3] = 1.0;
        let seed = sc.seed;
        let budget = match sc.client.retry {
            RetryMode::Budget => Some((
                RetryBudget::with_clock(
                    BudgetConfig {
                        ratio: sc.client.budget,
                        ..BudgetConfig::default()
                    },
                    clock.clone(),
                )?,
                RetryPolicy {
                    max_attempts: u32::try_from(sc.client.attempts.clamp(1, 10)).unwrap_or(3),
                    base: sc.client.backoff,
                    max: sc.client.backoff * 10,
                },
                // Its own stream: the arrivals and service times stay those of the other
                // modes.
                Jitter::new(seed ^ 0x0B0F_F5E7),
            )),
            _ => None,
        };
        let throttle = if sc.client.throttle_k > 0.0 {
            let config = ThrottleConfig {
                k: sc.client.throttle_k,
                ..ThrottleConfig::default()
            };
            Some((
                AdaptiveThrottle::with_clock(config, clock.clone())?,
                Jitter::new(seed ^ 0x7480_7713),
            ))
        } else {
            None
        };
        Ok(Self {
            sc,
            now: 0,
            end: ns(sc.duration().as_secs_f64()),
            clock,
            has_queue: policy.queue.is_some(),
            limiters,
            next_replica: 0,
            heap: BinaryHeap::new(),
            timeouts: VecDeque::new(),
            seq: 0,
            events: 0,
            rng_arrival: Xoshiro256PlusPlus::seed_from_u64(seed),
            rng_service: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5EED_0F5E_4F1C_E000),
            gap,
            service,
            rate: RateFn::new(sc),
            mix_cdf,
            slots: Vec::new(),
            free: Vec::new(),
            ready: Arc::new(Mutex::new(Vec::new())),
            workers,
            busy: 0,
            fifo: VecDeque::new(),
            speed: 1.0,
            ps: Ps::default(),
            next_req: 0,
            retry_tokens: 10.0,
            budget,
            throttle,
            timeout_ns: u64::try_from(sc.client.timeout.as_nanos()).unwrap_or(u64::MAX),
            deadline_ns: u64::try_from(sc.client.deadline.as_nanos()).unwrap_or(u64::MAX),
            m: Metrics {
                offered: [0; 4],
                success: [0; 4],
                ov_offered: [0; 4],
                ov_tier_success: [0; 4],
                attempts: 0,
                retries: 0,
                admitted: 0,
                shed: [0; 7],
                timeouts: 0,
                wasted: 0.0,
                busy_work: 0.0,
                latency: histogram(),
                unloaded: histogram(),
                waits: histogram(),
                wait_sum: 0.0,
                wait_n: 0,
                resp_sum: 0.0,
                b_attempts: 0,
                b_success: 0,
                b_lat_sum: 0.0,
                ov_success: 0,
                ov_capacity: 0.0,
                series: Vec::new(),
                limit_sum: 0.0,
                limit_n: 0,
                peak_in_flight: 0,
            },
            opts,
        })
    }

    fn schedule(&mut self, t: u64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Event {
            t,
            seq: self.seq,
            kind,
        });
    }

    fn run(mut self, policy: &PolicySpec) -> PolicyResult {
        if let Some(t) = self
            .rate
            .advance(0.0, self.gap.sample(&mut self.rng_arrival))
        {
            self.schedule(ns(t), Kind::Arrival);
        }
        let tick = ns(self.sc.sample_interval.as_secs_f64());
        self.schedule(tick.min(self.end), Kind::Tick);
        for (i, c) in self.sc.capacity.iter().enumerate() {
            let at = ns(c.at.as_secs_f64());
            if at <= self.end {
                self.schedule(at, Kind::Capacity(i));
            }
        }
        loop {
            let from_timeouts = match (self.heap.peek(), self.timeouts.front()) {
                (Some(h), Some(t)) => (t.t, t.seq) < (h.t, h.seq),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => break,
            };
            let next = if from_timeouts {
                self.timeouts.pop_front()
            } else {
                self.heap.pop()
            };
            let Some(ev) = next else { break };
            if ev.t > self.end {
                break;
            }
            if let Kind::Timeout(h) = ev.kind
                && self.slot(h).is_none_or(|s| s.abandoned)
            {
                continue; // the attempt already ended: nothing happens
            }
            self.now = ev.t;
            self.clock.set(Duration::from_nanos(ev.t));
            self.events += 1;
            match ev.kind {
                Kind::Arrival => self.on_arrival(),
                Kind::Retry {
                    req,
                    tier,
                    attempt,
                    start,
                } => self.new_attempt(req, tier, attempt, start),
                Kind::Timeout(h) => self.on_timeout(h),
                Kind::Check(h) => self.on_check(h),
                Kind::Done(h) => self.on_done(h),
                Kind::PsDone(generation) => self.on_ps_done(generation),
                Kind::Tick => self.on_tick(tick),
                Kind::Capacity(i) => self.on_capacity(i),
            }
            if self.has_queue {
                self.drain_ready();
            }
        }
        self.finish(policy)
    }
}

/// Runs one policy through one scenario.
pub fn run(
    scenario: &Scenario,
    policy: &PolicySpec,
    opts: RunOptions,
) -> Result<PolicyResult, SimError> {
    let sim = Sim::new(scenario, policy, opts)?;
    Ok(sim.run(policy))
}

/// The shape of the arrival process (for theory comparisons).
pub fn arrival_cv(scenario: &Scenario) -> Result<f64, SimError> {
    scenario.arrival_shape().map(|s: Shape| s.cv())
}
