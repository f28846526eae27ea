//! A route's limiter, built from `[route.limit]`, `[route.queue]` and `[route.tiers]`.

use tailwater_core::algorithm::LimitAlgorithm;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_core::{Limiter, TierThresholds};

use tailwater_core::Criticality;
use tailwater_tower::admission::TierPolicy;

use std::time::Duration;

use crate::config::{ConfigError, LimitConfig, QueueSettings, RouteConfig, TierSettings};

/// What a route's limiter is built from (`[route.limit]`, `[route.queue]`,
/// `[route.tiers]`, `retry_after`): a route of the same name whose settings compare equal
/// keeps its limiter across a reload, with its learned limit and the permits in flight.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LimiterSettings {
    limit: LimitConfig,
    queue: Option<QueueSettings>,
    tiers: Option<TierSettings>,
    retry_after: Duration,
}

impl LimiterSettings {
    /// The limiter settings of route `rc`.
    pub(super) fn of(rc: &RouteConfig) -> Self {
        Self {
            limit: rc.limit,
            queue: rc.queue.clone(),
            tiers: rc.tiers,
            retry_after: rc.retry_after,
        }
    }
}

/// The route's limiter: its algorithm, tiers and queue (errors under `prefix`).
pub(super) fn build_limiter(prefix: &str, rc: &RouteConfig) -> Result<Limiter, ConfigError> {
    let lp = format!("{prefix}.limit");
    let algorithm = build_algorithm(&lp, &rc.limit)?;
    let mut b = Limiter::builder()
        .boxed_algorithm(algorithm)
        .retry_after(rc.retry_after);
    if let Some(t) = &rc.tiers {
        let tiers =
            TierThresholds::new([t.critical_plus, t.critical, t.sheddable_plus, t.sheddable])
                .and_then(|tiers| tiers.with_contention_window(t.contention_window))
                .map_err(|e| ConfigError::core(&format!("{prefix}.tiers"), &e))?;
        b = b.tiers(tiers);
    }
    if let Some(q) = &rc.queue
        && let Some(queue) = build_queue(&format!("{prefix}.queue"), q)?
    {
        b = b.queue(queue);
    }
    b.build().map_err(|e| ConfigError::core(prefix, &e))
}

/// The route's queue with its settings, or `None` for `discipline = "none"`.
fn build_queue(qp: &str, q: &QueueSettings) -> Result<Option<QueueConfig>, ConfigError> {
    let discipline = match q.discipline.discipline() {
        None => return Ok(None),
        Some(QueueDiscipline::AdaptiveLifo { .. }) => QueueDiscipline::AdaptiveLifo {
            standing_after: q.standing_after,
        },
        Some(QueueDiscipline::CoDel { .. }) => QueueDiscipline::CoDel {
            target: q.target,
            interval: q.interval,
        },
        Some(other) => other,
    };
    QueueConfig::new(q.capacity, discipline, q.max_wait)
        .map(Some)
        .map_err(|e| ConfigError::core(qp, &e))
}

/// The route's algorithm, built by tailwater-core's one constructor for named algorithms;
/// its errors are placed under `route[i].limit`.
fn build_algorithm(lp: &str, l: &LimitConfig) -> Result<Box<dyn LimitAlgorithm>, ConfigError> {
    l.build().map_err(|e| ConfigError::core(lp, &e))
}

/// The route's tier policy from `[route.criticality]` (none: every claim stands). Trusted
/// sources without a ceiling below `critical_plus` would change nothing: an error.
pub(super) fn build_tier_policy(prefix: &str, rc: &RouteConfig) -> Result<TierPolicy, ConfigError> {
    let Some(c) = &rc.criticality else {
        return Ok(TierPolicy::new());
    };
    if c.ceiling == Criticality::CriticalPlus && !c.trusted_sources.is_empty() {
        return Err(ConfigError::new(
            format!("{prefix}.criticality.trusted_sources"),
            "has no effect with `ceiling = \"critical_plus\"` (every claim stands): lower the ceiling or remove it",
        ));
    }
    Ok(TierPolicy::new()
        .ceiling(c.ceiling)
        .trust(c.trusted_sources.iter().copied()))
}
