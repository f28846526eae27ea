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
//! typed errors ([`Overloaded`],
//! [`RateLimited`]) boxed in a
//! [`BoxError`]; [`error_response`] maps such an error back to the
//! response above.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::rejection::{DeadlineExceeded, Overloaded, RateLimited};
pub use crate::wire::*;

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
        if let Some(o) = e.downcast_ref::<Overloaded>() {
            return Some(o.edge_response(grpc));
        }
        if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
            return Some(d.edge_response(grpc));
        }
        if let Some(r) = e.downcast_ref::<RateLimited>() {
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
