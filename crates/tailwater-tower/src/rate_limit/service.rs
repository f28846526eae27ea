use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tailwater_core::Criticality;
use tailwater_core::rate::{MultiQuota, RateDecision, RateStore, StoreError};
use tower::Service;

use super::error::RateLimited;
use super::future::{CheckFuture, ResponseFuture};
use super::key::KeyExtractor;
use super::layer::{MissingKey, OnStoreError, Settings};
use crate::admission::{RateVerdict, rate_verdict};
use crate::edge::{self, EdgeBody, OnReject, Respond};

/// Rate limiting keyed by a [`KeyExtractor`] on a [`RateStore`]. See the
/// [module docs](super) and [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, K, St, R = Respond> {
    inner: S,
    store: Arc<St>,
    quotas: Arc<MultiQuota>,
    settings: Arc<Settings>,
    extractor: K,
    on_reject: R,
}

impl<S, K, St, R> RateLimit<S, K, St, R> {
    pub(crate) fn from_parts(
        inner: S,
        store: Arc<St>,
        quotas: Arc<MultiQuota>,
        settings: Arc<Settings>,
        extractor: K,
        on_reject: R,
    ) -> Self {
        Self {
            inner,
            store,
            quotas,
            settings,
            extractor,
            on_reject,
        }
    }

    inner_accessors!();
}

impl<S: Clone, K: Clone, St, R: Clone> Clone for RateLimit<S, K, St, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: Arc::clone(&self.store),
            quotas: Arc::clone(&self.quotas),
            settings: Arc::clone(&self.settings),
            extractor: self.extractor.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, St, R: fmt::Debug> fmt::Debug for RateLimit<S, K, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("quotas", &self.quotas)
            .field("route", self.settings.metrics.route())
            .field("extractor", &self.extractor)
            .field("on_reject", &self.on_reject)
            .finish_non_exhaustive()
    }
}

/// What both rate-limit services read from a request's head before deciding: `read`'s
/// answer (the key, or the remote check), the tier (`Critical` when unmarked; metrics and
/// denials are labelled with it) and whether it is gRPC (a denial is then written as gRPC
/// status trailers, not a 429 body). The request comes back whole.
pub(super) fn read_head<B, T>(
    req: Request<B>,
    read: impl FnOnce(&http::request::Parts) -> T,
) -> (Request<B>, T, Criticality, bool) {
    let (parts, body) = req.into_parts();
    let answer = read(&parts);
    let tier = parts
        .extensions
        .get::<Criticality>()
        .copied()
        .unwrap_or_default();
    let grpc = edge::is_grpc(&parts.headers);
    (Request::from_parts(parts, body), answer, tier, grpc)
}

/// The verdict on one request.
pub(crate) enum Verdict {
    /// Call the inner service; add the `RateLimit*` headers for this decision if any.
    Admit(Option<RateDecision>),
    /// Answer with the rejection.
    Reject(RateLimited),
}

/// Turns a store answer into a verdict, with metrics and tracing.
pub(crate) fn judge(
    settings: &Settings,
    tier: Criticality,
    result: Result<RateDecision, StoreError>,
) -> Verdict {
    judge_with(settings, tier, result, Some(&settings.policies))
}

/// [`judge`] with the policies a denial renders (a remote limiter's, per call).
pub(crate) fn judge_with(
    settings: &Settings,
    tier: Criticality,
    result: Result<RateDecision, StoreError>,
    policies: Option<&Arc<crate::edge::RateLimitPolicies>>,
) -> Verdict {
    let m = &settings.metrics;
    match rate_verdict(result, settings.on_error, policies) {
        RateVerdict::Admit(d) => {
            m.decision(tier, "admitted", None);
            Verdict::Admit(settings.headers_on_success.then_some(d))
        }
        RateVerdict::Reject(rejected) => {
            if let Some(e) = rejected.store_error() {
                warn_store_failed(settings, e);
            }
            m.decision(tier, "rejected", Some(rejected.reason()));
            Verdict::Reject(rejected)
        }
        RateVerdict::FailedOpen(e) => {
            warn_store_failed(settings, &e);
            m.decision(tier, "store_error", Some(e.kind()));
            Verdict::Admit(None)
        }
    }
}

fn warn_store_failed(settings: &Settings, e: &StoreError) {
    tracing::warn!(
        target: "tailwater",
        route = settings.metrics.route().as_str(),
        error = %e,
        fail_open = settings.on_error == OnStoreError::FailOpen,
        "rate-limit store failed"
    );
}

impl<S, K, St, R, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, K, St, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ResB: Body,
    ResB::Data: From<Bytes>,
    K: KeyExtractor,
    St: RateStore + 'static,
    R: OnReject<S::Error>,
{
    type Response = Response<EdgeBody<ResB>>;
    type Error = R::Error;
    type Future = ResponseFuture<S, Request<ReqB>, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.on_reject.map_err(e))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (req, key, tier, grpc) = read_head(req, |head| self.extractor.extract(head));
        let settings = Arc::clone(&self.settings);
        let on_reject = self.on_reject.clone();

        let key = match (key, &settings.missing) {
            (Some(k), _) => k,
            (None, MissingKey::Shared(k)) => k.clone(),
            (None, MissingKey::Allow) => {
                settings.metrics.decision(tier, "unkeyed", None);
                let future = self.inner.call(req);
                return ResponseFuture::called(future, None, settings, on_reject, grpc);
            }
        };
        let key = match &settings.prefix {
            Some(p) => format!("{p}{key}"),
            None => key,
        };

        let store = Arc::clone(&self.store);
        let quotas = Arc::clone(&self.quotas);
        let mut check: CheckFuture =
            Box::pin(async move { store.check(&key, quotas.quotas(), 1).await });
        // In-memory stores answer at once: decide now, without cloning the inner service.
        let first = check.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        match first {
            Poll::Ready(result) => match judge(&settings, tier, result) {
                Verdict::Admit(d) => {
                    let future = self.inner.call(req);
                    ResponseFuture::called(future, d, settings, on_reject, grpc)
                }
                Verdict::Reject(r) => ResponseFuture::rejected(r, settings, on_reject, grpc),
            },
            Poll::Pending => {
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, ready, req, tier, settings, on_reject, grpc)
            }
        }
    }
}
