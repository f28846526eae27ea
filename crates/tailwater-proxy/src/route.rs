//! The route table: matching by host and path prefix, and each route's admission state
//! (limiter, rate limits) built from [`RouteConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use tailwater_core::algorithm::{Aimd, Fixed, Gradient2, LimitAlgorithm, Vegas};
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_core::rate::{DirectLimiter, KeyedLimiter, Quota, RateDecision};
use tailwater_core::{Limiter, TierThresholds};
use tailwater_tower::edge::RateLimitPolicies;

use crate::config::{
    Algorithm, Config, ConfigError, Discipline, LimitConfig, QueueSettings, RateKey,
    RateLimitConfig, RouteConfig, UpstreamConfig, UpstreamProtocol,
};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::H1Pool;

/// All routes, most specific first (routes with a host, then longer prefixes).
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Arc<Route>>,
}

/// One route's matching rule, destination and admission state.
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) host: Option<String>,
    pub(crate) prefix: String,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) preserve_host: bool,
    pub(crate) limiter: Limiter,
    /// Longest wait in the queue; `None` when the route has no queue.
    pub(crate) queue_wait: Option<Duration>,
    pub(crate) rate_limits: Vec<RateLimit>,
    pub(crate) retry_after: Duration,
    /// Counters of this route (shared with every route of the same name across reloads).
    pub(crate) metrics: Arc<RouteMetrics>,
    /// Idle HTTP/1.1 connections to `authority` (shared by routes with the same upstream).
    pub(crate) h1_pool: Arc<H1Pool>,
    /// The admission part of the configuration, to keep the limiter across reloads when
    /// it did not change.
    admission_key: String,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("prefix", &self.prefix)
            .field("authority", &self.authority)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// A local rate limit of a route.
#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) name: String,
    /// The draft-10 `RateLimit-Policy` / `RateLimit` rendering (tailwater-tower's edge).
    pub(crate) policies: RateLimitPolicies,
    pub(crate) store: RateStore,
}

#[derive(Debug)]
pub(crate) enum RateStore {
    Global(DirectLimiter),
    Keyed(KeyedLimiter<String>, RateKey),
}

impl RateLimit {
    /// Checks one request; `client_ip` and `header` give the key for keyed limits.
    pub(crate) fn check<'h>(
        &self,
        client_ip: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> RateDecision {
        match &self.store {
            RateStore::Global(l) => l.check(),
            RateStore::Keyed(l, RateKey::Header(name)) => {
                l.check(header(name.as_str()).unwrap_or(""))
            }
            RateStore::Keyed(l, _) => l.check(client_ip),
        }
    }
}

impl RouteTable {
    /// Builds every route's limiter and rate limits, validating the configuration.
    pub(crate) fn build(config: &Config) -> Result<Self, ConfigError> {
        Self::build_reusing(config, None, None, 1)
    }

    /// As [`build`](Self::build), but keeps the limiter of a route of the same name whose
    /// admission settings did not change, so a reload neither resets learned limits nor
    /// lets in-flight requests of the old limiter go uncounted. Upstream connection pools
    /// get one shard per worker (`workers`).
    pub(crate) fn build_reusing(
        config: &Config,
        old: Option<&RouteTable>,
        metrics: Option<&Metrics>,
        workers: usize,
    ) -> Result<Self, ConfigError> {
        crate::config::bounds::check(config)?;
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut pools: Vec<Arc<H1Pool>> = Vec::new();
        for (i, rc) in config.routes.iter().enumerate() {
            let prefix = format!("route[{i}]");
            if config.routes[..i].iter().any(|o| o.name == rc.name) {
                return Err(ConfigError::new(
                    format!("{prefix}.name"),
                    format!("duplicate route name `{}`", rc.name),
                ));
            }
            let reuse = old.and_then(|t| {
                t.routes
                    .iter()
                    .find(|r| r.name == rc.name && r.admission_key == admission_key(rc))
            });
            let mut route = build_route(
                &prefix,
                rc,
                reuse.map(|r| &r.limiter),
                &config.upstream,
                &mut pools,
                workers,
            )?;
            if let Some(m) = metrics {
                route.metrics = m.route(&rc.name);
            }
            routes.push(Arc::new(route));
        }
        crate::config::bounds::check_overlaps(config)?;
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Ok(Self { routes })
    }

    /// The most specific route for `host` (without port, lowercase) and `path`.
    pub(crate) fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            path.starts_with(r.prefix.as_str())
                && match (&r.host, host) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                    (Some(_), None) => false,
                }
        })
    }

    /// Every route, most specific first.
    pub(crate) fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

fn admission_key(rc: &RouteConfig) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}",
        rc.limit, rc.queue, rc.tiers, rc.retry_after
    )
}

fn build_route(
    prefix: &str,
    rc: &RouteConfig,
    reuse: Option<&Limiter>,
    upstream: &UpstreamConfig,
    pools: &mut Vec<Arc<H1Pool>>,
    workers: usize,
) -> Result<Route, ConfigError> {
    if rc.name.is_empty() {
        return Err(ConfigError::new(
            format!("{prefix}.name"),
            "must not be empty",
        ));
    }
    if !rc.path_prefix.starts_with('/') {
        return Err(ConfigError::new(
            format!("{prefix}.path_prefix"),
            format!("must start with `/`, got `{}`", rc.path_prefix),
        ));
    }
    let (Some(scheme), Some(authority)) = (rc.upstream.scheme(), rc.upstream.authority()) else {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            "must be http://host:port",
        ));
    };
    if scheme.as_str() != "http" {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            format!(
                "scheme `{scheme}` is not supported: use http:// (TLS upstreams are not supported)"
            ),
        ));
    }
    if rc.upstream.path() != "/" && !rc.upstream.path().is_empty() {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            "must not have a path: the request's path is forwarded as is",
        ));
    }
    let limiter = match reuse {
        Some(l) => l.clone(),
        None => build_limiter(prefix, rc)?,
    };
    let mut rate_limits = Vec::with_capacity(rc.rate_limit.len());
    for (j, rl) in rc.rate_limit.iter().enumerate() {
        rate_limits.push(build_rate(&format!("{prefix}.rate_limit[{j}]"), rl)?);
    }
    if rc.retry_after.is_zero() {
        return Err(ConfigError::new(
            format!("{prefix}.retry_after"),
            "must be greater than zero",
        ));
    }
    let h1_pool = match pools.iter().find(|p| p.authority() == authority) {
        Some(p) => Arc::clone(p),
        None => {
            let p = Arc::new(H1Pool::new(authority.clone(), upstream, workers));
            pools.push(Arc::clone(&p));
            p
        }
    };
    Ok(Route {
        name: rc.name.clone(),
        host: rc.host.as_ref().map(|h| h.to_ascii_lowercase()),
        prefix: rc.path_prefix.clone(),
        scheme: scheme.clone(),
        authority: authority.clone(),
        protocol: rc.protocol,
        preserve_host: rc.preserve_host,
        limiter,
        queue_wait: rc
            .queue
            .as_ref()
            .filter(|q| q.discipline != Discipline::None)
            .map(|q| q.max_wait),
        rate_limits,
        retry_after: rc.retry_after,
        metrics: Arc::default(),
        h1_pool,
        admission_key: admission_key(rc),
    })
}

fn build_limiter(prefix: &str, rc: &RouteConfig) -> Result<Limiter, ConfigError> {
    let lp = format!("{prefix}.limit");
    let algorithm = build_algorithm(&lp, &rc.limit)?;
    let mut b = Limiter::builder()
        .boxed_algorithm(algorithm)
        .retry_after(rc.retry_after);
    if let Some(t) = &rc.tiers {
        let tiers =
            TierThresholds::new([t.critical_plus, t.critical, t.sheddable_plus, t.sheddable])
                .map_err(|e| ConfigError::core(&format!("{prefix}.tiers"), &e))?;
        b = b.tiers(tiers);
    }
    if let Some(q) = rc
        .queue
        .as_ref()
        .filter(|q| q.discipline != Discipline::None)
    {
        b = b.queue(build_queue(&format!("{prefix}.queue"), q)?);
    }
    b.build().map_err(|e| ConfigError::core(prefix, &e))
}

fn build_queue(qp: &str, q: &QueueSettings) -> Result<QueueConfig, ConfigError> {
    let discipline = match q.discipline {
        Discipline::None => unreachable!("filtered out by the caller"),
        Discipline::Fifo => QueueDiscipline::Fifo,
        Discipline::Lifo => QueueDiscipline::Lifo,
        Discipline::AdaptiveLifo => QueueDiscipline::AdaptiveLifo {
            standing_after: q.standing_after,
        },
        Discipline::Codel => QueueDiscipline::CoDel {
            target: q.target,
            interval: q.interval,
        },
    };
    QueueConfig::new(q.capacity, discipline, q.max_wait).map_err(|e| ConfigError::core(qp, &e))
}

fn build_algorithm(lp: &str, l: &LimitConfig) -> Result<Box<dyn LimitAlgorithm>, ConfigError> {
    let unused = |field: &str, set: bool| -> Result<(), ConfigError> {
        if set {
            Err(ConfigError::new(
                format!("{lp}.{field}"),
                format!(
                    "is not a parameter of algorithm `{}`",
                    algorithm_name(l.algorithm)
                ),
            ))
        } else {
            Ok(())
        }
    };
    let core = |e: tailwater_core::ConfigError| ConfigError::core(lp, &e);
    match l.algorithm {
        Algorithm::Fixed => {
            unused("backoff_ratio", l.backoff_ratio.is_some())?;
            unused("smoothing", l.smoothing.is_some())?;
            let Some(limit) = l.limit.or(l.initial_limit) else {
                return Err(ConfigError::new(
                    format!("{lp}.limit"),
                    "is required for algorithm `fixed`",
                ));
            };
            Ok(Box::new(Fixed::new(limit).map_err(core)?))
        }
        Algorithm::Aimd => {
            unused("limit", l.limit.is_some())?;
            unused("smoothing", l.smoothing.is_some())?;
            let mut b = Aimd::builder();
            if let Some(v) = l.min_limit {
                b = b.min_limit(v);
            }
            if let Some(v) = l.max_limit {
                b = b.max_limit(v);
            }
            // Keep the initial limit inside [min, max] when only one bound was given.
            let initial = l.initial_limit.unwrap_or_else(|| {
                20usize.clamp(
                    l.min_limit.unwrap_or(20).min(l.max_limit.unwrap_or(200)),
                    l.max_limit.unwrap_or(200),
                )
            });
            b = b.initial_limit(initial);
            if let Some(v) = l.backoff_ratio {
                b = b.backoff_ratio(v);
            }
            if let Some(v) = l.timeout {
                b = b.timeout(v);
            }
            Ok(Box::new(b.build().map_err(core)?))
        }
        Algorithm::Vegas => {
            unused("limit", l.limit.is_some())?;
            unused("backoff_ratio", l.backoff_ratio.is_some())?;
            unused("timeout", l.timeout.is_some())?;
            let mut b = Vegas::builder();
            if let Some(v) = l.initial_limit {
                b = b.initial_limit(v);
            }
            if let Some(v) = l.min_limit {
                b = b.min_limit(v);
            }
            if let Some(v) = l.max_limit {
                b = b.max_limit(v);
            }
            if let Some(v) = l.smoothing {
                b = b.smoothing(v);
            }
            Ok(Box::new(b.build().map_err(core)?))
        }
        Algorithm::Gradient2 => {
            unused("limit", l.limit.is_some())?;
            // The corrected variant (see tailwater-core's gradient2 docs).
            let mut b = Gradient2::builder().corrected();
            if let Some(v) = l.initial_limit {
                b = b.initial_limit(v);
            }
            if let Some(v) = l.min_limit {
                b = b.min_limit(v);
            }
            if let Some(v) = l.max_limit {
                b = b.max_limit(v);
            }
            if let Some(v) = l.smoothing {
                b = b.smoothing(v);
            }
            if let Some(v) = l.backoff_ratio {
                b = b.backoff_ratio(v);
            }
            if let Some(v) = l.timeout {
                b = b.timeout(v);
            }
            Ok(Box::new(b.build().map_err(core)?))
        }
    }
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Fixed => "fixed",
        Algorithm::Aimd => "aimd",
        Algorithm::Vegas => "vegas",
        Algorithm::Gradient2 => "gradient2",
    }
}

fn build_rate(rp: &str, rl: &RateLimitConfig) -> Result<RateLimit, ConfigError> {
    let core = |e: tailwater_core::ConfigError| ConfigError::core(rp, &e);
    let quota = Quota::new(rl.rate, rl.period, rl.burst.unwrap_or(rl.rate)).map_err(core)?;
    let store = match &rl.key {
        RateKey::Global => RateStore::Global(DirectLimiter::new(quota)),
        key => RateStore::Keyed(
            KeyedLimiter::builder(quota).build().map_err(core)?,
            key.clone(),
        ),
    };
    let policies = RateLimitPolicies::new([(rl.name.as_str(), quota)])
        .map_err(|_| ConfigError::new(format!("{rp}.name"), "must be printable ASCII"))?;
    Ok(RateLimit {
        name: rl.name.clone(),
        policies,
        store,
    })
}

/// The upstream URI for a request path.
pub(crate) fn upstream_uri(
    route: &Route,
    path_and_query: PathAndQuery,
) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(route.scheme.clone());
    parts.authority = Some(route.authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts)
}
