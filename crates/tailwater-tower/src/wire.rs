//! The wire pieces of the edge mapping (header names, gRPC timeouts, response builders,
//! `RateLimit*` headers), below everything else in the crate: the rejections
//! ([`crate::rejection`]) and the layers build on them. Public as
//! [`edge`](crate::edge)`::*`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tailwater_core::ConfigError;
use tailwater_core::rate::Quota;

/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-retry-pushback-ms` (gRPC proposal A6, client retries).
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// gRPC status code `RESOURCE_EXHAUSTED`.
pub const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
/// gRPC status code `UNAVAILABLE`.
pub const GRPC_UNAVAILABLE: u32 = 14;
/// gRPC status code `DEADLINE_EXCEEDED`.
pub const GRPC_DEADLINE_EXCEEDED: u32 = 4;

/// Whether a request (or response) is gRPC: its `content-type` starts with
/// `application/grpc` (which covers `application/grpc+proto` and gRPC-Web).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The client's deadline from a `grpc-timeout` header (gRPC over HTTP/2: at most 8 digits
/// and a unit `H`, `M`, `S`, `m`, `u` or `n`). `None` if absent or malformed.
///
/// ```
/// use std::time::Duration;
/// use tailwater_tower::edge::grpc_timeout;
/// let mut h = http::HeaderMap::new();
/// h.insert("grpc-timeout", "250m".parse().unwrap());
/// assert_eq!(grpc_timeout(&h), Some(Duration::from_millis(250)));
/// h.insert("grpc-timeout", "1H".parse().unwrap());
/// assert_eq!(grpc_timeout(&h), Some(Duration::from_secs(3600)));
/// h.insert("grpc-timeout", "soon".parse().unwrap());
/// assert_eq!(grpc_timeout(&h), None);
/// ```
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(headers.get(&GRPC_TIMEOUT)?.to_str().ok()?)
}

/// Parses a `grpc-timeout` value (the one parser behind [`grpc_timeout`], for callers that
/// hold the value without a `HeaderMap`, such as the proxy's lean HTTP/1.1 path).
///
/// ```
/// use std::time::Duration;
/// use tailwater_tower::edge::parse_grpc_timeout;
/// assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
/// assert_eq!(parse_grpc_timeout("123456789m"), None); // more than 8 digits
/// ```
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `d` as a `grpc-timeout` value: the finest unit whose count fits the 8 digits gRPC
/// allows, rounded down (a propagated deadline must never be later than the real one).
/// Returns the count and the unit letter.
///
/// ```
/// use std::time::Duration;
/// use tailwater_tower::edge::{grpc_timeout_value, parse_grpc_timeout};
/// assert_eq!(grpc_timeout_value(Duration::from_millis(250)), (250_000, 'u'));
/// assert_eq!(grpc_timeout_value(Duration::from_secs(7200)), (7_200_000, 'm'));
/// assert_eq!(grpc_timeout_value(Duration::from_nanos(1500)), (1500, 'n'));
/// let (n, unit) = grpc_timeout_value(Duration::from_secs(10_000_000_000));
/// assert_eq!((n, unit), (2_777_777, 'H'));
/// assert!(parse_grpc_timeout(&format!("{n}{unit}")).is_some());
/// ```
pub fn grpc_timeout_value(d: Duration) -> (u64, char) {
    const MAX: u128 = 99_999_999;
    let ns = d.as_nanos();
    for (per, unit) in [
        (1u128, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
    ] {
        if ns / per <= MAX {
            return ((ns / per) as u64, unit);
        }
    }
    let hours = (ns / 3_600_000_000_000).min(MAX);
    (hours as u64, 'H')
}

/// Whole seconds for `Retry-After`: rounded up, at least 1.
///
/// ```
/// use std::time::Duration;
/// use tailwater_tower::edge::retry_after_secs;
/// assert_eq!(retry_after_secs(Duration::ZERO), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
/// assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
/// ```
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Whole milliseconds for `grpc-retry-pushback-ms`: rounded up, at least 1.
pub fn pushback_ms(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// A rejection that knows its edge response.
pub trait EdgeResponse {
    /// The response for a plain HTTP request (`grpc == false`) or a gRPC one.
    fn edge_response(&self, grpc: bool) -> Response<Bytes>;
}

/// The answer to a request whose own deadline is spent (the proxy answers the same):
/// `504`, or gRPC `DEADLINE_EXCEEDED` with `grpc-retry-pushback-ms: -1` (a retry cannot
/// help: the caller has no time left). No `Retry-After`: the server is not overloaded.
///
/// ```
/// use tailwater_tower::edge::deadline_response;
/// assert_eq!(deadline_response("deadline exceeded", false).status(), 504);
/// let grpc = deadline_response("deadline exceeded", true);
/// assert_eq!(grpc.headers()["grpc-status"], "4");
/// assert_eq!(grpc.headers()["grpc-retry-pushback-ms"], "-1");
/// ```
pub fn deadline_response(message: &str, grpc: bool) -> Response<Bytes> {
    if grpc {
        return grpc_response(GRPC_DEADLINE_EXCEEDED, message, None);
    }
    text_response(StatusCode::GATEWAY_TIMEOUT, message)
}

/// The shed response: `503` + `Retry-After`, or gRPC `UNAVAILABLE` + pushback.
pub fn shed_response(message: &str, retry_after: Duration, grpc: bool) -> Response<Bytes> {
    if grpc {
        return grpc_response(GRPC_UNAVAILABLE, message, Some(retry_after));
    }
    let mut res = text_response(StatusCode::SERVICE_UNAVAILABLE, message);
    res.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from(retry_after_secs(retry_after)),
    );
    res
}

/// The rate-limited response: `429` + `Retry-After` (when `retry_after` is given), or gRPC
/// `RESOURCE_EXHAUSTED` + pushback. The caller adds the `RateLimit*` headers it knows.
pub fn rate_limited_response(
    message: &str,
    retry_after: Option<Duration>,
    grpc: bool,
) -> Response<Bytes> {
    if grpc {
        return grpc_response(GRPC_RESOURCE_EXHAUSTED, message, retry_after);
    }
    let mut res = text_response(StatusCode::TOO_MANY_REQUESTS, message);
    if let Some(r) = retry_after {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(r)));
    }
    res
}

/// The answer to a declared body over the size cap: `413`, refused before anything is
/// admitted or read.
pub fn body_too_large_response() -> Response<Bytes> {
    text_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

/// A trailers-only gRPC failure: `200`, `content-type: application/grpc`, `grpc-status`,
/// `grpc-message` and `grpc-retry-pushback-ms` (`-1` when `retry_after` is `None`).
pub fn grpc_response(code: u32, message: &str, retry_after: Option<Duration>) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(GRPC_STATUS, HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(message)) {
        h.insert(GRPC_MESSAGE, v);
    }
    let pushback = match retry_after {
        Some(d) => HeaderValue::from(pushback_ms(d)),
        None => HeaderValue::from_static("-1"),
    };
    h.insert(GRPC_RETRY_PUSHBACK_MS, pushback);
    res
}

fn text_response(status: StatusCode, message: &str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from(format!("{message}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec asks: bytes outside
/// 0x20..=0x7E and `%` itself.
fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ===== rate-limit headers =====

/// The quota policies of a rate limit, rendered once for the draft-10 headers.
///
/// ```
/// use tailwater_core::rate::Quota;
/// use tailwater_tower::edge::RateLimitPolicies;
/// let p = RateLimitPolicies::new([("default", Quota::per_minute(100)?)])?;
/// assert_eq!(p.policy_header().to_str().unwrap(), "\"default\";q=100;w=60");
/// assert_eq!(p.ratelimit_header(0, 42, 17).to_str().unwrap(), "\"default\";r=42;t=17");
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RateLimitPolicies {
    /// Each quota's name, already quoted as a Structured-Field String.
    names: Vec<String>,
    policy: HeaderValue,
}

impl fmt::Debug for RateLimitPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitPolicies")
            .field("policy", &self.policy)
            .finish()
    }
}

impl RateLimitPolicies {
    /// Names and quotas, in the order the store reports `quota_index`.
    ///
    /// Errors: no quota (`rate_limit.policies`), or a name that is not printable ASCII
    /// (`rate_limit.policy_name`), which a Structured-Field String cannot carry.
    pub fn new<N: AsRef<str>>(
        policies: impl IntoIterator<Item = (N, Quota)>,
    ) -> Result<Self, ConfigError> {
        let mut names = Vec::new();
        let mut items = Vec::new();
        for (name, quota) in policies {
            let name = sf_string(name.as_ref())?;
            items.push(format!(
                "{name};q={};w={}",
                quota.rate(),
                retry_after_secs(quota.period())
            ));
            names.push(name);
        }
        if names.is_empty() {
            return Err(ConfigError::new(
                "rate_limit.policies",
                "at least one quota is needed",
            ));
        }
        let policy = HeaderValue::from_str(&items.join(", "))
            .map_err(|e| ConfigError::new("rate_limit.policy_name", e))?;
        Ok(Self { names, policy })
    }

    /// The `RateLimit-Policy` value.
    pub fn policy_header(&self) -> HeaderValue {
        self.policy.clone()
    }

    /// The `RateLimit` value for the quota at `index` (clamped to the last one).
    pub fn ratelimit_header(&self, index: usize, remaining: u32, t_secs: u64) -> HeaderValue {
        let name = &self.names[index.min(self.names.len() - 1)];
        HeaderValue::from_str(&format!("{name};r={remaining};t={t_secs}"))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Inserts both headers.
    pub fn insert(&self, headers: &mut HeaderMap, index: usize, remaining: u32, t_secs: u64) {
        headers.insert(RATELIMIT_POLICY, self.policy_header());
        headers.insert(RATELIMIT, self.ratelimit_header(index, remaining, t_secs));
    }
}

/// Quotes `name` as a Structured-Field String (RFC 9651 §3.3.3).
fn sf_string(name: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                return Err(ConfigError::new(
                    "rate_limit.policy_name",
                    format!("`{name}` must be printable ASCII"),
                ));
            }
        }
    }
    out.push('"');
    Ok(out)
}
