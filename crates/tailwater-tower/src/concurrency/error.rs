//! Error types.

use std::fmt;

use bytes::Bytes;
use http::Response;
use tailwater_core::Rejection;

use crate::edge::{EdgeResponse, shed_response};

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
