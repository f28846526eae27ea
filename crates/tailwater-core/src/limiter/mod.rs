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

mod admission;
mod builder;
mod contention;
mod partitions;
mod permit;
mod queue;
mod reject;
mod request;
mod sampling;
mod stats;
mod striped;
mod waiters;
mod word;

pub use builder::LimiterBuilder;
pub use permit::{OwnedPermit, Permit};
pub use queue::{QueueConfig, QueueDiscipline};
pub use reject::{RejectReason, Rejection};
pub use request::{PartitionId, Request};
pub use sampling::RttSampling;
pub use stats::{CounterSnapshot, LimiterStats, PartitionStats};
pub use waiters::Waiter;

use std::fmt;
use std::sync::PoisonError;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::algorithm::LimitAlgorithm;
use crate::clock::{Clock, MonotonicClock};
use crate::criticality::TierThresholds;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

use contention::Contention;
use partitions::{Partitions, guarantee};
use permit::Holder;
use sampling::Sampler;
use stats::Counters;
use waiters::WaitQueue;
use word::{ReadMostly, in_flight_of, waiters_of};

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

impl<C: Clock> Limiter<C> {
    /// Tries to admit a `Critical` request without waiting. The permit borrows the limiter;
    /// use [`try_acquire_owned`](Self::try_acquire_owned) for one that must outlive it.
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_, C>, Rejection> {
        self.try_acquire_with(Request::default())
    }

    /// Tries to admit `request` without waiting.
    #[inline(always)]
    pub fn try_acquire_with(&self, request: Request) -> Result<Permit<'_, C>, Rejection> {
        let s = &*self.shared;
        match s.try_admit(request) {
            Ok(terms) => Ok(Permit::new(Holder::Borrowed(s), terms)),
            Err(reason) => Err(s.reject(reason, request.tier)),
        }
    }

    /// Tries to admit a `Critical` request without waiting; the permit holds a handle on the
    /// limiter, so it can be moved into a response body, a task or a thread.
    #[inline(always)]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit<C>, Rejection> {
        self.try_acquire_owned_with(Request::default())
    }

    /// Tries to admit `request` without waiting, with an [`OwnedPermit`].
    #[inline(always)]
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
        Shared::enqueue(&self.shared, request, timeout)
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

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
