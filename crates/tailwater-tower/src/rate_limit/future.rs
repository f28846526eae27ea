//! Futures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tailwater_core::Criticality;
use tailwater_core::rate::{RateDecision, StoreError};
use tower::Service;

use super::error::{RateLimited, reset_secs};
use super::layer::Settings;
use super::service::{Verdict, judge};
use crate::edge::{self, EdgeBody, OnReject};

/// The store's answer, boxed: the core's `RateStore::check` borrows its arguments and
/// returns an unnameable future.
pub(crate) type CheckFuture =
    Pin<Box<dyn Future<Output = Result<RateDecision, StoreError>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit): waits for the store (when it
    /// is remote), then calls the inner service or answers the rejection.
    pub struct ResponseFuture<S, Req, R>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        settings: Arc<Settings>,
        on_reject: R,
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Checking {
            check: CheckFuture,
            service: Option<S>,
            request: Option<Req>,
            tier: Criticality,
        },
        Called {
            #[pin]
            future: S::Future,
            decision: Option<RateDecision>,
        },
        Rejected {
            rejected: Option<RateLimited>,
        },
        Done,
    }
}

impl<S: Service<Req>, Req, R> ResponseFuture<S, Req, R> {
    pub(crate) fn called(
        future: S::Future,
        decision: Option<RateDecision>,
        settings: Arc<Settings>,
        on_reject: R,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Called { future, decision },
            settings,
            on_reject,
            grpc,
        }
    }

    pub(crate) fn rejected(
        rejected: RateLimited,
        settings: Arc<Settings>,
        on_reject: R,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Rejected {
                rejected: Some(rejected),
            },
            settings,
            on_reject,
            grpc,
        }
    }

    pub(crate) fn checking(
        check: CheckFuture,
        service: S,
        request: Req,
        tier: Criticality,
        settings: Arc<Settings>,
        on_reject: R,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                service: Some(service),
                request: Some(request),
                tier,
            },
            settings,
            on_reject,
            grpc,
        }
    }
}

impl<S, ReqB, R, ResB> Future for ResponseFuture<S, Request<ReqB>, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body,
    ResB::Data: From<Bytes>,
    R: OnReject<S::Error>,
{
    type Output = Result<Response<EdgeBody<ResB>>, R::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Checking {
                    check,
                    service,
                    request,
                    tier,
                } => {
                    let result = ready!(check.as_mut().poll(cx));
                    let next = match judge(this.settings, *tier, result) {
                        Verdict::Admit(decision) => {
                            let (Some(mut service), Some(request)) =
                                (service.take(), request.take())
                            else {
                                unreachable!("a checking future holds its service and request");
                            };
                            State::Called {
                                future: service.call(request),
                                decision,
                            }
                        }
                        Verdict::Reject(r) => State::Rejected { rejected: Some(r) },
                    };
                    self.as_mut().project().state.set(next);
                }
                StateProj::Called { future, decision } => {
                    let result = ready!(future.poll(cx));
                    let out = match result {
                        Ok(mut res) => {
                            if let Some(d) = decision.take() {
                                this.settings.policies.insert(
                                    res.headers_mut(),
                                    d.quota_index,
                                    d.remaining,
                                    reset_secs(&d),
                                );
                            }
                            Ok(res.map(EdgeBody::inner))
                        }
                        Err(e) => Err(this.on_reject.map_err(e)),
                    };
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Rejected { rejected } => {
                    let Some(rejected) = rejected.take() else {
                        unreachable!("a rejected future holds its rejection");
                    };
                    let out = this
                        .on_reject
                        .reject(rejected, *this.grpc)
                        .map(edge::into_edge);
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S: Service<Req>, Req, R> fmt::Debug for ResponseFuture<S, Req, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("grpc", &self.grpc)
            .finish()
    }
}
