//! The wait queue's side of the limiter: enqueueing, granting freed permits to waiters,
//! expiring them, and the [`Waiter`] future a queued request awaits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock};
use crate::criticality::Criticality;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

use super::permit::{Holder, OwnedPermit, Permit};
use super::queue::{Grant, QueueConfig, QueueDiscipline, QueueState, Slot, SlotState};
use super::reject::{RejectReason, Rejection};
use super::word::{WAITER, waiters_of};
use super::{Acquire, PartitionId, Request, Shared};

pub(super) struct WaitQueue {
    pub(super) config: QueueConfig,
    pub(super) state: Mutex<QueueState>,
    /// The index of the most important tier with a waiter (4: none), published under the
    /// queue's lock: a tier may borrow above its reservation only while no more important
    /// request waits.
    pub(super) waiting_from: AtomicUsize,
}

impl<C: Clock> Shared<C> {
    /// [`Limiter::enqueue`](super::Limiter::enqueue): admit at once, or park in the queue.
    pub(super) fn enqueue(
        this: &Arc<Self>,
        request: Request,
        timeout: Duration,
    ) -> Result<Acquire<C>, Rejection> {
        let s = this;
        let reason = match s.try_admit(request) {
            Ok(terms) => {
                return Ok(Acquire::Ready(Permit::new(
                    Holder::Owned(Arc::clone(s)),
                    terms,
                )));
            }
            Err(reason) => reason,
        };
        let Some(queue) = &s.queue else {
            s.counters.rejected(reason, request.tier);
            return Err(s.rejection(reason, request.tier));
        };
        let now = s.clock.now();
        let deadline = now + timeout.min(queue.config.max_wait());
        let mut wakers = Vec::new();
        let mut st = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.expire_locked(queue, &mut st, now, &mut wakers);
        if st.len() >= queue.config.capacity() {
            match st.displace_below(request.tier) {
                Some(displaced) => {
                    s.counters.rejected(RejectReason::Displaced, displaced.tier);
                    s.turned_away(displaced.tier);
                    let rejection = s.rejection(RejectReason::Displaced, displaced.tier);
                    wakers.extend(QueueState::reject_removed(&displaced, rejection));
                }
                None => {
                    s.sync_waiters(&mut st);
                    drop(st);
                    wakers.into_iter().for_each(Waker::wake);
                    s.counters.rejected(RejectReason::QueueFull, request.tier);
                    s.turned_away(request.tier);
                    return Err(s.rejection(RejectReason::QueueFull, request.tier));
                }
            }
        }
        let (id, slot) = st.push(request.tier, request.partition, now, deadline);
        s.counters.queued();
        // Registering as a waiter is a read-modify-write of the word a releaser decrements:
        // a release ordered before it is visible to the admission attempt below, and one
        // ordered after it sees the waiter and hands its permit on.
        s.sync_waiters(&mut st);
        s.grant_locked(queue, &mut st, now, &mut wakers);
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
        Ok(Acquire::Queued(Waiter {
            shared: Arc::clone(s),
            slot,
            id,
            tier: request.tier,
            partition: request.partition,
            enqueued_at: now,
            deadline,
            done: false,
        }))
    }

    /// Expires overdue waiters, then grants permits to waiters while capacity allows.
    pub(super) fn grant_waiters(&self) {
        let Some(queue) = &self.queue else { return };
        if waiters_of(self.word.load(Ordering::Acquire)) == 0 {
            return;
        }
        let now = self.clock.now();
        let mut wakers = Vec::new();
        let mut st = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire_locked(queue, &mut st, now, &mut wakers);
        self.grant_locked(queue, &mut st, now, &mut wakers);
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
    }

    fn expire_locked(
        &self,
        queue: &WaitQueue,
        st: &mut QueueState,
        now: Duration,
        wakers: &mut Vec<Waker>,
    ) {
        st.expire(
            queue.config.discipline(),
            now,
            |entry, reason| {
                self.counters.rejected(reason, entry.tier);
                self.turned_away(entry.tier);
                self.rejection(reason, entry.tier)
            },
            wakers,
        );
        self.sync_waiters(st);
    }

    fn grant_locked(
        &self,
        queue: &WaitQueue,
        st: &mut QueueState,
        now: Duration,
        wakers: &mut Vec<Waker>,
    ) {
        while let Some(at) = st.next(queue.config.discipline(), now) {
            let entry = st.entry(at);
            let (tier, partition) = (entry.tier, entry.partition);
            match self.admit(tier, partition) {
                Ok((in_flight, _, limit)) => {
                    self.counters.admitted(tier);
                    self.counters.admitted_from_queue();
                    wakers.extend(st.grant(
                        at,
                        Grant {
                            start: now,
                            in_flight,
                            limit,
                        },
                    ));
                    queue
                        .waiting_from
                        .store(st.most_important(), Ordering::Release);
                }
                Err(_) => break,
            }
        }
        self.sync_waiters(st);
    }

    /// Brings the waiter count in the word in line with the queue (called under its lock,
    /// after every change to it).
    fn sync_waiters(&self, st: &mut QueueState) {
        let (now, before) = (st.len() as u64, st.registered as u64);
        if now > before {
            self.word
                .fetch_add((now - before) * WAITER, Ordering::AcqRel);
        } else if now < before {
            self.word
                .fetch_sub((before - now) * WAITER, Ordering::AcqRel);
        }
        st.registered = st.len();
        if let Some(queue) = &self.queue {
            queue
                .waiting_from
                .store(st.most_important(), Ordering::Release);
        }
    }

    /// A waiter went away: take it out of the queue, or give back the permit it was granted.
    fn cancel(this: &Arc<Self>, waiter: &Waiter<C>) {
        if let Some(queue) = &this.queue {
            let mut st = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.remove(waiter.tier, waiter.id) {
                this.sync_waiters(&mut st);
                *waiter.slot.lock() = SlotState::Done;
                return;
            }
        }
        let state = std::mem::replace(&mut *waiter.slot.lock(), SlotState::Done);
        if let SlotState::Granted(grant) = state {
            // Granted but never collected: release it, which passes it to the next waiter.
            drop(Permit::new(
                Holder::Owned(Arc::clone(this)),
                grant.terms(waiter.tier, waiter.partition),
            ));
        }
    }
}

/// A request waiting in a limiter's queue. A future that resolves to a permit or a
/// rejection; dropping it leaves the queue (or releases the permit it was just granted), so
/// it never leaks a slot nor swallows a wake-up meant for another waiter.
pub struct Waiter<C: Clock = MonotonicClock> {
    shared: Arc<Shared<C>>,
    slot: Arc<Slot>,
    id: u64,
    tier: Criticality,
    partition: Option<PartitionId>,
    enqueued_at: Duration,
    deadline: Duration,
    done: bool,
}

impl<C: Clock> fmt::Debug for Waiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("id", &self.id)
            .field("tier", &self.tier)
            .field("enqueued_at", &self.enqueued_at)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Waiter<C> {
    /// The outcome, if it is already decided. Returns `None` while still waiting; after it
    /// returned `Some` once, later calls return `None`.
    pub fn try_take(&mut self) -> Option<Result<OwnedPermit<C>, Rejection>> {
        self.take(None)
    }

    fn take(&mut self, waker: Option<&Waker>) -> Option<Result<OwnedPermit<C>, Rejection>> {
        if self.done {
            return None;
        }
        let mut st = self.slot.lock();
        match std::mem::replace(&mut *st, SlotState::Done) {
            SlotState::Granted(grant) => {
                drop(st);
                self.done = true;
                Some(Ok(Permit::new(
                    Holder::Owned(Arc::clone(&self.shared)),
                    grant.terms(self.tier, self.partition),
                )))
            }
            SlotState::Rejected(rejection) => {
                self.done = true;
                Some(Err(rejection))
            }
            SlotState::Waiting(old) => {
                let keep = match waker {
                    Some(w) if old.as_ref().is_some_and(|o| o.will_wake(w)) => old,
                    Some(w) => Some(w.clone()),
                    None => old,
                };
                *st = SlotState::Waiting(keep);
                None
            }
            SlotState::Done => {
                self.done = true;
                None
            }
        }
    }

    /// When this waiter should be checked again (by the limiter's clock): its deadline, or
    /// for CoDel the earlier point at which a standing queue would cut its wait short.
    pub fn next_check(&self, now: Duration) -> Duration {
        if let Some(queue) = &self.shared.queue
            && let QueueDiscipline::CoDel { target, .. } = queue.config.discipline()
        {
            let short = self.enqueued_at + target;
            if now < short && short < self.deadline {
                return short;
            }
        }
        self.deadline
    }

    /// The latest time this waiter can be granted, by the limiter's clock.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The tier the waiter is queued in.
    pub fn tier(&self) -> Criticality {
        self.tier
    }
}

impl<C: Clock> Future for Waiter<C> {
    type Output = Result<OwnedPermit<C>, Rejection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.take(Some(cx.waker())) {
            return Poll::Ready(outcome);
        }
        let now = self.shared.clock.now();
        if now >= self.next_check(now) {
            self.shared.grant_waiters();
            if let Some(outcome) = self.take(Some(cx.waker())) {
                return Poll::Ready(outcome);
            }
        }
        Poll::Pending
    }
}

impl<C: Clock> Drop for Waiter<C> {
    fn drop(&mut self) {
        if !self.done {
            let shared = Arc::clone(&self.shared);
            Shared::cancel(&shared, self);
        }
    }
}

#[cfg(feature = "tokio")]
impl<C: Clock> Waiter<C> {
    /// Waits for this queued request's outcome with tokio timers: woken by released
    /// permits, and re-checked by a timer at its deadline (or CoDel's earlier cut-off) when
    /// no release comes. Callers that enqueue themselves (to box only the waiting path, say)
    /// await this; [`Limiter::acquire`](super::Limiter::acquire) does both.
    pub async fn wait(mut self) -> Result<OwnedPermit<C>, Rejection> {
        loop {
            let now = self.shared.clock.now();
            let wait = self
                .next_check(now)
                .saturating_sub(now)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(wait, &mut self).await {
                Ok(outcome) => return outcome,
                Err(_) => {
                    self.shared.grant_waiters();
                    if let Some(outcome) = self.try_take() {
                        return outcome;
                    }
                }
            }
        }
    }
}
