//! Partitions (Netflix `AbstractPartitionedLimiter`): named shares of the limit, each
//! guaranteed `max(1, ceil(limit × share))`, borrowing only capacity no other partition has
//! reserved, so the total never exceeds the limit.

use std::sync::PoisonError;

use crate::clock::Clock;
use crate::criticality::Criticality;
use crate::error::ConfigError;
use crate::sync::{AtomicUsize, Mutex, Ordering};

use super::reject::RejectReason;
use super::word::{SEQ, in_flight_of, seq_of};
use super::{PartitionId, Shared};

pub(super) struct Partition {
    pub(super) name: String,
    pub(super) share: f64,
    pub(super) in_flight: AtomicUsize,
}

pub(super) struct Partitions {
    pub(super) list: Vec<Partition>,
    /// Serialises admissions (not releases) when partitions are configured, so that the
    /// reservation check and the increment are one step.
    admit: Mutex<()>,
}

pub(super) fn guarantee(limit: usize, share: f64) -> usize {
    ((limit as f64 * share).ceil() as usize).max(1)
}

impl Partitions {
    /// Validates the builder's `(name, share)` list: `None` when it is empty.
    pub(super) fn new(config: Vec<(String, f64)>) -> Result<Option<Self>, ConfigError> {
        if config.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        let mut list: Vec<Partition> = Vec::with_capacity(config.len());
        for (name, share) in config {
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
        Ok(Some(Partitions {
            list,
            admit: Mutex::new(()),
        }))
    }
}

impl<C: Clock> Shared<C> {
    /// The admission decision with partitions, under their lock: the tier's capacity as
    /// without partitions, then room for every other partition's unused guarantee unless
    /// this one is within its own. Returns what [`admit`](Shared::admit) returns.
    pub(super) fn admit_partitioned(
        &self,
        parts: &Partitions,
        (tier, partition): (Criticality, Option<PartitionId>),
        (limit, reserved, mask): (usize, usize, usize),
    ) -> Result<(usize, bool, usize), RejectReason> {
        let _guard = parts.admit.lock().unwrap_or_else(PoisonError::into_inner);
        let total = in_flight_of(self.word.load(Ordering::Acquire));
        let cap = if total >= reserved && total < limit {
            self.borrowable(tier, limit, reserved)
        } else {
            reserved
        };
        if total >= cap {
            self.contended(tier, limit);
            return Err(if total >= limit {
                RejectReason::LimitReached
            } else {
                RejectReason::TierThreshold
            });
        }
        let reserved_by_others: usize = parts
            .list
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(PartitionId(*i as u32)) != partition)
            .map(|(_, p)| {
                guarantee(limit, p.share).saturating_sub(p.in_flight.load(Ordering::Acquire))
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
        Ok((in_flight_of(word) + 1, seq_of(word) & mask == 0, limit))
    }
}
