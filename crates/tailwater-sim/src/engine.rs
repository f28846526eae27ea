//! The event loop: virtual time, a binary heap of events, and the real limiter in the middle.
//!
//! Each event sets the shared [`ManualClock`] to its time, then runs. Requests that wait in a
//! limiter's queue are [`Waiter`] futures polled once with a [`Waker`] that records the
//! request's handle in a ready list; after every event the ready list is drained with
//! [`Waiter::try_take`], so grants and queue rejections are picked up without scanning. Queue
//! deadlines are checked at each waiter's [`Waiter::next_check`] (and by the limiter itself on
//! every release), as the tokio driver in tailwater-core does.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use hdrhistogram::Histogram;
use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::{Acquire, OwnedPermit, Request, Waiter};
use tailwater_core::outbound::{
    AdaptiveThrottle, BudgetConfig, Jitter, Pushback, RetryBudget, RetryDecision, RetryPolicy,
    ThrottleConfig,
};
use tailwater_core::{Criticality, Limiter, RejectReason};

use crate::dist::{Sampler, Shape};
use crate::error::SimError;
use crate::policy::PolicySpec;
use crate::report::{Point, PolicyResult, Quantiles, TierResult};
use crate::rng::Xoshiro256PlusPlus;
use crate::scenario::{RetryMode, Scenario, ServerModel};

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Keep the time series of limit, in-flight, queues and goodput.
    pub series: bool,
}

type Handle = u64;

fn handle(idx: u32, generation: u32) -> Handle {
    (u64::from(generation) << 32) | u64::from(idx)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Arrival,
    /// `start`: when the request's first attempt was sent (its deadline counts from it).
    Retry {
        req: u32,
        tier: u8,
        attempt: u8,
        start: u64,
    },
    Timeout(Handle),
    Check(Handle),
    Done(Handle),
    PsDone(u64),
    Tick,
    Capacity(usize),
}

#[derive(Debug)]
struct Event {
    t: u64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.seq == other.seq
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed, so that the max-heap pops the earliest (then the first scheduled).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.t.cmp(&self.t).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Queued,
    ServerQueue,
    Running,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    live: bool,
    req: u32,
    tier: u8,
    attempt: u8,
    /// When the request's first attempt was sent.
    start: u64,
    arrival: u64,
    deadline: u64,
    abandoned: bool,
    /// Whether the request's first attempt arrived while the load was at or above capacity.
    overloaded: bool,
    stage: Stage,
    work: f64,
    service: f64,
    started: u64,
    permit: Option<OwnedPermit<ManualClock>>,
    waiter: Option<Waiter<ManualClock>>,
}

#[derive(Debug)]
struct ReadyWaker {
    id: Handle,
    ready: Arc<Mutex<Vec<Handle>>>,
}

impl Wake for ReadyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.id);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct PsEntry {
    finish: f64,
    seq: u64,
    h: Handle,
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
struct Ps {
    /// Work (seconds at full speed) every active request has received since the start.
    v: f64,
    last: u64,
    heap: BinaryHeap<PsEntry>,
    generation: u64,
}

/// The piecewise-linear arrival rate, with optional on/off modulation.
#[derive(Debug)]
struct RateFn {
    /// (start s, end s, rate at start, rate at end) in requests/s.
    phases: Vec<(f64, f64, f64, f64)>,
    on_off: Option<(f64, f64)>,
    end: f64,
}

impl RateFn {
    fn new(sc: &Scenario) -> Self {
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
    fn mean_rate(&self, t: f64) -> f64 {
        for &(s, e, a, b) in &self.phases {
            if t < e {
                return a + (b - a) * (t - s) / (e - s);
            }
        }
        0.0
    }

    /// (rate at t, slope, end of the linear segment containing t).
    fn segment(&self, t: f64) -> (f64, f64, f64) {
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
    fn advance(&self, mut t: f64, mut need: f64) -> Option<f64> {
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

fn ns(secs: f64) -> u64 {
    (secs * 1e9).round().max(0.0) as u64
}

fn us(nanos: u64) -> u64 {
    nanos / 1000
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

struct Metrics {
    offered: [u64; 4],
    success: [u64; 4],
    /// Per tier, requests that arrived overloaded and those of them that succeeded.
    ov_offered: [u64; 4],
    ov_tier_success: [u64; 4],
    attempts: u64,
    retries: u64,
    admitted: u64,
    shed: [u64; 7],
    timeouts: u64,
    wasted: f64,
    busy_work: f64,
    latency: Histogram<u64>,
    unloaded: Histogram<u64>,
    waits: Histogram<u64>,
    wait_sum: f64,
    wait_n: u64,
    resp_sum: f64,
    // Current bucket.
    b_attempts: u64,
    b_success: u64,
    b_lat_sum: f64,
    // Overload accounting.
    ov_success: u64,
    ov_capacity: f64,
    series: Vec<Point>,
    limit_sum: f64,
    limit_n: u64,
    peak_in_flight: usize,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(3_600_000_000, 3).expect("static histogram bounds are valid")
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

    /// Whether the offered load at `t` (ns) is at or above the capacity (with the server's
    /// current speed and workers), as the overload accounting of [`Self::on_tick`] judges it.
    fn overloaded_at(&self, t: u64) -> bool {
        let capacity = self.workers as f64 / self.sc.server.service.mean.as_secs_f64() * self.speed;
        self.rate.mean_rate(t as f64 / 1e9) >= capacity
    }

    // ---- slots ----

    fn alloc(&mut self, req: u32, tier: u8, attempt: u8, start: u64) -> Handle {
        let mut deadline = self.now.saturating_add(self.timeout_ns);
        if self.deadline_ns > 0 {
            deadline = deadline.min(start.saturating_add(self.deadline_ns));
        }
        let slot = Slot {
            generation: 0,
            live: true,
            req,
            tier,
            attempt,
            start,
            arrival: self.now,
            deadline,
            abandoned: false,
            overloaded: self.overloaded_at(start),
            stage: Stage::Queued,
            work: 0.0,
            service: 0.0,
            started: 0,
            permit: None,
            waiter: None,
        };
        match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                let generation = s.generation.wrapping_add(1);
                *s = Slot { generation, ..slot };
                handle(i, generation)
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 live requests");
                self.slots.push(slot);
                handle(i, 0)
            }
        }
    }

    fn slot(&mut self, h: Handle) -> Option<&mut Slot> {
        let s = self.slots.get_mut((h & 0xFFFF_FFFF) as usize)?;
        (s.live && s.generation == (h >> 32) as u32).then_some(s)
    }

    fn release(&mut self, h: Handle) {
        let i = (h & 0xFFFF_FFFF) as u32;
        let s = &mut self.slots[i as usize];
        s.live = false;
        s.permit = None;
        s.waiter = None;
        self.free.push(i);
    }

    // ---- clients ----

    fn on_arrival(&mut self) {
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

    fn new_attempt(&mut self, req: u32, tier: u8, attempt: u8, start: u64) {
        self.m.attempts += 1;
        self.m.b_attempts += 1;
        let h = self.alloc(req, tier, attempt, start);
        let work = self.service.sample(&mut self.rng_service);
        // The unloaded latency of this attempt: its service time at the current speed.
        self.m
            .unloaded
            .saturating_record(ns(work / self.speed) / 1000);
        let deadline = {
            let s = self.slot(h).expect("just allocated");
            s.work = work;
            s.deadline
        };
        if deadline <= self.end {
            self.seq += 1;
            self.timeouts.push_back(Event {
                t: deadline,
                seq: self.seq,
                kind: Kind::Timeout(h),
            });
        }
        self.admit(h, tier, deadline);
    }

    fn admit(&mut self, h: Handle, tier: u8, deadline: u64) {
        if self.limiters.is_empty() {
            self.send_to_server(h, None);
            return;
        }
        // Borrow the limiters out of `self` for the call (cheaper than cloning an Arc).
        let limiters = std::mem::take(&mut self.limiters);
        let i = self.next_replica % limiters.len();
        self.next_replica = (i + 1) % limiters.len();
        self.admit_with(&limiters[i], h, tier, deadline);
        self.limiters = limiters;
    }

    fn admit_with(&mut self, limiter: &Limiter<ManualClock>, h: Handle, tier: u8, deadline: u64) {
        let request = Request::new().tier(Criticality::ALL[tier as usize]);
        if !self.has_queue {
            match limiter.try_acquire_owned_with(request) {
                Ok(p) => self.send_to_server(h, Some(p)),
                Err(r) => self.shed(h, r.reason, r.retry_after),
            }
            return;
        }
        let remaining = Duration::from_nanos(deadline.saturating_sub(self.now).max(1));
        match limiter.enqueue(request, remaining) {
            Ok(Acquire::Ready(p)) => self.send_to_server(h, Some(p)),
            Ok(Acquire::Queued(mut w)) => {
                let waker = Waker::from(Arc::new(ReadyWaker {
                    id: h,
                    ready: Arc::clone(&self.ready),
                }));
                let mut cx = Context::from_waker(&waker);
                match Pin::new(&mut w).poll(&mut cx) {
                    Poll::Ready(Ok(p)) => self.send_to_server(h, Some(p)),
                    Poll::Ready(Err(r)) => self.shed(h, r.reason, r.retry_after),
                    Poll::Pending => {
                        let next = w.next_check(Duration::from_nanos(self.now));
                        let s = self.slot(h).expect("live");
                        s.stage = Stage::Queued;
                        s.waiter = Some(w);
                        let at = u64::try_from(next.as_nanos()).unwrap_or(u64::MAX);
                        if at <= self.end {
                            self.schedule(at.max(self.now + 1), Kind::Check(h));
                        }
                    }
                }
            }
            Err(r) => self.shed(h, r.reason, r.retry_after),
        }
    }

    fn drain_ready(&mut self) {
        loop {
            let ids =
                std::mem::take(&mut *self.ready.lock().unwrap_or_else(PoisonError::into_inner));
            if ids.is_empty() {
                return;
            }
            for h in ids {
                let outcome = match self.slot(h) {
                    Some(s) if s.stage == Stage::Queued => match s.waiter.as_mut() {
                        Some(w) => w.try_take(),
                        None => None,
                    },
                    _ => None,
                };
                match outcome {
                    Some(Ok(p)) => {
                        if let Some(s) = self.slot(h) {
                            s.waiter = None;
                        }
                        self.send_to_server(h, Some(p));
                    }
                    Some(Err(r)) => self.shed(h, r.reason, r.retry_after),
                    None => {}
                }
            }
        }
    }

    fn on_check(&mut self, h: Handle) {
        match self.slot(h) {
            Some(s) if s.stage == Stage::Queued => {}
            _ => return,
        }
        for l in &self.limiters {
            l.expire_waiters();
        }
        self.drain_ready();
        let now = self.now;
        let end = self.end;
        let next = match self.slot(h) {
            Some(s) if s.stage == Stage::Queued => s
                .waiter
                .as_ref()
                .map(|w| w.next_check(Duration::from_nanos(now))),
            _ => None,
        };
        if let Some(next) = next {
            let at = u64::try_from(next.as_nanos())
                .unwrap_or(u64::MAX)
                .max(now + 1_000);
            if at <= end {
                self.schedule(at, Kind::Check(h));
            }
        }
    }

    /// A limiter refused attempt `h`, telling the client to come back after `retry_after`.
    fn shed(&mut self, h: Handle, reason: RejectReason, retry_after: Duration) {
        self.m.shed[reason.index()] += 1;
        let (req, tier, attempt, start) = match self.slot(h) {
            Some(s) => (s.req, s.tier, s.attempt, s.start),
            None => return,
        };
        self.release(h);
        self.maybe_retry(req, tier, attempt, start, Pushback::After(retry_after));
    }

    fn on_timeout(&mut self, h: Handle) {
        let Some(s) = self.slot(h) else { return };
        let (req, tier, attempt, stage, start) = (s.req, s.tier, s.attempt, s.stage, s.start);
        if s.abandoned {
            return;
        }
        self.m.timeouts += 1;
        match stage {
            Stage::Queued => self.release(h), // drops the waiter: it leaves the queue
            Stage::ServerQueue | Stage::Running => {
                if let Some(s) = self.slot(h) {
                    s.abandoned = true;
                }
            }
        }
        self.maybe_retry(req, tier, attempt, start, Pushback::None);
    }

    /// After attempt number `attempt` of request `req` (first sent at `start`) failed with
    /// `pushback` from the server.
    fn maybe_retry(&mut self, req: u32, tier: u8, attempt: u8, start: u64, pushback: Pushback) {
        let c = &self.sc.client;
        if i64::from(attempt) >= c.attempts {
            return;
        }
        let mut delay = c.backoff;
        let allowed = match c.retry {
            RetryMode::None => false,
            RetryMode::Naive => true,
            RetryMode::Budget => {
                let Some((budget, policy, jitter)) = &self.budget else {
                    return;
                };
                let u = jitter.next_f64();
                let (pushback, remaining) = if c.pushback {
                    let left = (self.deadline_ns > 0).then(|| {
                        Duration::from_nanos(
                            start
                                .saturating_add(self.deadline_ns)
                                .saturating_sub(self.now),
                        )
                    });
                    (pushback, left)
                } else {
                    (Pushback::None, None)
                };
                match policy.decide(u32::from(attempt), true, pushback, remaining, budget, u) {
                    RetryDecision::After(d) => {
                        delay = d;
                        true
                    }
                    RetryDecision::GiveUp(_) => false,
                }
            }
            RetryMode::Budgeted => {
                if self.retry_tokens >= 1.0 {
                    self.retry_tokens -= 1.0;
                    true
                } else {
                    false
                }
            }
        };
        if allowed {
            self.m.retries += 1;
            let at = self.now + ns(delay.as_secs_f64());
            if at <= self.end {
                self.schedule(
                    at,
                    Kind::Retry {
                        req,
                        tier,
                        attempt: attempt + 1,
                        start,
                    },
                );
            }
        }
    }

    // ---- server ----

    fn send_to_server(&mut self, h: Handle, permit: Option<OwnedPermit<ManualClock>>) {
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

    fn record_start(&mut self, h: Handle) -> f64 {
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

    fn start(&mut self, h: Handle) {
        self.busy += 1;
        let service = self.record_start(h);
        self.schedule(self.now + ns(service).max(1), Kind::Done(h));
    }

    fn on_done(&mut self, h: Handle) {
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

    fn complete(&mut self, h: Handle) {
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

    fn ps_rate(&self, n: usize) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let c = self.workers as f64;
        let n = n as f64;
        let share = (c / n).min(1.0);
        let eff = 1.0 / (1.0 + self.sc.server.slowdown * ((n - c).max(0.0) / c));
        self.speed * share * eff
    }

    fn ps_advance(&mut self) {
        let rate = self.ps_rate(self.ps.heap.len());
        self.ps.v += (self.now - self.ps.last) as f64 / 1e9 * rate;
        self.ps.last = self.now;
    }

    fn ps_reschedule(&mut self) {
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

    fn ps_add(&mut self, h: Handle) {
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

    fn on_ps_done(&mut self, generation: u64) {
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

    fn on_capacity(&mut self, i: usize) {
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

    // ---- time series ----

    fn on_tick(&mut self, tick: u64) {
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
    fn account_in_progress(&mut self) {
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

    fn finish(mut self, policy: &PolicySpec) -> PolicyResult {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Phase;

    fn offered(s: &Scenario) -> u64 {
        run(
            s,
            &PolicySpec::parse("none").unwrap(),
            RunOptions::default(),
        )
        .unwrap()
        .offered
    }

    #[test]
    fn arrival_counts_follow_the_schedule() {
        // A ramp 0 → 2x of 1600/s over 10 s: 16 000 arrivals expected.
        let mut s = Scenario::new(
            "ramp",
            "",
            vec![Phase {
                duration: Duration::from_secs(10),
                load: 0.0,
                ramp_to: Some(2.0),
            }],
        );
        let n = offered(&s) as f64;
        assert!((n - 16_000.0).abs() < 400.0, "{n}");
        // On/off bursts keep the mean rate: 1x for 10 s = 16 000.
        s.phase[0].ramp_to = None;
        s.phase[0].load = 1.0;
        s.arrival.process = "on_off".into();
        s.arrival.on = Some(Duration::from_millis(100));
        s.arrival.off = Some(Duration::from_millis(300));
        let n = offered(&s) as f64;
        assert!((n - 16_000.0).abs() < 400.0, "{n}");
        // Constant arrivals are exact.
        s.arrival.process = "constant".into();
        assert!((offered(&s) as i64 - 16_000).abs() <= 1);
    }

    #[test]
    fn workers_can_change_mid_run() {
        // 48 workers, 0.7x load; from 3 s only 24 remain: 1.4x of the new capacity. Without a
        // limiter the server queue grows; the capacity used for overload goodput halves.
        let mut s = Scenario::new("bn", "", vec![Phase::constant(Duration::from_secs(6), 0.7)]);
        s.capacity = vec![crate::scenario::CapacityChange {
            at: Duration::from_secs(3),
            factor: 1.0,
            workers: Some(24),
        }];
        let opts = RunOptions { series: true };
        let r = run(&s, &PolicySpec::parse("none").unwrap(), opts).unwrap();
        let cap = |t: f64| {
            r.series
                .iter()
                .find(|p| p.t >= t)
                .map(|p| p.capacity_rps)
                .unwrap()
        };
        assert!((cap(1.0) - 1600.0).abs() < 1e-6);
        assert!((cap(4.0) - 800.0).abs() < 1e-6);
        assert!(r.overload_goodput.is_some(), "overloaded after the change");
        let queue_late = r
            .series
            .iter()
            .rev()
            .find(|p| p.t <= 5.9)
            .unwrap()
            .server_queue;
        assert!(queue_late > 200, "{queue_late}");
    }

    #[test]
    fn replicas_each_have_a_limiter_and_share_the_server() {
        // Four static limiters of 12 behind round robin in front of 48 workers at 2x load:
        // together they admit like one limiter of 48, and the reported limit is the sum.
        let mut s = Scenario::new("r", "", vec![Phase::constant(Duration::from_secs(3), 2.0)]);
        s.replicas = 4;
        let four = run(
            &s,
            &PolicySpec::parse("static:12").unwrap(),
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(four.mean_limit, Some(48.0));
        assert!(four.peak_in_flight <= 48, "{}", four.peak_in_flight);
        s.replicas = 1;
        let one = run(
            &s,
            &PolicySpec::parse("static:48").unwrap(),
            RunOptions::default(),
        )
        .unwrap();
        let (a, b) = (four.successes as f64, one.successes as f64);
        assert!((a - b).abs() / b < 0.05, "{a} vs {b}");
        // A single limiter of 12 admits a quarter.
        let quarter = run(
            &s,
            &PolicySpec::parse("static:12").unwrap(),
            RunOptions::default(),
        )
        .unwrap();
        assert!((quarter.successes as f64) < b * 0.3);
        s.replicas = 0;
        assert!(s.validate().is_err());
    }
}
