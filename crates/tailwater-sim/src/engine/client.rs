//! Clients: a new attempt, its admission by a replica's limiter (at once or through the queue),
//! timeouts, sheds and the retry decision of each retry mode.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::{Acquire, Request};
use tailwater_core::outbound::{Pushback, RetryDecision};
use tailwater_core::{Criticality, Limiter, RejectReason};

use super::Sim;
use super::event::{Event, Handle, Kind, ns};
use super::slot::{ReadyWaker, Stage};
use crate::scenario::RetryMode;

impl Sim<'_> {
    pub(super) fn new_attempt(&mut self, req: u32, tier: u8, attempt: u8, start: u64) {
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

    pub(super) fn admit(&mut self, h: Handle, tier: u8, deadline: u64) {
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

    pub(super) fn admit_with(
        &mut self,
        limiter: &Limiter<ManualClock>,
        h: Handle,
        tier: u8,
        deadline: u64,
    ) {
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

    pub(super) fn drain_ready(&mut self) {
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

    pub(super) fn on_check(&mut self, h: Handle) {
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
    pub(super) fn shed(&mut self, h: Handle, reason: RejectReason, retry_after: Duration) {
        self.m.shed[reason.index()] += 1;
        let (req, tier, attempt, start) = match self.slot(h) {
            Some(s) => (s.req, s.tier, s.attempt, s.start),
            None => return,
        };
        self.release(h);
        self.maybe_retry(req, tier, attempt, start, Pushback::After(retry_after));
    }

    pub(super) fn on_timeout(&mut self, h: Handle) {
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
    pub(super) fn maybe_retry(
        &mut self,
        req: u32,
        tier: u8,
        attempt: u8,
        start: u64,
        pushback: Pushback,
    ) {
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
}
