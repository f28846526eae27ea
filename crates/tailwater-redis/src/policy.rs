//! What to answer when Redis cannot: the failure policy and its local fallback limiter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use tailwater_core::clock::{Clock, MonotonicClock, duration_to_nanos};
use tailwater_core::rate::{BatchItem, DenyReason, Quota, RateDecision, gcra, step_batch};

/// What a decision answers when Redis does not answer within the per-call timeout (or
/// fails, or is backing off after a failure).
///
/// Whatever the policy, the caller gets its answer within the per-call timeout (plus
/// scheduling): a dead Redis never stalls requests. Every fallback is counted in the
/// `stats()` of the store or limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Admit everything (availability over accuracy). The decision reports `allowed` with
    /// `remaining` 0.
    #[default]
    FailOpen,
    /// Reject everything with [`RedisStoreError::Unavailable`](crate::RedisStoreError)
    /// (an edge answers 503).
    FailClosed,
    /// Enforce each quota locally at `limit / replicas` (rate and burst divided by the
    /// number of replicas sharing the limit, burst at least 1): with `replicas` instances
    /// all degraded, the fleet admits about the global limit.
    Degrade {
        /// How many instances share the global limit.
        replicas: NonZeroU32,
    },
}

/// Keys the degraded limiter keeps at most; further new keys are denied
/// ([`DenyReason::KeyCapacity`]) until idle keys are evicted.
pub(crate) const DEGRADED_MAX_KEYS: usize = 10_000;

/// The local `limit / N` limiter behind [`FailurePolicy::Degrade`]: the core's pure GCRA
/// step on a bounded map, on the monotonic clock.
#[derive(Debug)]
pub(crate) struct LocalFallback {
    replicas: u32,
    clock: MonotonicClock,
    state: Mutex<HashMap<String, Vec<u64>>>,
}

impl LocalFallback {
    /// The fallback `policy` asks for: one with [`FailurePolicy::Degrade`], none otherwise.
    pub(crate) fn for_policy(policy: FailurePolicy) -> Option<Self> {
        match policy {
            FailurePolicy::Degrade { replicas } => Some(Self::new(replicas)),
            _ => None,
        }
    }

    pub(crate) fn new(replicas: NonZeroU32) -> Self {
        Self {
            replicas: replicas.get(),
            clock: MonotonicClock::new(),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// `quota` scaled to `1/N`: `rate` per `N · period`, burst `max(1, burst / N)`.
    pub(crate) fn scale(&self, q: &Quota) -> Option<Quota> {
        let n = self.replicas;
        let period = q.period().checked_mul(n)?;
        Quota::new(q.rate(), period, (q.burst() / n).max(1)).ok()
    }

    pub(crate) fn check(&self, key: &str, quotas: &[Quota], n: u32) -> RateDecision {
        let scaled: Option<Vec<Quota>> = quotas.iter().map(|q| self.scale(q)).collect();
        let now = duration_to_nanos(self.clock.now());
        let Some(scaled) = scaled else {
            // A quota too long to scale: refuse rather than admit without a limit.
            return deny_capacity(quotas);
        };
        let mut map = match self.state.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !map.contains_key(key) && map.len() >= DEGRADED_MAX_KEYS {
            // Evict idle keys (every TAT in the past: a full bucket, no information).
            map.retain(|_, tats| tats.iter().any(|t| *t > now));
            if map.len() >= DEGRADED_MAX_KEYS {
                return deny_capacity(quotas);
            }
        }
        let tats = map
            .entry(key.to_owned())
            .or_insert_with(|| vec![0; scaled.len()]);
        if tats.len() != scaled.len() {
            *tats = vec![0; scaled.len()];
        }
        gcra::step_all(&scaled, now, tats, n)
    }
}

impl LocalFallback {
    /// [`step_batch`](tailwater_core::rate::step_batch) on the scaled quotas, under one
    /// lock: the same all-or-nothing semantics as the Redis batch script.
    pub(crate) fn check_batch(
        &self,
        keys: &[String],
        items: &[BatchItem],
    ) -> (Vec<RateDecision>, bool) {
        let scaled: Option<Vec<BatchItem>> = items
            .iter()
            .map(|i| self.scale(&i.quota).map(|quota| BatchItem { quota, ..*i }))
            .collect();
        let Some(scaled) = scaled else {
            let d = items
                .iter()
                .map(|i| deny_capacity(std::slice::from_ref(&i.quota)))
                .collect();
            return (d, false);
        };
        let now = duration_to_nanos(self.clock.now());
        let mut map = match self.state.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let new_keys = keys.iter().filter(|k| !map.contains_key(*k)).count();
        if map.len() + new_keys > DEGRADED_MAX_KEYS {
            map.retain(|_, tats| tats.iter().any(|t| *t > now));
            if map.len() + new_keys > DEGRADED_MAX_KEYS {
                let d = items
                    .iter()
                    .map(|i| deny_capacity(std::slice::from_ref(&i.quota)))
                    .collect();
                return (d, false);
            }
        }
        let mut tats: Vec<u64> = keys
            .iter()
            .map(|k| {
                map.get(k)
                    .and_then(|v| (v.len() == 1).then(|| v[0]))
                    .unwrap_or(0)
            })
            .collect();
        let out = step_batch(&scaled, now, &mut tats);
        if out.committed {
            for (k, t) in keys.iter().zip(tats) {
                if t > now {
                    map.insert(k.clone(), vec![t]);
                }
            }
        }
        (out.decisions, out.committed)
    }
}

fn deny_capacity(quotas: &[Quota]) -> RateDecision {
    let burst = quotas.iter().map(Quota::burst).min().unwrap_or(1);
    let hint = quotas
        .iter()
        .map(|q| q.tolerance_nanos())
        .max()
        .unwrap_or(0);
    RateDecision {
        allowed: false,
        limit: burst,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: Some(Duration::from_nanos(hint)),
        reason: Some(DenyReason::KeyCapacity),
        quota_index: 0,
    }
}

/// The decision [`FailurePolicy::FailOpen`] answers.
pub(crate) fn open_decision(quotas: &[Quota]) -> RateDecision {
    let burst = quotas.iter().map(Quota::burst).min().unwrap_or(u32::MAX);
    RateDecision {
        allowed: true,
        limit: burst,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: None,
        reason: None,
        quota_index: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_limit_is_limit_over_n() {
        let f = LocalFallback::new(NonZeroU32::new(4).expect("4"));
        let q = Quota::new(100, Duration::from_secs(3600), 40).expect("valid");
        let s = f.scale(&q).expect("scales");
        assert_eq!(s.burst(), 10);
        assert_eq!(s.period(), Duration::from_secs(4 * 3600));
        let admitted = (0..100).filter(|_| f.check("k", &[q], 1).allowed).count();
        assert_eq!(admitted, 10);
    }
}
