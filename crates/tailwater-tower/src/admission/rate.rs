//! The rate-limit step: one store answer, under the failure policy, into a verdict whose
//! refusal is the one [`RateLimited`] answer (`429` with `Retry-After` and the draft-10
//! `RateLimit*` headers, or `503` when failing closed).
//!
//! [`RateLimitLayer`](crate::RateLimitLayer) and tailwater-proxy's `[[route.rate_limit]]`
//! (whatever their store: in memory, keyed, Redis, leased from Redis) both judge through
//! [`rate_verdict`], so a store error or a denial is answered alike everywhere.

use std::sync::Arc;

use tailwater_core::rate::{RateDecision, StoreError};

use crate::rejection::RateLimited;
use crate::wire::RateLimitPolicies;

/// What to do when the store cannot decide (backend down, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Admit the request (counted as `decision="store_error"` and logged at `WARN`). The
    /// default: a rate limiter should not take the service down with its backend.
    #[default]
    FailOpen,
    /// Refuse the request with `503` + `Retry-After: 1` (gRPC `UNAVAILABLE`).
    FailClosed,
}

/// The verdict of the rate-limit step on one request.
#[derive(Debug)]
pub enum RateVerdict {
    /// The store admitted it (its decision gives the `RateLimit*` headers of a success).
    Admit(RateDecision),
    /// The store failed and the policy is [`OnStoreError::FailOpen`]: admitted unlimited.
    FailedOpen(StoreError),
    /// Refused: over quota, or the store failed and the policy is
    /// [`OnStoreError::FailClosed`]. Its [`EdgeResponse`](crate::edge::EdgeResponse) is
    /// the answer.
    Reject(RateLimited),
}

/// Judges a store's answer: admitted, over quota (with `policies`' `RateLimit*`
/// headers), or failed under `on_error`.
///
/// ```
/// use tailwater_core::rate::{DirectLimiter, Quota, StoreError};
/// use tailwater_tower::admission::{OnStoreError, RateVerdict, rate_verdict};
/// let limiter = DirectLimiter::new(Quota::per_second(1)?);
/// assert!(matches!(rate_verdict(Ok(limiter.check()), OnStoreError::FailOpen, None), RateVerdict::Admit(_)));
/// assert!(matches!(rate_verdict(Ok(limiter.check()), OnStoreError::FailOpen, None), RateVerdict::Reject(_)));
/// let down = || Err(StoreError::Unavailable("down".into()));
/// assert!(matches!(rate_verdict(down(), OnStoreError::FailOpen, None), RateVerdict::FailedOpen(_)));
/// assert!(matches!(rate_verdict(down(), OnStoreError::FailClosed, None), RateVerdict::Reject(_)));
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub fn rate_verdict(
    result: Result<RateDecision, StoreError>,
    on_error: OnStoreError,
    policies: Option<&Arc<RateLimitPolicies>>,
) -> RateVerdict {
    match result {
        Ok(d) if d.allowed => RateVerdict::Admit(d),
        Ok(d) => RateVerdict::Reject(RateLimited::over_limit(d, policies.cloned())),
        Err(e) => match on_error {
            OnStoreError::FailOpen => RateVerdict::FailedOpen(e),
            OnStoreError::FailClosed => {
                RateVerdict::Reject(RateLimited::store(e, policies.cloned()))
            }
        },
    }
}
