//! Error types.

use std::fmt;

use bytes::Bytes;
use http::Response;
use tailwater_core::Rejection;

use crate::edge::{EdgeResponse, deadline_response, shed_response};

/// The request was shed by the concurrency limiter. Carries the core [`Rejection`] (reason,
/// tier, limit, in-flight, retry hint).
///
/// Its edge response is `503` + `Retry-After`, or gRPC `UNAVAILABLE` +
/// `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    rejection: Rejection,
}

impl Overloaded {
    pub(crate) fn new(rejection: Rejection) -> Self {
        Self { rejection }
    }

    /// The limiter's rejection.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: {}", self.rejection.reason)
    }
}

impl std::error::Error for Overloaded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}

impl EdgeResponse for Overloaded {
    fn edge_response(&self, grpc: bool) -> Response<Bytes> {
        shed_response(&self.to_string(), self.rejection.retry_after, grpc)
    }
}

/// The request's own deadline (`grpc-timeout`, or the layer's
/// [`deadline_header`](super::ConcurrencyLayer::deadline_header)) was spent on arrival, or
/// ran out while it waited in the queue: it was refused without reaching the service (an
/// answer nobody waits for is wasted work). Never the service's fault, never fed to the
/// limit algorithm.
///
/// Its edge response is `504`, or gRPC `DEADLINE_EXCEEDED` with `grpc-retry-pushback-ms: -1`
/// ([`deadline_response`]); the metric reason is
/// [`vocabulary::reason::DEADLINE_EXCEEDED`](tailwater_core::vocabulary::reason::DEADLINE_EXCEEDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

impl EdgeResponse for DeadlineExceeded {
    fn edge_response(&self, grpc: bool) -> Response<Bytes> {
        deadline_response(&self.to_string(), grpc)
    }
}
