//! What a response says to the caller: was it a failure worth retrying, and what pushback
//! did the server give. Shared by the retry and hedge layers.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use tailwater_core::outbound::{Pushback, parse_grpc_pushback_ms, parse_retry_after};

use crate::edge::{GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS, GRPC_UNAVAILABLE};

/// Envoy's marker on a response its rate limit produced: never retried.
pub const X_ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");

// The names looked up on every response, as statics: a `const` `HeaderName` is built and
// dropped (through `Bytes`' vtable) at every use, which showed in the per-call benchmark.
static GRPC_STATUS_NAME: HeaderName = GRPC_STATUS;
static RATELIMITED_NAME: HeaderName = X_ENVOY_RATELIMITED;
static PUSHBACK_NAME: HeaderName = GRPC_RETRY_PUSHBACK_MS;

/// The attempt number (1-based) on every attempt after the first, sent by the retry and
/// hedge layers. tailwater's own name with Envoy's meaning (`x-envoy-attempt-count`, which
/// Envoy only sets itself and strips from untrusted requests); absent means attempt 1, so
/// the first attempt pays nothing.
pub const X_TAILWATER_ATTEMPT: HeaderName = HeaderName::from_static("x-tailwater-attempt");

/// gRPC A6's count of previous attempts, sent on gRPC retries and hedges (with
/// [`X_TAILWATER_ATTEMPT`]).
pub const GRPC_PREVIOUS_RPC_ATTEMPTS: HeaderName =
    HeaderName::from_static("grpc-previous-rpc-attempts");

/// Marks `req` as attempt number `attempt` (≥ 2): `x-tailwater-attempt`, and for gRPC
/// `grpc-previous-rpc-attempts` (`attempt − 1`). Attempt 1 is left unmarked.
///
/// ```
/// use http::Request;
/// use tailwater_tower::outbound::signals::mark_attempt;
/// let mut req = Request::new(());
/// mark_attempt(&mut req, 3);
/// assert_eq!(req.headers()["x-tailwater-attempt"], "3");
/// assert!(req.headers().get("grpc-previous-rpc-attempts").is_none()); // not gRPC
/// ```
pub fn mark_attempt<B>(req: &mut Request<B>, attempt: u32) {
    if attempt < 2 {
        return;
    }
    let h = req.headers_mut();
    if crate::edge::is_grpc(h) {
        h.insert(GRPC_PREVIOUS_RPC_ATTEMPTS, HeaderValue::from(attempt - 1));
    }
    h.insert(X_TAILWATER_ATTEMPT, HeaderValue::from(attempt));
}

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
#[inline]
pub fn read_response(status: StatusCode, headers: &HeaderMap) -> (bool, Pushback) {
    // Decided in the caller without a call: a success whose head has no header at all (no
    // `grpc-status`, so not a trailers-only gRPC failure) is final, and nothing is read.
    if headers.is_empty() && !matches!(status.as_u16(), 429 | 502..=504) {
        return (false, Pushback::None);
    }
    read_head(status, headers)
}

/// [`read_response`] past its shortcut. Pushback (`x-envoy-ratelimited`,
/// `grpc-retry-pushback-ms`, `Retry-After`) is read only after a retryable failure; a
/// success's pushback headers are never looked at.
#[inline(never)]
fn read_head(status: StatusCode, headers: &HeaderMap) -> (bool, Pushback) {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (false, Pushback::DontRetry);
    }
    // The happy path reads at most one header (`grpc-status`).
    let retryable = matches!(status.as_u16(), 502..=504)
        || headers
            .get(&GRPC_STATUS_NAME)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(GRPC_UNAVAILABLE);
    if !retryable {
        return (false, Pushback::None);
    }
    if headers.contains_key(&RATELIMITED_NAME) {
        return (false, Pushback::DontRetry);
    }
    let pushback = match headers
        .get(&PUSHBACK_NAME)
        .and_then(|v| v.to_str().ok())
        .map(parse_grpc_pushback_ms)
    {
        Some(Pushback::DontRetry) => return (false, Pushback::DontRetry),
        Some(p) => p,
        None => headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v).or_else(|| retry_after_date(v, SystemTime::now())))
            .map_or(Pushback::None, Pushback::After),
    };
    (true, pushback)
}

/// `Retry-After` as an HTTP-date (RFC 9110 §10.2.3: IMF-fixdate, and the obsolete RFC 850
/// and asctime forms a recipient must accept), as a delay from `now`: a date in the past is
/// no delay (`Some(0)`), garbage is `None`. Capped at one day, as the delta-seconds form.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use tailwater_tower::outbound::signals::retry_after_date;
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
/// let d = retry_after_date("Wed, 21 Oct 2015 07:28:00 GMT", now);
/// assert_eq!(d, Some(Duration::from_secs(10)));
/// assert_eq!(retry_after_date("Wednesday, 21-Oct-15 07:28:00 GMT", now), d);
/// assert_eq!(retry_after_date("Wed Oct 21 07:28:00 2015", now), d);
/// assert_eq!(retry_after_date("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(retry_after_date("soon", now), None);
/// ```
pub fn retry_after_date(value: &str, now: SystemTime) -> Option<Duration> {
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let d = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(d.min(Duration::from_secs(86_400)))
}

/// The pushback as a duration hint for the breaker (`None` unless a delay was given).
pub fn hint(p: Pushback) -> Option<Duration> {
    match p {
        Pushback::After(d) => Some(d),
        _ => None,
    }
}
