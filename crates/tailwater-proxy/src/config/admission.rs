//! What a route admits besides its limit algorithm (`super::limit`): the wait queue,
//! criticality tiers, the tier ceiling and rate limits, as the `[route.queue]`,
//! `[route.tiers]`, `[route.criticality]` and `[[route.rate_limit]]` tables spell them.

use std::time::Duration;

use serde::Deserialize;
use tailwater_core::names::{QueueName, UnknownName};

use tailwater_core::Criticality;
use tailwater_tower::admission::SourceNet;

use super::{RlsFailurePolicy, duration};

/// Deserialises a name through its one [`FromStr`](std::str::FromStr) in tailwater-core, so
/// that an unknown name is reported with the valid ones at its line.
pub(super) fn de_name<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = UnknownName>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// The bounded wait queue of a route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Ordering discipline, by its one name (tailwater-core's [`QueueName`]: `none`, `fifo`,
    /// `lifo`, `adaptive-lifo`, `codel`).
    #[serde(deserialize_with = "de_name")]
    pub discipline: QueueName,
    /// Most waiters.
    pub capacity: usize,
    /// Longest wait.
    #[serde(deserialize_with = "duration::de")]
    pub max_wait: Duration,
    /// CoDel target (M).
    #[serde(deserialize_with = "duration::de")]
    pub target: Duration,
    /// CoDel interval (N).
    #[serde(deserialize_with = "duration::de")]
    pub interval: Duration,
    /// Adaptive LIFO: standing-queue threshold.
    #[serde(deserialize_with = "duration::de")]
    pub standing_after: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            discipline: QueueName::Codel,
            capacity: 128,
            max_wait: Duration::from_millis(100),
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            standing_after: Duration::from_millis(100),
        }
    }
}

/// Utilisation thresholds per criticality tier, in `(0, 1]`, non-increasing: the capacity
/// each tier keeps when more important tiers contend for the rest. Without contention a
/// tier may use the whole limit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSettings {
    /// `critical_plus` threshold.
    pub critical_plus: f64,
    /// `critical` threshold.
    pub critical: f64,
    /// `sheddable_plus` threshold.
    pub sheddable_plus: f64,
    /// `sheddable` threshold.
    pub sheddable: f64,
    /// How fast the capacity held free for more important tiers after they were refused is
    /// given back (one slot per window; see tailwater-core's `TierThresholds`).
    #[serde(deserialize_with = "duration::de")]
    pub contention_window: Duration,
}

impl Default for TierSettings {
    /// tailwater-core's defaults: 100/80/50/20 %, reserved only under contention.
    fn default() -> Self {
        let core = tailwater_core::TierThresholds::default();
        Self {
            critical_plus: 1.0,
            critical: 0.8,
            sheddable_plus: 0.5,
            sheddable: 0.2,
            contention_window: core.contention_window(),
        }
    }
}

/// `[route.criticality]`: the highest tier a request of the route may claim with
/// `x-criticality`, and the clients trusted to claim above it (tailwater-tower's
/// [`TierPolicy`](tailwater_tower::admission::TierPolicy), as its `CriticalityLayer`
/// applies it).
///
/// ```toml
/// [route.criticality]
/// ceiling = "critical"                             # nobody else gets critical_plus
/// trusted_sources = ["10.0.0.0/8", "127.0.0.1"]    # by the connection's peer address
/// ```
///
/// Every request from an untrusted client is lowered to the ceiling, including one that
/// claims nothing (which is `critical`): with `ceiling = "sheddable"`, all of them are
/// sheddable. Without this table every claim stands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalityConfig {
    /// The highest tier (`critical_plus`, `critical`, `sheddable_plus`, `sheddable`).
    #[serde(deserialize_with = "de_tier")]
    pub ceiling: Criticality,
    /// Client addresses or networks (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`) whose
    /// requests keep the tier they claim. Needs a ceiling below `critical_plus`.
    #[serde(default, deserialize_with = "de_sources")]
    pub trusted_sources: Vec<SourceNet>,
}

fn de_tier<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<tailwater_core::Criticality, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn de_sources<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SourceNet>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// One bucket for the whole route.
    Global,
    /// One bucket per client IP address.
    ClientIp,
    /// One bucket per value of this request header (requests without it share one).
    Header(http::HeaderName),
}

impl<'de> Deserialize<'de> for RateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "global" => Ok(RateKey::Global),
            "client_ip" => Ok(RateKey::ClientIp),
            other => match other.strip_prefix("header:") {
                Some(name) => http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map(RateKey::Header)
                    .map_err(|_| serde::de::Error::custom(format!("invalid header name `{name}`"))),
                None => Err(serde::de::Error::custom(format!(
                    "unknown key `{other}` (expected global, client_ip or header:<name>)"
                ))),
            },
        }
    }
}

/// A GCRA rate limit (429 + `Retry-After` + `RateLimit` headers when exceeded), its state
/// in this process or in Redis (`store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Name in the `RateLimit-Policy` header and in metrics.
    #[serde(default = "default_rate_name")]
    pub name: String,
    /// Requests per period.
    pub rate: u32,
    /// The period.
    #[serde(default = "one_second", deserialize_with = "duration::de")]
    pub period: Duration,
    /// Requests allowed at once (default: `rate`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// What the limit counts by.
    #[serde(default = "global_key")]
    pub key: RateKey,
    /// Where the limit's state lives: `local` (default), `redis` or `redis-leased` (see
    /// [`RateStoreKind`]).
    #[serde(default)]
    pub store: RateStoreKind,
    /// `redis://host:port/db` of the Redis holding the state (`redis` and `redis-leased`
    /// only, and required there).
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The prefix of the limit's Redis keys (`redis*` only; default `tw`, as
    /// tailwater-redis). Proxies share a limit when they use one Redis, one prefix, and
    /// the same route name, limit name and key.
    #[serde(default)]
    pub redis_prefix: Option<String>,
    /// The longest one decision waits for Redis before `on_store_error` answers (`redis*`
    /// only; default 5 ms, as tailwater-redis).
    #[serde(default, deserialize_with = "duration::de_opt")]
    pub call_timeout: Option<Duration>,
    /// What a request gets when the store cannot decide (`redis*` only): `open` (admitted,
    /// the default: a rate limit should not take the service down with its backend) or
    /// `closed` (`503` + `Retry-After: 1`, gRPC `UNAVAILABLE`).
    #[serde(default)]
    pub on_store_error: Option<RlsFailurePolicy>,
}

/// Where a rate limit's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateStoreKind {
    /// In this process (each proxy, each cell its own budget): exact, no I/O.
    #[default]
    Local,
    /// In Redis, one atomic script per request (tailwater-redis's `RedisRateStore`):
    /// exact across every proxy sharing the Redis, one round trip per decision.
    Redis,
    /// Credit leased from Redis in chunks (tailwater-redis's `LeasedLimiter`): for high
    /// rates; never beyond the limit over a run, at most a few chunks per window beyond it
    /// (one lease per proxy worker). `key = "global"` only: one lease is one bucket.
    RedisLeased,
}

fn default_rate_name() -> String {
    "default".to_owned()
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn global_key() -> RateKey {
    RateKey::Global
}
