//! The leased Redis backend: each descriptor key gets a
//! [`tailwater_redis::LeasedLimiter`] (the project's leased global limit, reused as is),
//! which takes chunks of the key's global GCRA budget from Redis and answers from local
//! credit, so most calls cost no Redis round trip.
//!
//! # Accuracy (the overshoot bound)
//!
//! Every admitted hit was debited from the key's GCRA in Redis first, so over a whole run
//! the fleet never admits more than the GCRA allows for a key (`burst + rate · t`): no
//! overshoot in total. In any window of length `w`, `N` RLS replicas admit for one key at
//! most
//!
//! ```text
//! requests_per_unit + requests_per_unit · w / unit + N · H,    H = max_chunk + ceil(max_chunk / 2)
//! ```
//!
//! where `max_chunk` is [`LeasedOptions::max_chunk`] capped at the rule's
//! `requests_per_unit` (see `LeasedLimiter`'s docs for why `H`). With the default
//! `max_chunk` 100 and 3 replicas, a `1000 per second` rule admits at most 1 450 extra in a
//! 1 s window (+45 %), a `100 per minute` rule at most 3 × (100 + 50) extra — for small
//! limits lower `max_chunk` (1 makes the leased path as exact as the atomic one, at one
//! round trip per hit) or use the atomic store.
//!
//! # Atomicity across the descriptors of one call
//!
//! The descriptors are decided one after another on local credit; if the call is refused
//! (an enforced descriptor over its limit, or every `quota_mode` one), the hits already
//! taken from the other descriptors' credit are put back ([`LeasedLimiter::refund`]), so a
//! refused call is charged nothing, as with the memory and atomic stores. Two calls running
//! at once may see each other's not-yet-refunded hits (a transient under-admission, never
//! an over-admission). `limit_remaining` is this replica's local credit for the key and
//! `duration_until_reset` is zero: a replica does not know the global state.
//!
//! # Failures
//!
//! One call waits at most one per-call timeout in total (one deadline shared by its
//! descriptors); credit already held is spent while Redis is down (until the lease ends),
//! then the failure policy answers.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use tailwater_core::ConfigError;
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::rate::{BatchClass, BatchItem, Quota};
use tailwater_redis::{
    DecisionSource, FailurePolicy, KeyLayout, LeasedLimiter, RedisConnection, RedisStats,
    RedisStoreError,
};

use super::{Decided, StoreUnavailable, full};

/// Shards of the limiter map (a power of two).
const SHARDS: usize = 64;

/// How the leased backend leases.
#[derive(Debug, Clone)]
pub struct LeasedOptions {
    /// The largest chunk leased per key (default 100; capped at each rule's
    /// `requests_per_unit`). It sets the overshoot bound.
    pub max_chunk: u32,
    /// How long leased credit may be used without a refill (default 1 s).
    pub lease_ttl: Duration,
    /// Target time between refills at a steady rate (default 50 ms).
    pub refill_interval: Duration,
    /// What to answer when Redis cannot and no credit is left.
    pub policy: FailurePolicy,
    /// Key layout; the same as the atomic store's, so both share a key's budget.
    pub layout: KeyLayout,
    /// Keys (limiters) held at most.
    pub max_keys: usize,
}

impl Default for LeasedOptions {
    fn default() -> Self {
        Self {
            max_chunk: 100,
            lease_ttl: Duration::from_secs(1),
            refill_interval: Duration::from_millis(50),
            policy: FailurePolicy::FailOpen,
            layout: KeyLayout::default(),
            max_keys: super::DEFAULT_MAX_KEYS,
        }
    }
}

/// One shard of the limiter map: descriptor key → its limiter.
type Shard = HashMap<Box<str>, Entry>;

struct Entry {
    limiter: LeasedLimiter,
    quota: Quota,
    /// When the entry was last used (store clock, ns).
    last_used: u64,
}

/// The leased backend: one [`LeasedLimiter`] per descriptor key, in a bounded sharded map.
///
/// Keys unused for longer than the lease TTL hold no usable credit and are evicted when a
/// shard is full; when it stays full, calls with a new key of that shard are denied
/// (`KeyCapacity`) rather than forgetting live credit.
pub struct LeasedStore {
    conn: RedisConnection,
    options: LeasedOptions,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    clock: MonotonicClock,
    /// The counters of limiters dropped from the map (idle or replaced), so that the
    /// exported totals never go down.
    retired: Mutex<RedisStats>,
}

impl std::fmt::Debug for LeasedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedStore")
            .field("conn", &self.conn)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LeasedStore {
    /// A leased store over `conn`. Errors name the field (`max_chunk` 0, zero durations,
    /// `max_keys` 0).
    pub fn new(conn: RedisConnection, options: LeasedOptions) -> Result<Self, ConfigError> {
        conn.options().validate()?;
        if options.max_chunk == 0 {
            return Err(ConfigError::new("max_chunk", "must be at least 1"));
        }
        if options.lease_ttl.is_zero() {
            return Err(ConfigError::new("lease_ttl", "must be greater than zero"));
        }
        if options.refill_interval.is_zero() {
            return Err(ConfigError::new(
                "refill_interval",
                "must be greater than zero",
            ));
        }
        if options.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        Ok(Self {
            per_shard: options.max_keys.div_ceil(SHARDS).max(1),
            conn,
            options,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            clock: MonotonicClock::new(),
            retired: Mutex::new(RedisStats::default()),
        })
    }

    /// The Redis counters of every key's limiter, summed (keys dropped from the map
    /// included): lease refills, grants, local answers, timeouts, fallbacks.
    pub fn redis_stats(&self) -> RedisStats {
        let mut total = *lock(&self.retired);
        for shard in &self.shards {
            for e in lock(shard).values() {
                total += &e.limiter.stats();
            }
        }
        total
    }

    /// The options.
    pub fn options(&self) -> &LeasedOptions {
        &self.options
    }

    /// The limiter of `key` (created on first use), or `None` when its shard is full of
    /// live keys.
    fn limiter(&self, key: &str, quota: Quota) -> Result<Option<LeasedLimiter>, ConfigError> {
        let shard = (self.hasher.hash_one(key) as usize) & (SHARDS - 1);
        let now = self.clock.now_nanos();
        let mut map = lock(&self.shards[shard]);
        if let Some(e) = map.get_mut(key)
            && e.quota == quota
        {
            e.last_used = now;
            return Ok(Some(e.limiter.clone()));
        }
        if !map.contains_key(key) && map.len() >= self.per_shard {
            let ttl = u64::try_from(self.options.lease_ttl.as_nanos()).unwrap_or(u64::MAX);
            let mut retired = RedisStats::default();
            map.retain(|_, e| {
                let keep = now.saturating_sub(e.last_used) < ttl;
                if !keep {
                    retired += &e.limiter.stats();
                }
                keep
            });
            *lock(&self.retired) += &retired;
            if map.len() >= self.per_shard {
                return Ok(None);
            }
        }
        let o = &self.options;
        let limiter = LeasedLimiter::builder(self.conn.clone(), key, quota)
            .layout(o.layout.clone())
            .policy(o.policy)
            .max_chunk(o.max_chunk.min(quota.burst()))
            .lease_ttl(o.lease_ttl)
            .refill_interval(o.refill_interval)
            .build()?;
        if let Some(old) = map.insert(
            key.into(),
            Entry {
                limiter: limiter.clone(),
                quota,
                last_used: now,
            },
        ) {
            *lock(&self.retired) += &old.limiter.stats();
        }
        Ok(Some(limiter))
    }

    /// Decides a call: the items in order on their keys' local credit (one deadline for
    /// all), then, if the call is refused, the hits taken are put back.
    pub async fn decide(
        &self,
        keys: &[&str],
        items: &[BatchItem],
    ) -> Result<Decided, StoreUnavailable> {
        let deadline = tokio::time::Instant::now() + self.conn.options().get_call_timeout();
        let mut limiters = Vec::with_capacity(keys.len());
        for (slot, key) in keys.iter().enumerate() {
            // Items of one slot share a quota (the key names the limit).
            let Some(item) = items.iter().find(|i| i.slot == slot) else {
                limiters.push(None);
                continue;
            };
            match self.limiter(key, item.quota) {
                Ok(Some(l)) => limiters.push(Some(l)),
                Ok(None) => return Ok(full(items)),
                Err(e) => return Err(StoreUnavailable(e.to_string())),
            }
        }
        let mut decisions = Vec::with_capacity(items.len());
        let mut taken: Vec<(&LeasedLimiter, u32)> = Vec::new();
        let mut source = DecisionSource::Local;
        let (mut enforce_denied, mut quota_items, mut quota_denied) = (false, 0, 0);
        for item in items {
            let Some(limiter) = limiters.get(item.slot).and_then(Option::as_ref) else {
                return Err(StoreUnavailable(format!("slot {} has no key", item.slot)));
            };
            let checked = match limiter.check_by(item.n, deadline).await {
                Ok(c) => c,
                Err(e) => {
                    refund(&taken);
                    return Err(StoreUnavailable(match e {
                        RedisStoreError::Unavailable { .. } => e.to_string(),
                        other => other.to_string(),
                    }));
                }
            };
            let allowed = checked.decision.allowed;
            match checked.source {
                DecisionSource::Local if allowed && item.n > 0 => taken.push((limiter, item.n)),
                DecisionSource::Local | DecisionSource::Redis => {}
                // A fallback decided: report it (the service counts fallback calls).
                other => source = other,
            }
            match item.class {
                BatchClass::Enforce if !allowed => enforce_denied = true,
                BatchClass::Quota => {
                    quota_items += 1;
                    if !allowed {
                        quota_denied += 1;
                    }
                }
                _ => {}
            }
            decisions.push(checked.decision);
        }
        let committed = !enforce_denied && (quota_items == 0 || quota_denied < quota_items);
        if !committed {
            refund(&taken);
        }
        Ok(Decided {
            decisions,
            committed,
            source,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn refund(taken: &[(&LeasedLimiter, u32)]) {
    for (l, n) in taken {
        l.refund(*n);
    }
}
