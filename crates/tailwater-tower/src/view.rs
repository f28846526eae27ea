//! [`RequestView`]: what the admission steps and the deadline read from a request head,
//! whichever parser read it. Its own module, below both [`admission`](crate::admission)
//! and [`deadline`](crate::deadline), so that neither imports the other's.

use http::Request;

use crate::edge;

/// What the admission steps read from a request, whichever parser read its head.
pub trait RequestView {
    /// The first value of the field `name` (lowercase), if it is valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;

    /// Whether the request may carry a deadline (`grpc-timeout`, or `header`): a parser
    /// that already knows it has none saves the look-ups.
    fn may_state_deadline(&self, _header: Option<&http::HeaderName>) -> bool {
        true
    }

    /// The request path (no query).
    fn path(&self) -> &str;

    /// The declared `Content-Length`.
    fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// A gRPC request (`content-type: application/grpc…`): rejections use gRPC statuses.
    fn is_grpc(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("application/grpc"))
    }
}

impl<B> RequestView for Request<B> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name).and_then(|v| v.to_str().ok())
    }

    fn path(&self) -> &str {
        self.uri().path()
    }

    fn is_grpc(&self) -> bool {
        edge::is_grpc(self.headers())
    }
}
