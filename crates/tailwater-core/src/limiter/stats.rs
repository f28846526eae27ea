//! Counters and the `stats()` snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::algorithm::{Estimates, Outcome};
use crate::criticality::Criticality;

use super::reject::RejectReason;
use super::striped::Striped;

/// Index of the first per-tier admission counter in [`Counters::hot`] (after the three
/// outcomes).
const ADMITTED: usize = 3;

/// Relaxed event counters. Each is a plain monotonic count; snapshots are not atomic across
/// counters (a snapshot taken under load may be off by the few events in progress).
///
/// What is counted for every permit is striped by thread, so the hot path does no shared
/// read-modify-write for it: the outcome of each limited permit, and the admissions of the
/// tiers other than the default `Critical`. `Critical` admissions are not counted at all:
/// every limited permit is either in flight or released with exactly one outcome, so they are
/// the outcomes plus the in-flight count minus the other tiers' admissions.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Outcomes (success, dropped, ignored) of limited permits, then admissions by tier
    /// (`Critical`'s slot unused).
    hot: Striped<7>,
    /// Outcomes of bypass permits.
    bypass_outcomes: [AtomicU64; 3],
    bypassed: AtomicU64,
    queued: AtomicU64,
    admitted_from_queue: AtomicU64,
    rejected: [[AtomicU64; 4]; 7],
    skipped_updates: AtomicU64,
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Dropped => 1,
        Outcome::Ignored => 2,
    }
}

impl Counters {
    /// A limited permit was released.
    #[inline]
    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.hot.add(outcome_index(outcome));
    }

    /// A bypass permit was released.
    pub(crate) fn bypass_outcome(&self, outcome: Outcome) {
        self.bypass_outcomes[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bypassed(&self) {
        self.bypassed.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn admitted(&self, tier: Criticality) {
        if tier != Criticality::Critical {
            self.hot.add(ADMITTED + tier.index());
        }
    }

    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn admitted_from_queue(&self) {
        self.admitted_from_queue.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, reason: RejectReason, tier: Criticality) {
        self.rejected[reason.index()][tier.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Every rejection so far, all reasons and tiers (see
    /// [`Sample::refused`](crate::algorithm::Sample::refused)). Summed when a sample is
    /// taken rather than counted once more per rejection: under overload the limiter
    /// refuses many times more often than it samples.
    pub(crate) fn refused(&self) -> u64 {
        self.rejected
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn skipped_update(&self) {
        self.skipped_updates.fetch_add(1, Ordering::Relaxed);
    }

    /// `in_flight`: limited permits held now. Under load the `Critical` admissions derived
    /// from it may be off by the permits being released while the snapshot is taken.
    pub(crate) fn snapshot(&self, in_flight: usize) -> CounterSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let limited = [self.hot.sum(0), self.hot.sum(1), self.hot.sum(2)];
        let mut admitted_by_tier = [0; 4];
        for tier in Criticality::ALL {
            admitted_by_tier[tier.index()] = self.hot.sum(ADMITTED + tier.index());
        }
        let others: u64 = admitted_by_tier.iter().sum();
        let total = limited.iter().sum::<u64>() + in_flight as u64;
        admitted_by_tier[Criticality::Critical.index()] = total.saturating_sub(others);
        let mut rejected = [[0u64; 4]; 7];
        for (r, row) in self.rejected.iter().enumerate() {
            for (t, c) in row.iter().enumerate() {
                rejected[r][t] = load(c);
            }
        }
        CounterSnapshot {
            success: limited[0] + load(&self.bypass_outcomes[0]),
            dropped: limited[1] + load(&self.bypass_outcomes[1]),
            ignored: limited[2] + load(&self.bypass_outcomes[2]),
            bypassed: load(&self.bypassed),
            admitted_by_tier,
            queued: load(&self.queued),
            admitted_from_queue: load(&self.admitted_from_queue),
            rejected,
            skipped_updates: load(&self.skipped_updates),
        }
    }
}

/// Event counts since the limiter was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Permits released with `success`.
    pub success: u64,
    /// Permits released with `dropped`.
    pub dropped: u64,
    /// Permits released with `ignore` (or dropped without a report).
    pub ignored: u64,
    /// Calls that bypassed the limit (counted, never limited).
    pub bypassed: u64,
    /// Permits granted, by tier (`Criticality::index`), whether at once or after waiting
    /// (bypass permits excluded).
    pub admitted_by_tier: [u64; 4],
    /// Requests that entered the wait queue.
    pub queued: u64,
    /// Requests that got a permit after waiting.
    pub admitted_from_queue: u64,
    /// Rejections by reason (`RejectReason::index`) and tier (`Criticality::index`).
    pub rejected: [[u64; 4]; 7],
    /// Samples not fed to the algorithm because another thread was updating it (successes
    /// only: drops are never skipped, they are carried over to the next update).
    pub skipped_updates: u64,
}

impl CounterSnapshot {
    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().flatten().sum()
    }

    /// Rejections for one reason, all tiers.
    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].iter().sum()
    }

    /// Rejections for one tier, all reasons.
    pub fn rejected_in_tier(&self, tier: Criticality) -> u64 {
        self.rejected.iter().map(|row| row[tier.index()]).sum()
    }

    /// All permits granted.
    pub fn admitted_total(&self) -> u64 {
        self.admitted_by_tier.iter().sum()
    }
}

/// Per-partition state in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStats {
    /// The partition's name.
    pub name: String,
    /// Its configured share of the limit, in `(0, 1]`.
    pub share: f64,
    /// Its guaranteed capacity at the current limit: `max(1, ceil(limit × share))`.
    pub guaranteed: usize,
    /// Its requests in flight.
    pub in_flight: usize,
}

/// A point-in-time view of a limiter: what is in effect and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterStats {
    /// The algorithm's name (e.g. `"gradient2"`).
    pub algorithm: &'static str,
    /// The current concurrency limit.
    pub limit: usize,
    /// Permits currently held.
    pub in_flight: usize,
    /// The most permits ever held at once.
    pub peak_in_flight: usize,
    /// Requests waiting in the queue.
    pub queue_depth: usize,
    /// The queue's capacity (0 when waiting is not configured).
    pub queue_capacity: usize,
    /// Event counters.
    pub counters: CounterSnapshot,
    /// The algorithm's internal estimates.
    pub estimates: Estimates,
    /// Partitions, if configured.
    pub partitions: Vec<PartitionStats>,
    /// The retry hint given with rejections.
    pub retry_after: Duration,
}
