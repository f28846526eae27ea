//! A route's rate limits (`[[route.rate_limit]]`), on any store: in this process (one
//! bucket, or one per key), in Redis (tailwater-redis's atomic `RedisRateStore`), or
//! credit leased from Redis (its `LeasedLimiter`, one global bucket). Every answer is
//! judged by tailwater-tower's [`rate_verdict`](tailwater_tower::admission::rate_verdict)
//! under the limit's failure policy, as its `RateLimitLayer` judges its store.
//!
//! A Redis connection is driven by the runtime that opened it, and each proxy worker has
//! its own runtime; validation builds routes outside any runtime. So each worker opens its
//! own store on its first request that needs it (as each has its own upstream and RLS
//! connections); nothing connects before.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tailwater_core::rate::{
    DirectLimiter, KeyedLimiter, Quota, RateDecision, RateStore as _, StoreError,
};
use tailwater_redis::{
    ConnectionOptions, FailurePolicy, KeyLayout, LeasedLimiter, RedisConnection, RedisRateStore,
};
use tailwater_tower::admission::{OnStoreError, RequestView};
use tailwater_tower::edge::RateLimitPolicies;

use crate::config::{ConfigError, RateKey, RateLimitConfig, RateStoreKind, RlsFailurePolicy};

/// A rate limit of a route.
#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) name: String,
    /// The draft-10 `RateLimit-Policy` / `RateLimit` rendering (tailwater-tower's edge).
    pub(crate) policies: Arc<RateLimitPolicies>,
    /// What a request gets when the store cannot decide.
    pub(crate) on_error: OnStoreError,
    key: RateKey,
    store: Store,
}

enum Store {
    Global(DirectLimiter),
    Keyed(KeyedLimiter<String>),
    /// Redis, one store per worker.
    Redis(Remote<RedisRateStore>),
    /// Credit leased from Redis, one lease per worker.
    Leased(Remote<LeasedLimiter>),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Global(_) => f.write_str("Global"),
            Store::Keyed(_) => f.write_str("Keyed"),
            Store::Redis(r) => f.debug_tuple("Redis").field(&r.url).finish(),
            Store::Leased(r) => f.debug_tuple("Leased").field(&r.url).finish(),
        }
    }
}

/// A Redis-backed store, opened by each worker on its first use.
struct Remote<T> {
    url: String,
    options: ConnectionOptions,
    layout: KeyLayout,
    quota: [Quota; 1],
    /// The key of a leased limit (`route:limit`).
    lease_key: String,
    /// Per worker: the store, or why it could not be opened (answered as a store error).
    workers: Box<[OnceLock<Result<T, String>>]>,
}

impl<T> Remote<T> {
    fn get(
        &self,
        worker: usize,
        open: impl FnOnce(&Self) -> Result<T, String>,
    ) -> Result<&T, StoreError> {
        let cell = &self.workers[worker % self.workers.len()];
        cell.get_or_init(|| open(self))
            .as_ref()
            .map_err(|e| StoreError::Unavailable(e.clone()))
    }

    fn connection(&self) -> Result<RedisConnection, String> {
        RedisConnection::open(&self.url, self.options).map_err(|e| e.to_string())
    }
}

impl RateLimit {
    /// The limit's key for a request from `client_ip`: its bucket among the route's.
    fn key<'a>(&'a self, client_ip: &'a str, req: &'a impl RequestView) -> &'a str {
        match &self.key {
            RateKey::Global => "",
            RateKey::ClientIp => client_ip,
            RateKey::Header(name) => req.header(name.as_str()).unwrap_or(""),
        }
    }

    /// Whether the store is in Redis (its answer is awaited).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.store, Store::Redis(_) | Store::Leased(_))
    }

    /// The answer of a store in this process, at once; `None` for a Redis store (ask
    /// [`check_remote`](Self::check_remote)).
    #[inline]
    pub(crate) fn check_local(
        &self,
        client_ip: &str,
        req: &impl RequestView,
    ) -> Option<Result<RateDecision, StoreError>> {
        match &self.store {
            Store::Global(l) => Some(Ok(l.check())),
            Store::Keyed(l) => Some(Ok(l.check(self.key(client_ip, req)))),
            Store::Redis(_) | Store::Leased(_) => None,
        }
    }

    /// The answer of a Redis store, from `worker`'s connection, within the per-call
    /// timeout (a store in this process answers as [`check_local`](Self::check_local)).
    pub(crate) async fn check_remote(
        &self,
        worker: usize,
        route: &str,
        client_ip: &str,
        req: &impl RequestView,
    ) -> Result<RateDecision, StoreError> {
        match &self.store {
            Store::Redis(r) => {
                let store = r.get(worker, |r| {
                    RedisRateStore::builder(r.connection()?)
                        .layout(r.layout.clone())
                        .policy(FailurePolicy::FailClosed)
                        .build()
                        .map_err(|e| e.to_string())
                })?;
                let key = format!("{route}:{}:{}", self.name, self.key(client_ip, req));
                store.check(&key, &r.quota, 1).await
            }
            Store::Leased(r) => {
                let limiter = r.get(worker, |r| {
                    LeasedLimiter::builder(r.connection()?, &r.lease_key, r.quota[0])
                        .layout(r.layout.clone())
                        .policy(FailurePolicy::FailClosed)
                        .build()
                        .map_err(|e| e.to_string())
                })?;
                limiter
                    .check(1)
                    .await
                    .map(|c| c.decision)
                    .map_err(StoreError::from)
            }
            Store::Global(_) | Store::Keyed(_) => self
                .check_local(client_ip, req)
                .unwrap_or_else(|| Err(StoreError::InvalidRequest("no store".into()))),
        }
    }
}

/// The rate limit `rl` of route `route` (errors under `rp`, e.g.
/// `route[0].rate_limit[1]`), with one Redis store per worker (`workers`) when it has one.
pub(super) fn build_rate(
    rp: &str,
    route: &str,
    rl: &RateLimitConfig,
    workers: usize,
) -> Result<RateLimit, ConfigError> {
    let core = |e: tailwater_core::ConfigError| ConfigError::core(rp, &e);
    let quota = Quota::new(rl.rate, rl.period, rl.burst.unwrap_or(rl.rate)).map_err(core)?;
    let inapplicable = |field: &str| {
        ConfigError::new(
            format!("{rp}.{field}"),
            "applies to `store = \"redis\"` or `\"redis-leased\"` only",
        )
    };
    let store = match rl.store {
        RateStoreKind::Local => {
            for (field, set) in [
                ("redis_url", rl.redis_url.is_some()),
                ("redis_prefix", rl.redis_prefix.is_some()),
                ("call_timeout", rl.call_timeout.is_some()),
                ("on_store_error", rl.on_store_error.is_some()),
            ] {
                if set {
                    return Err(inapplicable(field));
                }
            }
            match &rl.key {
                RateKey::Global => Store::Global(DirectLimiter::new(quota)),
                _ => Store::Keyed(KeyedLimiter::builder(quota).build().map_err(core)?),
            }
        }
        RateStoreKind::RedisLeased => {
            if rl.key != RateKey::Global {
                return Err(ConfigError::new(
                    format!("{rp}.key"),
                    "`store = \"redis-leased\"` leases one bucket: use `key = \"global\"`, or `store = \"redis\"` for a keyed limit",
                ));
            }
            Store::Leased(remote(rp, route, rl, quota, workers)?)
        }
        RateStoreKind::Redis => Store::Redis(remote(rp, route, rl, quota, workers)?),
    };
    let policies = RateLimitPolicies::new([(rl.name.as_str(), quota)])
        .map_err(|_| ConfigError::new(format!("{rp}.name"), "must be printable ASCII"))?;
    Ok(RateLimit {
        name: rl.name.clone(),
        policies: Arc::new(policies),
        on_error: match rl.on_store_error {
            Some(RlsFailurePolicy::Closed) => OnStoreError::FailClosed,
            Some(RlsFailurePolicy::Open) | None => OnStoreError::FailOpen,
        },
        key: rl.key.clone(),
        store,
    })
}

/// The Redis settings of a `redis*` limit, checked.
fn remote<T>(
    rp: &str,
    route: &str,
    rl: &RateLimitConfig,
    quota: Quota,
    workers: usize,
) -> Result<Remote<T>, ConfigError> {
    let Some(url) = &rl.redis_url else {
        return Err(ConfigError::new(
            format!("{rp}.redis_url"),
            "is required with a Redis store (`redis://host:port`)",
        ));
    };
    if !["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(ConfigError::new(
            format!("{rp}.redis_url"),
            format!("`{url}` is not a Redis URL (`redis://host:port/db`)"),
        ));
    }
    let layout = match &rl.redis_prefix {
        Some(p) => KeyLayout::new(p)
            .map_err(|e| ConfigError::new(format!("{rp}.redis_prefix"), e.reason()))?,
        None => KeyLayout::default(),
    };
    let mut options = ConnectionOptions::default();
    if let Some(t) = rl.call_timeout {
        if t.is_zero() || t > Duration::from_secs(10) {
            return Err(ConfigError::new(
                format!("{rp}.call_timeout"),
                "must be greater than zero and at most 10s",
            ));
        }
        // The connection's own response timeout never cuts a call short of its deadline.
        options = options
            .call_timeout(t)
            .response_timeout(t.max(Duration::from_millis(250)));
    }
    tailwater_redis::redis_quota(&quota)
        .map_err(|e| ConfigError::new(format!("{rp}.period"), e.reason()))?;
    Ok(Remote {
        url: url.clone(),
        options,
        layout,
        quota: [quota],
        lease_key: format!("{route}:{}", rl.name),
        workers: (0..workers.max(1)).map(|_| OnceLock::new()).collect(),
    })
}
