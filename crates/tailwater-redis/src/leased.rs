//! The leased path: each instance takes chunks of the global budget from Redis and answers
//! locally from its chunk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailwater_core::ConfigError;
use tailwater_core::clock::{Clock, MonotonicClock, duration_to_nanos};
use tailwater_core::rate::{DenyReason, MultiQuota, Quota, RateDecision};
use tokio::sync::watch;

use crate::atomic::{Checked, DecisionSource};
use crate::call::{self, Gate};
use crate::conn::RedisConnection;
use crate::error::{BackendError, RedisStoreError};
use crate::key::KeyLayout;
use crate::policy::{FailurePolicy, LocalFallback, open_decision};
use crate::script;
use crate::stats::{Counters, RedisStats, add, inc};

/// A global limit answered from locally leased credit (the "approximate global limit" of
/// multi-tier rate limiting).
///
/// The global budget is the same GCRA state that [`RedisRateStore`](crate::RedisRateStore)
/// uses for the key (same Redis keys, so both paths share one budget). An instance:
///
/// 1. **leases** a chunk of cells from Redis with one atomic Lua script: it debits the
///    GCRA of every quota by `g` cells, where `g` is the chunk size or fewer if fewer fit
///    now (exactly what `gcra::step(q, now, stored, g)` would admit);
/// 2. **answers locally** from its credit: one atomic compare-and-swap per decision, no
///    Redis round trip;
/// 3. **refills in the background** when its credit falls to half a chunk (one tokio task,
///    at most one refill in flight), so callers at a steady rate never wait for Redis;
/// 4. **sizes chunks from its own observed rate**: `chunk = clamp(rate · refill_interval,
///    min_chunk, max_chunk)` with the rate an exponentially weighted average measured at
///    each refill: one cell at a time at low rates (then it behaves like the atomic path),
///    large chunks at high rates;
/// 5. **drops its credit when it got no refill for `lease_ttl`** (each refill renews the
///    lease on what it holds; an idle or cut-off instance does not keep credit), and gives
///    its credit back with [`release`](Self::release) (call it on shutdown).
/// 6. When Redis granted less than asked (the budget is drained), it **denies locally**
///    once its credit is spent, until a whole chunk fits again (at most one refill
///    interval, at least until one cell fits), again without a round trip.
///
/// # Accuracy (the overshoot bound)
///
/// A cell is admitted only after Redis debited it from the global GCRA, so over a whole
/// run the fleet never admits more than the GCRA allows (`burst + rate · elapsed /
/// period`): **no overshoot in total, ever**. What leasing changes is *when* cells are
/// used: credit leased before a window can be spent inside it. Each instance holds at most
/// `H = max_chunk + ceil(max_chunk / 2)` cells (a refill starts at half a chunk and adds at
/// most one chunk; for `n <= max_chunk / 2` per call), so with `N` instances the cells
/// admitted in any window of length `w` are at most
///
/// ```text
/// burst + rate · w / period + N · (max_chunk + ceil(max_chunk / 2))
/// ```
///
/// i.e. the overshoot beyond the limit in one window is at most `N · H`; an instance that
/// got no refill for `lease_ttl` drops what it holds. The price is undershoot: credit
/// that expires or is held by an idle instance is not available to the others until
/// returned (at most `N · H` cells, for at most `lease_ttl`).
///
/// # Failures
///
/// While Redis is down an instance keeps spending the credit it holds (until the lease
/// expires), then the [`FailurePolicy`] answers. A caller that needs Redis waits at most
/// the per-call timeout; refills run in the background bounded by the connection's
/// response timeout. Every fallback is counted in [`stats`](Self::stats).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tailwater_core::rate::Quota;
/// use tailwater_redis::{ConnectionOptions, LeasedLimiter, RedisConnection};
///
/// let conn = RedisConnection::open("redis://127.0.0.1:6379/", ConnectionOptions::default())?;
/// let limiter = LeasedLimiter::builder(conn, "api", Quota::per_second(10_000)?)
///     .max_chunk(200)
///     .build()?;
/// let checked = limiter.check(1).await?;
/// assert!(checked.decision.limit > 0);
/// limiter.release().await?; // on shutdown: give unused credit back
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeasedLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: RedisConnection,
    keys: Vec<String>,
    base_key: String,
    quotas: Vec<Quota>,
    qargs: Vec<String>,
    limit: u32,
    min_chunk: u64,
    max_chunk: u64,
    lease_ttl: u64,
    refill_interval: Duration,
    policy: FailurePolicy,
    fallback: Option<LocalFallback>,
    gate: Gate,
    stats: Counters,
    clock: MonotonicClock,
    credit: AtomicU64,
    expires_at: AtomicU64,
    empty_until: AtomicU64,
    refilling: AtomicBool,
    last_failed: AtomicBool,
    generation: watch::Sender<u64>,
    demand: AtomicU64,
    chunk: AtomicU64,
    estimator: Mutex<Estimator>,
}

#[derive(Debug, Default)]
struct Estimator {
    last_at: u64,
    last_demand: u64,
    rate: Option<f64>,
}

/// Builds a [`LeasedLimiter`].
#[derive(Debug)]
pub struct LeasedLimiterBuilder {
    conn: RedisConnection,
    key: String,
    quotas: MultiQuota,
    layout: KeyLayout,
    policy: FailurePolicy,
    min_chunk: u32,
    max_chunk: Option<u32>,
    lease_ttl: Duration,
    refill_interval: Duration,
}

impl LeasedLimiterBuilder {
    /// The key layout (default prefix `tw`); must match the atomic store's to share budgets.
    pub fn layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// What to answer when Redis cannot and no credit is left (default `FailOpen`).
    pub fn policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The smallest chunk leased (default 1).
    pub fn min_chunk(mut self, n: u32) -> Self {
        self.min_chunk = n;
        self
    }

    /// The largest chunk leased (default: `min(burst, 100)`); it sets the overshoot bound.
    pub fn max_chunk(mut self, n: u32) -> Self {
        self.max_chunk = Some(n);
        self
    }

    /// How long leased credit may be used (default 1 s).
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d;
        self
    }

    /// The target time between refills at a steady rate (default 50 ms): the chunk is the
    /// observed rate times this, within `[min_chunk, max_chunk]`.
    pub fn refill_interval(mut self, d: Duration) -> Self {
        self.refill_interval = d;
        self
    }

    /// The limiter. Errors name the field: `min_chunk` zero, `max_chunk` below `min_chunk`
    /// or above the smallest burst, zero durations, quotas too long for the scripts.
    pub fn build(self) -> Result<LeasedLimiter, ConfigError> {
        self.conn.options.validate()?;
        // Long quotas (a `year`) rounded to the scripts' grain, here and in every local step.
        let quotas: Vec<Quota> = call::redis_quotas(self.quotas.quotas())?.into_owned();
        let limit = quotas.iter().map(Quota::burst).min().unwrap_or(1);
        let max_chunk = self.max_chunk.unwrap_or(limit.min(100));
        if self.min_chunk == 0 {
            return Err(ConfigError::new("min_chunk", "must be at least 1"));
        }
        if max_chunk < self.min_chunk {
            return Err(ConfigError::new(
                "max_chunk",
                format!("{max_chunk} is below min_chunk {}", self.min_chunk),
            ));
        }
        if max_chunk > limit {
            return Err(ConfigError::new(
                "max_chunk",
                format!("{max_chunk} is above the smallest burst {limit}"),
            ));
        }
        if self.lease_ttl.is_zero() {
            return Err(ConfigError::new("lease_ttl", "must be greater than zero"));
        }
        if self.refill_interval.is_zero() {
            return Err(ConfigError::new(
                "refill_interval",
                "must be greater than zero",
            ));
        }
        let qargs = call::quota_args(&quotas)?
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        let fallback = LocalFallback::for_policy(self.policy);
        let (generation, _) = watch::channel(0);
        Ok(LeasedLimiter {
            inner: Arc::new(Inner {
                keys: self.layout.quota_keys(&self.key, &quotas),
                base_key: self.layout.base(&self.key),
                conn: self.conn,
                quotas,
                qargs,
                limit,
                min_chunk: u64::from(self.min_chunk),
                max_chunk: u64::from(max_chunk),
                lease_ttl: duration_to_nanos(self.lease_ttl),
                refill_interval: self.refill_interval,
                policy: self.policy,
                fallback,
                gate: Gate::new(),
                stats: Counters::default(),
                clock: MonotonicClock::new(),
                credit: AtomicU64::new(0),
                expires_at: AtomicU64::new(0),
                empty_until: AtomicU64::new(0),
                refilling: AtomicBool::new(false),
                last_failed: AtomicBool::new(false),
                generation,
                demand: AtomicU64::new(0),
                chunk: AtomicU64::new(u64::from(self.min_chunk)),
                estimator: Mutex::new(Estimator::default()),
            }),
        })
    }
}

impl LeasedLimiter {
    /// A builder for the global limit `quotas` on `key`.
    pub fn builder(
        conn: RedisConnection,
        key: &str,
        quotas: impl Into<MultiQuota>,
    ) -> LeasedLimiterBuilder {
        LeasedLimiterBuilder {
            conn,
            key: key.to_owned(),
            quotas: quotas.into(),
            layout: KeyLayout::default(),
            policy: FailurePolicy::default(),
            min_chunk: 1,
            max_chunk: None,
            lease_ttl: Duration::from_secs(1),
            refill_interval: Duration::from_millis(50),
        }
    }

    /// Admits `n` cells from local credit, or (when there is none) after at most one
    /// refill from Redis, waiting no longer than the per-call timeout.
    ///
    /// The decision's `remaining` is this instance's local credit, not the global budget;
    /// `reset_after` is not known locally and is zero.
    pub async fn check(&self, n: u32) -> Result<Checked, RedisStoreError> {
        let deadline = tokio::time::Instant::now() + self.inner.conn.options.call_timeout;
        self.check_by(n, deadline).await
    }

    /// [`check`](Self::check) with the caller's deadline instead of `now + call_timeout`:
    /// a caller deciding several limiters for one request (an Envoy RLS call with several
    /// descriptors) gives them all one deadline, so the whole request waits at most one
    /// per-call timeout. A deadline already past still answers from local credit.
    pub async fn check_by(
        &self,
        n: u32,
        deadline: tokio::time::Instant,
    ) -> Result<Checked, RedisStoreError> {
        let inner = &self.inner;
        inner.demand.fetch_add(u64::from(n), Ordering::Relaxed);
        if n == 0 {
            return Ok(inner.local_allowed(inner.credit.load(Ordering::Relaxed)));
        }
        if n > inner.limit {
            return Ok(inner.local_denied(DenyReason::ExceedsBurst, None));
        }
        if let Some(c) = inner.try_local(n) {
            return Ok(c);
        }
        let timeout = inner.conn.options.call_timeout;
        let mut rx = inner.generation.subscribe();
        let mut waited = false;
        loop {
            // Credit may have arrived (a prefetch, or the refill we waited for).
            if let Some(c) = inner.try_local(n) {
                return Ok(c);
            }
            if waited && inner.last_failed.load(Ordering::Relaxed) {
                return inner.fail(n, BackendError::BackingOff);
            }
            let now = inner.now();
            let empty_until = inner.empty_until.load(Ordering::Relaxed);
            if now < empty_until {
                inc(&inner.stats.local_denied);
                return Ok(inner.local_denied(
                    DenyReason::RateExceeded,
                    Some(Duration::from_nanos(empty_until - now)),
                ));
            }
            if inner.gate.is_down() {
                return inner.fail(n, BackendError::BackingOff);
            }
            Inner::start_refill(inner, n);
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => waited = true,
                Ok(Err(_)) | Err(_) => return inner.fail(n, BackendError::Timeout(timeout)),
            }
            // If someone else spent the new credit first, ask again until the deadline.
        }
    }

    /// Puts `n` cells taken by an admitted [`check`](Self::check) back into the local
    /// credit, without a Redis round trip: for a caller that admitted this check but then
    /// refused the request for another reason (another descriptor of the same RLS call
    /// was over its limit), so that the refused request costs nothing. The cells stay
    /// debited in Redis (the global bound is unchanged) and are spent by later checks, or
    /// dropped when the lease expires, or given back by [`release`](Self::release).
    pub fn refund(&self, n: u32) {
        if n > 0 {
            self.inner.credit.fetch_add(u64::from(n), Ordering::AcqRel);
        }
    }

    /// Gives all local credit back to Redis (on shutdown, or when this instance goes idle)
    /// and returns how many cells were returned.
    pub async fn release(&self) -> Result<u64, BackendError> {
        let inner = &self.inner;
        let cells = inner.credit.swap(0, Ordering::AcqRel);
        if cells == 0 {
            return Ok(0);
        }
        let mut args = vec![format!("-{cells}"), String::new()];
        args.extend(inner.qargs.iter().cloned());
        call::run(
            &inner.conn,
            &inner.gate,
            &inner.stats,
            &script::LEASE,
            &inner.keys,
            &args,
            inner.conn.options.response_timeout,
        )
        .await?;
        add(&inner.stats.lease_returned, cells);
        Ok(cells)
    }

    /// The credit this instance holds now.
    pub fn credit(&self) -> u64 {
        self.inner.credit.load(Ordering::Relaxed)
    }

    /// The current chunk size (from the observed rate).
    pub fn chunk(&self) -> u64 {
        self.inner.chunk.load(Ordering::Relaxed)
    }

    /// The most credit this instance can hold: `max_chunk + ceil(max_chunk / 2)` (`H` in
    /// the overshoot bound).
    pub fn max_held(&self) -> u64 {
        self.inner.max_chunk + self.inner.max_chunk.div_ceil(2)
    }

    /// The counters.
    pub fn stats(&self) -> RedisStats {
        self.inner.stats.snapshot()
    }
}

impl Inner {
    fn now(&self) -> u64 {
        duration_to_nanos(self.clock.now())
    }

    fn try_local(self: &Arc<Self>, n: u32) -> Option<Checked> {
        let n = u64::from(n);
        let now = self.now();
        if now >= self.expires_at.load(Ordering::Acquire) {
            let dropped = self.credit.swap(0, Ordering::AcqRel);
            add(&self.stats.lease_expired, dropped);
        }
        let mut cur = self.credit.load(Ordering::Acquire);
        loop {
            if cur < n {
                return None;
            }
            match self.credit.compare_exchange_weak(
                cur,
                cur - n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let left = cur - n;
        inc(&self.stats.local_allowed);
        // Prefetch at half a chunk so that steady callers never wait for Redis.
        if left <= self.chunk.load(Ordering::Relaxed) / 2
            && now >= self.empty_until.load(Ordering::Relaxed)
            && !self.gate.is_down()
        {
            Inner::start_refill(self, 0);
        }
        Some(self.local_allowed(left))
    }

    fn local_allowed(&self, left: u64) -> Checked {
        Checked {
            decision: RateDecision {
                allowed: true,
                limit: self.limit,
                remaining: u32::try_from(left).unwrap_or(u32::MAX).min(self.limit),
                reset_after: Duration::ZERO,
                retry_after: None,
                reason: None,
                quota_index: 0,
            },
            source: DecisionSource::Local,
        }
    }

    fn local_denied(&self, reason: DenyReason, retry_after: Option<Duration>) -> Checked {
        Checked {
            decision: RateDecision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_after: retry_after.unwrap_or(Duration::ZERO),
                retry_after,
                reason: Some(reason),
                quota_index: 0,
            },
            source: DecisionSource::Local,
        }
    }

    fn fail(&self, n: u32, cause: BackendError) -> Result<Checked, RedisStoreError> {
        match self.policy {
            FailurePolicy::FailOpen => {
                inc(&self.stats.fallback_open);
                Ok(Checked {
                    decision: open_decision(&self.quotas),
                    source: DecisionSource::FailOpen,
                })
            }
            FailurePolicy::Degrade { .. } => {
                inc(&self.stats.fallback_degraded);
                let decision = match &self.fallback {
                    Some(f) => f.check(&self.base_key, &self.quotas, n),
                    None => open_decision(&self.quotas),
                };
                Ok(Checked {
                    decision,
                    source: DecisionSource::Degraded,
                })
            }
            FailurePolicy::FailClosed => {
                inc(&self.stats.fallback_closed);
                Err(RedisStoreError::Unavailable {
                    cause,
                    retry_after: self.conn.options.retry_backoff,
                })
            }
        }
    }

    /// Starts a refill task unless one is in flight.
    fn start_refill(self: &Arc<Self>, need: u32) {
        if self
            .refilling
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.refill(u64::from(need)).await;
            me.refilling.store(false, Ordering::Release);
            me.generation.send_modify(|g| *g = g.wrapping_add(1));
        });
    }

    /// The next chunk from the observed rate.
    fn next_chunk(&self) -> u64 {
        let now = self.now();
        let demand = self.demand.load(Ordering::Relaxed);
        let mut est = match self.estimator.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        let dt = now.saturating_sub(est.last_at);
        if dt > 0 && est.last_at > 0 {
            let inst = (demand - est.last_demand) as f64 / (dt as f64 / 1e9);
            est.rate = Some(match est.rate {
                Some(r) => 0.5 * r + 0.5 * inst,
                None => inst,
            });
        }
        est.last_at = now;
        est.last_demand = demand;
        let target = est
            .rate
            .map(|r| (r * self.refill_interval.as_secs_f64()).ceil())
            .unwrap_or(0.0);
        let chunk = if target.is_finite() && target > 0.0 {
            (target as u64).clamp(self.min_chunk, self.max_chunk)
        } else {
            self.min_chunk
        };
        self.chunk.store(chunk, Ordering::Relaxed);
        chunk
    }

    async fn refill(&self, need: u64) {
        let want = self.next_chunk().max(need);
        inc(&self.stats.lease_refills);
        let mut args = vec![want.to_string(), String::new()];
        args.extend(self.qargs.iter().cloned());
        let reply = call::run(
            &self.conn,
            &self.gate,
            &self.stats,
            &script::LEASE,
            &self.keys,
            &args,
            self.conn.options.response_timeout,
        )
        .await;
        let parsed = reply.and_then(|r| {
            Ok((
                call::int(r.first())?,
                call::int(r.get(2))?,
                call::int(r.get(3))?,
            ))
        });
        match parsed {
            Ok((granted, wait_one, wait_full)) => {
                self.last_failed.store(false, Ordering::Relaxed);
                let now = self.now();
                let granted = u64::try_from(granted).unwrap_or(0);
                let wait_one = u64::try_from(wait_one).unwrap_or(0);
                let wait_full = u64::try_from(wait_full).unwrap_or(0);
                if granted < want {
                    // The global budget is (nearly) drained: do not ask again before a
                    // whole chunk fits (at most one refill interval, at least one cell),
                    // and deny locally until then once the credit is spent.
                    let cap = duration_to_nanos(self.refill_interval).max(wait_one);
                    let wait = wait_full.clamp(wait_one.max(1), cap);
                    self.empty_until
                        .store(now.saturating_add(wait), Ordering::Relaxed);
                } else {
                    self.empty_until.store(0, Ordering::Relaxed);
                }
                if granted > 0 {
                    self.expires_at
                        .store(now.saturating_add(self.lease_ttl), Ordering::Release);
                    self.credit.fetch_add(granted, Ordering::AcqRel);
                    add(&self.stats.lease_granted, granted);
                    inc(&self.stats.redis_allowed);
                } else {
                    inc(&self.stats.redis_denied);
                }
            }
            Err(_) => self.last_failed.store(true, Ordering::Relaxed),
        }
    }
}
