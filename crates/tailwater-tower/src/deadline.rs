//! The caller's deadline, read the way the proxy reads it: `grpc-timeout`, and optionally a
//! configurable HTTP header carrying the remaining budget in whole milliseconds (the proxy's
//! route `deadline_header`); with both, the shorter wins. [`request_deadline`] reads the
//! budget as a duration (the retry layer); [`Deadline`] as a point in time with the fields it
//! came in (the concurrency layer: refusal on arrival, the queue wait, forwarding).

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::edge::{GRPC_TIMEOUT, parse_grpc_timeout};
use crate::view::RequestView;

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
    budget(&Fields(headers), header).map(|b| b.0)
}

/// The one reading of a request's budget fields: the shorter of `grpc-timeout` and `header`
/// (milliseconds), with which of the two the request carried.
fn budget(req: &impl RequestView, header: Option<&HeaderName>) -> Option<(Duration, bool, bool)> {
    let grpc = req.header("grpc-timeout").and_then(parse_grpc_timeout);
    let ms = header
        .and_then(|h| req.header(h.as_str()))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let budget = match (grpc, ms) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some((budget, grpc.is_some(), ms.is_some()))
}

/// A bare header map seen as a request head (for [`Deadline::of`]).
struct Fields<'a>(&'a HeaderMap);

impl RequestView for Fields<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }

    fn path(&self) -> &str {
        ""
    }
}

/// A request's deadline as a point in time (tokio's clock, so paused-time tests drive it),
/// and which budget fields the request carried, so that forwarding rewrites only those.
///
/// The server side reads it on arrival
/// ([`ConcurrencyLayer::deadline_header`](crate::ConcurrencyLayer::deadline_header)) and puts
/// it in the request's extensions, where the application finds it to give its own downstream
/// calls the *remaining* budget ([`Deadline::write`]).
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, HeaderName};
/// use tailwater_tower::deadline::Deadline;
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let name = HeaderName::from_static("x-request-timeout");
/// let mut h = HeaderMap::new();
/// h.insert(&name, "800".parse().unwrap());
/// let d = Deadline::of(&h, Some(&name)).expect("a budget");
/// tokio::time::advance(Duration::from_millis(300)).await;
/// let mut out = HeaderMap::new();
/// d.write(&mut out, Some(&name));
/// assert_eq!(out[&name], "500"); // what is left, not what was received
/// assert!(out.get("grpc-timeout").is_none()); // only the fields the caller sent
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: tokio::time::Instant,
    grpc: bool,
    header: bool,
}

impl Deadline {
    /// The deadline stated by `headers` (`grpc-timeout`, and `header` in milliseconds when
    /// named), counted from now; `None` when they state none (or only malformed values).
    pub fn of(headers: &HeaderMap, header: Option<&HeaderName>) -> Option<Self> {
        Self::stated(&Fields(headers), header, tokio::time::Instant::now())
    }

    /// The deadline stated by a request head that arrived at `start`, whichever parser read
    /// it ([`RequestView`]): the smaller of `grpc-timeout` and `header` (milliseconds), or
    /// `None` when it states neither (or only malformed values). The proxy's engines and
    /// [`of`](Self::of) read it here.
    pub fn stated(
        req: &impl RequestView,
        header: Option<&HeaderName>,
        start: tokio::time::Instant,
    ) -> Option<Self> {
        if !req.may_state_deadline(header) {
            return None;
        }
        let (budget, grpc, header) = budget(req, header)?;
        Some(Self {
            // A budget too long to add is none worth keeping: a year.
            at: start
                .checked_add(budget)
                .unwrap_or(start + Duration::from_secs(86_400 * 365)),
            grpc,
            header,
        })
    }

    /// The request carried `grpc-timeout`.
    pub fn has_grpc_timeout(&self) -> bool {
        self.grpc
    }

    /// The request carried the deadline header.
    pub fn has_header(&self) -> bool {
        self.header
    }

    /// When the budget runs out.
    pub fn at(&self) -> tokio::time::Instant {
        self.at
    }

    /// What is left now (zero once spent).
    pub fn remaining(&self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// The budget is spent.
    pub fn is_spent(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Writes what is left now into the budget fields the request came with: `grpc-timeout`
    /// (gRPC's units, [`grpc_timeout_value`](crate::edge::grpc_timeout_value)) and `header`
    /// (whole milliseconds, rounded down: never longer than the real budget), replacing any
    /// value there. The proxy forwards the same way.
    pub fn write(&self, headers: &mut HeaderMap, header: Option<&HeaderName>) {
        let left = self.remaining();
        if self.grpc {
            let (n, unit) = crate::edge::grpc_timeout_value(left);
            if let Ok(v) = http::HeaderValue::from_str(&format!("{n}{unit}")) {
                headers.insert(GRPC_TIMEOUT_NAME.clone(), v);
            }
        }
        if self.header
            && let Some(name) = header
        {
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            headers.insert(name.clone(), http::HeaderValue::from(ms));
        }
    }
}
