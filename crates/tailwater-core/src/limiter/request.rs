//! What is being admitted: [`Request`] and the [`PartitionId`] it may name.

use crate::criticality::Criticality;

/// A handle to a named partition, from [`Limiter::partition`](super::Limiter::partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionId(pub(super) u32);

/// What is being admitted: its tier, its partition, and whether it bypasses the limit.
///
/// ```
/// use tailwater_core::{Criticality, limiter::Request};
/// let r = Request::new().tier(Criticality::Sheddable);
/// assert_eq!(r.criticality(), Criticality::Sheddable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    pub(super) tier: Criticality,
    pub(super) partition: Option<PartitionId>,
    pub(super) bypass: bool,
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
