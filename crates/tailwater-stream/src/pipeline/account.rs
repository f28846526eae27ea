//! Per-stage time accounting (Flink's busy / backpressured / idle split).
//!
//! Each worker of a stage is, at any instant, in one of four states: waiting for input
//! (*idle*), waiting for a permit from the stage's limiter (*limited*), handing its output to
//! the next stage's full queue (*backpressured*), or doing the work (*busy*). Only the waits
//! are timed, and only when they actually wait: a `try_recv` or `try_reserve` that succeeds
//! reads no clock, so an unblocked pipeline pays nothing for its accounting. Busy time is the
//! rest: worker lifetime minus the three waits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The shared counters of one stage.
#[derive(Debug)]
pub(crate) struct StageAccount {
    pub(crate) name: String,
    pub(crate) workers: usize,
    pub(crate) capacity: usize,
    started: Instant,
    idle_ns: AtomicU64,
    backpressured_ns: AtomicU64,
    limited_ns: AtomicU64,
    /// Lifetimes of workers that have ended, summed.
    ended_ns: AtomicU64,
    alive: AtomicUsize,
    /// Items taken from the input queue (for the source: from the source stream).
    pub(crate) received: AtomicU64,
    /// Items (or batches) handed to the next stage; for the sink, items finished.
    pub(crate) sent: AtomicU64,
}

/// Which wait a timed interval was.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Idle,
    Backpressured,
    Limited,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StageAccount {
    pub(crate) fn new(name: String, workers: usize, capacity: usize) -> Self {
        Self {
            name,
            workers,
            capacity,
            started: Instant::now(),
            idle_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            limited_ns: AtomicU64::new(0),
            ended_ns: AtomicU64::new(0),
            alive: AtomicUsize::new(workers),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Adds a timed wait that began at `since`.
    pub(crate) fn waited(&self, wait: Wait, since: Instant) {
        let ns = nanos(since.elapsed());
        let slot = match wait {
            Wait::Idle => &self.idle_ns,
            Wait::Backpressured => &self.backpressured_ns,
            Wait::Limited => &self.limited_ns,
        };
        slot.fetch_add(ns, Ordering::Relaxed);
    }

    /// Counts one item taken from the input.
    pub(crate) fn count_received(&self) {
        self.bump(&self.received);
    }

    /// Counts one item handed on (or finished, for the sink).
    pub(crate) fn count_sent(&self) {
        self.bump(&self.sent);
    }

    /// One writer (a single-worker stage) needs no read-modify-write: a load and a store
    /// cost nothing beside the queue hand-off, where a locked add would cost a few
    /// nanoseconds per item and stage. Readers see the counter monotonic either way.
    fn bump(&self, counter: &AtomicU64) {
        if self.workers == 1 {
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A worker has ended: its lifetime stops counting.
    pub(crate) fn worker_ended(&self) {
        self.ended_ns
            .fetch_add(nanos(self.started.elapsed()), Ordering::Relaxed);
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }

    /// The snapshot; `upstream_sent` is what the previous stage has handed to this one
    /// (`None` for the source), from which the queue depth follows.
    pub(crate) fn snapshot(&self, upstream_sent: Option<u64>) -> StageStats {
        let received = self.received.load(Ordering::Relaxed);
        let alive = self.alive.load(Ordering::Relaxed) as u64;
        let total = self.ended_ns.load(Ordering::Relaxed)
            + alive.saturating_mul(nanos(self.started.elapsed()));
        let idle = self.idle_ns.load(Ordering::Relaxed);
        let backpressured = self.backpressured_ns.load(Ordering::Relaxed);
        let limited = self.limited_ns.load(Ordering::Relaxed);
        let busy = total.saturating_sub(idle + backpressured + limited);
        StageStats {
            name: self.name.clone(),
            workers: self.workers,
            queue_capacity: self.capacity,
            queue_depth: upstream_sent.map_or(0, |sent| sent.saturating_sub(received)),
            received,
            processed: self.sent.load(Ordering::Relaxed),
            worker_time: Duration::from_nanos(total),
            busy: Duration::from_nanos(busy),
            backpressured: Duration::from_nanos(backpressured),
            idle: Duration::from_nanos(idle),
            limited: Duration::from_nanos(limited),
        }
    }
}

/// One stage's snapshot: its queue and where its workers' time went.
///
/// Times are summed over the stage's workers (`worker_time` is workers × elapsed while they
/// run), so the four parts add up to `worker_time`; the ratios divide by it and read like
/// Flink's `busyTimeMsPerSecond / 1000`. Take two snapshots and
/// [`since`](StageStats::since) to get the ratios over an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageStats {
    /// The stage's name (`source` for the source).
    pub name: String,
    /// Workers (the fixed concurrency, or the limiter-driven stage's maximum).
    pub workers: usize,
    /// The capacity of the stage's input queue (0 for the source, which has none).
    pub queue_capacity: usize,
    /// Items in the stage's input queue now: never above `queue_capacity`.
    pub queue_depth: u64,
    /// Items the stage has taken from its input (for the source: from the source stream).
    pub received: u64,
    /// Items (or batches) the stage has handed on; for the sink, items finished.
    pub processed: u64,
    /// Summed lifetime of the stage's workers.
    pub worker_time: Duration,
    /// Time doing the work (for the source: producing the next item).
    pub busy: Duration,
    /// Time blocked handing output to the next stage's full queue.
    pub backpressured: Duration,
    /// Time waiting for input.
    pub idle: Duration,
    /// Time waiting for a permit of the stage's limiter (zero with fixed concurrency).
    pub limited: Duration,
}

impl StageStats {
    fn ratio(&self, part: Duration) -> f64 {
        if self.worker_time.is_zero() {
            0.0
        } else {
            part.as_secs_f64() / self.worker_time.as_secs_f64()
        }
    }

    /// Busy fraction of the workers' time, in `[0, 1]`.
    pub fn busy_ratio(&self) -> f64 {
        self.ratio(self.busy)
    }

    /// Backpressured fraction of the workers' time, in `[0, 1]`.
    pub fn backpressured_ratio(&self) -> f64 {
        self.ratio(self.backpressured)
    }

    /// Idle fraction of the workers' time, in `[0, 1]`.
    pub fn idle_ratio(&self) -> f64 {
        self.ratio(self.idle)
    }

    /// Limited fraction of the workers' time, in `[0, 1]`.
    pub fn limited_ratio(&self) -> f64 {
        self.ratio(self.limited)
    }

    /// This snapshot minus an `earlier` one of the same stage: the counters over the
    /// interval between them (the queue depth stays the current one).
    pub fn since(&self, earlier: &StageStats) -> StageStats {
        StageStats {
            name: self.name.clone(),
            workers: self.workers,
            queue_capacity: self.queue_capacity,
            queue_depth: self.queue_depth,
            received: self.received.saturating_sub(earlier.received),
            processed: self.processed.saturating_sub(earlier.processed),
            worker_time: self.worker_time.saturating_sub(earlier.worker_time),
            busy: self.busy.saturating_sub(earlier.busy),
            backpressured: self.backpressured.saturating_sub(earlier.backpressured),
            idle: self.idle.saturating_sub(earlier.idle),
            limited: self.limited.saturating_sub(earlier.limited),
        }
    }
}
