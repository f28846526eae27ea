//! The proxy's response body: either the upstream's body streamed through, holding the
//! admission permit until its last frame, or a small local body (503, 429, 413, …).
//!
//! Why the permit rides in the body: a concurrency limit measures work in progress, and a
//! response is in progress until its body ends (tower frees the permit when the response
//! future resolves, before the body: tower-http #447). The sample fed to the limit is the
//! time from admission to the end of the body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::time::Duration;
use tailwater_core::Criticality;
use tailwater_tower::admission::Ticket;
use tailwater_tower::classify::Outcome;

use tokio::time::{Instant, Sleep};

use crate::balance::Attempt;
use crate::decision::Decision;
use crate::metrics::RouteCounters;
use crate::outcome::{BodyFault, Verdict};
use crate::upstream::Lease;

/// Errors of the proxy's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream's response body made no progress for this long.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body idle for {0:?}")]
pub struct BodyIdleTimeout(pub Duration);

/// Settles a forwarded request once: its permit through tailwater-tower's [`Ticket`]
/// (which classifies the response: status, gRPC status in the head or the trailers), and
/// counts the request.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The permit and the outcome the response gave so far.
    pub(crate) ticket: Ticket,
    /// The route's counters of the worker that admitted the request.
    pub(crate) metrics: Arc<RouteCounters>,
    pub(crate) tier: Criticality,
    pub(crate) start: Instant,
    /// The pooled HTTP/1.1 connection, given back when the response ends cleanly.
    pub(crate) lease: Option<Lease>,
    /// The endpoint of a balanced route, told how the request ended (boxed: a guard of a
    /// single-endpoint route is moved a few times per request and stays as small as it was).
    pub(crate) attempt: Option<Box<Attempt>>,
}

impl Guard {
    /// Notes the upstream's response status: the request settles as a drop if that
    /// status counts against the upstream (5xx, 429: tailwater-tower's `status_outcome`).
    pub(crate) fn upstream_status(&mut self, status: u16) {
        crate::access_log::note_upstream_head();
        self.ticket.head_status(status);
        if let Some(a) = &mut self.attempt {
            a.head(status);
        }
    }

    /// [`upstream_status`](Self::upstream_status) with the head's fields: a gRPC status
    /// of overload in them (trailers-only answer) settles as a drop too.
    pub(crate) fn upstream_head(&mut self, status: u16, headers: &http::HeaderMap) {
        self.upstream_status(status);
        self.ticket.head(status, headers);
    }

    /// A gRPC status (in the head, or a trailer) classified as `outcome`: a status of
    /// overload turns a good head into a drop.
    pub(crate) fn grpc_status(&mut self, outcome: Outcome) {
        let outcome = self.ticket.with_trailer_outcome(Some(outcome));
        self.ticket.set_head(outcome);
    }

    /// The body ended with `trailers`: a gRPC status of overload there (`UNAVAILABLE`,
    /// `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`) turns a good head into a drop.
    pub(crate) fn trailers(&mut self, trailers: &http::HeaderMap) {
        if let Some(o) = tailwater_tower::classify::grpc_outcome(trailers) {
            self.grpc_status(o);
        }
    }

    /// Settles a request whose client body failed: counted as the fault's decision, the
    /// permit released without a sample. Returns the answer for the client.
    pub(crate) fn client_fault(self, fault: BodyFault) -> (http::StatusCode, &'static str) {
        self.finish(fault.decision());
        fault.response()
    }

    /// Reports `decision` to the limiter and the metrics.
    pub(crate) fn finish(mut self, decision: Decision) {
        self.settle(decision);
    }

    fn settle(&mut self, decision: Decision) {
        let lease = self.lease.take();
        if self.ticket.is_settled() {
            return;
        }
        if decision == Decision::Success
            && let Some(lease) = lease
        {
            lease.put_back();
        }
        let decision =
            if decision == Decision::Success && self.ticket.head_outcome() == Outcome::Dropped {
                Decision::UpstreamStatus
            } else {
                decision
            };
        if let Some(attempt) = self.attempt.take() {
            attempt.finish(decision);
        }
        self.ticket.settle(Verdict::of(decision).outcome(), None);
        self.metrics
            .record(decision, self.tier, self.start.elapsed());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Dropped without a verdict: the client went away.
        self.settle(Decision::Cancelled);
    }
}

pin_project_lite::pin_project! {
    /// The response body of the proxy: the upstream's body streamed through (holding the
    /// admission permit until it ends), or a small body the proxy wrote itself.
    #[derive(Debug)]
    pub struct ProxyBody {
        #[pin]
        inner: Inner,
        // The access log line of the request, written when the body is dropped.
        log: Option<Box<crate::access_log::Tail>>,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner {
        Upstream {
            #[pin]
            inner: Incoming,
            guard: Option<Guard>,
            // Armed only while the upstream body is pending, so a response that is already
            // buffered (the common case) never touches the timer wheel.
            idle: Option<Pin<Box<Sleep>>>,
            idle_timeout: Duration,
        },
        Local {
            data: Option<Bytes>,
        },
    }
}

impl ProxyBody {
    /// A local body.
    pub(crate) fn local(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ProxyBody {
            inner: Inner::Local {
                data: (!data.is_empty()).then_some(data),
            },
            log: None,
        }
    }

    /// The bytes of a local body (`None` for an upstream body or an empty one).
    pub(crate) fn local_data(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Local { data } => data.as_ref(),
            Inner::Upstream { .. } => None,
        }
    }

    /// The upstream's body, settling `guard` when it ends; a body that makes no progress
    /// for `idle_timeout` is cut (an error to the client, a drop for the limit).
    pub(crate) fn upstream(inner: Incoming, guard: Guard, idle_timeout: Duration) -> Self {
        let mut body = Inner::Upstream {
            inner,
            guard: Some(guard),
            idle: None,
            idle_timeout,
        };
        // An empty body (204, HEAD, content-length: 0) may never be polled.
        if let Inner::Upstream { inner, guard, .. } = &mut body
            && inner.is_end_stream()
            && let Some(g) = guard.take()
        {
            g.finish(Decision::Success);
        }
        ProxyBody {
            inner: body,
            log: None,
        }
    }

    /// Writes `tail` (the request's access log line) when this body is dropped, with the
    /// body bytes sent until then.
    pub(crate) fn log_at_end(&mut self, tail: Box<crate::access_log::Tail>) {
        self.log = Some(tail);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let log = this.log;
        match this.inner.project() {
            InnerProj::Local { data } => {
                let data = data.take();
                if let (Some(log), Some(d)) = (log, &data) {
                    log.sent(d.len());
                }
                Poll::Ready(data.map(|d| Ok(Frame::data(d))))
            }
            InnerProj::Upstream {
                mut inner,
                guard,
                idle,
                idle_timeout,
            } => {
                let polled = inner.as_mut().poll_frame(cx);
                if polled.is_ready() {
                    *idle = None;
                } else {
                    let timer =
                        idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(*idle_timeout)));
                    if timer.as_mut().poll(cx).is_ready() {
                        *idle = None;
                        if let Some(g) = guard.take() {
                            g.finish(Decision::BodyError);
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(*idle_timeout)))));
                    }
                }
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(g) = guard.take() {
                            g.finish(Decision::Success);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(g) = guard.take() {
                            g.finish(Decision::BodyError);
                        }
                    }
                    Poll::Ready(Some(Ok(f))) if f.is_trailers() || inner.is_end_stream() => {
                        if let Some(mut g) = guard.take() {
                            if let Some(t) = f.trailers_ref() {
                                g.trailers(t);
                            }
                            g.finish(Decision::Success);
                        }
                    }
                    _ => {}
                }
                if let (Some(log), Poll::Ready(Some(Ok(f)))) = (log, &polled)
                    && let Some(d) = f.data_ref()
                {
                    log.sent(d.len());
                }
                polled.map(|o| o.map(|r| r.map_err(BoxError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Local { data } => data.is_none(),
            Inner::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
/// A small local response.
pub(crate) fn local(status: http::StatusCode, body: &'static str) -> http::Response<ProxyBody> {
    let mut resp = http::Response::new(ProxyBody::local(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
