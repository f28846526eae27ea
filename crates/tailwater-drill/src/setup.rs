//! What the drill starts: the proxy's configuration for the protected side, the synthetic
//! backend's, and the load generator's schedule of one segment per phase.

use std::net::SocketAddr;
use std::time::Duration;

use tailwater_core::names::{AlgorithmName, AlgorithmParams};
use tailwater_load::backend::BackendConfig;
use tailwater_load::{Config as LoadConfig, HeaderMix, Schedule, Segment, Spacing};
use tailwater_proxy::config::{
    Config as ProxyConfig, LimitConfig, QueueSettings, RouteConfig, TierSettings,
};

use crate::DrillError;
use crate::config::{DrillConfig, INTERVAL};

/// The proxy configuration of the protected side: one catch-all route to `backend` with the
/// drill's limit algorithm, queue discipline and the default criticality tiers.
pub fn proxy_config(config: &DrillConfig, backend: SocketAddr) -> Result<ProxyConfig, DrillError> {
    // An https:// target is reached over TLS, verified with the target's CA file.
    let tls = config.target.as_ref().filter(|t| t.is_tls());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let upstream: http::Uri = format!("{scheme}://{backend}")
        .parse()
        .map_err(|_| DrillError::Internal("backend address is not a URI"))?;
    let workers = config.workers.get();
    let mut route = RouteConfig::new("drill", upstream);
    // The upstream is the resolved address: SNI and verification keep the URL's host name.
    route.tls = tls.map(|t| tailwater_proxy::upstream_tls::UpstreamTlsSettings {
        ca: t.ca_file.clone(),
        server_name: t
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('[')),
        ..Default::default()
    });
    // Bounds around the backend's concurrency for the algorithms that take them; AIMD has
    // no latency model of its own: an RTT of 3 service times counts as a drop.
    let name = config.algorithm;
    let takes = |param: &str| name.parameters().contains(&param);
    // An external target's concurrency is unknown: its algorithm runs with its own defaults.
    let params = if config.target.is_some() {
        AlgorithmParams::default()
    } else {
        AlgorithmParams {
            limit: takes("limit").then_some(workers),
            initial_limit: takes("initial_limit").then_some(workers * 2),
            min_limit: takes("min_limit").then_some(1),
            max_limit: takes("max_limit").then_some((workers * 8).max(8)),
            timeout: (name == AlgorithmName::Aimd).then_some(config.service_time * 3),
            ..AlgorithmParams::default()
        }
    };
    route.limit = LimitConfig::new(name, &params).map_err(|e| {
        tailwater_proxy::ConfigError::new(format!("route[0].limit.{}", e.field()), e.reason())
    })?;
    route.queue = Some(QueueSettings {
        discipline: config.queue,
        capacity: if config.target.is_some() {
            QueueSettings::default().capacity
        } else {
            (workers * 8).max(16)
        },
        ..QueueSettings::default()
    });
    let [critical_plus, critical, sheddable_plus, sheddable] = config.tiers;
    route.tiers = Some(TierSettings {
        critical_plus,
        critical,
        sheddable_plus,
        sheddable,
        ..TierSettings::default()
    });
    let mut proxy = ProxyConfig::simple(
        "http://127.0.0.1:1"
            .parse()
            .map_err(|_| DrillError::Internal("placeholder upstream is not a URI"))?,
    );
    proxy.routes = vec![route];
    proxy.upstream.request_timeout = config.timeout;
    proxy.upstream.connect_timeout = config.timeout;
    proxy.server.drain_timeout = Duration::from_millis(500);
    proxy.validate()?;
    Ok(proxy)
}

/// The backend configuration of both sides.
pub fn backend_config(config: &DrillConfig) -> BackendConfig {
    let mut b = BackendConfig::new(config.workers, config.service_time);
    b.distribution = config.service_dist;
    b.queue = config.backend_queue;
    b.seed = config.seed;
    b
}

pub(crate) fn load_config(config: &DrillConfig, url: &str) -> Result<LoadConfig, DrillError> {
    let capacity = config.capacity();
    let segments = config
        .multipliers
        .iter()
        .map(|m| Segment::Constant {
            rate: m * capacity,
            duration: config.phase,
        })
        .collect();
    let schedule = Schedule::new(segments)?;
    let mut load = LoadConfig::new(url, schedule)?;
    load.spacing = if config.poisson {
        Spacing::Poisson
    } else {
        Spacing::Uniform
    };
    load.seed = config.seed;
    load.timeout = config.timeout;
    load.connections = config.connections;
    load.interval = INTERVAL;
    // Everything outstanding at once fits: at most one timeout's worth of the peak rate.
    let peak = config.multipliers.iter().copied().fold(0.0, f64::max) * capacity;
    let needed = (peak * config.timeout.as_secs_f64() * 2.0) as usize + config.connections.get();
    if let Some(n) = std::num::NonZeroUsize::new(needed.max(tailwater_load::DEFAULT_MAX_IN_FLIGHT))
    {
        load.max_in_flight = n;
    }
    let pairs: Vec<(&str, f64)> = config.mix.iter().map(|(t, w)| (t.as_str(), *w)).collect();
    load.header_mix = Some(HeaderMix::new(tailwater_proxy::CRITICALITY_HEADER, &pairs)?);
    Ok(load)
}
