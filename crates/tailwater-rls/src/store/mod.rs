//! Where the GCRA state of the descriptors lives: process memory (exact, the default),
//! Redis (one atomic script per call, shared by every replica), Redis leased (chunks of
//! each key's budget held locally, [`crate::leased`]) or Redis Cluster (atomic per call,
//! keys hash-tagged by domain).
//!
//! Both decide one call's descriptors together with the core's
//! [`step_batch`]: denied hits are never counted, and nothing is charged unless the whole
//! call is admitted.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::rate::{BatchItem, DenyReason, RateDecision, step_batch};
use tailwater_redis::{DecisionSource, RedisRateStore, RedisStoreError};

pub mod leased;

use leased::LeasedStore;

/// One shard: key → TAT (nanoseconds on the store's clock).
type Shard = HashMap<Box<str>, u64>;

/// Shards of the memory store (a power of two).
const SHARDS: usize = 64;

/// Default key bound of the memory store.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// The decisions of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// One decision per item.
    pub decisions: Vec<RateDecision>,
    /// Whether the call was admitted (and its admitted items charged).
    pub committed: bool,
    /// Who decided.
    pub source: DecisionSource,
}

/// The store could not decide and the failure policy says to refuse (fail closed): the
/// service answers gRPC `UNAVAILABLE`, so that Envoy's `failure_mode_deny` applies.
#[derive(Debug, thiserror::Error)]
#[error("rate limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

/// The backend of the service.
#[derive(Debug, Clone)]
pub enum Store {
    /// In process memory: exact, per instance.
    Memory(Arc<MemoryStore>),
    /// On Redis: atomic across replicas, with a per-call timeout and a failure policy.
    Redis(RedisRateStore),
    /// On Redis, leased: each replica answers from chunks of each key's budget (most calls
    /// without a round trip), within the overshoot bound of [`crate::leased`].
    Leased(Arc<LeasedStore>),
    /// On Redis Cluster (or any Redis), atomic per call: every key of a domain carries the
    /// domain as its hash tag, so one call's descriptors share a slot and are decided by one
    /// script, exactly as on a single Redis. Different domains spread over the masters;
    /// one domain lives on one master.
    Cluster(RedisRateStore),
}

impl Store {
    /// Decides `items` (on the states of `keys`, indexed by slot) of one call in `domain`
    /// together.
    pub async fn decide(
        &self,
        domain: &str,
        keys: &[&str],
        items: &[BatchItem],
    ) -> Result<Decided, StoreUnavailable> {
        let batch = match self {
            Store::Memory(m) => return Ok(m.decide(keys, items)),
            Store::Leased(l) => return l.decide(keys, items).await,
            Store::Redis(r) => r.check_batch(keys, items).await,
            Store::Cluster(r) => r.check_batch_tagged(domain, keys, items).await,
        };
        match batch {
            Ok(c) => Ok(Decided {
                decisions: c.decisions,
                committed: c.committed,
                source: c.source,
            }),
            Err(e @ RedisStoreError::Unavailable { .. }) => Err(StoreUnavailable(e.to_string())),
            Err(e) => Err(StoreUnavailable(e.to_string())),
        }
    }

    /// The Redis counters of the store (calls, grouped decisions, timeouts, errors,
    /// fallbacks, lease refills…): summed over every key's limiter for the leased store;
    /// `None` in memory.
    pub fn redis_stats(&self) -> Option<tailwater_redis::RedisStats> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(r) | Store::Cluster(r) => Some(r.stats()),
            Store::Leased(l) => Some(l.redis_stats()),
        }
    }

    /// A short name for `/rlconfig` and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
            Store::Leased(_) => "redis-leased",
            Store::Cluster(_) => "redis-cluster",
        }
    }
}

/// The in-memory store: sharded maps of key → TAT; one call locks the shards of its keys
/// in index order (no deadlock), decides with [`step_batch`], writes back, unlocks. Keys
/// whose TAT is in the past carry no information and are evicted when a shard is full;
/// when a shard is still full, calls with a new key of that shard are denied
/// ([`DenyReason::KeyCapacity`]) rather than forgetting a live budget.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_shard: usize,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` keys, on the monotonic clock.
    pub fn new(max_keys: usize) -> Self {
        Self::with_clock(max_keys, Arc::new(MonotonicClock::new()))
    }

    /// The same on a given clock (tests use a manual clock).
    pub fn with_clock(max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            clock,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides a call; see [`Store::decide`].
    pub fn decide(&self, keys: &[&str], items: &[BatchItem]) -> Decided {
        let shard_of: Vec<usize> = keys
            .iter()
            .map(|k| (self.hasher.hash_one(k) as usize) & (SHARDS - 1))
            .collect();
        let mut order = shard_of.clone();
        if order.len() > 1 {
            order.sort_unstable();
            order.dedup();
        }
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            order.iter().map(|&i| (i, lock(&self.shards[i]))).collect();
        let guard_ix = |shard: usize| order.binary_search(&shard).unwrap_or(0);
        let now = self.clock.now_nanos();
        let mut tats = Vec::with_capacity(keys.len());
        for (k, &s) in keys.iter().zip(&shard_of) {
            let map = &mut guards[guard_ix(s)].1;
            match map.get(*k) {
                Some(t) => tats.push(*t),
                None => {
                    if map.len() >= self.per_shard {
                        map.retain(|_, t| *t > now);
                    }
                    if map.len() >= self.per_shard {
                        return full(items);
                    }
                    tats.push(0);
                }
            }
        }
        let out = step_batch(items, now, &mut tats);
        if out.committed {
            for (slot, (k, &s)) in keys.iter().zip(&shard_of).enumerate() {
                let map = &mut guards[guard_ix(s)].1;
                // In place when the key is known: no key allocation per decision.
                match map.get_mut(*k) {
                    Some(t) => *t = tats[slot],
                    None if tats[slot] > now => {
                        map.insert((*k).into(), tats[slot]);
                    }
                    // A query (0 hits) of an unknown key: nothing to remember.
                    None => {}
                }
            }
        }
        Decided {
            decisions: out.decisions,
            committed: out.committed,
            source: DecisionSource::Local,
        }
    }
}

pub(crate) fn full(items: &[BatchItem]) -> Decided {
    Decided {
        decisions: items
            .iter()
            .map(|i| RateDecision {
                allowed: false,
                limit: i.quota.burst(),
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: Some(Duration::from_nanos(i.quota.tolerance_nanos())),
                reason: Some(DenyReason::KeyCapacity),
                quota_index: 0,
            })
            .collect(),
        committed: false,
        source: DecisionSource::Local,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tailwater_core::clock::ManualClock;
    use tailwater_core::rate::{BatchClass, Quota};

    use super::*;

    fn item(quota: Quota) -> BatchItem {
        BatchItem {
            quota,
            n: 1,
            class: BatchClass::Enforce,
            slot: 0,
        }
    }

    #[test]
    fn a_full_store_denies_new_keys_until_idle_ones_expire() {
        let clock = ManualClock::new();
        // One key per shard: 65 keys cannot all fit.
        let store = MemoryStore::with_clock(1, Arc::new(clock.clone()));
        let q = Quota::per_second(10).expect("valid");
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        let mut denied = None;
        for k in &keys {
            let d = store.decide(&[k], &[item(q)]);
            if !d.committed {
                assert_eq!(d.decisions[0].reason, Some(DenyReason::KeyCapacity));
                denied = Some(k.clone());
                break;
            }
        }
        let denied = denied.expect("some key found its shard full");
        assert!(store.len() <= SHARDS);
        // Once the live budgets are full again (TAT in the past) they carry no
        // information and make room.
        clock.advance(Duration::from_secs(1));
        assert!(store.decide(&[&denied], &[item(q)]).committed);
    }
}
