//! Errors of the Redis store and the leased limiter.

use std::time::Duration;

use tailwater_core::ConfigError;

/// Why one call to Redis failed. Every variant is counted in the `stats()` of the caller.
/// `Clone`: one failed group script (see `RedisRateStore::check_batch`) fails each of its
/// calls with the same cause.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The call did not complete within the per-call timeout (the future was dropped; the
    /// script may still have run on the server).
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed or Redis answered with an error.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something this version does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// A previous call failed moments ago; Redis is not tried again until the back-off
    /// (`ConnectionOptions::retry_backoff`) ends, so that a dead Redis costs nothing per call.
    #[error("redis is considered down (backing off after a failure)")]
    BackingOff,
}

/// The error of a rate-limit check on Redis after the failure policy was applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// Redis could not answer and the policy is
    /// [`FailClosed`](crate::FailurePolicy::FailClosed): reject the request (an HTTP edge
    /// answers 503, not 429: the client did nothing wrong). `retry_after` is a hint.
    #[error("rate-limit backend unavailable (failing closed): {cause}")]
    Unavailable {
        /// What went wrong with Redis.
        cause: BackendError,
        /// When to try again (the store's back-off).
        retry_after: Duration,
    },
    /// The quotas or key cannot be used with this store (the field is named).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl From<RedisStoreError> for tailwater_core::rate::StoreError {
    fn from(e: RedisStoreError) -> Self {
        use tailwater_core::rate::StoreError;
        match e {
            RedisStoreError::Config(c) => StoreError::InvalidRequest(c.to_string()),
            RedisStoreError::Unavailable { cause, .. } => match cause {
                BackendError::Timeout(d) => StoreError::Timeout(d),
                BackendError::Protocol(m) => StoreError::Protocol(m),
                other => StoreError::Unavailable(other.to_string()),
            },
        }
    }
}
