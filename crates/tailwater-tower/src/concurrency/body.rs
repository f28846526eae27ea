use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tailwater_core::algorithm::Outcome;
use tailwater_core::clock::Clock;

use super::service::Common;
use crate::admission::Ticket;
use crate::classify::Classify;
use crate::edge::EdgeBody;

/// Owns the request's [`Ticket`] until the request is finished, and counts the outcome
/// the ticket settles with, once.
///
/// Dropped unfinished, it settles by the ticket's default: `Dropped` if the response head
/// already said so (a `503` whose body was never read), `Ignored` otherwise (a client that
/// went away).
pub(crate) struct Guard<C: Clock> {
    ticket: Ticket<C>,
    /// When the permit was granted (the permit's own reading when it measures its RTT).
    start: std::time::Duration,
    common: Arc<Common<C>>,
}

impl<C: Clock> Guard<C> {
    pub(crate) fn new(ticket: Ticket<C>, common: Arc<Common<C>>) -> Self {
        // The request's duration is recorded for every request, so the layer reads the clock
        // anyway; it reuses the permit's reading when there is one.
        let start = ticket
            .permit_start()
            .unwrap_or_else(|| common.limiter().clock().now());
        Self {
            ticket,
            start,
            common,
        }
    }

    pub(crate) fn ticket(&mut self) -> &mut Ticket<C> {
        &mut self.ticket
    }

    /// Settles the ticket with `outcome` and counts it; later calls do nothing.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if self.ticket.is_settled() {
            return;
        }
        let elapsed = self
            .common
            .limiter()
            .clock()
            .now()
            .saturating_sub(self.start);
        // The same reading of the clock for the sample and the histogram.
        let Some(tier) = self.ticket.settle(outcome, Some(elapsed)) else {
            return;
        };
        self.common.metrics.outcome(tier, outcome, elapsed);
        match outcome {
            Outcome::Success => self.common.burn(false),
            Outcome::Dropped => self.common.burn(true),
            Outcome::Ignored => {}
        }
        self.common.record_gauges();
    }
}

impl<C: Clock> Drop for Guard<C> {
    fn drop(&mut self) {
        let outcome = self.ticket.drop_outcome();
        self.finish(outcome);
    }
}

pin_project! {
    /// The response body of [`Concurrency`](super::Concurrency): the inner body (or a
    /// rejection's fixed body) that holds the request's permit until it ends.
    ///
    /// The permit is released on the frame that ends the stream (by `is_end_stream`, the
    /// end of the frames, or trailers), on a body error, or when the body is dropped.
    pub struct ResponseBody<B, C: Clock, P> {
        #[pin]
        inner: EdgeBody<B>,
        guard: Option<Guard<C>>,
        classifier: P,
    }
}

impl<B, C: Clock, P> ResponseBody<B, C, P> {
    pub(crate) fn new(inner: EdgeBody<B>, guard: Option<Guard<C>>, classifier: P) -> Self {
        Self {
            inner,
            guard,
            classifier,
        }
    }

    /// Whether this body still holds its permit.
    pub fn holds_permit(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| !g.ticket.is_settled())
    }
}

impl<B: fmt::Debug, C: Clock, P> fmt::Debug for ResponseBody<B, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("holds_permit", &self.holds_permit())
            .finish()
    }
}

impl<B, C, P> Body for ResponseBody<B, C, P>
where
    B: Body,
    B::Data: From<Bytes>,
    B::Error: 'static,
    C: Clock,
    P: Classify,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(guard) = this.guard.as_mut() {
            match &frame {
                None => guard.finish(guard.ticket.head_outcome()),
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        let by_trailers = this.classifier.classify_trailers(trailers);
                        guard.finish(guard.ticket.with_trailer_outcome(by_trailers));
                    } else if this.inner.is_end_stream() {
                        guard.finish(guard.ticket.head_outcome());
                    }
                }
                Some(Err(e)) => guard.finish(this.classifier.classify_body_error(e)),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
