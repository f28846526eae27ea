//! Why a request was not admitted.

use std::fmt;
use std::time::Duration;

use crate::criticality::Criticality;

/// The reason a request was refused. Every rejection carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// In-flight requests already equal the concurrency limit.
    LimitReached,
    /// Utilisation is at or above the threshold of the request's criticality tier.
    TierThreshold,
    /// The request's partition used its share and the limiter is saturated.
    PartitionLimit,
    /// The wait queue is full (or waiting is not configured).
    QueueFull,
    /// The request waited until its deadline without getting a permit.
    QueueTimeout,
    /// CoDel cut the wait short: the queue has not been empty for a whole interval, so waiters
    /// get the short target delay instead of the full deadline.
    QueueCoDel,
    /// A more important request took this one's place in a full queue.
    Displaced,
}

impl RejectReason {
    /// Every reason, in a stable order (used for per-reason counters).
    pub const ALL: [RejectReason; 7] = [
        RejectReason::LimitReached,
        RejectReason::TierThreshold,
        RejectReason::PartitionLimit,
        RejectReason::QueueFull,
        RejectReason::QueueTimeout,
        RejectReason::QueueCoDel,
        RejectReason::Displaced,
    ];

    /// Index into per-reason arrays.
    pub const fn index(self) -> usize {
        match self {
            RejectReason::LimitReached => 0,
            RejectReason::TierThreshold => 1,
            RejectReason::PartitionLimit => 2,
            RejectReason::QueueFull => 3,
            RejectReason::QueueTimeout => 4,
            RejectReason::QueueCoDel => 5,
            RejectReason::Displaced => 6,
        }
    }

    /// The snake_case name used in metrics labels and tracing (`rejection_reason`).
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::LimitReached => "limit_reached",
            RejectReason::TierThreshold => "tier_threshold",
            RejectReason::PartitionLimit => "partition_limit",
            RejectReason::QueueFull => "queue_full",
            RejectReason::QueueTimeout => "queue_timeout",
            RejectReason::QueueCoDel => "queue_codel",
            RejectReason::Displaced => "displaced",
        }
    }

    /// Whether the request waited in the queue before being refused.
    pub const fn waited(self) -> bool {
        matches!(
            self,
            RejectReason::QueueTimeout | RejectReason::QueueCoDel | RejectReason::Displaced
        )
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: the reason, the state that caused it, and when to retry.
///
/// Adapters map it to the edge: HTTP 503 + `Retry-After`, gRPC `UNAVAILABLE` +
/// `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("overloaded: {reason} (tier {tier}, {in_flight} in flight, limit {limit})")]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The tier of the refused request.
    pub tier: Criticality,
    /// The concurrency limit when it was refused.
    pub limit: usize,
    /// Requests in flight when it was refused.
    pub in_flight: usize,
    /// A hint for when a retry may succeed.
    pub retry_after: Duration,
}
