//! Tied requests, server side: tailwater-core's [`TieRegistry`] around a server's admission
//! queue ("The Tail at Scale").
//!
//! A client sends one request to two servers with the same `x-tailwater-tie: <id>` (and
//! `x-tailwater-tie-peer: <name>`, the other server's identity). On each server:
//!
//! 1. [`TieLayer`] (outside the admission queue, e.g. tailwater's `ConcurrencyLayer` with a
//!    queue) registers the copy; a copy whose tie is already known here (started, or
//!    cancelled by the peer before it arrived) is answered at once, never queued;
//! 2. [`TieStartLayer`] (inside the queue: reached only when the copy got its slot) marks
//!    it started, and calls the notifier with the tie id and the peer's name: the
//!    application sends the cancel to that peer, resolving the name only among the peers it
//!    knows (a name from a request is never dialled as an address);
//! 3. [`TieCancelService`] (mount it on an internal route or port: it trusts its callers)
//!    receives a peer's cancel: a copy still queued here leaves the queue at once and is
//!    answered; a copy running here runs on.
//!
//! A dropped copy is answered `409 Conflict` (gRPC `CANCELLED`, pushback `-1`: never
//! retried) with `x-tailwater-tie-dropped: 1`; the client, which waits for the first useful
//! answer, ignores it. Requests without a tie header pass through untouched.
//!
//! Put [`TieLayer`] outside any layer that reserves capacity in `poll_ready` (tower's
//! `ConcurrencyLimit`): a copy dropped on arrival never calls the inner service, so such a
//! reservation would wait for the connection's next request. tailwater's
//! `ConcurrencyLayer` admits in the call, not in `poll_ready`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tailwater_core::clock::Clock;
use tailwater_core::outbound::{Arrival, TieRegistry, TieTicket};
use tower::{Layer, Service};

use crate::edge::{EdgeBody, grpc_response, grpc_timeout, is_grpc};

/// The tie id of a tied copy.
pub const X_TAILWATER_TIE: HeaderName = HeaderName::from_static("x-tailwater-tie");
/// The identity of the server holding the other copy.
pub const X_TAILWATER_TIE_PEER: HeaderName = HeaderName::from_static("x-tailwater-tie-peer");
/// Marks the answer of a dropped copy.
pub const X_TAILWATER_TIE_DROPPED: HeaderName = HeaderName::from_static("x-tailwater-tie-dropped");
/// gRPC `CANCELLED`.
const GRPC_CANCELLED: u32 = 1;

/// The answer of a copy dropped because its tie ran elsewhere.
pub fn tie_dropped_response(grpc: bool) -> Response<Bytes> {
    let mut res = if grpc {
        grpc_response(GRPC_CANCELLED, "tied copy cancelled", None)
    } else {
        let mut r = Response::new(Bytes::from_static(b"tied copy cancelled\n"));
        *r.status_mut() = StatusCode::CONFLICT;
        r
    };
    res.headers_mut()
        .insert(X_TAILWATER_TIE_DROPPED, HeaderValue::from_static("1"));
    res
}

/// What [`TieStartLayer`] tells the application when a tied copy starts here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TieStarted {
    /// The tie id (send it to the peer's [`TieCancelService`]).
    pub id: String,
    /// The peer's name from `x-tailwater-tie-peer`, if any (resolve it among known peers).
    pub peer: Option<String>,
}

/// Called when a tied copy starts; sends the cancel to the peer (spawn the I/O).
pub trait TieNotify: Send + Sync + 'static {
    /// A tied copy started here.
    fn started(&self, started: TieStarted);
}

impl<F: Fn(TieStarted) + Send + Sync + 'static> TieNotify for F {
    fn started(&self, started: TieStarted) {
        self(started)
    }
}

/// A tied copy's state, in the request's extensions between the two layers.
#[derive(Clone)]
struct TieCtx {
    ticket: Arc<TieTicket>,
    peer: Option<String>,
}

fn header_str(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn ttl(h: &HeaderMap) -> Duration {
    grpc_timeout(h).unwrap_or(Duration::MAX)
}

/// The outer layer (see the [module docs](self)): registers tied copies on `registry`.
#[derive(Debug)]
pub struct TieLayer<C: Clock> {
    registry: Arc<TieRegistry<C>>,
}

impl<C: Clock> Clone for TieLayer<C> {
    fn clone(&self) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<C: Clock> TieLayer<C> {
    /// Registers tied copies on `registry` (share it with the [`TieCancelService`]).
    pub fn new(registry: Arc<TieRegistry<C>>) -> Self {
        Self { registry }
    }
}

impl<S, C: Clock> Layer<S> for TieLayer<C> {
    type Service = TieService<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        TieService {
            inner,
            registry: Arc::clone(&self.registry),
        }
    }
}

/// See [`TieLayer`].
#[derive(Debug)]
pub struct TieService<S, C: Clock> {
    inner: S,
    registry: Arc<TieRegistry<C>>,
}

impl<S: Clone, C: Clock> Clone for TieService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<S, C, B, RB> Service<Request<B>> for TieService<S, C>
where
    S: Service<Request<B>, Response = Response<RB>>,
    C: Clock,
{
    type Response = Response<EdgeBody<RB>>;
    type Error = S::Error;
    type Future = TieFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(id) = header_str(req.headers(), &X_TAILWATER_TIE) else {
            return TieFuture::plain(self.inner.call(req));
        };
        let grpc = is_grpc(req.headers());
        match self.registry.arrive(&id, ttl(req.headers())) {
            Arrival::Drop => {
                metrics::counter!(TIES_TOTAL, "outcome" => "dropped_on_arrival").increment(1);
                TieFuture::dropped(grpc)
            }
            Arrival::Untracked => TieFuture::plain(self.inner.call(req)),
            Arrival::Track(ticket) => {
                let ticket = Arc::new(ticket);
                let peer = header_str(req.headers(), &X_TAILWATER_TIE_PEER);
                req.extensions_mut().insert(TieCtx {
                    ticket: Arc::clone(&ticket),
                    peer,
                });
                TieFuture {
                    inner: Some(self.inner.call(req)),
                    ticket: Some(ticket),
                    grpc,
                }
            }
        }
    }
}

/// `tailwater_ties_total{outcome}`: `started`, `dropped_on_arrival`, `cancelled_queued`.
pub const TIES_TOTAL: &str = tailwater_core::vocabulary::TIES.name;

pin_project! {
    /// The response future of [`TieService`]: the inner future, raced against the peer's
    /// cancel while the copy is queued.
    pub struct TieFuture<F> {
        #[pin]
        inner: Option<F>,
        ticket: Option<Arc<TieTicket>>,
        grpc: bool,
    }
}

impl<F> TieFuture<F> {
    fn plain(inner: F) -> Self {
        Self {
            inner: Some(inner),
            ticket: None,
            grpc: false,
        }
    }

    fn dropped(grpc: bool) -> Self {
        Self {
            inner: None,
            ticket: None,
            grpc,
        }
    }
}

impl<F, RB, E> Future for TieFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<EdgeBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok(tie_dropped_response(*this.grpc).map(EdgeBody::fixed)));
        };
        if let Poll::Ready(r) = inner.poll(cx) {
            this.inner.set(None);
            *this.ticket = None;
            return Poll::Ready(r.map(|res| res.map(EdgeBody::inner)));
        }
        // Still queued (or running): a cancel only wins while queued.
        if let Some(t) = this.ticket.as_ref()
            && t.poll_cancelled(cx).is_ready()
        {
            metrics::counter!(TIES_TOTAL, "outcome" => "cancelled_queued").increment(1);
            this.inner.set(None); // leaves the admission queue
            *this.ticket = None;
            return Poll::Ready(Ok(tie_dropped_response(*this.grpc).map(EdgeBody::fixed)));
        }
        Poll::Pending
    }
}

/// The inner layer (see the [module docs](self)): marks tied copies started and notifies.
#[derive(Clone)]
pub struct TieStartLayer<C: Clock, N> {
    registry: Arc<TieRegistry<C>>,
    notify: Arc<N>,
}

impl<C: Clock, N> std::fmt::Debug for TieStartLayer<C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieStartLayer").finish_non_exhaustive()
    }
}

impl<C: Clock, N: TieNotify> TieStartLayer<C, N> {
    /// Starts tied copies on `registry` (the [`TieLayer`]'s) and calls `notify` for each.
    pub fn new(registry: Arc<TieRegistry<C>>, notify: N) -> Self {
        Self {
            registry,
            notify: Arc::new(notify),
        }
    }
}

impl<S, C: Clock, N> Layer<S> for TieStartLayer<C, N> {
    type Service = TieStartService<S, C, N>;
    fn layer(&self, inner: S) -> Self::Service {
        TieStartService {
            inner,
            registry: Arc::clone(&self.registry),
            notify: Arc::clone(&self.notify),
        }
    }
}

/// See [`TieStartLayer`].
pub struct TieStartService<S, C: Clock, N> {
    inner: S,
    registry: Arc<TieRegistry<C>>,
    notify: Arc<N>,
}

impl<S: Clone, C: Clock, N> Clone for TieStartService<S, C, N> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: Arc::clone(&self.registry),
            notify: Arc::clone(&self.notify),
        }
    }
}

impl<S, C: Clock, N> std::fmt::Debug for TieStartService<S, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieStartService").finish_non_exhaustive()
    }
}

impl<S, C, N, B, RB> Service<Request<B>> for TieStartService<S, C, N>
where
    S: Service<Request<B>, Response = Response<RB>>,
    C: Clock,
    N: TieNotify,
{
    type Response = Response<EdgeBody<RB>>;
    type Error = S::Error;
    type Future = TieFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(ctx) = req.extensions_mut().remove::<TieCtx>() {
            if !self.registry.start(&ctx.ticket) {
                return TieFuture::dropped(is_grpc(req.headers()));
            }
            metrics::counter!(TIES_TOTAL, "outcome" => "started").increment(1);
            self.notify.started(TieStarted {
                id: ctx.ticket.id().to_owned(),
                peer: ctx.peer,
            });
        }
        TieFuture::plain(self.inner.call(req))
    }
}

/// Receives a peer's cancel (`x-tailwater-tie: <id>`) and answers `204` (`400` without the
/// header). Mount it where only the peers can reach it.
#[derive(Debug)]
pub struct TieCancelService<C: Clock> {
    registry: Arc<TieRegistry<C>>,
}

impl<C: Clock> Clone for TieCancelService<C> {
    fn clone(&self) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<C: Clock> TieCancelService<C> {
    /// Cancels ties on `registry` (the [`TieLayer`]'s).
    pub fn new(registry: Arc<TieRegistry<C>>) -> Self {
        Self { registry }
    }
}

impl<C: Clock, B> Service<Request<B>> for TieCancelService<C> {
    type Response = Response<Bytes>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<Bytes>, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut res = Response::new(Bytes::new());
        match header_str(req.headers(), &X_TAILWATER_TIE) {
            Some(id) => {
                self.registry.cancel(&id, ttl(req.headers()));
                *res.status_mut() = StatusCode::NO_CONTENT;
            }
            None => *res.status_mut() = StatusCode::BAD_REQUEST,
        }
        std::future::ready(Ok(res))
    }
}
