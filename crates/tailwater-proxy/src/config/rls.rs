//! `[route.rls]`: see [`RlsConfig`].

use std::time::Duration;

use serde::Deserialize;
pub use tailwater_rls::client::{Action as RlsAction, DescriptorSpec as RlsDescriptor};

use super::duration;

/// What the proxy does when the rate limit service fails or does not answer in time
/// (the names of `tailwater rls --failure-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RlsFailurePolicy {
    /// Admit the request (counted, logged): the default, as a rate limiter should not take
    /// the service down with it.
    #[default]
    Open,
    /// Refuse it with `503` + `Retry-After: 1` (gRPC `UNAVAILABLE`).
    Closed,
}

/// `[route.rls]`: ask an Envoy rate limit service (ours, `tailwater rls`, or any) about
/// each request of the route, instead of (or besides) the local `[[route.rate_limit]]`s.
///
/// ```toml
/// [route.rls]
/// address = "http://127.0.0.1:8081"   # h2c
/// domain = "edge"
/// timeout = "20ms"                    # per call, connecting included (Envoy's default)
/// failure_policy = "open"             # or "closed": 503 / UNAVAILABLE when it fails
///
/// [[route.rls.descriptor]]            # one descriptor per table, Envoy's actions
/// entries = [{ source = "generic_key", value = "api" },
///            { source = "header", name = "x-api-key", key = "api_key" }]
///
/// [[route.rls.descriptor]]
/// entries = [{ source = "remote_address" }]
/// ```
///
/// Entry sources: `header` (`name`, `key`, optional `skip_if_absent`), `remote_address`,
/// `generic_key` (`value`, optional `key`), `path` (optional `key`): Envoy's
/// `request_headers`, `remote_address` and `generic_key` actions, and `request_headers` on
/// `:path`. A descriptor whose header is absent is not sent; a request with no
/// descriptor is not asked about.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlsConfig {
    /// The service, `http://host:port` (h2c).
    pub address: String,
    /// The RLS domain.
    pub domain: String,
    /// The per-call timeout (default 20 ms, at most 60 s).
    #[serde(default = "default_timeout", deserialize_with = "duration::de")]
    pub timeout: Duration,
    /// When the service fails: `open` (default) or `closed`.
    #[serde(default)]
    pub failure_policy: RlsFailurePolicy,
    /// The descriptors, at least one.
    #[serde(default)]
    pub descriptor: Vec<RlsDescriptor>,
}

fn default_timeout() -> Duration {
    tailwater_rls::client::DEFAULT_TIMEOUT
}
