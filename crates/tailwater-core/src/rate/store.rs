//! The store seam: one limiter, in memory or on a shared backend (Redis).

use std::fmt;
use std::future::{Future, Ready, ready};
use std::time::Duration;

use super::decision::RateDecision;
use super::keyed::KeyedLimiter;
use super::quota::{MultiQuota, Quota, check_quota_count};
use crate::clock::{Clock, MonotonicClock};

/// Why a [`RateStore`] could not decide. Small and typed so that callers can apply a
/// failure policy (fail open, fail closed, fall back to a local limit) by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached (connection refused or lost, cluster down).
    #[error("rate store unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the per-call deadline.
    #[error("rate store timed out after {0:?}")]
    Timeout(Duration),
    /// The backend answered something this client does not understand.
    #[error("rate store protocol error: {0}")]
    Protocol(String),
    /// The request itself is invalid (no quotas, too many quotas, bad key); retrying the
    /// same request will fail again.
    #[error("invalid rate request: {0}")]
    InvalidRequest(String),
}

impl StoreError {
    /// Whether retrying later may succeed (unavailable, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }

    /// The snake-case kind, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout(_) => "timeout",
            StoreError::Protocol(_) => "protocol",
            StoreError::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// Where GCRA state lives: process memory ([`MemoryStore`]) or a shared backend (the
/// `tailwater-redis` crate). One call = one all-or-nothing decision for `n` cells of `key`
/// under every quota in `quotas` (see [`gcra::step_all`](super::gcra::step_all) for the
/// exact semantics every store must implement).
///
/// The method returns `impl Future` so that a network store can be async while the memory
/// store answers with an already-ready future (no allocation, no runtime). No runtime types
/// appear in the signature.
///
/// Contract for implementers: denied hits do not change state; `n > burst` of any quota is
/// [`DenyReason::ExceedsBurst`](super::DenyReason::ExceedsBurst); `quotas` must be
/// non-empty and at most [`MultiQuota::MAX`] long (else [`StoreError::InvalidRequest`]);
/// a given key is always checked with the same quotas in the same order.
pub trait RateStore: Send + Sync {
    /// Checks and (if admitted) charges `n` cells for `key` under all `quotas`.
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        n: u32,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send + 'a;
}

/// A store behind a shared pointer or a reference is the store it points to.
macro_rules! forward_store {
    ($($pointer:ty),*) => {$(
        impl<T: RateStore + ?Sized> RateStore for $pointer {
            fn check<'a>(
                &'a self,
                key: &'a str,
                quotas: &'a [Quota],
                n: u32,
            ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send + 'a {
                (**self).check(key, quotas, n)
            }
        }
    )*};
}

forward_store!(std::sync::Arc<T>, &T);

/// The in-memory [`RateStore`]: a [`KeyedLimiter<String>`](KeyedLimiter) (sharded,
/// bounded, idle eviction) behind the store interface. Its future is ready at once.
///
/// Failure modes: it cannot be unavailable or time out; the only error is
/// [`StoreError::InvalidRequest`] for an empty or too long quota list. At `max_keys` it
/// answers per the limiter's [`OnFull`](super::OnFull) policy (a `KeyCapacity` denial is
/// a decision, not an error). State is per process: replicas do not share it.
///
/// ```
/// use tailwater_core::rate::{KeyedLimiter, MemoryStore, Quota, RateStore};
///
/// let quota = Quota::per_second(5)?;
/// let store = MemoryStore::new(KeyedLimiter::<String>::builder(quota).max_keys(10_000).build()?);
/// # let fut = async move {
/// let d = store.check("tenant-1", &[quota], 1).await?;
/// assert!(d.allowed);
/// # Ok::<(), tailwater_core::rate::StoreError>(())
/// # };
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct MemoryStore<C: Clock = MonotonicClock> {
    limiter: KeyedLimiter<String, C>,
}

impl<C: Clock> MemoryStore<C> {
    /// Wraps a keyed limiter; its own quotas are ignored (each call brings its quotas), its
    /// `max_keys`, `OnFull`, shards and clock apply.
    pub fn new(limiter: KeyedLimiter<String, C>) -> Self {
        Self { limiter }
    }

    /// The limiter underneath (for `len()` and `stats()`).
    pub fn limiter(&self) -> &KeyedLimiter<String, C> {
        &self.limiter
    }

    /// The same check as [`RateStore::check`], without the future.
    pub fn check_now(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
    ) -> Result<RateDecision, StoreError> {
        check_quota_count(quotas.len()).map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
        Ok(self.limiter.check_quotas(key, quotas, n))
    }
}

impl<C: Clock> fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<C: Clock> RateStore for MemoryStore<C> {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        n: u32,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send + 'a {
        let ready: Ready<_> = ready(self.check_now(key, quotas, n));
        ready
    }
}

/// One limiter type over any [`RateStore`]: fixed quotas, keys given per call. Swap
/// `MemoryStore` for the Redis store and nothing else changes.
///
/// ```
/// use tailwater_core::rate::{KeyedLimiter, MemoryStore, MultiQuota, Quota, StoreLimiter};
///
/// let quotas = MultiQuota::new([Quota::per_second(100)?, Quota::per_day(1_000_000)?])?;
/// let store = MemoryStore::new(KeyedLimiter::<String>::builder(quotas.clone()).build()?);
/// let limiter = StoreLimiter::new(store, quotas);
/// # let fut = async move {
/// let decision = limiter.check("api-key-42").await?;
/// assert!(decision.allowed);
/// # Ok::<(), tailwater_core::rate::StoreError>(())
/// # };
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct StoreLimiter<S> {
    store: S,
    quotas: MultiQuota,
}

impl<S: RateStore> StoreLimiter<S> {
    /// A limiter enforcing `quotas` on `store`.
    pub fn new(store: S, quotas: impl Into<MultiQuota>) -> Self {
        Self {
            store,
            quotas: quotas.into(),
        }
    }

    /// One cell for `key`.
    pub async fn check(&self, key: &str) -> Result<RateDecision, StoreError> {
        self.check_n(key, 1).await
    }

    /// `n` cells for `key`, all quotas, all or nothing.
    pub async fn check_n(&self, key: &str, n: u32) -> Result<RateDecision, StoreError> {
        self.store.check(key, self.quotas.quotas(), n).await
    }

    /// The quotas enforced.
    pub fn quotas(&self) -> &MultiQuota {
        &self.quotas
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }
}
