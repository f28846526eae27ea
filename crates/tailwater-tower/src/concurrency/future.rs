//! Futures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tailwater_core::clock::Clock;
use tailwater_core::limiter::Waiter;
use tokio::time::Sleep;
use tower::Service;

use super::body::{Guard, ResponseBody};
use super::service::{Common, Observer};
use crate::admission::{Queued, Refusal, Screened};
use crate::classify::Classify;
use crate::edge::{self, EdgeBody, OnReject};

/// The shortest timer between two checks of a waiter (as the core's `acquire`).
const MIN_CHECK: Duration = Duration::from_millis(1);

pin_project! {
    /// The response future of [`Concurrency`](super::Concurrency): waits for a permit if
    /// configured to, calls the inner service, and moves the permit into the response body.
    ///
    /// Dropping it before the response releases the permit as `Ignored` (the client
    /// cancelled), or leaves the queue if it was still waiting.
    pub struct ResponseFuture<S, Req, C, P, R>
    where
        S: Service<Req>,
        C: Clock,
    {
        #[pin]
        state: State<S, Req, C>,
        classifier: P,
        on_reject: R,
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, C>
    where
        S: Service<Req>,
        C: Clock,
    {
        Waiting {
            waiter: Waiter<C>,
            screened: Screened,
            sleep: Pin<Box<Sleep>>,
            service: Option<S>,
            request: Option<Req>,
            common: Arc<Common<C>>,
            since: Duration,
        },
        Called {
            #[pin]
            future: S::Future,
            guard: Option<Guard<C>>,
        },
        Refused {
            refusal: Option<Refusal>,
        },
        Done,
    }
}

impl<S, Req, C, P, R> ResponseFuture<S, Req, C, P, R>
where
    S: Service<Req>,
    C: Clock,
{
    pub(crate) fn called(
        future: S::Future,
        guard: Guard<C>,
        classifier: P,
        on_reject: R,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Called {
                future,
                guard: Some(guard),
            },
            classifier,
            on_reject,
            grpc,
        }
    }

    pub(crate) fn refused(refusal: Refusal, classifier: P, on_reject: R, grpc: bool) -> Self {
        Self {
            state: State::Refused {
                refusal: Some(refusal),
            },
            classifier,
            on_reject,
            grpc,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn waiting(
        queued: Queued<C>,
        service: S,
        request: Req,
        common: Arc<Common<C>>,
        classifier: P,
        on_reject: R,
        grpc: bool,
    ) -> Self {
        let Queued { waiter, screened } = queued;
        let sleep = Box::pin(tokio::time::sleep(until_check(&waiter, &common)));
        let since = common.limiter().clock().now();
        common.record_gauges();
        Self {
            state: State::Waiting {
                waiter,
                screened,
                sleep,
                service: Some(service),
                request: Some(request),
                common,
                since,
            },
            classifier,
            on_reject,
            grpc,
        }
    }
}

/// How long until `waiter` must be checked again, by the limiter's clock.
fn until_check<C: Clock>(waiter: &Waiter<C>, common: &Common<C>) -> Duration {
    let now = common.limiter().clock().now();
    waiter.next_check(now).saturating_sub(now).max(MIN_CHECK)
}

impl<S, ReqB, C, P, R, ResB> Future for ResponseFuture<S, Request<ReqB>, C, P, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: 'static,
    ResB: Body,
    ResB::Data: From<Bytes>,
    ResB::Error: 'static,
    C: Clock,
    P: Classify,
    R: OnReject<S::Error>,
{
    type Output = Result<Response<ResponseBody<ResB, C, P>>, R::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Waiting {
                    waiter,
                    screened,
                    sleep,
                    service,
                    request,
                    common,
                    since,
                } => {
                    let outcome = match Pin::new(&mut *waiter).poll(cx) {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => {
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            // The deadline (or CoDel's short target) is due: let the limiter
                            // expire overdue waiters, then look again.
                            common.limiter().expire_waiters();
                            match waiter.try_take() {
                                Some(outcome) => outcome,
                                None => {
                                    let wait = until_check(waiter, common);
                                    sleep.as_mut().reset(tokio::time::Instant::now() + wait);
                                    continue;
                                }
                            }
                        }
                    };
                    let waited = common.limiter().clock().now().saturating_sub(*since);
                    let after = common.admission.after_wait(
                        *screened,
                        outcome,
                        waited,
                        &mut Observer(common),
                    );
                    match after {
                        Ok(admitted) => {
                            let guard = Guard::new(admitted.ticket, Arc::clone(common));
                            let (Some(mut service), Some(mut request)) =
                                (service.take(), request.take())
                            else {
                                unreachable!("a waiting future holds its service and request");
                            };
                            // Time went by in the queue: the service sees what is left.
                            if let Some(d) = admitted.deadline {
                                d.write(request.headers_mut(), common.admission.deadline_header());
                            }
                            let future = service.call(request);
                            self.as_mut().project().state.set(State::Called {
                                future,
                                guard: Some(guard),
                            });
                        }
                        Err(refusal) => {
                            self.as_mut().project().state.set(State::Refused {
                                refusal: Some(refusal),
                            });
                        }
                    }
                }
                StateProj::Called { future, guard } => {
                    let result = ready!(future.poll(cx));
                    let mut guard = guard.take();
                    let out = match result {
                        Ok(response) => {
                            let (parts, body) = response.into_parts();
                            if let Some(g) = guard.as_mut() {
                                g.ticket().set_head(
                                    this.classifier
                                        .classify_response(parts.status, &parts.headers),
                                );
                                if body.is_end_stream() {
                                    // An empty body is never polled: the request is over.
                                    let outcome = g.ticket().head_outcome();
                                    g.finish(outcome);
                                }
                            }
                            let body = ResponseBody::new(
                                EdgeBody::inner(body),
                                guard,
                                this.classifier.clone(),
                            );
                            Ok(Response::from_parts(parts, body))
                        }
                        Err(error) => {
                            if let Some(g) = guard.as_mut() {
                                g.finish(this.classifier.classify_error(&error));
                            }
                            Err(this.on_reject.map_err(error))
                        }
                    };
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Refused { refusal } => {
                    let Some(refusal) = refusal.take() else {
                        unreachable!("a refused future holds its refusal until it answers");
                    };
                    let out = refusal.reject_with(this.on_reject, *this.grpc).map(|res| {
                        edge::into_edge(res)
                            .map(|b| ResponseBody::new(b, None, this.classifier.clone()))
                    });
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Req, C, P, R> fmt::Debug for ResponseFuture<S, Req, C, P, R>
where
    S: Service<Req>,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("grpc", &self.grpc)
            .finish()
    }
}
