//! The route table: matching by host and path prefix, and each route's admission state
//! (limiter, rate limits) built from [`RouteConfig`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use tailwater_core::Limiter;
use tailwater_tower::admission::Admission;

use tailwater_core::names::QueueName;

use crate::balance::{Balance, Endpoint};

pub(crate) mod cell;
mod limiter;
mod rate;
mod reach;
mod slo;
mod validate;

use crate::config::{ConfigError, RouteConfig, UpstreamConfig, UpstreamProtocol};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::H1Pool;
use limiter::{LimiterSettings, build_limiter, build_tier_policy};
pub(crate) use rate::RateLimit;
use rate::build_rate;
pub(crate) use reach::reach;
pub(crate) use validate::Validated;

/// All routes, most specific first (routes with a host, then longer prefixes).
#[derive(Debug)]
pub(crate) struct RouteTable {
    /// The routes requests are matched against.
    matching: Vec<Arc<Route>>,
    /// `[[cell]]`: the cells of routes that have some (`cell`).
    pub(crate) cells: cell::CellTable,
    /// The routes, then every cell's route: what metrics and `/status` list.
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
    /// tailwater-tower's admission, shared with its layers: the tier ceiling and the
    /// clients trusted above it (`[route.criticality]`), the body cap
    /// (`server.max_body_bytes`), the deadline header (`grpc-timeout` is always read), the
    /// limiter and the longest wait in its queue (`None` when the route has no queue).
    pub(crate) admission: Admission,
    pub(crate) rate_limits: Vec<RateLimit>,
    /// Whether a rate limit's store is in Redis (its answer is awaited).
    pub(crate) rate_limits_remote: bool,
    /// `[route.rls]`: the rate limit service asked after the local rate limits.
    pub(crate) rls: Option<crate::rls::RouteRls>,
    pub(crate) retry_after: Duration,
    /// Counters of this route (shared with every route of the same name across reloads).
    pub(crate) metrics: Arc<RouteMetrics>,
    /// Idle HTTP/1.1 connections to `authority` (shared by routes with the same upstream).
    pub(crate) h1_pool: Arc<H1Pool>,
    /// Every endpoint, the first being `authority` and `h1_pool`.
    pub(crate) endpoints: Vec<Endpoint>,
    /// The balancer, for a route with several endpoints.
    pub(crate) balance: Option<Balance>,
    /// `[route.upgrade]`: the `Upgrade` tunnels of this route (`crate::tunnel`).
    pub(crate) upgrade: Option<crate::config::upgrade::UpgradeSettings>,
    /// `https://` upstreams: the TLS client (for tunnels) and the pooling client every
    /// request of the route goes through (`crate::upstream_tls`).
    pub(crate) tls: Option<(
        crate::upstream_tls::UpstreamTls,
        crate::upstream_tls::TlsClient,
    )>,
    /// What the limiter was built from, to keep it across reloads when the new
    /// configuration's settings compare equal.
    limiter_settings: LimiterSettings,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("prefix", &self.prefix)
            .field("authority", &self.authority)
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

/// What building every route of a table shares: the upstream settings, the pools built so
/// far (one per upstream, shared by its routes) and the counters to attach.
struct Built<'a> {
    upstream: &'a UpstreamConfig,
    /// `server.max_body_bytes`: every route's body cap.
    max_body: Option<u64>,
    pools: Vec<Arc<H1Pool>>,
    workers: usize,
    metrics: Option<&'a Metrics>,
}

impl Built<'_> {
    /// Route `rc` (named `prefix` in errors), keeping the limiter of `reuse` and the
    /// balancer state of `old_balance` (the same route before a reload).
    fn route(
        &mut self,
        prefix: &str,
        rc: &RouteConfig,
        reuse: Option<&Arc<Route>>,
        old_balance: Option<&Balance>,
    ) -> Result<Arc<Route>, ConfigError> {
        let mut route = build_route(
            prefix,
            rc,
            reuse.map(|r| r.admission.limiter()),
            self.upstream,
            self.max_body,
            &mut self.pools,
            self.workers,
        )?;
        route.balance = build_balance(prefix, rc, old_balance)?;
        if let Some(m) = self.metrics {
            route.metrics = m.route(&rc.name);
        }
        Ok(Arc::new(route))
    }
}

impl RouteTable {
    /// Validates `config` and builds every route (tests: one worker, no metrics).
    #[cfg(test)]
    pub(crate) fn build(config: &crate::config::Config) -> Result<Self, ConfigError> {
        Self::build_reusing(config.validated()?, None, None, 1)
    }

    /// Builds every route of a validated configuration (its limiter, rate limits, pools and
    /// TLS clients), keeping the limiter of a route of the same name whose admission
    /// settings did not change, so a reload neither resets learned limits nor lets
    /// in-flight requests of the old limiter go uncounted. Upstream connection pools get one
    /// shard per worker (`workers`). The builders still answer errors (never a panic), but
    /// every check is [`Config::validate`](crate::config::Config::validate)'s.
    pub(crate) fn build_reusing(
        config: Validated<'_>,
        old: Option<&RouteTable>,
        metrics: Option<&Metrics>,
        workers: usize,
    ) -> Result<Self, ConfigError> {
        let config = config.config();
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut built = Built {
            upstream: &config.upstream,
            max_body: config.server.max_body_bytes,
            pools: Vec::new(),
            workers,
            metrics,
        };
        for (i, rc) in config.routes.iter().enumerate() {
            let prefix = format!("route[{i}]");
            let reuse = old.and_then(|t| {
                t.routes
                    .iter()
                    .find(|r| r.name == rc.name && r.limiter_settings == LimiterSettings::of(rc))
            });
            let old_balance = old
                .and_then(|t| t.routes.iter().find(|r| r.name == rc.name))
                .and_then(|r| r.balance.as_ref());
            routes.push(built.route(&prefix, rc, reuse, old_balance)?);
        }
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        let mut cell_routes = Vec::with_capacity(config.cells.len());
        for cell in cell::cell_routes(config)? {
            let (prefix, rc) = (format!("cell[{}]", cell.index), &cell.config);
            let reuse = old.and_then(|t| {
                t.cells
                    .routes()
                    .find(|r| r.name == rc.name && r.limiter_settings == LimiterSettings::of(rc))
            });
            cell_routes.push(built.route(&prefix, rc, reuse, None)?);
        }
        let cells = cell::CellTable::build(config, cell_routes)?;
        let listed = routes.iter().chain(cells.routes()).cloned().collect();
        let table = Self {
            matching: routes,
            cells,
            routes: listed,
        };
        slo::apply(config, &table);
        Ok(table)
    }

    /// The most specific route for `host` (without port) and `path`, the request's path
    /// normalised by `target::normalise_path` (both engines pass that, never the raw one:
    /// a prefix must not be escaped by `/%61dmin`, `/./admin` or `//admin`).
    /// Bytes, as the lean path has them (a valid host is ASCII; a path is compared
    /// byte by byte, as text would be).
    pub(crate) fn find(&self, host: Option<&[u8]>, path: &[u8]) -> Option<&Arc<Route>> {
        self.matching.iter().find(|r| {
            path.starts_with(r.prefix.as_bytes())
                && match (&r.host, host) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want.as_bytes().eq_ignore_ascii_case(got),
                    (Some(_), None) => false,
                }
        })
    }

    /// Every route, most specific first, then every cell's route (`[[cell]]`).
    pub(crate) fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

fn build_route(
    prefix: &str,
    rc: &RouteConfig,
    reuse: Option<&Limiter>,
    upstream: &UpstreamConfig,
    max_body: Option<u64>,
    pools: &mut Vec<Arc<H1Pool>>,
    workers: usize,
) -> Result<Route, ConfigError> {
    let path_prefix = path_prefix(prefix, rc)?;
    let endpoints = endpoint_authorities(prefix, rc)?
        .into_iter()
        .map(|authority| {
            let h1_pool = match pools.iter().find(|p| *p.authority() == authority) {
                Some(p) => Arc::clone(p),
                None => {
                    let p = Arc::new(H1Pool::new(authority.clone(), upstream, workers));
                    pools.push(Arc::clone(&p));
                    p
                }
            };
            Endpoint { authority, h1_pool }
        })
        .collect::<Vec<_>>();
    let Some(first) = endpoints.first() else {
        return Err(no_upstream(prefix));
    };
    let (authority, h1_pool) = (first.authority.clone(), Arc::clone(&first.h1_pool));
    let limiter = match reuse {
        Some(l) => l.clone(),
        None => build_limiter(prefix, rc)?,
    };
    let mut rate_limits = Vec::with_capacity(rc.rate_limit.len());
    for (j, rl) in rc.rate_limit.iter().enumerate() {
        rate_limits.push(build_rate(
            &format!("{prefix}.rate_limit[{j}]"),
            &rc.name,
            rl,
            workers,
        )?);
    }
    let tls = upstream_tls(prefix, rc)?.map(|tls| {
        let client = tls.client(upstream);
        (tls, client)
    });
    Ok(Route {
        name: rc.name.clone(),
        host: rc.host.as_ref().map(|h| h.to_ascii_lowercase()),
        prefix: path_prefix.into_owned(),
        scheme: if tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        },
        authority,
        protocol: rc.protocol,
        preserve_host: rc.preserve_host,
        admission: Admission::new(limiter)
            .with_wait(
                rc.queue
                    .as_ref()
                    .filter(|q| q.discipline != QueueName::None)
                    .map(|q| q.max_wait),
            )
            .with_tier_policy(build_tier_policy(prefix, rc)?)
            .with_max_body(max_body)
            .with_deadline_header(rc.deadline_header.clone()),
        rate_limits_remote: rate_limits.iter().any(RateLimit::is_remote),
        rate_limits,
        rls: match &rc.rls {
            Some(c) => Some(crate::rls::RouteRls::build(
                &format!("{prefix}.rls"),
                c,
                workers,
            )?),
            None => None,
        },
        retry_after: rc.retry_after,
        metrics: Arc::default(),
        h1_pool,
        endpoints,
        balance: None,
        upgrade: rc.upgrade.clone(),
        tls,
        limiter_settings: LimiterSettings::of(rc),
    })
}

/// The TLS settings of a route whose upstreams are `https://` (all or none of them), read
/// from `[route.tls]` (its CA files); `None` for `http://` upstreams, which must not have
/// `[route.tls]`. The pooling client is built from it only when the route is.
fn upstream_tls(
    prefix: &str,
    rc: &RouteConfig,
) -> Result<Option<crate::upstream_tls::UpstreamTls>, ConfigError> {
    let https = rc
        .upstream
        .endpoints()
        .iter()
        .filter(|u| u.scheme_str() == Some("https"))
        .count();
    if https == 0 {
        if rc.tls.is_some() {
            return Err(ConfigError::new(
                format!("{prefix}.tls"),
                "is for https:// upstreams; this route's are http://",
            ));
        }
        return Ok(None);
    }
    if https != rc.upstream.endpoints().len() {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            "mixes http:// and https:// endpoints: use one scheme per route",
        ));
    }
    if rc.protocol != UpstreamProtocol::Http1 {
        return Err(ConfigError::new(
            format!("{prefix}.protocol"),
            "https:// upstreams speak HTTP/1.1 (`protocol = \"http1\"`): h2 over TLS to upstreams is not supported",
        ));
    }
    crate::upstream_tls::UpstreamTls::build(prefix, rc.tls.as_ref()).map(Some)
}

/// The route's path prefix, normalised as request paths are (`/a%7Eb` matches `/a~b`);
/// one that cannot be (an encoded slash) never matches, an error.
fn path_prefix<'a>(prefix: &str, rc: &'a RouteConfig) -> Result<Cow<'a, str>, ConfigError> {
    if !rc.path_prefix.starts_with('/') {
        return Err(ConfigError::new(
            format!("{prefix}.path_prefix"),
            format!("must start with `/`, got `{}`", rc.path_prefix),
        ));
    }
    crate::target::normalise_path(&rc.path_prefix).map_err(|_| {
        ConfigError::new(
            format!("{prefix}.path_prefix"),
            format!(
                "`{}` cannot match a request: no encoded slash, backslash or NUL, no `..;`",
                rc.path_prefix
            ),
        )
    })
}

/// The authorities of the route's upstream endpoints, checked.
fn endpoint_authorities(prefix: &str, rc: &RouteConfig) -> Result<Vec<Authority>, ConfigError> {
    rc.upstream
        .endpoints()
        .iter()
        .map(|uri| endpoint_authority(prefix, uri))
        .collect()
}

/// A route without an upstream.
fn no_upstream(prefix: &str) -> ConfigError {
    ConfigError::new(
        format!("{prefix}.upstream"),
        "must name at least one upstream",
    )
}

/// The authority of one upstream URI (`http://host:port`, no path).
fn endpoint_authority(prefix: &str, uri: &Uri) -> Result<Authority, ConfigError> {
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            "must be http://host:port",
        ));
    };
    if scheme.as_str() != "http" && scheme.as_str() != "https" {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            format!("scheme `{scheme}` is not supported: use http:// or https://"),
        ));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(ConfigError::new(
            format!("{prefix}.upstream"),
            "must not have a path: the request's path is forwarded as is",
        ));
    }
    Ok(authority.clone())
}

/// The balancer of a route with several endpoints (none for one), kept from the previous
/// table when its endpoints and settings did not change (its estimates, ejections and
/// counters carry over a reload).
fn build_balance(
    prefix: &str,
    rc: &RouteConfig,
    old: Option<&Balance>,
) -> Result<Option<Balance>, ConfigError> {
    let n = rc.upstream.endpoints().len();
    if n < 2 {
        return Ok(None);
    }
    let key = (rc.upstream.clone(), rc.balance.clone());
    if let Some(old) = old
        && old.key == key
    {
        return Ok(Some(Balance::new_shared(old, key)));
    }
    let origin = tokio::time::Instant::now();
    let balancer = tailwater_core::balance::Balancer::new(n, rc.balance.to_core(), Duration::ZERO)
        .map_err(|e| ConfigError::core(&format!("{prefix}.balance"), &e))?;
    Ok(Some(Balance::new(balancer, origin, key)))
}

/// The upstream URI for a request path on `authority` (one of the route's endpoints).
pub(crate) fn upstream_uri(
    route: &Route,
    authority: &Authority,
    path_and_query: PathAndQuery,
) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(route.scheme.clone());
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts)
}

#[cfg(test)]
mod tests;
