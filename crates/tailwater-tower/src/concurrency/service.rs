use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body::Body;
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::limiter::{Acquire, PartitionId, Request as LimiterRequest};
use tailwater_core::{Criticality, Limiter, Permit, Rejection};
use tower::Service;

use super::Bypass;
use super::body::{Guard, ResponseBody};
use super::future::ResponseFuture;
use crate::admission::Admission;
use crate::burn::BurnRates;
use crate::classify::{Classify, DefaultClassifier};
use crate::deadline::Deadline;
use crate::edge::{self, OnReject, Respond};
use crate::observe::{LimiterMetrics, Route};

/// What every clone of a layer and its services share.
pub(crate) struct Common<C: Clock> {
    /// The limiter and the queue wait (the admission steps shared with the proxy).
    pub(crate) admission: Admission<C>,
    pub(crate) metrics: LimiterMetrics,
    /// SLO burn rates fed by every outcome and rejection, if configured.
    pub(crate) burn: Option<Arc<BurnRates>>,
    /// The HTTP header read with `grpc-timeout` for the request's deadline (milliseconds).
    pub(crate) deadline_header: Option<HeaderName>,
}

impl<C: Clock> Common<C> {
    pub(crate) fn new(limiter: Limiter<C>, route: Route) -> Self {
        Self {
            admission: Admission::new(limiter),
            metrics: LimiterMetrics::new(route),
            burn: None,
            deadline_header: None,
        }
    }

    /// The limiter.
    pub(crate) fn limiter(&self) -> &Limiter<C> {
        self.admission.limiter()
    }

    /// Feeds the burn rates (if any) one event: `bad` for drops and rejections.
    pub(crate) fn burn(&self, bad: bool) {
        if let Some(b) = &self.burn {
            b.record_and_export(self.limiter().clock().now(), bad, self.metrics.route());
        }
    }

    pub(crate) fn route(&self) -> &Route {
        self.metrics.route()
    }

    pub(crate) fn record_gauges(&self) {
        let l = self.limiter();
        self.metrics.gauges(
            || l.stats().algorithm,
            l.limit(),
            l.in_flight(),
            l.queue_depth(),
        );
    }

    pub(crate) fn admitted(&self, permit: &Permit<'_, C>) {
        self.metrics.admitted(permit.tier(), permit.is_bypass());
        self.record_gauges();
    }

    /// A copy for a new route name or burn rates, keeping every other setting.
    pub(crate) fn rebuilt(&self, route: Route, burn: Option<Arc<BurnRates>>) -> Self {
        let mut common = Common::new(self.limiter().clone(), route);
        common.admission = self.admission.clone();
        common.burn = burn;
        common.deadline_header = self.deadline_header.clone();
        common
    }

    pub(crate) fn rejected(&self, rejection: &Rejection) {
        self.metrics.rejected(rejection.tier, rejection.reason);
        self.burn(true);
        self.record_gauges();
    }
}

/// Adaptive concurrency limiting with the permit held until the response body ends. See
/// the [module docs](super) and [`ConcurrencyLayer`](super::ConcurrencyLayer).
pub struct Concurrency<S, C: Clock = MonotonicClock, P = DefaultClassifier, R = Respond> {
    inner: S,
    common: Arc<Common<C>>,
    classifier: P,
    on_reject: R,
}

impl<S, C: Clock> Concurrency<S, C> {
    /// Wraps `inner` with the defaults of [`ConcurrencyLayer::new`](super::ConcurrencyLayer::new).
    pub fn new(inner: S, limiter: Limiter<C>) -> Self {
        Self::from_parts(
            inner,
            Arc::new(Common::new(limiter, Route::default())),
            DefaultClassifier::new(),
            Respond,
        )
    }
}

impl<S, C: Clock, P, R> Concurrency<S, C, P, R> {
    pub(crate) fn from_parts(
        inner: S,
        common: Arc<Common<C>>,
        classifier: P,
        on_reject: R,
    ) -> Self {
        Self {
            inner,
            common,
            classifier,
            on_reject,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter<C> {
        self.common.limiter()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clock, P: Clone, R: Clone> Clone for Concurrency<S, C, P, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            common: Arc::clone(&self.common),
            classifier: self.classifier.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<S: fmt::Debug, C: Clock, P: fmt::Debug, R: fmt::Debug> fmt::Debug for Concurrency<S, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Concurrency")
            .field("inner", &self.inner)
            .field("limiter", self.common.limiter())
            .field("route", self.common.route())
            .field("wait", &self.common.admission.wait())
            .field("classifier", &self.classifier)
            .field("on_reject", &self.on_reject)
            .finish()
    }
}

impl<S, C, P, R, ReqB, ResB> Service<Request<ReqB>> for Concurrency<S, C, P, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: 'static,
    ResB: Body,
    ResB::Data: From<Bytes>,
    ResB::Error: 'static,
    C: Clock,
    P: Classify,
    R: OnReject<S::Error>,
{
    type Response = Response<ResponseBody<ResB, C, P>>;
    type Error = R::Error;
    type Future = ResponseFuture<S, Request<ReqB>, C, P, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.on_reject.map_err(e))
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        // The caller's own budget: refused on arrival when already spent (before it costs a
        // permit), kept in the extensions for the service's own downstream calls.
        let deadline = Deadline::of(req.headers(), self.common.deadline_header.as_ref());
        if let Some(d) = deadline {
            if d.is_spent() {
                let tier = req.extensions().get::<Criticality>().copied();
                self.common
                    .metrics
                    .deadline_refused(tier.unwrap_or_default());
                let grpc = edge::is_grpc(req.headers());
                return ResponseFuture::expired(
                    self.classifier.clone(),
                    self.on_reject.clone(),
                    grpc,
                );
            }
            req.extensions_mut().insert(d);
        }
        let ext = req.extensions();
        let tier = ext.get::<Criticality>().copied().unwrap_or_default();
        let mut admission = LimiterRequest::new()
            .tier(tier)
            .bypass(ext.get::<Bypass>().is_some());
        if let Some(partition) = ext.get::<PartitionId>() {
            admission = admission.partition(*partition);
        }
        let grpc = edge::is_grpc(req.headers());
        let common = Arc::clone(&self.common);
        let classifier = self.classifier.clone();
        let on_reject = self.on_reject.clone();

        let budget = deadline.as_ref().map(Deadline::remaining);
        let acquired = match self.common.admission.acquire(admission, budget) {
            Ok(Acquire::Ready(permit)) => Ok(permit),
            Ok(Acquire::Queued(waiter)) => {
                // The inner service was made ready by `poll_ready`: the call happens later
                // (after the wait), so take the ready one and leave a clone behind.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::waiting(
                    waiter, ready, req, deadline, common, classifier, on_reject, grpc,
                );
            }
            Err(rejection) => Err(rejection),
        };
        match acquired {
            Ok(permit) => {
                common.admitted(&permit);
                let guard = Guard::new(permit, Arc::clone(&common));
                let future = self.inner.call(req);
                ResponseFuture::called(future, guard, classifier, on_reject, grpc)
            }
            Err(rejection) => {
                common.rejected(&rejection);
                ResponseFuture::rejected(rejection, classifier, on_reject, grpc)
            }
        }
    }
}
