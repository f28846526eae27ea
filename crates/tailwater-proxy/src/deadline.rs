//! The client's time budget: `grpc-timeout` (always read, with tailwater-tower's one parser)
//! and the route's `deadline_header` (whole milliseconds, none by default).
//!
//! - A request whose budget is already spent on arrival, or by the time it is admitted, is
//!   refused without touching the upstream: 504, or for gRPC a trailers-only
//!   `DEADLINE_EXCEEDED` (with `grpc-retry-pushback-ms: -1`: retrying cannot help).
//! - The queue wait is cut to the remaining budget (waiting past it produces an answer
//!   nobody reads), and so is `upstream.request_timeout`.
//! - What remains when the request is sent replaces the value received (`grpc-timeout` in
//!   gRPC's units, the header in milliseconds), so the next hop sees the budget minus the
//!   time spent here. Only the fields the client sent are written.
//! - A request cut short by its own deadline is counted as `deadline_exceeded` and is
//!   never fed to the limit as the upstream's failure: a client could otherwise collapse
//!   the limit by sending tiny budgets (the rule of issue 11 for client faults).
//! - A malformed value is ignored (as tailwater-tower does): the request has no budget.

use std::time::Duration;

use tailwater_tower::admission::Refusal;

use crate::body::ProxyBody;

/// A request's deadline and the fields it came in: tailwater-tower's, read from either
/// engine's head with [`Deadline::stated`].
pub(crate) use tailwater_tower::deadline::Deadline;

/// The answer to a request whose budget is spent (tailwater-tower's admission refusal).
pub(crate) fn exceeded(grpc: bool) -> http::Response<ProxyBody> {
    Refusal::DeadlineExceeded
        .response(grpc)
        .map(ProxyBody::local)
}

/// Whole milliseconds of `d`, rounded down (the forwarded budget is never longer than the
/// real one).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The upstream timeout of a request: `upstream.request_timeout`, cut to the remaining
/// budget of a request with a deadline; and whether the deadline is the shorter.
pub(crate) fn request_timeout(
    configured: Duration,
    deadline: Option<Deadline>,
) -> (Duration, bool) {
    match deadline {
        Some(d) if d.remaining() < configured => (d.remaining(), true),
        _ => (configured, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;
    use tokio::time::Instant;

    fn request(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    /// On tokio's paused clock: a budget of zero is spent on arrival (the admission refuses
    /// it before rate limits and the limiter); a budget is counted from the arrival, so one
    /// that ran out while the request waited is spent when it is admitted; the smaller of
    /// the two fields wins and the upstream timeout is cut to what is left.
    #[tokio::test(start_paused = true)]
    async fn spent_on_arrival_or_by_admission_on_paused_time() {
        let name = HeaderName::from_static("x-request-timeout");
        let arrival = Instant::now();
        let zero = request(&[("x-request-timeout", "0")]);
        let d = Deadline::stated(&zero, Some(&name), arrival).expect("a budget");
        assert!(d.remaining().is_zero(), "spent on arrival");
        assert!(
            Deadline::stated(&zero, None, arrival).is_none(),
            "the header counts only when the route names it"
        );
        let grpc = request(&[("grpc-timeout", "0m")]);
        assert!(
            Deadline::stated(&grpc, None, arrival)
                .expect("grpc")
                .remaining()
                .is_zero()
        );

        let both = request(&[("x-request-timeout", "300"), ("grpc-timeout", "1S")]);
        let d = Deadline::stated(&both, Some(&name), arrival).expect("a budget");
        assert!(d.has_grpc_timeout() && d.has_header());
        assert_eq!(d.remaining(), Duration::from_millis(300));
        tokio::time::advance(Duration::from_millis(120)).await;
        assert_eq!(d.remaining(), Duration::from_millis(180));
        let (timeout, cut) = request_timeout(Duration::from_secs(30), Some(d));
        assert_eq!((timeout, cut), (Duration::from_millis(180), true));
        tokio::time::advance(Duration::from_millis(180)).await;
        assert!(d.remaining().is_zero(), "spent by the time it is admitted");
        // A request that arrived before the wait is judged from its arrival.
        let late = Deadline::stated(&both, Some(&name), arrival).expect("a budget");
        assert!(late.remaining().is_zero());
    }
}
