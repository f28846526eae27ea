//! The caller's deadline, read the way the proxy reads it: `grpc-timeout`, and optionally a
//! configurable HTTP header carrying the remaining budget in whole milliseconds (the proxy's
//! route `deadline_header`); with both, the shorter wins.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::edge::{GRPC_TIMEOUT, parse_grpc_timeout};

/// A static, not the `const`: a `const` `HeaderName` is built and dropped at every use.
static GRPC_TIMEOUT_NAME: HeaderName = GRPC_TIMEOUT;

/// The time left for the request: `grpc-timeout`, and `header` (milliseconds) if given.
/// An unparsable value is no deadline.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, HeaderName};
/// use tailwater_tower::deadline::request_deadline;
/// let name = HeaderName::from_static("x-request-timeout-ms");
/// let mut h = HeaderMap::new();
/// assert_eq!(request_deadline(&h, Some(&name)), None);
/// h.insert(&name, "800".parse().unwrap());
/// assert_eq!(request_deadline(&h, Some(&name)), Some(Duration::from_millis(800)));
/// assert_eq!(request_deadline(&h, None), None); // the header only counts when named
/// h.insert("grpc-timeout", "300m".parse().unwrap());
/// assert_eq!(request_deadline(&h, Some(&name)), Some(Duration::from_millis(300)));
/// ```
pub fn request_deadline(headers: &HeaderMap, header: Option<&HeaderName>) -> Option<Duration> {
    let grpc = headers
        .get(&GRPC_TIMEOUT_NAME)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    let ms = header
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    match (grpc, ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
