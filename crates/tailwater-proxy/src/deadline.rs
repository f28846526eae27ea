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

use http::HeaderName;
use tailwater_tower::edge;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::service::RequestView;

/// gRPC status `DEADLINE_EXCEEDED`.
const GRPC_DEADLINE_EXCEEDED: u32 = 4;

/// A request's deadline and where it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// When the budget runs out.
    pub(crate) at: Instant,
    /// The request carried `grpc-timeout`.
    pub(crate) grpc: bool,
    /// The request carried the route's deadline header.
    pub(crate) header: bool,
}

impl Deadline {
    /// The deadline of a request that arrived at `start`: the smaller of its budgets, or
    /// `None` when it states none.
    pub(crate) fn of(
        req: &impl RequestView,
        header: Option<&HeaderName>,
        start: Instant,
    ) -> Option<Self> {
        if !req.may_state_deadline(header) {
            return None;
        }
        let grpc = req
            .header("grpc-timeout")
            .and_then(edge::parse_grpc_timeout);
        let ms = header
            .and_then(|h| req.header(h.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        let budget = match (grpc, ms) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(Self {
            at: start
                .checked_add(budget)
                .unwrap_or(start + Duration::from_secs(86_400 * 365)),
            grpc: grpc.is_some(),
            header: ms.is_some(),
        })
    }

    /// What remains of the budget now (zero once spent).
    pub(crate) fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// The answer to a request whose budget is spent.
pub(crate) fn exceeded(grpc: bool) -> http::Response<ProxyBody> {
    if grpc {
        edge::grpc_response(GRPC_DEADLINE_EXCEEDED, "deadline exceeded", None).map(ProxyBody::local)
    } else {
        crate::service::local(http::StatusCode::GATEWAY_TIMEOUT, "deadline exceeded\n")
    }
}

/// Whole milliseconds of `d`, rounded down (the forwarded budget is never longer than the
/// real one).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let d = Deadline::of(&zero, Some(&name), arrival).expect("a budget");
        assert!(d.remaining().is_zero(), "spent on arrival");
        assert!(
            Deadline::of(&zero, None, arrival).is_none(),
            "the header counts only when the route names it"
        );
        let grpc = request(&[("grpc-timeout", "0m")]);
        assert!(
            Deadline::of(&grpc, None, arrival)
                .expect("grpc")
                .remaining()
                .is_zero()
        );

        let both = request(&[("x-request-timeout", "300"), ("grpc-timeout", "1S")]);
        let d = Deadline::of(&both, Some(&name), arrival).expect("a budget");
        assert!(d.grpc && d.header);
        assert_eq!(d.remaining(), Duration::from_millis(300));
        tokio::time::advance(Duration::from_millis(120)).await;
        assert_eq!(d.remaining(), Duration::from_millis(180));
        let (timeout, cut) = crate::service::request_timeout(Duration::from_secs(30), Some(d));
        assert_eq!((timeout, cut), (Duration::from_millis(180), true));
        tokio::time::advance(Duration::from_millis(180)).await;
        assert!(d.remaining().is_zero(), "spent by the time it is admitted");
        // A request that arrived before the wait is judged from its arrival.
        let late = Deadline::of(&both, Some(&name), arrival).expect("a budget");
        assert!(late.remaining().is_zero());
    }
}
