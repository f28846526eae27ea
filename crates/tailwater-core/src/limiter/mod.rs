//! The limiter: admission against an adaptive concurrency limit, with RAII permits.
//!
//! A [`Limiter`] holds the in-flight count, the current limit and one
//! [`LimitAlgorithm`]. [`try_acquire`](Limiter::try_acquire) either
//! returns a [`Permit`] or a [`Rejection`] with a reason and a retry hint; the permit reports
//! how the request ended, and that sample moves the limit.
//!
//! Guarantees:
//! - **In-flight never exceeds the limit at the moment of admission**, including under races:
//!   admission is one compare-and-swap on the in-flight count against the limit (Netflix #234
//!   is a check-then-increment race; this has none). When the algorithm *lowers* the limit,
//!   permits already granted are not revoked; new admissions wait until in-flight is below it.
//! - **A permit is released exactly once**: its report methods consume it and `Drop` releases
//!   it as "ignored" otherwise.
//! - **The fast path is lock-free**; algorithm updates never serialise it: one thread updates
//!   the algorithm at a time (`try_lock`, as Netflix's `WindowedLimit`), others skip their
//!   success sample (counted in `skipped_updates`). Drops are never skipped: they are carried
//!   over to the next update, so overload is always seen.
//! - **The hot path costs two atomic read-modify-writes** (the admission's compare-and-swap
//!   and the release's decrement, on one word) and no reference count for a borrowed
//!   [`Permit`]: per-permit counters are striped by thread, and above a few thousand requests
//!   per second only a steady subset of permits reads the clock and feeds an aggregating
//!   algorithm ([`RttSampling`]).
//!
//! Optional parts, all configured on [`LimiterBuilder`]:
//! - **Criticality tiers** ([`TierThresholds`]): a request of a tier is always admitted while
//!   utilisation is below the tier's threshold (defaults 100/80/50/20 %), and above it only
//!   into capacity no more important request is contending for: the reservation holds only
//!   under contention, and under contention shedding is strictly by tier.
//! - **Partitions** (Netflix `AbstractPartitionedLimiter`): each named partition is
//!   guaranteed `max(1, ceil(limit × share))`, may borrow idle capacity, and is held to its
//!   share only when the limiter is saturated. Unlike Netflix's, the total never exceeds the
//!   limit: borrowing is allowed only out of capacity no other partition has reserved.
//! - **A bounded wait queue** ([`QueueConfig`]) with FIFO, LIFO, adaptive LIFO or CoDel, where
//!   more important tiers wait ahead of less important ones.
//! - **Bypass**: a request flagged `bypass` gets a permit that is counted but never limited.

mod contention;
mod permit;
mod queue;
mod reject;
mod sampling;
mod stats;
mod striped;

pub use permit::{OwnedPermit, Permit};
pub use queue::{QueueConfig, QueueDiscipline};
pub use reject::{RejectReason, Rejection};
pub use sampling::RttSampling;
pub use stats::{CounterSnapshot, LimiterStats, PartitionStats};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{PoisonError, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::algorithm::{LimitAlgorithm, Outcome, Sample, recommended};
use crate::clock::{Clock, MonotonicClock};
use crate::criticality::{Criticality, TierThresholds};
use crate::error::ConfigError;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

use contention::Contention;
use permit::{Holder, Terms};
use queue::{Grant, QueueState, Slot, SlotState};
use sampling::Sampler;
use stats::Counters;

/// At most this many carried-over drops are applied in one update (a burst of drops while
/// another thread held the algorithm); beyond it the limit is at its floor anyway.
const MAX_CARRIED_DROPS: usize = 64;

/// A handle to a named partition, from [`Limiter::partition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionId(u32);

/// What is being admitted: its tier, its partition, and whether it bypasses the limit.
///
/// ```
/// use tailwater_core::{Criticality, limiter::Request};
/// let r = Request::new().tier(Criticality::Sheddable);
/// assert_eq!(r.criticality(), Criticality::Sheddable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    tier: Criticality,
    partition: Option<PartitionId>,
    bypass: bool,
}

impl Request {
    /// A `Critical` request in no partition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the criticality tier.
    pub fn tier(mut self, tier: Criticality) -> Self {
        self.tier = tier;
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: PartitionId) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Marks the request as bypassing the limit (health checks, admin calls): it is counted
    /// but never limited or queued.
    pub fn bypass(mut self, bypass: bool) -> Self {
        self.bypass = bypass;
        self
    }

    /// The request's tier.
    pub fn criticality(&self) -> Criticality {
        self.tier
    }
}

/// The result of [`Limiter::enqueue`]: a permit at once, or a place in the queue.
#[derive(Debug)]
pub enum Acquire<C: Clock = MonotonicClock> {
    /// Admitted without waiting.
    Ready(OwnedPermit<C>),
    /// Waiting: await the [`Waiter`] (or poll it with [`Waiter::try_take`]).
    Queued(Waiter<C>),
}

/// A concurrency limiter. Cheap to clone: clones share one state.
///
/// ```
/// use tailwater_core::{Limiter, algorithm::Aimd};
/// let limiter = Limiter::new(Aimd::default());
/// match limiter.try_acquire() {
///     Ok(permit) => {
///         // ... do the work ...
///         permit.success();
///     }
///     Err(rejection) => eprintln!("shed: {rejection}, retry in {:?}", rejection.retry_after),
/// }
/// ```
pub struct Limiter<C: Clock = MonotonicClock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock> Clone for Limiter<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Clock> fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

struct Partition {
    name: String,
    share: f64,
    in_flight: AtomicUsize,
}

struct Partitions {
    list: Vec<Partition>,
    /// Serialises admissions (not releases) when partitions are configured, so that the
    /// reservation check and the increment are one step.
    admit: Mutex<()>,
}

fn guarantee(limit: usize, share: f64) -> usize {
    ((limit as f64 * share).ceil() as usize).max(1)
}

struct WaitQueue {
    config: QueueConfig,
    state: Mutex<QueueState>,
    /// The index of the most important tier with a waiter (4: none), published under the
    /// queue's lock: a tier may borrow above its reservation only while no more important
    /// request waits.
    waiting_from: AtomicUsize,
}

// The layout of [`Shared::word`]: in-flight permits in bits 0..24, queued waiters in bits
// 24..48, and a wrapping admission sequence number in bits 48..64 that picks the permits
// that measure their RTT (see `RttSampling`).

/// The largest limit (and in-flight count) the word can hold.
pub(crate) const MAX_LIMIT: usize = (1 << 24) - 1;
/// The in-flight count's bits.
const IN_FLIGHT: u64 = MAX_LIMIT as u64;
/// One waiter.
const WAITER: u64 = 1 << 24;
/// One admission in the sequence number.
const SEQ: u64 = 1 << 48;

fn in_flight_of(word: u64) -> usize {
    (word & IN_FLIGHT) as usize
}

fn waiters_of(word: u64) -> usize {
    ((word >> 24) & IN_FLIGHT) as usize
}

fn seq_of(word: u64) -> usize {
    (word >> 48) as usize
}

/// Values read on every admission and rarely written, on a cache line of their own.
struct ReadMostly {
    limit: AtomicUsize,
    /// `2^shift − 1`: an admission measures its RTT when its sequence number's low bits are
    /// all zero.
    sample_mask: AtomicUsize,
}

/// The limit algorithm and what is updated with it, under one lock.
struct Engine {
    algorithm: Box<dyn LimitAlgorithm>,
    sampler: Sampler,
    /// The latest measured RTT, given to drops of permits that measured none.
    last_rtt: Duration,
}

pub(crate) struct Shared<C> {
    pub(crate) clock: C,
    /// In-flight permits and queued waiters (and the admission sequence) in one word, so that
    /// a release and an enqueue can never miss each other: each is one read-modify-write of
    /// this word and sees the other's effect or has its own seen (the lost-wake-up race a
    /// loom model found when the two counts lived in separate atomics).
    word: CachePadded<AtomicU64>,
    read_mostly: CachePadded<ReadMostly>,
    peak: AtomicUsize,
    engine: Mutex<Engine>,
    algorithm_name: &'static str,
    carried_drops: AtomicUsize,
    tiers: Option<TierThresholds>,
    /// With tiers: how much of each tier's reservation more important tiers contend for.
    contention: Option<Contention>,
    partitions: Option<Partitions>,
    queue: Option<WaitQueue>,
    pub(crate) counters: Counters,
    retry_after: Duration,
}

impl Limiter<MonotonicClock> {
    /// A limiter driven by `algorithm`, on the monotonic clock, with no tiers, partitions or
    /// queue (it rejects at once when full).
    pub fn new(algorithm: impl LimitAlgorithm) -> Self {
        Self::builder()
            .algorithm(algorithm)
            .build()
            .expect("a limiter with no optional parts has nothing to validate")
    }

    /// A builder with safe defaults: the [`recommended`] algorithm (corrected Gradient2 in
    /// short windows, limit within 20..200), no tiers, no partitions, no queue (reject at
    /// once), a 1 s retry hint.
    pub fn builder() -> LimiterBuilder<MonotonicClock> {
        LimiterBuilder {
            clock: MonotonicClock::new(),
            algorithm: None,
            tiers: None,
            partitions: Vec::new(),
            queue: None,
            retry_after: Duration::from_secs(1),
            rtt_sampling: RttSampling::default(),
        }
    }
}

impl<C: Clock> Limiter<C> {
    /// Tries to admit a `Critical` request without waiting. The permit borrows the limiter;
    /// use [`try_acquire_owned`](Self::try_acquire_owned) for one that must outlive it.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_, C>, Rejection> {
        self.try_acquire_with(Request::default())
    }

    /// Tries to admit `request` without waiting.
    #[inline]
    pub fn try_acquire_with(&self, request: Request) -> Result<Permit<'_, C>, Rejection> {
        let s = &*self.shared;
        match s.try_admit(request) {
            Ok(terms) => Ok(Permit::new(Holder::Borrowed(s), terms)),
            Err(reason) => Err(s.reject(reason, request.tier)),
        }
    }

    /// Tries to admit a `Critical` request without waiting; the permit holds a handle on the
    /// limiter, so it can be moved into a response body, a task or a thread.
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit<C>, Rejection> {
        self.try_acquire_owned_with(Request::default())
    }

    /// Tries to admit `request` without waiting, with an [`OwnedPermit`].
    pub fn try_acquire_owned_with(&self, request: Request) -> Result<OwnedPermit<C>, Rejection> {
        let s = &self.shared;
        match s.try_admit(request) {
            Ok(terms) => Ok(Permit::new(Holder::Owned(Arc::clone(s)), terms)),
            Err(reason) => Err(s.reject(reason, request.tier)),
        }
    }

    /// Admits `request` at once if possible, or parks it in the wait queue for at most
    /// `timeout` (capped by the queue's `max_wait`).
    ///
    /// Fails at once with [`RejectReason::QueueFull`] when no queue is configured or it is full
    /// of requests at least as important; a full queue makes room for a more important request
    /// by displacing the newest waiter of the least important tier.
    ///
    /// Waiters time out when they are polled after their deadline, whenever a permit is
    /// released, and on [`expire_waiters`](Self::expire_waiters). With the `tokio` feature,
    /// `acquire` arms a timer for you.
    pub fn enqueue(&self, request: Request, timeout: Duration) -> Result<Acquire<C>, Rejection> {
        let s = &self.shared;
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

    /// Times out waiters whose deadline has passed and hands free permits to the next
    /// waiters. Returns how many waiters remain. Drivers without timers (the simulator, a
    /// custom runtime) call this when [`next_deadline`](Self::next_deadline) comes due.
    pub fn expire_waiters(&self) -> usize {
        self.shared.grant_waiters();
        self.queue_depth()
    }

    /// The earliest time (by this limiter's clock) at which a waiter's deadline falls due.
    pub fn next_deadline(&self) -> Option<Duration> {
        let queue = self.shared.queue.as_ref()?;
        let st = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.next_deadline(queue.config.discipline(), self.shared.clock.now())
    }

    /// Looks up a partition by name.
    pub fn partition(&self, name: &str) -> Option<PartitionId> {
        self.shared
            .partitions
            .as_ref()?
            .list
            .iter()
            .position(|p| p.name == name)
            .map(|i| PartitionId(i as u32))
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.shared.read_mostly.limit.load(Ordering::Acquire)
    }

    /// Permits currently held (bypass permits excluded).
    pub fn in_flight(&self) -> usize {
        in_flight_of(self.shared.word.load(Ordering::Acquire))
    }

    /// Requests waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        waiters_of(self.shared.word.load(Ordering::Acquire))
    }

    /// The limiter's clock.
    pub fn clock(&self) -> &C {
        &self.shared.clock
    }

    /// A snapshot of the limit, in-flight, queue, counters and the algorithm's estimates.
    pub fn stats(&self) -> LimiterStats {
        let s = &self.shared;
        let estimates = s
            .engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .algorithm
            .estimates();
        let limit = self.limit();
        LimiterStats {
            algorithm: s.algorithm_name,
            limit,
            in_flight: self.in_flight(),
            peak_in_flight: s.peak.load(Ordering::Relaxed),
            queue_depth: self.queue_depth(),
            queue_capacity: s.queue.as_ref().map_or(0, |q| q.config.capacity()),
            counters: s.counters.snapshot(self.in_flight()),
            estimates,
            partitions: s.partitions.as_ref().map_or_else(Vec::new, |ps| {
                ps.list
                    .iter()
                    .map(|p| PartitionStats {
                        name: p.name.clone(),
                        share: p.share,
                        guaranteed: guarantee(limit, p.share),
                        in_flight: p.in_flight.load(Ordering::Relaxed),
                    })
                    .collect()
            }),
            retry_after: s.retry_after,
        }
    }
}

#[cfg(feature = "tokio")]
impl<C: Clock> Limiter<C> {
    /// Admits `request`, waiting in the queue for at most `timeout` (tokio timers).
    ///
    /// Use [`TokioClock`](crate::clock::TokioClock) as the limiter's clock in tests that
    /// pause tokio's time, so that deadlines and timers agree.
    pub async fn acquire(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<OwnedPermit<C>, Rejection> {
        match self.enqueue(request, timeout)? {
            Acquire::Ready(permit) => Ok(permit),
            Acquire::Queued(waiter) => waiter.wait().await,
        }
    }
}

#[cfg(feature = "tokio")]
impl<C: Clock> Waiter<C> {
    /// Waits for this queued request's outcome with tokio timers: woken by released
    /// permits, and re-checked by a timer at its deadline (or CoDel's earlier cut-off) when
    /// no release comes. Callers that enqueue themselves (to box only the waiting path, say)
    /// await this; [`Limiter::acquire`] does both.
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

impl<C: Clock> Shared<C> {
    /// Admission without waiting: the terms of a new permit, or why not. Counts the
    /// admission (not the rejection: the caller may still queue).
    #[inline]
    fn try_admit(&self, request: Request) -> Result<Terms, RejectReason> {
        if request.bypass {
            self.counters.bypassed();
            return Ok(Terms {
                start: Some(self.clock.now()),
                in_flight: 0,
                limit: 0,
                tier: request.tier,
                partition: None,
                bypass: true,
            });
        }
        let (in_flight, sampled, limit) = self.admit(request.tier, request.partition)?;
        self.counters.admitted(request.tier);
        Ok(Terms {
            start: sampled.then(|| self.clock.now()),
            in_flight,
            limit,
            tier: request.tier,
            partition: request.partition,
            bypass: false,
        })
    }

    /// Counts a rejection and describes it.
    #[cold]
    fn reject(&self, reason: RejectReason, tier: Criticality) -> Rejection {
        self.counters.rejected(reason, tier);
        self.rejection(reason, tier)
    }

    fn rejection(&self, reason: RejectReason, tier: Criticality) -> Rejection {
        Rejection {
            reason,
            tier,
            limit: self.read_mostly.limit.load(Ordering::Relaxed),
            in_flight: in_flight_of(self.word.load(Ordering::Relaxed)),
            retry_after: self.retry_after,
        }
    }

    /// The admission decision. On success the in-flight count has been incremented; returns
    /// the new count, whether this admission measures its RTT, and the limit it was admitted
    /// under.
    #[inline]
    fn admit(
        &self,
        tier: Criticality,
        partition: Option<PartitionId>,
    ) -> Result<(usize, bool, usize), RejectReason> {
        let limit = self.read_mostly.limit.load(Ordering::Acquire);
        let mask = self.read_mostly.sample_mask.load(Ordering::Relaxed);
        let reserved = self.tiers.map_or(limit, |t| t.capacity(tier, limit));
        let full = |cur: usize| {
            if cur >= limit {
                RejectReason::LimitReached
            } else {
                RejectReason::TierThreshold
            }
        };
        let admitted = match &self.partitions {
            None => {
                let mut cap = reserved;
                let mut borrowing = false;
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    let cur = in_flight_of(word);
                    if cur >= cap {
                        if !borrowing && cur < limit {
                            // Above the tier's reservation: borrow what no more important
                            // tier contends for (off the fast path).
                            borrowing = true;
                            cap = self.borrowable(tier, limit, reserved);
                            continue;
                        }
                        self.contended(tier, limit);
                        return Err(full(cur));
                    }
                    match self.word.compare_exchange_weak(
                        word,
                        word.wrapping_add(SEQ + 1),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break (cur + 1, seq_of(word) & mask == 0, limit),
                        Err(actual) => word = actual,
                    }
                }
            }
            Some(parts) => {
                let _guard = parts.admit.lock().unwrap_or_else(PoisonError::into_inner);
                let total = in_flight_of(self.word.load(Ordering::Acquire));
                let cap = if total >= reserved && total < limit {
                    self.borrowable(tier, limit, reserved)
                } else {
                    reserved
                };
                if total >= cap {
                    self.contended(tier, limit);
                    return Err(full(total));
                }
                let reserved_by_others: usize = parts
                    .list
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(PartitionId(*i as u32)) != partition)
                    .map(|(_, p)| {
                        guarantee(limit, p.share)
                            .saturating_sub(p.in_flight.load(Ordering::Acquire))
                    })
                    .sum();
                let within_share = partition.is_some_and(|PartitionId(i)| {
                    let p = &parts.list[i as usize];
                    p.in_flight.load(Ordering::Acquire) < guarantee(limit, p.share)
                });
                if !within_share && total + 1 + reserved_by_others > limit {
                    return Err(RejectReason::PartitionLimit);
                }
                if let Some(PartitionId(i)) = partition {
                    parts.list[i as usize]
                        .in_flight
                        .fetch_add(1, Ordering::AcqRel);
                }
                let word = self.word.fetch_add(SEQ + 1, Ordering::AcqRel);
                (in_flight_of(word) + 1, seq_of(word) & mask == 0, limit)
            }
        };
        if admitted.0 > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(admitted.0, Ordering::Relaxed);
        }
        Ok(admitted)
    }

    /// The most in flight at which a request of `tier`, over its `reserved` capacity, is
    /// still admitted at `limit` (`reserved` without tiers).
    ///
    /// A tier leaves free the headroom that refusals of more important requests built up
    /// ([`Contention`]). With a queue, a request that waits is not refused (the queue hands
    /// it the next free slot, and nothing borrows while it waits); only one the queue turns
    /// away (full, displaced, timed out) builds headroom.
    #[cold]
    #[inline(never)]
    fn borrowable(&self, tier: Criticality, limit: usize, reserved: usize) -> usize {
        match (&self.queue, &self.contention) {
            (Some(queue), Some(c)) => {
                if queue.waiting_from.load(Ordering::Acquire) >= tier.index() {
                    c.capacity(tier, limit, self.clock.now())
                } else {
                    reserved
                }
            }
            (None, Some(c)) => c.capacity(tier, limit, self.clock.now()),
            (_, None) => reserved,
        }
    }

    /// A request of `tier` was refused admission: without a queue, the less important tiers
    /// leave it more headroom (with one, it waits, and its wait holds them back).
    #[cold]
    #[inline(never)]
    fn contended(&self, tier: Criticality, limit: usize) {
        if let (None, Some(c)) = (&self.queue, &self.contention)
            && tier != Criticality::Sheddable
        {
            c.refused(tier, limit, self.clock.now());
        }
    }

    /// The queue turned away a request of `tier` (full, displaced, timed out): the less
    /// important tiers leave more headroom.
    #[cold]
    #[inline(never)]
    fn turned_away(&self, tier: Criticality) {
        if let Some(c) = &self.contention
            && tier != Criticality::Sheddable
        {
            let limit = self.read_mostly.limit.load(Ordering::Acquire);
            c.refused(tier, limit, self.clock.now());
        }
    }

    /// Releases one permit and feeds its sample to the algorithm. `sample`: the time of the
    /// report and the measured RTT (`None` for a drop that measured none), if it is fed.
    #[inline]
    pub(crate) fn release(
        &self,
        (in_flight_at_acquire, limit_at_acquire): (usize, usize),
        partition: Option<PartitionId>,
        outcome: Outcome,
        sample: Option<(Duration, Option<Duration>)>,
    ) {
        self.counters.outcome(outcome);
        if let Some((now, rtt)) = sample
            && outcome != Outcome::Ignored
        {
            self.feed(now, rtt, (in_flight_at_acquire, limit_at_acquire), outcome);
        }
        if let (Some(parts), Some(PartitionId(i))) = (&self.partitions, partition) {
            parts.list[i as usize]
                .in_flight
                .fetch_sub(1, Ordering::AcqRel);
        }
        let before = self.word.fetch_sub(1, Ordering::AcqRel);
        if waiters_of(before) > 0 {
            self.grant_waiters();
        }
    }

    fn feed(
        &self,
        now: Duration,
        rtt: Option<Duration>,
        (in_flight, limit): (usize, usize),
        outcome: Outcome,
    ) {
        let is_drop = outcome == Outcome::Dropped;
        let mut guard = match self.engine.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if is_drop {
                    self.carried_drops.fetch_add(1, Ordering::AcqRel);
                } else {
                    self.counters.skipped_update();
                }
                return;
            }
        };
        let engine = &mut *guard;
        let rtt = match rtt {
            Some(rtt) => {
                if !is_drop {
                    engine.last_rtt = rtt;
                }
                rtt
            }
            None => engine.last_rtt,
        };
        let sample = Sample {
            now,
            rtt,
            in_flight,
            limit,
            outcome,
            // Drops are never sampled away; a success stands for the permits skipped since.
            weight: if is_drop { 1 } else { engine.sampler.weight() },
        };
        let mut limit = engine.algorithm.update(&sample);
        let carried = match self.carried_drops.load(Ordering::Acquire) {
            0 => 0,
            _ => self.carried_drops.swap(0, Ordering::AcqRel),
        };
        for _ in 0..carried.min(MAX_CARRIED_DROPS) {
            limit = engine.algorithm.update(&Sample {
                outcome: Outcome::Dropped,
                ..sample
            });
        }
        if let Some(shift) = engine.sampler.on_sample(now) {
            self.read_mostly
                .sample_mask
                .store((1 << shift) - 1, Ordering::Relaxed);
        }
        let limit = limit.clamp(1, MAX_LIMIT);
        let old = self.read_mostly.limit.load(Ordering::Relaxed);
        if limit != old {
            // Only this thread (holding the engine) writes the limit.
            self.read_mostly.limit.store(limit, Ordering::Release);
        }
        drop(guard);
        if limit > old {
            self.grant_waiters();
        }
    }

    /// Expires overdue waiters, then grants permits to waiters while capacity allows.
    fn grant_waiters(&self) {
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

/// Builds a [`Limiter`]; every option is validated in [`build`](Self::build).
pub struct LimiterBuilder<C: Clock = MonotonicClock> {
    clock: C,
    algorithm: Option<Box<dyn LimitAlgorithm>>,
    tiers: Option<TierThresholds>,
    partitions: Vec<(String, f64)>,
    queue: Option<QueueConfig>,
    retry_after: Duration,
    rtt_sampling: RttSampling,
}

impl<C: Clock> fmt::Debug for LimiterBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("algorithm", &self.algorithm)
            .field("tiers", &self.tiers)
            .field("partitions", &self.partitions)
            .field("queue", &self.queue)
            .field("rtt_sampling", &self.rtt_sampling)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> LimiterBuilder<C> {
    /// The limit algorithm (default: [`recommended`]).
    pub fn algorithm(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Some(Box::new(algorithm));
        self
    }

    /// An algorithm chosen at run time (from configuration).
    pub fn boxed_algorithm(mut self, algorithm: Box<dyn LimitAlgorithm>) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// The clock (default: [`MonotonicClock`]). Tests and the simulator pass a
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn clock<C2: Clock>(self, clock: C2) -> LimiterBuilder<C2> {
        LimiterBuilder {
            clock,
            algorithm: self.algorithm,
            tiers: self.tiers,
            partitions: self.partitions,
            queue: self.queue,
            retry_after: self.retry_after,
            rtt_sampling: self.rtt_sampling,
        }
    }

    /// Enables criticality tiers with these thresholds.
    pub fn tiers(mut self, tiers: TierThresholds) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// Adds a named partition with a share of the limit in `(0, 1]`. Shares must sum to at
    /// most 1.
    pub fn partition(mut self, name: impl Into<String>, share: f64) -> Self {
        self.partitions.push((name.into(), share));
        self
    }

    /// Enables the bounded wait queue.
    pub fn queue(mut self, queue: QueueConfig) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The retry hint carried by rejections (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Which permits measure their RTT (default [`RttSampling::Adaptive`] at 2 000 samples
    /// per second; only algorithms that aggregate samples are ever fed a subset).
    pub fn rtt_sampling(mut self, rtt_sampling: RttSampling) -> Self {
        self.rtt_sampling = rtt_sampling;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Limiter<C>, ConfigError> {
        let algorithm = self.algorithm.unwrap_or_else(|| Box::new(recommended()));
        let partitions = if self.partitions.is_empty() {
            None
        } else {
            let mut total = 0.0;
            let mut list: Vec<Partition> = Vec::with_capacity(self.partitions.len());
            for (name, share) in self.partitions {
                if name.is_empty() {
                    return Err(ConfigError::new("partition.name", "must not be empty"));
                }
                if list.iter().any(|p| p.name == name) {
                    return Err(ConfigError::new(
                        "partition.name",
                        format!("duplicate partition `{name}`"),
                    ));
                }
                if !(share.is_finite() && share > 0.0 && share <= 1.0) {
                    return Err(ConfigError::new(
                        "partition.share",
                        format!("share of `{name}` must be within (0, 1], got {share}"),
                    ));
                }
                total += share;
                list.push(Partition {
                    name,
                    share,
                    in_flight: AtomicUsize::new(0),
                });
            }
            if total > 1.0 + 1e-9 {
                return Err(ConfigError::new(
                    "partition.share",
                    format!("shares sum to {total}, more than 1"),
                ));
            }
            Some(Partitions {
                list,
                admit: Mutex::new(()),
            })
        };
        if let Some(queue) = &self.queue
            && queue.capacity() > MAX_LIMIT
        {
            return Err(ConfigError::new(
                "queue.capacity",
                format!("must be at most {MAX_LIMIT}, got {}", queue.capacity()),
            ));
        }
        let limit = algorithm.limit().clamp(1, MAX_LIMIT);
        let algorithm_name = algorithm.name();
        let sampler = Sampler::new(self.rtt_sampling, algorithm.aggregates_samples());
        Ok(Limiter {
            shared: Arc::new(Shared {
                clock: self.clock,
                word: CachePadded::new(AtomicU64::new(0)),
                read_mostly: CachePadded::new(ReadMostly {
                    limit: AtomicUsize::new(limit),
                    sample_mask: AtomicUsize::new(0),
                }),
                peak: AtomicUsize::new(0),
                engine: Mutex::new(Engine {
                    algorithm,
                    sampler,
                    last_rtt: Duration::ZERO,
                }),
                algorithm_name,
                carried_drops: AtomicUsize::new(0),
                tiers: self.tiers,
                contention: self.tiers.map(Contention::new),
                partitions,
                queue: self.queue.map(|config| WaitQueue {
                    config,
                    state: Mutex::new(QueueState::new()),
                    waiting_from: AtomicUsize::new(Criticality::ALL.len()),
                }),
                counters: Counters::default(),
                retry_after: self.retry_after,
            }),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
