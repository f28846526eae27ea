//! A sharded, memory-bounded limiter with one GCRA state per key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::decision::{DenyReason, RateDecision};
use super::gcra;
use super::quota::{MultiQuota, Quota};
use crate::ConfigError;
use crate::clock::{Clock, MonotonicClock};

mod entry;
mod shard;

use entry::{Hashed, Lookup, Probe, Tats};
use shard::Shard;

/// The default [`KeyedLimiterBuilder::max_keys`]: 100 000 keys (a few MB for small keys).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The most shards a keyed limiter may have.
pub const MAX_SHARDS: usize = 1 << 16;

/// A shard does not sweep idle keys before it holds this many (unless its capacity is
/// smaller): sweeping a tiny map costs more than the memory it frees.
const MIN_SWEEP: usize = 64;

/// What a [`KeyedLimiter`] does when a **new** key arrives and its shard is at capacity,
/// after idle keys (whose TAT is in the past, so they carry no information) were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnFull {
    /// Deny the new key with [`DenyReason::KeyCapacity`]; keys already tracked are never
    /// forgotten while they still owe time, so no key ever gets more than its quota.
    /// Under a key-rotation flood, new keys are refused until old ones go idle
    /// (at most `burst · T` after their last admission).
    #[default]
    Reject,
    /// Evict the keys closest to idle (smallest TAT) — about 1/8 of the shard at a time,
    /// so the scan is amortised — and admit the new key. An evicted key that still owed
    /// time forgets that debt: it may get up to one extra burst. New keys are never refused.
    EvictOldest,
}

/// Counters of a [`KeyedLimiter`] since it was built (a consistent sum over shards only if
/// no check runs concurrently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyedStats {
    /// Keys tracked now.
    pub keys: usize,
    /// The configured `max_keys`.
    pub max_keys: usize,
    /// Checks made.
    pub checks: u64,
    /// Checks admitted.
    pub allowed: u64,
    /// Checks denied (for any reason, including capacity).
    pub denied: u64,
    /// Idle keys dropped (lossless: their state was "bucket full").
    pub evicted_idle: u64,
    /// Keys that still owed time dropped by [`OnFull::EvictOldest`].
    pub evicted_active: u64,
    /// New keys denied by [`OnFull::Reject`] at capacity.
    pub rejected_at_capacity: u64,
}

type ShardSlot<K> = CachePadded<Mutex<Shard<K>>>;

/// A rate limiter with one GCRA state per key (client IP, API key, tenant), sharded across
/// `N` `Mutex<HashMap>` shards (a power of two; no global lock), with **bounded memory
/// built in**.
///
/// governor's keyed stores grow without bound unless the user schedules `retain_recent`
/// (governor #171: rotating client IPs become a memory DoS). Here:
///
/// - `max_keys` is a hard cap ([`DEFAULT_MAX_KEYS`] unless set); the map never holds more.
///   Each shard holds at most its share (`max_keys / shards`, the remainder spread over the
///   first shards), so the total never exceeds `max_keys`.
/// - Idle keys are dropped lazily, during inserts of new keys, amortised: a key whose TAT is
///   in the past has a full bucket — exactly the state of a key never seen — so dropping it
///   loses nothing. A shard sweeps when it has doubled since its last sweep (and never
///   before the earliest time one of its keys can be idle).
/// - At capacity, [`OnFull`] decides: refuse the new key (`Reject`, the default, reason
///   [`DenyReason::KeyCapacity`]) or evict the keys closest to idle (`EvictOldest`).
///
/// Memory: an entry is the key plus 32 bytes (8 for its cached hash, 24 for the state),
/// plus hash-table overhead (load factor ≤ 7/8, capacity grows in
/// powers of two): roughly 50–100 bytes per `u64` key, i.e. under 10 MB at the default
/// cap. With several quotas each key also owns a heap slice of `8 × quotas` bytes.
///
/// Several quotas (e.g. 100/s and 1 M/day) can be enforced on each key in one decision,
/// all or nothing: build with a [`MultiQuota`], or pass quotas per call to
/// [`check_quotas`](Self::check_quotas).
///
/// Failure modes: a panic while a shard is locked cannot happen in this code (the GCRA
/// step does not panic); a poisoned shard is used anyway, since its map is always
/// consistent. Denied checks never change a key's state and never insert a key.
///
/// ```
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::rate::{DenyReason, KeyedLimiter, OnFull, Quota};
///
/// let limiter = KeyedLimiter::<String>::builder(Quota::per_second(1)?)
///     .max_keys(2)
///     .shards(1)
///     .on_full(OnFull::Reject)
///     .clock(ManualClock::new())
///     .build()?;
/// assert!(limiter.check("alice").allowed);
/// assert!(!limiter.check("alice").allowed);
/// assert!(limiter.check("bob").allowed);
/// let d = limiter.check("carol");
/// assert_eq!(d.reason, Some(DenyReason::KeyCapacity));
/// assert_eq!(limiter.len(), 2);
/// assert_eq!(limiter.stats().rejected_at_capacity, 1);
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct KeyedLimiter<K, C: Clock = MonotonicClock, S = RandomState> {
    shards: Box<[ShardSlot<K>]>,
    /// Right shift that picks a shard from bits 50..57 of the hash (`64` = one shard).
    shift: u32,
    hasher: S,
    quotas: MultiQuota,
    max_keys: usize,
    on_full: OnFull,
    clock: C,
}

impl<K: Hash + Eq> KeyedLimiter<K, MonotonicClock, RandomState> {
    /// A builder for a limiter enforcing `quotas` (one [`Quota`] or a [`MultiQuota`]).
    pub fn builder(quotas: impl Into<MultiQuota>) -> KeyedLimiterBuilder<K> {
        KeyedLimiterBuilder {
            quotas: quotas.into(),
            max_keys: DEFAULT_MAX_KEYS,
            on_full: OnFull::default(),
            shards: None,
            clock: MonotonicClock::new(),
            _key: PhantomData,
        }
    }

    /// A limiter with the defaults: [`DEFAULT_MAX_KEYS`], [`OnFull::Reject`],
    /// `max(64, 4 × cores)` shards, monotonic clock.
    pub fn new(quotas: impl Into<MultiQuota>) -> Self {
        match Self::builder(quotas).build() {
            Ok(l) => l,
            // The defaults are valid by construction.
            Err(e) => unreachable!("default keyed limiter configuration rejected: {e}"),
        }
    }
}

impl<K, C, S> KeyedLimiter<K, C, S>
where
    K: Hash + Eq,
    C: Clock,
    S: BuildHasher,
{
    /// Asks for one cell for `key`, under every configured quota.
    #[inline]
    pub fn check<Q>(&self, key: &Q) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_n(key, 1)
    }

    /// Asks for `n` cells for `key`, under every configured quota, all or nothing.
    #[inline]
    pub fn check_n<Q>(&self, key: &Q, n: u32) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = super::now_nanos(&self.clock);
        self.check_at(key, self.quotas.quotas(), now, n)
    }

    /// Asks for `n` cells for `key` under `quotas` given by the caller (the configured ones
    /// are ignored): all admit and all are charged, or none is. A key must be checked with
    /// the same quotas (by position) every time; if their number changes, the key starts
    /// fresh. An empty `quotas` admits without tracking the key.
    pub fn check_quotas<Q>(&self, key: &Q, quotas: &[Quota], n: u32) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = super::now_nanos(&self.clock);
        self.check_at(key, quotas, now, n)
    }

    /// [`check_quotas`](Self::check_quotas) at an explicit time in nanoseconds on this
    /// limiter's clock (for the simulator and for callers that already read the clock).
    ///
    /// Always inlined: the common case (a known key, one quota) is a few dozen instructions,
    /// and inlined the caller computes only the parts of the decision it reads; everything
    /// else is in an out-of-line function.
    #[inline(always)]
    pub fn check_at<Q>(&self, key: &Q, quotas: &[Quota], now: u64, n: u32) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if quotas.is_empty() {
            return gcra::step_all(&[], now, &mut [], n);
        }
        let hash = self.hasher.hash_one(key);
        let mut guard = self.lock(self.shard_of(hash));
        let shard = &mut *guard;
        // The common case, a known key under one quota, stays small enough to inline: only
        // the state arithmetic runs under the lock, the decision's numbers after unlocking.
        if let [quota] = quotas {
            let probe = Probe { hash, key };
            if let Some(Tats::One(tat)) = shard.map.get_mut(&probe as &dyn Lookup<Q>) {
                let stored = *tat;
                if let Some(new) = gcra::admit(quota, now, stored, n) {
                    *tat = new;
                    shard.allowed += 1;
                } else {
                    shard.denied += 1;
                }
                drop(guard);
                return gcra::step(quota, now, stored, n).0;
            }
        }
        let decision = self.check_locked(shard, hash, key, quotas, now, n);
        if decision.allowed {
            shard.allowed += 1;
        } else {
            shard.denied += 1;
        }
        decision
    }

    /// Everything but the common case, with the shard locked: new keys, several quotas.
    #[inline(never)]
    fn check_locked<Q>(
        &self,
        shard: &mut Shard<K>,
        hash: u64,
        key: &Q,
        quotas: &[Quota],
        now: u64,
        n: u32,
    ) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let probe = Probe { hash, key };
        match shard.map.get_mut(&probe as &dyn Lookup<Q>) {
            Some(tats) => tats.step(quotas, now, n),
            None => self.admit_new(shard, hash, key, quotas, now, n),
        }
    }

    fn admit_new<Q>(
        &self,
        shard: &mut Shard<K>,
        hash: u64,
        key: &Q,
        quotas: &[Quota],
        now: u64,
        n: u32,
    ) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut tats = Tats::fresh(quotas.len());
        let decision = tats.step(quotas, now, n);
        if !decision.allowed || n == 0 {
            // Fresh state is the same as no state: nothing to remember.
            return decision;
        }
        if shard.map.len() >= shard.sweep_at && now >= shard.earliest_idle {
            shard.sweep_idle(now);
        }
        if shard.map.len() >= shard.cap {
            match self.on_full {
                OnFull::Reject => {
                    shard.rejected += 1;
                    let hint = quotas.iter().map(Quota::tolerance_nanos).max().unwrap_or(0);
                    let hint = Duration::from_nanos(hint);
                    return RateDecision {
                        allowed: false,
                        limit: decision.limit,
                        remaining: 0,
                        reset_after: hint,
                        retry_after: Some(hint),
                        reason: Some(DenyReason::KeyCapacity),
                        quota_index: decision.quota_index,
                    };
                }
                OnFull::EvictOldest => shard.evict_oldest(now),
            }
        }
        if !shard.nearly_full() {
            shard.earliest_idle = shard.earliest_idle.min(tats.max_tat());
        }
        shard.map.insert(
            Hashed {
                hash,
                key: key.to_owned(),
            },
            tats,
        );
        decision
    }

    /// Drops every idle key now, in every shard (normally done lazily; call this to free
    /// memory after a burst of one-off keys). Returns how many were dropped.
    pub fn evict_idle(&self) -> usize {
        let now = super::now_nanos(&self.clock);
        let mut dropped = 0;
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            let before = shard.map.len();
            shard.sweep_idle(now);
            dropped += before - shard.map.len();
        }
        dropped
    }

    /// Keys tracked now (locks each shard in turn).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).map.len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the counters (locks each shard in turn).
    pub fn stats(&self) -> KeyedStats {
        let mut s = KeyedStats {
            max_keys: self.max_keys,
            ..KeyedStats::default()
        };
        for i in 0..self.shards.len() {
            let shard = self.lock(i);
            s.keys += shard.map.len();
            s.checks += shard.allowed + shard.denied;
            s.allowed += shard.allowed;
            s.denied += shard.denied;
            s.evicted_idle += shard.evicted_idle;
            s.evicted_active += shard.evicted_active;
            s.rejected_at_capacity += shard.rejected;
        }
        s
    }
}

impl<K, C: Clock, S> KeyedLimiter<K, C, S> {
    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        // Bits just below hashbrown's 7-bit tag, so that the keys of one shard still differ
        // in the bits the inner map uses.
        (hash << 7).checked_shr(self.shift).unwrap_or(0) as usize
    }

    #[inline]
    fn lock(&self, i: usize) -> MutexGuard<'_, Shard<K>> {
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The configured quotas.
    pub fn quotas(&self) -> &MultiQuota {
        &self.quotas
    }

    /// The hard cap on tracked keys.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The policy for new keys at capacity.
    pub fn on_full(&self) -> OnFull {
        self.on_full
    }

    /// How many shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The clock read by this limiter.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<K, C: Clock, S> fmt::Debug for KeyedLimiter<K, C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("quotas", &self.quotas)
            .field("max_keys", &self.max_keys)
            .field("on_full", &self.on_full)
            .field("shards", &self.shards.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeyedLimiter`]; start with [`KeyedLimiter::builder`].
pub struct KeyedLimiterBuilder<K, C: Clock = MonotonicClock> {
    quotas: MultiQuota,
    max_keys: usize,
    on_full: OnFull,
    shards: Option<usize>,
    clock: C,
    _key: PhantomData<fn() -> K>,
}

impl<K, C: Clock> fmt::Debug for KeyedLimiterBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiterBuilder")
            .field("quotas", &self.quotas)
            .field("max_keys", &self.max_keys)
            .field("on_full", &self.on_full)
            .field("shards", &self.shards)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: Hash + Eq, C: Clock> KeyedLimiterBuilder<K, C> {
    /// The hard cap on tracked keys (default [`DEFAULT_MAX_KEYS`]); at least 1.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What to do with new keys at capacity (default [`OnFull::Reject`]).
    pub fn on_full(mut self, on_full: OnFull) -> Self {
        self.on_full = on_full;
        self
    }

    /// The number of shards: a power of two, at most [`MAX_SHARDS`] and at most
    /// `max_keys`. Default: `4 × available cores` rounded up to a power of two, at least 64
    /// (so that threads rarely meet on one shard lock), reduced
    /// to fit `max_keys`.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock to read (default [`MonotonicClock`]).
    pub fn clock<C2: Clock>(self, clock: C2) -> KeyedLimiterBuilder<K, C2> {
        KeyedLimiterBuilder {
            quotas: self.quotas,
            max_keys: self.max_keys,
            on_full: self.on_full,
            shards: self.shards,
            clock,
            _key: PhantomData,
        }
    }

    /// Validates and builds with the standard (DoS-resistant, randomly keyed) hasher.
    pub fn build(self) -> Result<KeyedLimiter<K, C>, ConfigError> {
        self.build_with_hasher(RandomState::new())
    }

    /// Validates and builds with `hasher` (e.g. a faster one for trusted keys).
    ///
    /// Errors: `max_keys` zero; `shards` zero, not a power of two, above [`MAX_SHARDS`]
    /// or above `max_keys`.
    pub fn build_with_hasher<S: BuildHasher>(
        self,
        hasher: S,
    ) -> Result<KeyedLimiter<K, C, S>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        let shards = match self.shards {
            Some(s) => {
                if s == 0 || !s.is_power_of_two() || s > MAX_SHARDS {
                    return Err(ConfigError::new(
                        "shards",
                        format!("must be a power of two in [1, {MAX_SHARDS}], got {s}"),
                    ));
                }
                if s > self.max_keys {
                    return Err(ConfigError::new(
                        "shards",
                        format!("{s} shards exceed max_keys {}", self.max_keys),
                    ));
                }
                s
            }
            None => default_shards(self.max_keys),
        };
        let base = self.max_keys / shards;
        let extra = self.max_keys % shards;
        let shards_vec = (0..shards)
            .map(|i| {
                let cap = base + usize::from(i < extra);
                CachePadded::new(Mutex::new(Shard {
                    map: HashMap::default(),
                    cap,
                    sweep_at: MIN_SWEEP.min(cap),
                    earliest_idle: 0,
                    allowed: 0,
                    denied: 0,
                    evicted_idle: 0,
                    evicted_active: 0,
                    rejected: 0,
                }))
            })
            .collect();
        Ok(KeyedLimiter {
            shards: shards_vec,
            shift: 64 - shards.trailing_zeros(),
            hasher,
            quotas: self.quotas,
            max_keys: self.max_keys,
            on_full: self.on_full,
            clock: self.clock,
        })
    }
}

fn default_shards(max_keys: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let want = (cores * 4).next_power_of_two().clamp(64, MAX_SHARDS);
    // The largest power of two not above max_keys (max_keys >= 1).
    let fit = 1usize << (usize::BITS - 1 - max_keys.leading_zeros());
    want.min(fit)
}
