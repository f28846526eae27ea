//! The bounded wait queue behind a limiter, and its disciplines.
//!
//! When a request cannot be admitted at once, [`Limiter::enqueue`](super::Limiter::enqueue)
//! parks it here until a permit frees up, its deadline passes, or a more important request
//! displaces it from a full queue. Waiters are kept per criticality tier: a more important
//! tier is always served first; within a tier the discipline picks who goes next:
//!
//! - **FIFO**: oldest first. Fair, but under overload every request waits behind requests
//!   whose clients may already have given up.
//! - **LIFO**: newest first, as Netflix's `LifoBlockingLimiter` (backlog 100, timeout 1 s):
//!   under overload the newest request is the likeliest to still be wanted.
//! - **Adaptive LIFO** (Facebook, "Fail at Scale", and the seed's "Adaptive LIFO"): FIFO while
//!   the queue drains normally; LIFO once a *standing queue* forms, i.e. the queue has not been
//!   empty for `standing_after`.
//! - **CoDel** (Fail at Scale's controlled delay, after Nichols and Jacobson): FIFO order, but
//!   if the queue has not been empty during the last `interval` (N = 100 ms), a waiter may only
//!   wait `target` (M = 5 ms); otherwise it may wait up to `interval`. A standing queue is
//!   thereby cut to a short one without tuning a queue length.
//!
//! Every waiter leaves with exactly one of: a permit, a timeout, a rejection.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::task::Waker;
use std::time::Duration;

use crate::criticality::Criticality;
use crate::error::ConfigError;
use crate::sync::{Arc, Mutex, MutexGuard};

use super::PartitionId;
use super::permit::{Terms, nanos};
use super::reject::{RejectReason, Rejection};

/// How waiters are ordered within a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueDiscipline {
    /// Oldest first.
    Fifo,
    /// Newest first.
    Lifo,
    /// FIFO until the queue has been non-empty for `standing_after`, then LIFO.
    AdaptiveLifo {
        /// How long the queue must stay non-empty before it counts as a standing queue.
        standing_after: Duration,
    },
    /// FIFO with controlled delay: waits are cut to `target` once the queue has not been empty
    /// for a whole `interval`; otherwise a wait lasts at most `interval`.
    CoDel {
        /// M: the wait allowed under a standing queue (Fail at Scale: 5 ms).
        target: Duration,
        /// N: the window that defines a standing queue and the normal wait cap (100 ms).
        interval: Duration,
    },
}

impl QueueDiscipline {
    /// Fail at Scale's CoDel: M = 5 ms, N = 100 ms.
    pub const fn codel() -> Self {
        QueueDiscipline::CoDel {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }

    /// Adaptive LIFO that flips after 100 ms of standing queue (CoDel's interval).
    pub const fn adaptive_lifo() -> Self {
        QueueDiscipline::AdaptiveLifo {
            standing_after: Duration::from_millis(100),
        }
    }
}

/// Configuration of a limiter's wait queue.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
/// let q = QueueConfig::new(100, QueueDiscipline::Lifo, Duration::from_secs(1)).unwrap();
/// assert_eq!(q.capacity(), 100);
/// assert!(QueueConfig::new(0, QueueDiscipline::Fifo, Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    capacity: usize,
    discipline: QueueDiscipline,
    max_wait: Duration,
}

impl QueueConfig {
    /// A queue of at most `capacity` waiters, each waiting at most `max_wait` (a caller's own
    /// timeout can only shorten that).
    pub fn new(
        capacity: usize,
        discipline: QueueDiscipline,
        max_wait: Duration,
    ) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new("queue.capacity", "must be at least 1"));
        }
        if max_wait.is_zero() {
            return Err(ConfigError::new(
                "queue.max_wait",
                "must be greater than zero",
            ));
        }
        match discipline {
            QueueDiscipline::AdaptiveLifo { standing_after } if standing_after.is_zero() => {
                return Err(ConfigError::new(
                    "queue.standing_after",
                    "must be greater than zero",
                ));
            }
            QueueDiscipline::CoDel { target, interval } => {
                if target.is_zero() {
                    return Err(ConfigError::new(
                        "queue.target",
                        "must be greater than zero",
                    ));
                }
                if interval <= target {
                    return Err(ConfigError::new(
                        "queue.interval",
                        format!("must be greater than target ({target:?}), got {interval:?}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(Self {
            capacity,
            discipline,
            max_wait,
        })
    }

    /// Netflix `LifoBlockingLimiter` defaults: LIFO, backlog 100, timeout 1 s.
    pub fn netflix_lifo() -> Self {
        Self {
            capacity: 100,
            discipline: QueueDiscipline::Lifo,
            max_wait: Duration::from_secs(1),
        }
    }

    /// Fail at Scale CoDel (M = 5 ms, N = 100 ms) with room for `capacity` waiters.
    pub fn codel(capacity: usize) -> Result<Self, ConfigError> {
        Self::new(
            capacity,
            QueueDiscipline::codel(),
            Duration::from_millis(100),
        )
    }

    /// The most waiters held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The ordering discipline.
    pub fn discipline(&self) -> QueueDiscipline {
        self.discipline
    }

    /// The longest any waiter waits.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

/// What a granted waiter receives: the data its permit is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant {
    pub(crate) start: Duration,
    pub(crate) in_flight: usize,
    pub(crate) limit: usize,
}

impl Grant {
    /// A queued request's permit always measures its RTT (from the grant).
    pub(crate) fn terms(&self, tier: Criticality, partition: Option<PartitionId>) -> Terms {
        Terms {
            start: nanos(self.start),
            // Both fit in 24 bits (`MAX_LIMIT`).
            in_flight: self.in_flight as u32,
            limit: self.limit as u32,
            tier,
            partition,
            bypass: false,
        }
    }
}

/// The meeting point of one waiter and the limiter.
#[derive(Debug)]
pub(crate) enum SlotState {
    Waiting(Option<Waker>),
    Granted(Grant),
    Rejected(Rejection),
    /// The outcome was handed to the waiter (or the waiter went away).
    Done,
}

#[derive(Debug)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
}

impl Slot {
    fn new() -> Self {
        Self {
            state: Mutex::new(SlotState::Waiting(None)),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves a waiting slot; returns the waker to call once all locks are released.
    fn resolve(&self, to: SlotState) -> Option<Waker> {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, to) {
            SlotState::Waiting(w) => w,
            other => {
                // A slot is resolved once, under the queue lock, while it is still queued.
                *st = other;
                None
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) tier: Criticality,
    pub(crate) partition: Option<PartitionId>,
    pub(crate) enqueued_at: Duration,
    pub(crate) deadline: Duration,
    pub(crate) slot: Arc<Slot>,
}

/// The queue proper: per-tier deques under one lock.
///
/// Within a tier, waiters are kept in arrival order and their ids increase, so a waiter is
/// found by binary search. While a tier's deadlines and arrival times also increase along
/// it (always the case when every waiter gets the same `max_wait`, as the proxy and the
/// tower layer give them; CoDel's shortened deadlines keep that order), only its front can
/// be due, and expiring or finding the next deadline looks at the fronts only: O(expired)
/// rather than a scan of every waiter under the lock on each enqueue and release. A tier
/// that received an earlier deadline behind a later one is scanned until it empties.
#[derive(Debug)]
pub(crate) struct QueueState {
    tiers: [VecDeque<Entry>; 4],
    /// Per tier: deadlines and arrival times are non-decreasing from front to back.
    ordered: [bool; 4],
    len: usize,
    /// The waiter count last published in the limiter's state word.
    pub(crate) registered: usize,
    next_id: u64,
    /// When the queue last went from empty to non-empty; `None` while empty.
    nonempty_since: Option<Duration>,
}

impl QueueState {
    pub(crate) fn new() -> Self {
        Self {
            tiers: Default::default(),
            ordered: [true; 4],
            len: 0,
            registered: 0,
            next_id: 0,
            nonempty_since: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The index of the most important tier with a waiter, or 4 when the queue is empty.
    pub(crate) fn most_important(&self) -> usize {
        self.tiers
            .iter()
            .position(|t| !t.is_empty())
            .unwrap_or(Criticality::ALL.len())
    }

    fn standing_for(&self, now: Duration) -> Duration {
        self.nonempty_since
            .map_or(Duration::ZERO, |since| now.saturating_sub(since))
    }

    /// The deadline of `entry` under `discipline` right now (CoDel shortens it).
    fn effective_deadline(
        &self,
        entry: &Entry,
        discipline: QueueDiscipline,
        now: Duration,
    ) -> (Duration, RejectReason) {
        if let QueueDiscipline::CoDel { target, interval } = discipline {
            let codel = if self.standing_for(now) >= interval {
                entry.enqueued_at + target
            } else {
                entry.enqueued_at + interval
            };
            if codel < entry.deadline {
                return (codel, RejectReason::QueueCoDel);
            }
        }
        (entry.deadline, RejectReason::QueueTimeout)
    }

    /// Adds a waiter; the caller checked capacity.
    pub(crate) fn push(
        &mut self,
        tier: Criticality,
        partition: Option<PartitionId>,
        now: Duration,
        deadline: Duration,
    ) -> (u64, Arc<Slot>) {
        let id = self.next_id;
        self.next_id += 1;
        let slot = Arc::new(Slot::new());
        let t = tier.index();
        if let Some(last) = self.tiers[t].back()
            && (deadline < last.deadline || now < last.enqueued_at)
        {
            self.ordered[t] = false;
        }
        self.tiers[t].push_back(Entry {
            id,
            tier,
            partition,
            enqueued_at: now,
            deadline,
            slot: Arc::clone(&slot),
        });
        if self.len == 0 {
            self.nonempty_since = Some(now);
        }
        self.len += 1;
        (id, slot)
    }

    /// Bookkeeping after a waiter of tier index `t` left the queue.
    fn after_removal(&mut self, t: usize) {
        self.len -= 1;
        if self.len == 0 {
            self.nonempty_since = None;
        }
        if self.tiers[t].is_empty() {
            self.ordered[t] = true;
        }
    }

    /// Removes a waiter by id (when its future is dropped). Returns whether it was queued.
    pub(crate) fn remove(&mut self, tier: Criticality, id: u64) -> bool {
        let t = tier.index();
        let deque = &mut self.tiers[t];
        if let Ok(pos) = deque.binary_search_by_key(&id, |e| e.id) {
            deque.remove(pos);
            self.after_removal(t);
            true
        } else {
            false
        }
    }

    /// Times out every waiter whose (effective) deadline has passed.
    pub(crate) fn expire(
        &mut self,
        discipline: QueueDiscipline,
        now: Duration,
        mut reject: impl FnMut(&Entry, RejectReason) -> Rejection,
        wakers: &mut Vec<Waker>,
    ) -> usize {
        let mut expired = 0;
        for t in 0..4 {
            let mut i = 0;
            while i < self.tiers[t].len() {
                let (deadline, reason) =
                    self.effective_deadline(&self.tiers[t][i], discipline, now);
                if now >= deadline {
                    let entry = self.tiers[t].remove(i).expect("index checked against len");
                    let rejection = reject(&entry, reason);
                    wakers.extend(entry.slot.resolve(SlotState::Rejected(rejection)));
                    self.after_removal(t);
                    expired += 1;
                } else if self.ordered[t] {
                    // Everything behind is due later still.
                    break;
                } else {
                    i += 1;
                }
            }
        }
        expired
    }

    /// The position of the next waiter to serve: most important tier first, then the
    /// discipline's order.
    pub(crate) fn next(
        &self,
        discipline: QueueDiscipline,
        now: Duration,
    ) -> Option<(usize, usize)> {
        let lifo = match discipline {
            QueueDiscipline::Fifo | QueueDiscipline::CoDel { .. } => false,
            QueueDiscipline::Lifo => true,
            QueueDiscipline::AdaptiveLifo { standing_after } => {
                self.standing_for(now) >= standing_after
            }
        };
        (0..4).find(|&t| !self.tiers[t].is_empty()).map(|t| {
            let pos = if lifo { self.tiers[t].len() - 1 } else { 0 };
            (t, pos)
        })
    }

    pub(crate) fn entry(&self, at: (usize, usize)) -> &Entry {
        &self.tiers[at.0][at.1]
    }

    /// Removes the waiter at `at` and grants it a permit.
    pub(crate) fn grant(&mut self, at: (usize, usize), grant: Grant) -> Option<Waker> {
        let entry = self.tiers[at.0].remove(at.1).expect("position from next()");
        self.after_removal(at.0);
        entry.slot.resolve(SlotState::Granted(grant))
    }

    /// Makes room for a request of `tier` in a full queue by displacing the newest waiter of
    /// the least important tier below it. Returns the displaced entry, already removed.
    pub(crate) fn displace_below(&mut self, tier: Criticality) -> Option<Entry> {
        for t in (tier.index() + 1..4).rev() {
            if let Some(entry) = self.tiers[t].pop_back() {
                self.after_removal(t);
                return Some(entry);
            }
        }
        None
    }

    /// Rejects an entry that was removed from the queue.
    pub(crate) fn reject_removed(entry: &Entry, rejection: Rejection) -> Option<Waker> {
        entry.slot.resolve(SlotState::Rejected(rejection))
    }

    /// The earliest effective deadline in the queue (for drivers that expire waiters).
    pub(crate) fn next_deadline(
        &self,
        discipline: QueueDiscipline,
        now: Duration,
    ) -> Option<Duration> {
        let deadline = |e: &Entry| self.effective_deadline(e, discipline, now).0;
        self.tiers
            .iter()
            .zip(self.ordered)
            .filter_map(|(tier, ordered)| {
                if ordered {
                    tier.front().map(deadline)
                } else {
                    tier.iter().map(deadline).min()
                }
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn expire(q: &mut QueueState, discipline: QueueDiscipline, now: Duration) -> Vec<u64> {
        let mut gone = Vec::new();
        let mut wakers = Vec::new();
        q.expire(
            discipline,
            now,
            |entry, reason| {
                gone.push(entry.id);
                Rejection {
                    reason,
                    tier: entry.tier,
                    limit: 0,
                    in_flight: 0,
                    retry_after: Duration::ZERO,
                }
            },
            &mut wakers,
        );
        gone
    }

    #[test]
    fn in_order_deadlines_expire_from_the_front() {
        let mut q = QueueState::new();
        for i in 0..3u32 {
            q.push(Criticality::Critical, None, i * MS, (10 + i) * MS);
        }
        q.push(Criticality::Sheddable, None, 3 * MS, 50 * MS);
        assert!(q.ordered.iter().all(|o| *o));
        assert_eq!(
            q.next_deadline(QueueDiscipline::Fifo, Duration::ZERO),
            Some(10 * MS)
        );
        assert_eq!(expire(&mut q, QueueDiscipline::Fifo, 11 * MS), [0, 1]);
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.next_deadline(QueueDiscipline::Fifo, 11 * MS),
            Some(12 * MS)
        );
        assert_eq!(expire(&mut q, QueueDiscipline::Fifo, 50 * MS), [2, 3]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn an_earlier_deadline_behind_a_later_one_still_expires_first() {
        let mut q = QueueState::new();
        q.push(Criticality::Critical, None, Duration::ZERO, 100 * MS);
        q.push(Criticality::Critical, None, 1 * MS, 5 * MS);
        q.push(Criticality::Critical, None, 2 * MS, 200 * MS);
        assert!(!q.ordered[Criticality::Critical.index()]);
        assert_eq!(q.next_deadline(QueueDiscipline::Fifo, 2 * MS), Some(5 * MS));
        assert_eq!(expire(&mut q, QueueDiscipline::Fifo, 6 * MS), [1]);
        assert_eq!(
            q.next_deadline(QueueDiscipline::Fifo, 6 * MS),
            Some(100 * MS)
        );
        assert_eq!(expire(&mut q, QueueDiscipline::Fifo, 300 * MS), [0, 2]);
        // An empty tier is in order again.
        assert!(q.ordered[Criticality::Critical.index()]);
    }

    #[test]
    fn codel_cuts_waits_in_arrival_order() {
        let codel = QueueDiscipline::CoDel {
            target: 5 * MS,
            interval: 100 * MS,
        };
        let mut q = QueueState::new();
        // Queued since 0; each waiter allows 1 s.
        for i in 0..4u32 {
            q.push(
                Criticality::Critical,
                None,
                i * 50 * MS,
                (1000 + i * 50) * MS,
            );
        }
        // Before a whole interval of standing queue, waits end at arrival + interval.
        assert_eq!(q.next_deadline(codel, 50 * MS), Some(100 * MS));
        assert_eq!(expire(&mut q, codel, 99 * MS), Vec::<u64>::new());
        // After it, at arrival + target: the three oldest are overdue at 106 ms.
        assert_eq!(expire(&mut q, codel, 106 * MS), [0, 1, 2]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn removal_finds_waiters_by_id() {
        let mut q = QueueState::new();
        for i in 0..5u32 {
            q.push(Criticality::Sheddable, None, i * MS, 100 * MS);
        }
        assert!(q.remove(Criticality::Sheddable, 2));
        assert!(!q.remove(Criticality::Sheddable, 2), "already gone");
        assert!(!q.remove(Criticality::Critical, 3), "another tier");
        assert!(q.remove(Criticality::Sheddable, 4));
        assert!(q.remove(Criticality::Sheddable, 0));
        assert_eq!(q.len(), 2);
        assert_eq!(expire(&mut q, QueueDiscipline::Fifo, 100 * MS), [1, 3]);
    }
}
