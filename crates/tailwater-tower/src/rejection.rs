//! The typed rejections (the concurrency layer's [`Overloaded`] and [`DeadlineExceeded`], the
//! rate limit's [`RateLimited`]) and their edge responses. Below the layers and the edge, so
//! that [`edge::error_response`](crate::edge::error_response) can name them; public as
//! `concurrency::error` and `rate_limit::error`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use tailwater_core::Rejection;
use tailwater_core::rate::{RateDecision, StoreError};

/// The request was shed by the concurrency limiter. Carries the core [`Rejection`] (reason,
/// tier, limit, in-flight, retry hint).
///
/// Its edge response is `503` + `Retry-After`, or gRPC `UNAVAILABLE` +
/// `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    rejection: Rejection,
}

impl Overloaded {
    pub(crate) fn new(rejection: Rejection) -> Self {
        Self { rejection }
    }

    /// The limiter's rejection.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: {}", self.rejection.reason)
    }
}

impl std::error::Error for Overloaded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}

impl EdgeResponse for Overloaded {
    fn edge_response(&self, grpc: bool) -> Response<Bytes> {
        shed_response(&self.to_string(), self.rejection.retry_after, grpc)
    }
}

/// The request's own deadline (`grpc-timeout`, or the layer's
/// [`deadline_header`](crate::ConcurrencyLayer::deadline_header)) was spent on arrival, or
/// ran out while it waited in the queue: it was refused without reaching the service (an
/// answer nobody waits for is wasted work). Never the service's fault, never fed to the
/// limit algorithm.
///
/// Its edge response is `504`, or gRPC `DEADLINE_EXCEEDED` with `grpc-retry-pushback-ms: -1`
/// ([`deadline_response`]); the metric reason is
/// [`vocabulary::reason::DEADLINE_EXCEEDED`](tailwater_core::vocabulary::reason::DEADLINE_EXCEEDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

impl EdgeResponse for DeadlineExceeded {
    fn edge_response(&self, grpc: bool) -> Response<Bytes> {
        deadline_response(&self.to_string(), grpc)
    }
}

use crate::wire::{
    EdgeResponse, RateLimitPolicies, deadline_response, rate_limited_response, retry_after_secs,
    shed_response,
};

/// The request was refused by the rate limiter: its key is over quota, or (failing closed)
/// the store could not decide.
#[derive(Debug, Clone)]
pub struct RateLimited {
    kind: Kind,
    /// `None`: no `RateLimit*` headers (a remote limiter that reported no limit).
    policies: Option<Arc<RateLimitPolicies>>,
}

#[derive(Debug, Clone)]
enum Kind {
    Denied(RateDecision),
    Store(StoreError),
}

impl RateLimited {
    pub(crate) fn store(error: StoreError, policies: Option<Arc<RateLimitPolicies>>) -> Self {
        Self {
            kind: Kind::Store(error),
            policies,
        }
    }

    /// A denial decided elsewhere (a remote rate limit service): answered like the layer's
    /// own (`429` + `Retry-After` from `decision.retry_after`, gRPC `RESOURCE_EXHAUSTED`),
    /// with the `RateLimit*` headers of `policies` (quota index 0) when given.
    pub fn over_limit(decision: RateDecision, policies: Option<Arc<RateLimitPolicies>>) -> Self {
        Self {
            kind: Kind::Denied(decision),
            policies,
        }
    }

    /// A refusal because the limiter could not decide and fails closed (`503` +
    /// `Retry-After: 1`, gRPC `UNAVAILABLE`).
    pub fn unavailable(error: StoreError) -> Self {
        Self {
            kind: Kind::Store(error),
            policies: None,
        }
    }

    /// The store's decision, if the key was over quota.
    pub fn decision(&self) -> Option<&RateDecision> {
        match &self.kind {
            Kind::Denied(d) => Some(d),
            Kind::Store(_) => None,
        }
    }

    /// The store's error, if the layer failed closed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match &self.kind {
            Kind::Denied(_) => None,
            Kind::Store(e) => Some(e),
        }
    }

    /// The snake-case reason used in metrics and tracing (`rate_exceeded`, `exceeds_burst`,
    /// `key_capacity`, or `store_error` when failing closed).
    pub fn reason(&self) -> &'static str {
        match &self.kind {
            Kind::Denied(d) => d.reason.map_or("rate_exceeded", |r| r.as_str()),
            Kind::Store(_) => "store_error",
        }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Denied(_) => write!(f, "rate limited: {}", self.reason()),
            Kind::Store(e) => write!(f, "rate limit unavailable: {e}"),
        }
    }
}

impl std::error::Error for RateLimited {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Denied(_) => None,
            Kind::Store(e) => Some(e),
        }
    }
}

/// `t` for the `RateLimit` header: on a denial, when the request would fit (the same as
/// `Retry-After`, which the draft asks not to be earlier than `t`); when admitted, when the
/// bucket is full again.
pub(crate) fn reset_secs(d: &RateDecision) -> u64 {
    match (d.allowed, d.retry_after) {
        (false, Some(r)) => retry_after_secs(r),
        _ => d.reset_after_secs(),
    }
}

impl EdgeResponse for RateLimited {
    fn edge_response(&self, grpc: bool) -> Response<Bytes> {
        let d = match &self.kind {
            Kind::Denied(d) => d,
            Kind::Store(_) => {
                return shed_response(&self.to_string(), std::time::Duration::from_secs(1), grpc);
            }
        };
        let mut res = rate_limited_response(&self.to_string(), d.retry_after, grpc);
        if let Some(p) = &self.policies {
            p.insert(res.headers_mut(), d.quota_index, d.remaining, reset_secs(d));
        }
        res
    }
}
