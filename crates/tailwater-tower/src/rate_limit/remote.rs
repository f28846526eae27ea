//! Rate limiting decided by a remote service that sees the request (an Envoy rate limit
//! service, through `tailwater-rls`'s client), with the same answers and failure policy
//! as [`RateLimitLayer`](super::RateLimitLayer).
//!
//! The remote limiter ([`RemoteLimiter`]) builds what it sends from the request's parts
//! (Envoy's descriptors) and answers a [`RemoteDecision`]: a core
//! [`RateDecision`] (a denial's `retry_after` becomes `Retry-After`) and, when the service
//! reported the limit that decided, its name and quota for the `RateLimit-Policy` /
//! `RateLimit` headers. A request the limiter has nothing to ask about is not limited
//! (`decision="unkeyed"`). A failed or late call follows [`OnStoreError`]: fail open (the
//! default) or fail closed (`503`, gRPC `UNAVAILABLE`). The limiter bounds its own call
//! time (its per-call timeout); this layer adds none.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use tailwater_core::rate::{Quota, RateDecision, StoreError};
use tower::{Layer, Service};

use super::error::reset_secs;
use super::layer::{MissingKey, OnStoreError, Settings};
use super::service::{Verdict, judge_with, read_head};
use crate::edge::{self, EdgeBody, OnReject, RateLimitPolicies, Respond, ReturnError};
use crate::observe::{RateLimitMetrics, Route};

/// The answer of a remote limiter for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteDecision {
    /// The decision (for a denial, `retry_after` is when to come back).
    pub decision: RateDecision,
    /// The limit that decided, by name, for the `RateLimit*` headers; `None`: no headers.
    pub policy: Option<(String, Quota)>,
}

/// The boxed future of one remote check (the call to the service, its timeout included).
pub type RemoteCheck = Pin<Box<dyn Future<Output = Result<RemoteDecision, StoreError>> + Send>>;

/// A limiter that decides remotely from the request itself.
pub trait RemoteLimiter: Send + Sync + 'static {
    /// The check for `request`, or `None` when there is nothing to ask (e.g. no descriptor
    /// could be built from it). The future must finish within the limiter's own timeout.
    fn check(&self, request: &Parts) -> Option<RemoteCheck>;
}

impl<L: RemoteLimiter + ?Sized> RemoteLimiter for Arc<L> {
    fn check(&self, request: &Parts) -> Option<RemoteCheck> {
        (**self).check(request)
    }
}

/// Applies [`RemoteRateLimit`] to a service: each request is decided by a
/// [`RemoteLimiter`]. See the [module docs](self).
pub struct RemoteRateLimitLayer<L, R = Respond> {
    limiter: Arc<L>,
    settings: Settings,
    on_reject: R,
}

impl<L: RemoteLimiter> RemoteRateLimitLayer<L> {
    /// Limits every request by `limiter`; failures open by default.
    pub fn new(limiter: L) -> Self {
        Self {
            limiter: Arc::new(limiter),
            settings: Settings {
                // Unused: a remote decision brings its own policy.
                policies: Arc::new(placeholder_policies()),
                metrics: Arc::new(RateLimitMetrics::new(Route::default())),
                missing: MissingKey::Allow,
                on_error: OnStoreError::default(),
                headers_on_success: true,
                prefix: None,
            },
            on_reject: Respond,
        }
    }
}

fn placeholder_policies() -> RateLimitPolicies {
    match Quota::per_second(1).and_then(|q| RateLimitPolicies::new([("remote", q)])) {
        Ok(p) => p,
        Err(e) => unreachable!("a fixed valid policy was refused: {e}"),
    }
}

impl<L, R> RemoteRateLimitLayer<L, R> {
    /// The `route` label on metrics and tracing (default `default`).
    pub fn route(mut self, route: impl AsRef<str>) -> Self {
        self.settings.metrics = Arc::new(RateLimitMetrics::new(Route::new(route)));
        self
    }

    /// What to do when the remote call fails or times out (default
    /// [`OnStoreError::FailOpen`]).
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.settings.on_error = on_error;
        self
    }

    /// Whether admitted responses carry `RateLimit-Policy` / `RateLimit` (default `true`).
    pub fn headers_on_success(mut self, on: bool) -> Self {
        self.settings.headers_on_success = on;
        self
    }

    /// Replaces what rejections become.
    pub fn on_reject<R2>(self, on_reject: R2) -> RemoteRateLimitLayer<L, R2> {
        RemoteRateLimitLayer {
            limiter: self.limiter,
            settings: self.settings,
            on_reject,
        }
    }

    /// Returns rejections as a boxed [`RateLimited`](super::error::RateLimited) error.
    pub fn return_error(self) -> RemoteRateLimitLayer<L, ReturnError> {
        self.on_reject(ReturnError)
    }

    /// The limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }
}

impl<L, R: Clone> Clone for RemoteRateLimitLayer<L, R> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            settings: self.settings.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<L, R: fmt::Debug> fmt::Debug for RemoteRateLimitLayer<L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRateLimitLayer")
            .field("route", self.settings.metrics.route())
            .field("on_error", &self.settings.on_error)
            .field("on_reject", &self.on_reject)
            .finish_non_exhaustive()
    }
}

impl<S, L, R: Clone> Layer<S> for RemoteRateLimitLayer<L, R> {
    type Service = RemoteRateLimit<S, L, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RemoteRateLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
            settings: Arc::new(self.settings.clone()),
            on_reject: self.on_reject.clone(),
        }
    }
}

/// Rate limiting by a [`RemoteLimiter`]. See [`RemoteRateLimitLayer`].
pub struct RemoteRateLimit<S, L, R = Respond> {
    inner: S,
    limiter: Arc<L>,
    settings: Arc<Settings>,
    on_reject: R,
}

impl<S: Clone, L, R: Clone> Clone for RemoteRateLimit<S, L, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            settings: Arc::clone(&self.settings),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<S: fmt::Debug, L, R: fmt::Debug> fmt::Debug for RemoteRateLimit<S, L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRateLimit")
            .field("inner", &self.inner)
            .field("route", self.settings.metrics.route())
            .field("on_reject", &self.on_reject)
            .finish_non_exhaustive()
    }
}

/// The response future of [`RemoteRateLimit`] (boxed: it waits on a network call anyway).
pub type RemoteFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, L, R, ReqB, ResB> Service<Request<ReqB>> for RemoteRateLimit<S, L, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: From<Bytes>,
    L: RemoteLimiter,
    R: OnReject<S::Error>,
    R::Error: Send + 'static,
{
    type Response = Response<EdgeBody<ResB>>;
    type Error = R::Error;
    type Future = RemoteFuture<Self::Response, R::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.on_reject.map_err(e))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (req, check, tier, grpc) = read_head(req, |head| self.limiter.check(head));
        let settings = Arc::clone(&self.settings);
        let on_reject = self.on_reject.clone();
        // The service that was made ready goes with this request; a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Some(check) = check else {
                settings.metrics.decision(tier, "unkeyed", None);
                let res = inner.call(req).await.map_err(|e| on_reject.map_err(e))?;
                return Ok(res.map(EdgeBody::inner));
            };
            let answer = check.await;
            let (result, policies) = match answer {
                Ok(r) => {
                    let p = r
                        .policy
                        .and_then(|(name, q)| RateLimitPolicies::new([(name, q)]).ok())
                        .map(Arc::new);
                    (Ok(r.decision), p)
                }
                Err(e) => (Err(e), None),
            };
            match judge_with(&settings, tier, result, policies.as_ref()) {
                Verdict::Admit(d) => {
                    let mut res = inner.call(req).await.map_err(|e| on_reject.map_err(e))?;
                    if let (Some(d), Some(p)) = (d, &policies) {
                        p.insert(res.headers_mut(), 0, d.remaining, reset_secs(&d));
                    }
                    Ok(res.map(EdgeBody::inner))
                }
                Verdict::Reject(r) => on_reject.reject(r, grpc).map(edge::into_edge),
            }
        })
    }
}
