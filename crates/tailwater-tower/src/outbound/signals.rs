//! What a response says to the caller: was it a failure worth retrying, and what pushback
//! did the server give. Shared by the retry and hedge layers.

use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};
use tailwater_core::outbound::{Pushback, parse_grpc_pushback_ms, parse_retry_after};

use crate::edge::{GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS, GRPC_UNAVAILABLE};

/// Envoy's marker on a response its rate limit produced: never retried.
pub const X_ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");

/// Methods safe to send twice (RFC 9110 §9.2.2): GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// How a response head reads for retrying: `(retryable failure, pushback)`.
///
/// - `429` (rate limited), `x-envoy-ratelimited` and a negative `grpc-retry-pushback-ms` are
///   [`Pushback::DontRetry`];
/// - `502`, `503`, `504` and gRPC `UNAVAILABLE` (14) are retryable, with `Retry-After` or
///   `grpc-retry-pushback-ms` as the floor of the delay;
/// - everything else is final (a success, or a failure a retry would repeat).
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tailwater_core::outbound::Pushback;
/// use tailwater_tower::outbound::signals::read_response;
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "2".parse().unwrap());
/// assert_eq!(read_response(StatusCode::SERVICE_UNAVAILABLE, &h),
///            (true, Pushback::After(std::time::Duration::from_secs(2))));
/// assert_eq!(read_response(StatusCode::TOO_MANY_REQUESTS, &h).1, Pushback::DontRetry);
/// ```
pub fn read_response(status: StatusCode, headers: &HeaderMap) -> (bool, Pushback) {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (false, Pushback::DontRetry);
    }
    // The happy path reads at most one header (`grpc-status`).
    let retryable = matches!(status.as_u16(), 502..=504)
        || headers
            .get(&GRPC_STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(GRPC_UNAVAILABLE);
    if !retryable {
        return (false, Pushback::None);
    }
    if headers.contains_key(&X_ENVOY_RATELIMITED) {
        return (false, Pushback::DontRetry);
    }
    let pushback = match headers
        .get(&GRPC_RETRY_PUSHBACK_MS)
        .and_then(|v| v.to_str().ok())
        .map(parse_grpc_pushback_ms)
    {
        Some(Pushback::DontRetry) => return (false, Pushback::DontRetry),
        Some(p) => p,
        None => headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map_or(Pushback::None, Pushback::After),
    };
    (true, pushback)
}

/// The pushback as a duration hint for the breaker (`None` unless a delay was given).
pub fn hint(p: Pushback) -> Option<Duration> {
    match p {
        Pushback::After(d) => Some(d),
        _ => None,
    }
}
