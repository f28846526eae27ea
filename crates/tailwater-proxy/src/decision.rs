//! What happened to a request ([`Decision`]): the `outcome` and `reason` labels of
//! `tailwater_requests_total`, below every module that counts, logs or settles a request.

use tailwater_core::limiter::RejectReason;
use tailwater_core::vocabulary::outcome;

/// What happened to a request: the `outcome` and `reason` labels of
/// `tailwater_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Forwarded; the upstream answered and the body finished.
    Success,
    /// Forwarded; the upstream answered 5xx or 429 (counts as a drop for the limit).
    UpstreamStatus,
    /// Forwarded; connecting or sending failed (502).
    UpstreamError,
    /// Forwarded; no response head within the request timeout (504).
    UpstreamTimeout,
    /// Forwarded; the response body failed mid-stream.
    BodyError,
    /// Forwarded; the client went away before the response body ended.
    Cancelled,
    /// Admitted; the request body was malformed (400, a client fault).
    BodyInvalid,
    /// Admitted; the request body did not arrive within `server.body_timeout` (408, a
    /// client fault).
    BodyTimeout,
    /// Shed by the limiter (503).
    Shed(RejectReason),
    /// Denied by a local rate limit (429).
    RateLimited,
    /// Request body over the limit (413).
    BodyTooLarge,
    /// The client's own deadline (`grpc-timeout`, the route's `deadline_header`) was spent
    /// on arrival, in the queue, or before the upstream answered (504, gRPC
    /// `DEADLINE_EXCEEDED`); never counted against the upstream.
    DeadlineExceeded,
}

const SHED_BASE: usize = 8;
pub(crate) const N_DECISIONS: usize = SHED_BASE + RejectReason::ALL.len() + 3;

impl Decision {
    pub(crate) fn index(self) -> usize {
        match self {
            Decision::Success => 0,
            Decision::UpstreamStatus => 1,
            Decision::UpstreamError => 2,
            Decision::UpstreamTimeout => 3,
            Decision::BodyError => 4,
            Decision::Cancelled => 5,
            Decision::BodyInvalid => 6,
            Decision::BodyTimeout => 7,
            Decision::Shed(r) => SHED_BASE + r.index(),
            Decision::RateLimited => SHED_BASE + RejectReason::ALL.len(),
            Decision::BodyTooLarge => SHED_BASE + RejectReason::ALL.len() + 1,
            Decision::DeadlineExceeded => SHED_BASE + RejectReason::ALL.len() + 2,
        }
    }

    pub(crate) fn from_index(i: usize) -> Self {
        match i {
            0 => Decision::Success,
            1 => Decision::UpstreamStatus,
            2 => Decision::UpstreamError,
            3 => Decision::UpstreamTimeout,
            4 => Decision::BodyError,
            5 => Decision::Cancelled,
            6 => Decision::BodyInvalid,
            7 => Decision::BodyTimeout,
            i if i < SHED_BASE + RejectReason::ALL.len() => {
                Decision::Shed(RejectReason::ALL[i - SHED_BASE])
            }
            i if i == SHED_BASE + RejectReason::ALL.len() => Decision::RateLimited,
            i if i == SHED_BASE + RejectReason::ALL.len() + 1 => Decision::BodyTooLarge,
            _ => Decision::DeadlineExceeded,
        }
    }

    /// The `outcome` label (one of tailwater-core's [`vocabulary::outcome`] values).
    pub(crate) fn outcome(self) -> &'static str {
        outcome::ALL[self.outcome_index()]
    }

    /// The index of [`outcome`](Self::outcome) in [`outcome::ALL`].
    pub(crate) fn outcome_index(self) -> usize {
        match self {
            Decision::Success => 0,
            Decision::UpstreamStatus | Decision::UpstreamError | Decision::BodyError => 1,
            Decision::UpstreamTimeout => 2,
            Decision::Shed(_) => 3,
            Decision::RateLimited => 4,
            Decision::Cancelled => 5,
            Decision::BodyInvalid | Decision::BodyTimeout => 6,
            Decision::BodyTooLarge | Decision::DeadlineExceeded => 7,
        }
    }

    /// The `reason` label (`rejection_reason` in traces).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Decision::Success => "",
            Decision::UpstreamStatus => "upstream_status",
            Decision::UpstreamError => "upstream_error",
            Decision::UpstreamTimeout => "upstream_timeout",
            Decision::BodyError => "body_error",
            Decision::Cancelled => "client_gone",
            Decision::BodyInvalid => "body_invalid",
            Decision::BodyTimeout => "body_timeout",
            Decision::Shed(r) => r.as_str(),
            Decision::RateLimited => "rate_exceeded",
            Decision::BodyTooLarge => "body_too_large",
            Decision::DeadlineExceeded => "deadline_exceeded",
        }
    }
}
