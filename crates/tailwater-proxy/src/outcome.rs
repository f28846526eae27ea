//! The one classification of how a forwarded request ended, shared by both engines (the
//! lean HTTP/1.1 path and hyper's): what the end says about the upstream, and so what the
//! admission permit feeds to the limit algorithm.
//!
//! | how it ended | [`Verdict`] | permit |
//! |---|---|---|
//! | the upstream answered and the body ended | `Success` | latency sample |
//! | the upstream answered 5xx or 429, or a gRPC status of overload in the head or the trailers (tailwater-tower's `Ticket`) | `UpstreamFailure` | dropped |
//! | connect/send failed, no head in time, the response body broke | `UpstreamFailure` | dropped |
//! | the client's request body was malformed, too large, too slow or cut off | `ClientFault` | ignored |
//! | the client went away, or its own deadline (`grpc-timeout`) ran out | `Cancelled` | ignored |
//!
//! Why client faults are apart: anyone can send a broken body. Fed to the algorithm as
//! drops, 30 of them collapse an AIMD limit and lock out every legitimate client (issue
//! 11). A client fault is answered 400, 408 or 413 (or not at all when the client is gone),
//! never 502.

use http::StatusCode;
use tailwater_tower::classify::Outcome;

use crate::decision::Decision;

/// What the end of a forwarded request says about the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The upstream answered and the response ended: a latency sample.
    Success,
    /// The upstream failed, was too slow, or answered 5xx/429: the limit backs off.
    UpstreamFailure,
    /// The client broke the exchange: nothing about the upstream's load.
    ClientFault,
    /// The client went away: nothing about the upstream's load.
    Cancelled,
}

impl Verdict {
    /// The verdict of a settled request's `decision`.
    pub(crate) fn of(decision: Decision) -> Self {
        match decision {
            Decision::Success => Verdict::Success,
            Decision::UpstreamStatus
            | Decision::UpstreamError
            | Decision::UpstreamTimeout
            | Decision::BodyError => Verdict::UpstreamFailure,
            Decision::BodyInvalid | Decision::BodyTimeout | Decision::BodyTooLarge => {
                Verdict::ClientFault
            }
            // Shed and rate-limited requests hold no permit; if one did, it says nothing.
            // The client's own deadline cut the exchange: nothing about the upstream.
            Decision::Cancelled
            | Decision::Shed(_)
            | Decision::RateLimited
            | Decision::DeadlineExceeded => Verdict::Cancelled,
        }
    }

    /// The outcome this verdict feeds to the algorithm (a permit's ticket settles with it).
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Verdict::Success => Outcome::Success,
            Verdict::UpstreamFailure => Outcome::Dropped,
            Verdict::ClientFault | Verdict::Cancelled => Outcome::Ignored,
        }
    }
}

/// A fault of the client's request body, as either engine finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// Bad chunked framing, or any other body the parser refuses.
    Malformed,
    /// More than `server.max_body_bytes`.
    TooLarge,
    /// Not complete within `server.body_timeout`.
    Timeout,
    /// The client closed or reset the connection before the body's end.
    Aborted,
}

impl BodyFault {
    /// How the request is counted.
    pub(crate) fn decision(self) -> Decision {
        match self {
            BodyFault::Malformed => Decision::BodyInvalid,
            BodyFault::TooLarge => Decision::BodyTooLarge,
            BodyFault::Timeout => Decision::BodyTimeout,
            BodyFault::Aborted => Decision::Cancelled,
        }
    }

    /// The answer (written only if the client can still read it).
    pub(crate) fn response(self) -> (StatusCode, &'static str) {
        match self {
            BodyFault::Malformed => (StatusCode::BAD_REQUEST, "malformed request body\n"),
            BodyFault::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
            BodyFault::Timeout => (StatusCode::REQUEST_TIMEOUT, "request body timed out\n"),
            BodyFault::Aborted => (StatusCode::BAD_REQUEST, "incomplete request body\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_never_count_against_the_upstream() {
        for fault in [
            BodyFault::Malformed,
            BodyFault::TooLarge,
            BodyFault::Timeout,
            BodyFault::Aborted,
        ] {
            let v = Verdict::of(fault.decision());
            assert_ne!(v, Verdict::UpstreamFailure, "{fault:?}");
            assert!(fault.response().0.is_client_error(), "{fault:?}");
        }
        assert_eq!(
            Verdict::of(Decision::UpstreamError),
            Verdict::UpstreamFailure
        );
        assert_eq!(
            Verdict::of(Decision::UpstreamError).outcome(),
            Outcome::Dropped
        );
    }
}
