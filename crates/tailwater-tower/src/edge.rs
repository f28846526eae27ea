//! The edge mapping: how a rejection looks on the wire.
//!
//! | rejection | HTTP | gRPC (`content-type: application/grpc*`) |
//! |---|---|---|
//! | shed by the concurrency layer | `503`, `Retry-After: <s>` | `200`, `grpc-status: 14` (`UNAVAILABLE`), `grpc-message`, `grpc-retry-pushback-ms: <ms>` |
//! | the caller's own deadline already spent (concurrency layer with a deadline) | `504` | `200`, `grpc-status: 4` (`DEADLINE_EXCEEDED`), `grpc-message`, `grpc-retry-pushback-ms: -1` |
//! | rate limited | `429`, `Retry-After: <s>`, `RateLimit-Policy`, `RateLimit` | `200`, `grpc-status: 8` (`RESOURCE_EXHAUSTED`), `grpc-message`, `grpc-retry-pushback-ms: <ms>`, the same `RateLimit*` headers |
//!
//! - `Retry-After` (RFC 9110 §10.2.3) is delay-seconds, rounded **up** and at least 1, so a
//!   client is never told to come back too early.
//! - `RateLimit-Policy` and `RateLimit` follow draft-ietf-httpapi-ratelimit-headers-10
//!   (Structured Fields): `RateLimit-Policy: "default";q=100;w=60` lists every quota
//!   (`q` = requests per window, `w` = window in seconds), and
//!   `RateLimit: "default";r=42;t=17` describes the most restrictive one (`r` = remaining,
//!   `t` = seconds until more quota is available; on a denial `t` equals `Retry-After`).
//! - gRPC answers are "trailers-only": HTTP `200` with the status in the headers and an
//!   empty body, which every gRPC client reads as a failed call.
//!   `grpc-retry-pushback-ms` (gRPC proposal A6) tells retrying clients when to come back; a
//!   negative value (`-1`) means "do not retry" (a request larger than the burst).
//!
//! By default the layers answer rejections themselves ([`Respond`]), so their error type
//! stays the inner service's (`Infallible` for axum). [`ReturnError`] makes them return the
//! typed errors ([`Overloaded`](crate::concurrency::error::Overloaded),
//! [`RateLimited`](crate::rate_limit::error::RateLimited)) boxed in a
//! [`BoxError`]; [`error_response`] maps such an error back to the
//! response above.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tailwater_core::ConfigError;
use tailwater_core::rate::Quota;

use crate::BoxError;

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

// ===== what to do with a rejection =====

/// What a layer does with a rejection: answer it ([`Respond`], the default) or fail the
/// call with a typed error ([`ReturnError`]). `E` is the inner service's error.
pub trait OnReject<E>: Clone + Send + Sync + 'static {
    /// The layer's error type.
    type Error;

    /// Turns a rejection into the layer's result.
    fn reject<R>(&self, rejection: R, grpc: bool) -> Result<Response<Bytes>, Self::Error>
    where
        R: EdgeResponse + std::error::Error + Send + Sync + 'static;

    /// Converts an inner service error.
    fn map_err(&self, error: E) -> Self::Error;
}

/// Answer rejections with the edge response; keep the inner service's error type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Respond;

impl<E> OnReject<E> for Respond {
    type Error = E;

    fn reject<R>(&self, rejection: R, grpc: bool) -> Result<Response<Bytes>, E>
    where
        R: EdgeResponse + std::error::Error + Send + Sync + 'static,
    {
        Ok(rejection.edge_response(grpc))
    }

    fn map_err(&self, error: E) -> E {
        error
    }
}

/// Fail rejected calls with the typed error in a [`BoxError`] (tower's convention); inner
/// errors are boxed too. Map them to responses with [`error_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReturnError;

impl<E: Into<BoxError>> OnReject<E> for ReturnError {
    type Error = BoxError;

    fn reject<R>(&self, rejection: R, _grpc: bool) -> Result<Response<Bytes>, BoxError>
    where
        R: EdgeResponse + std::error::Error + Send + Sync + 'static,
    {
        Err(Box::new(rejection))
    }

    fn map_err(&self, error: E) -> BoxError {
        error.into()
    }
}

/// The edge response for an error returned under [`ReturnError`], if it is (or wraps, by
/// `source()`) one of this crate's rejections.
pub fn error_response(
    error: &(dyn std::error::Error + 'static),
    grpc: bool,
) -> Option<Response<Bytes>> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(o) = e.downcast_ref::<crate::concurrency::error::Overloaded>() {
            return Some(o.edge_response(grpc));
        }
        if let Some(d) = e.downcast_ref::<crate::concurrency::error::DeadlineExceeded>() {
            return Some(d.edge_response(grpc));
        }
        if let Some(r) = e.downcast_ref::<crate::rate_limit::error::RateLimited>() {
            return Some(r.edge_response(grpc));
        }
        cur = e.source();
    }
    None
}

// ===== body =====

pin_project! {
    /// A response body that is either the inner service's or a short fixed one (a rejection).
    pub struct EdgeBody<B> {
        #[pin]
        inner: Option<B>,
        fixed: Option<Bytes>,
    }
}

impl<B> EdgeBody<B> {
    /// The inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            inner: Some(body),
            fixed: None,
        }
    }

    /// A fixed body (empty bytes make an empty body).
    pub fn fixed(bytes: Bytes) -> Self {
        Self {
            inner: None,
            fixed: Some(bytes).filter(|b| !b.is_empty()),
        }
    }

    /// Whether this is a rejection's fixed body.
    pub fn is_fixed(&self) -> bool {
        self.inner.is_none()
    }
}

impl<B: fmt::Debug> fmt::Debug for EdgeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Some(b) => f.debug_tuple("EdgeBody::Inner").field(b).finish(),
            None => f.debug_tuple("EdgeBody::Fixed").field(&self.fixed).finish(),
        }
    }
}

impl<B> Body for EdgeBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll_frame(cx),
            None => Poll::Ready(this.fixed.take().map(|b| Ok(Frame::data(b.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(b) => b.is_end_stream(),
            None => self.fixed.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(self.fixed.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Wraps a fixed edge response in an [`EdgeBody`].
pub(crate) fn into_edge<B>(res: Response<Bytes>) -> Response<EdgeBody<B>> {
    res.map(EdgeBody::fixed)
}
