//! The atomic path: one Lua script per decision, all quotas of a key at once.

use std::sync::Arc;

use tailwater_core::ConfigError;

use tailwater_core::rate::{MultiQuota, Quota, RateDecision, RateStore, StoreError, gcra};

use crate::call::{self, Gate};
use crate::conn::RedisConnection;
use crate::error::{BackendError, RedisStoreError};
use crate::group::{self, Group};
use crate::key::KeyLayout;
use crate::policy::{FailurePolicy, LocalFallback, open_decision};
use crate::script;
use crate::stats::{Counters, RedisStats, inc};

/// The core's store seam: the same limiter code runs on memory or on Redis.
///
/// Applies the failure policy like [`RedisRateStore::check_detailed`]; `FailClosed`
/// becomes [`StoreError::Timeout`] or [`StoreError::Unavailable`], invalid quotas
/// [`StoreError::InvalidRequest`].
impl RateStore for RedisRateStore {
    async fn check(&self, key: &str, quotas: &[Quota], n: u32) -> Result<RateDecision, StoreError> {
        self.check_detailed(key, quotas, n)
            .await
            .map(|c| c.decision)
            .map_err(StoreError::from)
    }
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionSource {
    /// Redis answered (the global, exact decision).
    Redis,
    /// Redis did not answer; [`FailurePolicy::FailOpen`] admitted the request.
    FailOpen,
    /// Redis did not answer; the local `limit / N` limiter of [`FailurePolicy::Degrade`]
    /// decided.
    Degraded,
    /// Leased path: answered from this instance's leased credit, or denied locally because
    /// Redis reported the global budget empty.
    Local,
}

/// A decision and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The decision (the RateLimit headers come from it).
    pub decision: RateDecision,
    /// Who made it.
    pub source: DecisionSource,
}

/// What the GCRA script did, before any failure policy: for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// The decision, computed by [`gcra::step_all`] from exactly the inputs the script used.
    pub decision: RateDecision,
    /// Whether the script admitted (and wrote); always equal to `decision.allowed` unless
    /// the script and the Rust GCRA disagree (counted in `RedisStats::mismatches`).
    pub script_allowed: bool,
    /// The script's `now`, nanoseconds since the Unix epoch (Redis `TIME` unless given).
    pub now_nanos: u64,
    /// Each quota's stored TAT before the step (0 for a missing key).
    pub stored_before: Vec<u64>,
}

/// A global rate-limit store on Redis: GCRA as one atomic Lua script per decision.
///
/// - **Atomic and exact**: all quotas of the key are read, checked and (only if every one
///   admits) charged inside one script; concurrent instances can never over-admit.
/// - **Denied hits are not counted** (unlike envoyproxy/ratelimit, its #185).
/// - **Clock skew does not matter**: `now` is Redis `TIME`.
/// - **Idle keys expire** (`PEXPIRE` until the TAT).
/// - **Redis down**: each call gives up after the per-call timeout (default 5 ms) and the
///   [`FailurePolicy`] answers; after a failure Redis is skipped for the back-off
///   (default 50 ms) and the connection reconnects by itself. A timed-out call may still
///   have been applied by Redis (the hit is then counted once without being admitted).
/// - The decision is computed in Rust by [`gcra::step_all`] from the stored state the
///   script read and the `now` it used, so the numbers (`remaining`, `reset_after`,
///   `retry_after`) are the core's by construction; the script's own admit/deny, which is
///   what it wrote, is property-tested to agree.
///
/// Quotas must have `burst · T <= 2^55` ns (about 417 days; see
/// [`MAX_REDIS_TOLERANCE_NANOS`](crate::MAX_REDIS_TOLERANCE_NANOS)): a `year` fits. Above
/// 2^52 ns the emission interval is rounded up to a multiple of 8 ns
/// ([`redis_quota`](crate::redis_quota)), and the decision is computed for that quota.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tailwater_core::rate::Quota;
/// use tailwater_redis::{ConnectionOptions, FailurePolicy, RedisConnection, RedisRateStore};
///
/// let conn = RedisConnection::open("redis://127.0.0.1:6379/", ConnectionOptions::default())?;
/// let store = RedisRateStore::builder(conn).policy(FailurePolicy::FailOpen).build()?;
/// let quotas = [Quota::per_second(100)?, Quota::per_day(1_000_000)?];
/// let checked = store.check_detailed("user:42", &quotas, 1).await?;
/// if !checked.decision.allowed {
///     println!("429, retry after {:?}", checked.decision.retry_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRateStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
pub(crate) struct StoreInner {
    pub(crate) conn: RedisConnection,
    pub(crate) layout: KeyLayout,
    pub(crate) policy: FailurePolicy,
    pub(crate) fallback: Option<LocalFallback>,
    pub(crate) gate: Gate,
    pub(crate) stats: Counters,
    /// Group commit of [`RedisRateStore::check_batch`] (single node only).
    pub(crate) group_commit: bool,
    pub(crate) group: Group,
}

impl group::Backend for StoreInner {
    fn conn(&self) -> &RedisConnection {
        &self.conn
    }
    fn gate(&self) -> &Gate {
        &self.gate
    }
    fn stats(&self) -> &Counters {
        &self.stats
    }
}

/// Builds a [`RedisRateStore`].
#[derive(Debug)]
pub struct RedisRateStoreBuilder {
    conn: RedisConnection,
    layout: KeyLayout,
    policy: FailurePolicy,
    group_commit: bool,
}

impl RedisRateStoreBuilder {
    /// The key layout (default prefix `tw`).
    pub fn layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// What to answer when Redis cannot (default [`FailurePolicy::FailOpen`]).
    pub fn policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether [`RedisRateStore::check_batch`] groups the calls that arrive while a script
    /// is in flight into one script (default `true`; single-node connections only: on a
    /// cluster each call keeps its own script). Each call stays atomic and is decided as
    /// one script per call would decide it; under load one `EVALSHA` decides many calls.
    /// `false` sends one script per call (for comparison, or for a Redis that must see one
    /// command per decision).
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// The store.
    pub fn build(self) -> Result<RedisRateStore, ConfigError> {
        self.conn.options.validate()?;
        let fallback = LocalFallback::for_policy(self.policy);
        let group_commit = self.group_commit && self.conn.is_single();
        Ok(RedisRateStore {
            inner: Arc::new(StoreInner {
                conn: self.conn,
                layout: self.layout,
                policy: self.policy,
                fallback,
                gate: Gate::new(),
                stats: Counters::default(),
                group_commit,
                group: Group::default(),
            }),
        })
    }
}

impl RedisRateStore {
    /// A builder over `conn`.
    pub fn builder(conn: RedisConnection) -> RedisRateStoreBuilder {
        RedisRateStoreBuilder {
            conn,
            layout: KeyLayout::default(),
            policy: FailurePolicy::default(),
            group_commit: true,
        }
    }

    /// Checks and (if every quota admits) charges `n` cells of `key` against all `quotas`,
    /// atomically; when Redis does not answer in time the failure policy decides.
    ///
    /// Errors: [`RedisStoreError::Config`] for no quotas, more than
    /// [`MultiQuota::MAX`], or a quota too long for exact Lua arithmetic;
    /// [`RedisStoreError::Unavailable`] when Redis failed and the policy is `FailClosed`.
    pub async fn check_detailed(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
    ) -> Result<Checked, RedisStoreError> {
        match self.run(key, quotas, n, None).await {
            Ok(out) => Ok(Checked {
                decision: out.decision,
                source: DecisionSource::Redis,
            }),
            Err(Failure::Config(e)) => Err(RedisStoreError::Config(e)),
            Err(Failure::Backend(cause)) => self.fallback(key, quotas, n, cause),
        }
    }

    /// [`check_detailed`](Self::check_detailed) for a [`MultiQuota`].
    pub async fn check_multi(
        &self,
        key: &str,
        quotas: &MultiQuota,
        n: u32,
    ) -> Result<Checked, RedisStoreError> {
        self.check_detailed(key, quotas.quotas(), n).await
    }

    /// Runs the script once, with no failure policy: Redis errors come back as they are.
    pub async fn check_script(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
    ) -> Result<ScriptOutcome, RedisStoreError> {
        self.script_or_unavailable(key, quotas, n, None).await
    }

    /// Like [`check_script`](Self::check_script) but with `now` (nanoseconds since the Unix
    /// epoch) given by the caller instead of Redis `TIME`. For tests that drive the Rust
    /// GCRA with the same `now`; never use it in production (client clocks skew).
    #[doc(hidden)]
    pub async fn check_script_at(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
        now_nanos: u64,
    ) -> Result<ScriptOutcome, RedisStoreError> {
        self.script_or_unavailable(key, quotas, n, Some(now_nanos))
            .await
    }

    /// Runs the lease script once with a caller-given `now` (tests only): takes up to `want`
    /// cells (gives `-want` back when negative) and returns `(granted, wait_one, wait_full)`.
    #[doc(hidden)]
    pub async fn lease_script_at(
        &self,
        key: &str,
        quotas: &[Quota],
        want: i64,
        now_nanos: u64,
    ) -> Result<(u64, u64, u64), RedisStoreError> {
        let unavailable = |cause| RedisStoreError::Unavailable {
            cause,
            retry_after: self.inner.conn.options.retry_backoff,
        };
        let quotas = &*call::redis_quotas(quotas)?;
        let qargs = call::quota_args(quotas)?;
        let keys = self.inner.layout.quota_keys(key, quotas);
        let mut args = vec![
            want.to_string(),
            call::grain_now(now_nanos, quotas).to_string(),
        ];
        args.extend(qargs.iter().map(u64::to_string));
        let inner = &*self.inner;
        let r = call::run(
            &inner.conn,
            &inner.gate,
            &inner.stats,
            &script::LEASE,
            &keys,
            &args,
            inner.conn.options.call_timeout,
        )
        .await
        .map_err(unavailable)?;
        let num = |i: usize| -> Result<u64, RedisStoreError> {
            let v = call::int(r.get(i)).map_err(unavailable)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok((num(0)?, num(2)?, num(3)?))
    }

    pub(crate) fn inner(&self) -> &StoreInner {
        &self.inner
    }

    pub(crate) fn inner_arc(&self) -> &Arc<StoreInner> {
        &self.inner
    }

    /// The counters.
    pub fn stats(&self) -> RedisStats {
        self.inner.stats.snapshot()
    }

    /// The key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    async fn script_or_unavailable(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
        now: Option<u64>,
    ) -> Result<ScriptOutcome, RedisStoreError> {
        match self.run(key, quotas, n, now).await {
            Ok(o) => Ok(o),
            Err(Failure::Config(e)) => Err(RedisStoreError::Config(e)),
            Err(Failure::Backend(cause)) => Err(RedisStoreError::Unavailable {
                cause,
                retry_after: self.inner.conn.options.retry_backoff,
            }),
        }
    }

    fn fallback(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
        cause: BackendError,
    ) -> Result<Checked, RedisStoreError> {
        let s = &self.inner.stats;
        match self.inner.policy {
            FailurePolicy::FailOpen => {
                inc(&s.fallback_open);
                Ok(Checked {
                    decision: open_decision(quotas),
                    source: DecisionSource::FailOpen,
                })
            }
            FailurePolicy::Degrade { .. } => {
                inc(&s.fallback_degraded);
                let decision = match &self.inner.fallback {
                    Some(f) => f.check(&self.inner.layout.base(key), quotas, n),
                    None => open_decision(quotas),
                };
                Ok(Checked {
                    decision,
                    source: DecisionSource::Degraded,
                })
            }
            FailurePolicy::FailClosed => {
                inc(&s.fallback_closed);
                Err(RedisStoreError::Unavailable {
                    cause,
                    retry_after: self.inner.conn.options.retry_backoff,
                })
            }
        }
    }

    async fn run(
        &self,
        key: &str,
        quotas: &[Quota],
        n: u32,
        now: Option<u64>,
    ) -> Result<ScriptOutcome, Failure> {
        if quotas.is_empty() || quotas.len() > MultiQuota::MAX {
            return Err(Failure::Config(ConfigError::new(
                "quotas",
                format!(
                    "between 1 and {} quotas per decision, got {}",
                    MultiQuota::MAX,
                    quotas.len()
                ),
            )));
        }
        let quotas = call::redis_quotas(quotas).map_err(Failure::Config)?;
        let quotas = &*quotas;
        let qargs = call::quota_args(quotas).map_err(Failure::Config)?;
        let keys = self.inner.layout.quota_keys(key, quotas);
        let mut args = Vec::with_capacity(2 + qargs.len());
        args.push(n.to_string());
        args.push(
            now.map(|t| call::grain_now(t, quotas).to_string())
                .unwrap_or_default(),
        );
        args.extend(qargs.iter().map(u64::to_string));
        let inner = &*self.inner;
        let reply = call::run(
            &inner.conn,
            &inner.gate,
            &inner.stats,
            &script::GCRA,
            &keys,
            &args,
            inner.conn.options.call_timeout,
        )
        .await
        .map_err(Failure::Backend)?;
        let out = parse_gcra(&reply, quotas, n).map_err(Failure::Backend)?;
        if out.decision.allowed {
            inc(&inner.stats.redis_allowed);
        } else {
            inc(&inner.stats.redis_denied);
        }
        if out.script_allowed != out.decision.allowed {
            inc(&inner.stats.mismatches);
        }
        Ok(out)
    }
}

enum Failure {
    Config(ConfigError),
    Backend(BackendError),
}

fn parse_gcra(
    reply: &[redis::Value],
    quotas: &[Quota],
    n: u32,
) -> Result<ScriptOutcome, BackendError> {
    if reply.len() != quotas.len() + 2 {
        return Err(BackendError::Protocol(format!(
            "GCRA script returned {} values for {} quotas",
            reply.len(),
            quotas.len()
        )));
    }
    let script_allowed = call::int(reply.first())? == 1;
    let now_nanos = call::nanos(reply.get(1))?;
    let stored_before = reply[2..]
        .iter()
        .map(|v| call::nanos(Some(v)))
        .collect::<Result<Vec<u64>, _>>()?;
    let mut tats = stored_before.clone();
    let decision = gcra::step_all(quotas, now_nanos, &mut tats, n);
    Ok(ScriptOutcome {
        decision,
        script_allowed,
        now_nanos,
        stored_before,
    })
}
