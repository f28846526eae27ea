//! [`Config::validate`]: the semantic checks of a configuration, separate from building it.
//!
//! Validation checks the values (ranges, names, the core builders' own checks, the TLS
//! files) and builds no upstream: no connection pool, no TLS client, no per-worker rate
//! limit service client. [`RouteTable::build_reusing`](super::RouteTable::build_reusing)
//! takes only a [`Validated`] configuration. Here, above the configuration, so that the
//! configuration types depend on nothing they configure.

use super::limiter::{build_limiter, build_tier_policy};
use super::rate::build_rate;
use super::{build_balance, cell, endpoint_authorities, no_upstream, path_prefix, slo};
use crate::config::{Config, ConfigError, RouteConfig, UpstreamProtocol};

/// A configuration [`Config::validate`] accepted: what building takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validated<'a>(&'a Config);

impl<'a> Validated<'a> {
    /// The configuration.
    pub(crate) fn config(self) -> &'a Config {
        self.0
    }
}

impl Config {
    /// Semantic validation: everything deserialisation cannot check (ranges, limits, the
    /// core builders' own checks). The error names the field as a path such as
    /// `route[1].limit.min_limit`. Builds no upstream pool or client.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validated().map(|_| ())
    }

    /// [`validate`](Self::validate), giving the proof that building takes.
    pub(crate) fn validated(&self) -> Result<Validated<'_>, ConfigError> {
        if let Some(tls) = &self.server.tls {
            crate::tls::acceptor(tls)?;
        }
        self.check_access_log()?;
        crate::config::bounds::check(self)?;
        slo::check(self)?;
        for (i, rc) in self.routes.iter().enumerate() {
            let prefix = format!("route[{i}]");
            if self.routes[..i].iter().any(|o| o.name == rc.name) {
                return Err(ConfigError::new(
                    format!("{prefix}.name"),
                    format!("duplicate route name `{}`", rc.name),
                ));
            }
            check_route(&prefix, rc)?;
        }
        crate::config::bounds::check_overlaps(self)?;
        for c in cell::cell_routes(self)? {
            check_route(&format!("cell[{}]", c.index), &c.config)?;
        }
        cell::cell_maps(self)?;
        Ok(Validated(self))
    }
}

/// The checks of one route (`prefix` is `route[i]` or `cell[i]`), in the order its fields
/// are built.
fn check_route(prefix: &str, rc: &RouteConfig) -> Result<(), ConfigError> {
    if rc.name.is_empty() {
        return Err(ConfigError::new(
            format!("{prefix}.name"),
            "must not be empty",
        ));
    }
    path_prefix(prefix, rc)?;
    if endpoint_authorities(prefix, rc)?.is_empty() {
        return Err(no_upstream(prefix));
    }
    // The core's own checks of the algorithm, the tiers and the queue.
    build_limiter(prefix, rc)?;
    for (j, rl) in rc.rate_limit.iter().enumerate() {
        build_rate(&format!("{prefix}.rate_limit[{j}]"), &rc.name, rl, 1)?;
    }
    if let Some(u) = &rc.upgrade {
        u.validate(prefix, rc.protocol == UpstreamProtocol::Http1)?;
    }
    super::upstream_tls(prefix, rc)?;
    if rc.retry_after.is_zero() {
        return Err(ConfigError::new(
            format!("{prefix}.retry_after"),
            "must be greater than zero",
        ));
    }
    build_tier_policy(prefix, rc)?;
    if let Some(c) = &rc.rls {
        crate::rls::RouteRls::check(&format!("{prefix}.rls"), c)?;
    }
    build_balance(prefix, rc, None)?;
    Ok(())
}
