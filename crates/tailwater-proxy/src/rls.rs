//! A route's rate limit service (`[route.rls]`): one RLS call per request that has a
//! descriptor, after the local rate limits; `OVER_LIMIT` is a `429` with `Retry-After`
//! from the service's `duration_until_reset` (gRPC `RESOURCE_EXHAUSTED`), and a failed
//! or late call follows the route's failure policy within the per-call timeout.
//!
//! Each worker has its own client (its own HTTP/2 connection to the service, driven by
//! its own runtime), as it has its own upstream connections.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use tailwater_core::rate::Quota;
use tailwater_rls::client::{RequestParts, RlsClient};
use tailwater_tower::admission::{Refusal, RequestView};
use tailwater_tower::edge::RateLimitPolicies;
use tailwater_tower::rate_limit::error::RateLimited;

use crate::config::{ConfigError, RlsConfig, RlsFailurePolicy};

/// A route's RLS: a client per worker and the failure policy.
#[derive(Debug)]
pub(crate) struct RouteRls {
    clients: Box<[RlsClient]>,
    policy: RlsFailurePolicy,
    /// Failed calls since the last warning: a service that is down fails every request,
    /// and one log line per request would be a log flood (and a cost an attacker controls).
    failures: AtomicU64,
    /// When the last warning was logged (ms since `created`).
    last_warn_ms: AtomicU64,
    created: Instant,
}

/// At most one "rate limit service failed" warning per route per this interval.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// `last_warn_ms` before the first warning.
const NEVER: u64 = u64::MAX;

impl RouteRls {
    /// Checks `[route.rls]` (`field` is e.g. `route[0].rls`): its descriptors and the
    /// client settings, building nothing that lasts.
    pub(crate) fn check(field: &str, c: &RlsConfig) -> Result<(), ConfigError> {
        if c.descriptor.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.descriptor"),
                "give at least one [[route.rls.descriptor]]",
            ));
        }
        for (i, d) in c.descriptor.iter().enumerate() {
            d.validate()
                .map_err(|e| located(field, e, &format!(".descriptor[{i}]")))?;
        }
        client(field, c).map(drop)
    }

    /// Builds a checked `[route.rls]`: a client per worker; nothing is connected until the
    /// first request.
    pub(crate) fn build(field: &str, c: &RlsConfig, workers: usize) -> Result<Self, ConfigError> {
        let clients = (0..workers.max(1))
            .map(|_| client(field, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            clients: clients.into_boxed_slice(),
            policy: c.failure_policy,
            failures: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(NEVER),
            created: Instant::now(),
        })
    }

    /// Logs a failed call, at most once per [`WARN_EVERY`], with the failures since the last
    /// line.
    fn warn_failed(&self, error: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = self.created.elapsed().as_millis() as u64;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last != NEVER && now.saturating_sub(last) < WARN_EVERY.as_millis() as u64)
            || self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let failures = self.failures.swap(0, Ordering::Relaxed).max(1);
        tracing::warn!(
            error = %error,
            failures,
            fail_open = self.policy == RlsFailurePolicy::Open,
            "rate limit service failed (failures since the last warning)"
        );
    }
}

/// A client error placed under `field` and `at`.
fn located(field: &str, e: tailwater_rls::client::SpecError, at: &str) -> ConfigError {
    ConfigError::new(format!("{field}{at}.{}", e.field), e.reason)
}

/// One client of `[route.rls]` (`field`), with its descriptors.
fn client(field: &str, c: &RlsConfig) -> Result<RlsClient, ConfigError> {
    let mut client = RlsClient::new(&c.address, c.domain.clone())
        .and_then(|cl| cl.timeout(c.timeout))
        .map_err(|e| located(field, e, ""))?;
    for d in &c.descriptor {
        client = client.descriptor(d.clone());
    }
    Ok(client)
}

/// The request as the descriptor actions read it.
struct Parts<'a, V> {
    view: &'a V,
    peer: IpAddr,
}

impl<V: RequestView> RequestParts for Parts<'_, V> {
    fn header(&self, name: &str) -> Option<&str> {
        self.view.header(name)
    }

    fn path(&self) -> &str {
        self.view.path()
    }

    fn remote_address(&self) -> Option<IpAddr> {
        Some(self.peer)
    }
}

/// Asks the route's RLS about `req` (of a client at `peer`, served by `worker`): `None`
/// admits it, `Some` is the refusal (`rls_over_limit`, or `rls_unavailable` when the call
/// failed and the route fails closed).
pub(crate) async fn check(
    rls: &RouteRls,
    worker: usize,
    peer: IpAddr,
    req: &impl RequestView,
) -> Option<Refusal> {
    let client = &rls.clients[worker % rls.clients.len()];
    let parts = Parts { view: req, peer };
    // Boxed: the call's future is large and the request's future stays small.
    let call = Box::pin(client.check(&parts)?);
    let rejected = match call.await {
        Ok(d) if d.allowed => return None,
        Ok(d) => {
            let policies = d.limit.as_ref().and_then(|l| {
                let q = Quota::per_period(l.requests_per_unit, l.period).ok()?;
                let name = if l.name.is_empty() { "rls" } else { &l.name };
                RateLimitPolicies::new([(name, q)]).ok().map(Arc::new)
            });
            (
                RateLimited::over_limit(d.to_rate_decision(), policies),
                "rls_over_limit",
            )
        }
        Err(e) => {
            rls.warn_failed(&e);
            if rls.policy == RlsFailurePolicy::Open {
                return None;
            }
            (RateLimited::unavailable(e), "rls_unavailable")
        }
    };
    Some(Refusal::RateLimited {
        limited: rejected.0,
        reason: rejected.1,
    })
}
