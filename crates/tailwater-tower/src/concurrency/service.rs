use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::limiter::PartitionId;
use tailwater_core::{Criticality, Limiter, Rejection};
use tower::Service;

use super::Bypass;
use super::body::{Guard, ResponseBody};
use super::future::ResponseFuture;
use crate::admission::{Admission, AdmitObserver, AdmittedInfo, Arrival, Limited, Refusal};
use crate::burn::BurnRates;
use crate::classify::{Classify, DefaultClassifier};
use crate::edge::{self, OnReject, Respond};
use crate::observe::{LimiterMetrics, Route};

/// What every clone of a layer and its services share.
pub(crate) struct Common<C: Clock> {
    /// The admission steps shared with the proxy: the limiter, the queue wait and the
    /// deadline header.
    pub(crate) admission: Admission<C>,
    pub(crate) metrics: LimiterMetrics,
    /// SLO burn rates fed by every outcome and rejection, if configured.
    pub(crate) burn: Option<Arc<BurnRates>>,
}

impl<C: Clock> Common<C> {
    pub(crate) fn new(limiter: Limiter<C>, route: Route) -> Self {
        Self {
            admission: Admission::new(limiter),
            metrics: LimiterMetrics::new(route),
            burn: None,
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

    /// Adds what the layer and its services show of the shared state to their `Debug`.
    pub(crate) fn debug_fields<'d, 'a, 'b>(
        &self,
        d: &'d mut fmt::DebugStruct<'a, 'b>,
    ) -> &'d mut fmt::DebugStruct<'a, 'b> {
        d.field("limiter", self.limiter())
            .field("route", self.route())
            .field("wait", &self.admission.wait())
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

    pub(crate) fn admitted(&self, tier: Criticality, bypass: bool) {
        self.metrics.admitted(tier, bypass);
        self.record_gauges();
    }

    /// A copy for a new route name or burn rates, keeping every other setting.
    pub(crate) fn rebuilt(&self, route: Route, burn: Option<Arc<BurnRates>>) -> Self {
        let mut common = Common::new(self.limiter().clone(), route);
        common.admission = self.admission.clone();
        common.burn = burn;
        common
    }

    pub(crate) fn rejected(&self, rejection: &Rejection) {
        self.metrics.rejected(rejection.tier, rejection.reason);
        self.burn(true);
        self.record_gauges();
    }
}

/// What the layer counts of an admission: its limiter metrics, the queue wait, the burn
/// rates (the proxy counts its own through its own observer).
pub(crate) struct Observer<'a, C: Clock>(pub(crate) &'a Common<C>);

impl<C: Clock> AdmitObserver for Observer<'_, C> {
    #[inline]
    fn refused(&mut self, refusal: &Refusal, tier: Criticality, waited: Option<Duration>) {
        if let Some(w) = waited {
            // Granted, but too late for the caller's deadline: the wait itself succeeded.
            let granted = matches!(refusal, Refusal::DeadlineExceeded);
            self.0.metrics.queue_wait(granted, w);
        }
        match refusal {
            Refusal::DeadlineExceeded => self.0.metrics.deadline_refused(tier),
            Refusal::Shed(rejection) => self.0.rejected(rejection),
            // The layer has no body cap and no rate limits (`RateLimitLayer` counts its own).
            Refusal::BodyTooLarge | Refusal::RateLimited { .. } => {}
        }
    }

    #[inline]
    fn admitted(&mut self, info: &AdmittedInfo, waited: Option<Duration>) {
        if let Some(w) = waited {
            self.0.metrics.queue_wait(true, w);
        }
        self.0.admitted(info.tier, info.bypass);
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

    inner_accessors!();
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
        self.common
            .debug_fields(f.debug_struct("Concurrency").field("inner", &self.inner))
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
        // The tier, partition and bypass come from the extensions (`CriticalityLayer`
        // applied its policy); the admission's steps do the rest.
        let ext = req.extensions();
        let arrival = Arrival {
            tier: Some(ext.get::<Criticality>().copied().unwrap_or_default()),
            partition: ext.get::<PartitionId>().copied(),
            bypass: ext.get::<Bypass>().is_some(),
            ..Arrival::new(None, tokio::time::Instant::now())
        };
        let grpc = edge::is_grpc(req.headers());
        let common = Arc::clone(&self.common);
        let classifier = self.classifier.clone();
        let on_reject = self.on_reject.clone();
        let admission = &common.admission;
        let mut obs = Observer(&common);
        let limited = admission
            .screen(&req, &arrival, &mut obs)
            .and_then(|screened| {
                // Kept in the extensions for the service's own downstream calls.
                if let Some(d) = screened.deadline {
                    req.extensions_mut().insert(d);
                }
                admission.limit(screened, &mut obs)
            });
        match limited {
            Ok(Limited::Ready(admitted)) => {
                let guard = Guard::new(admitted.ticket, Arc::clone(&common));
                let future = self.inner.call(req);
                ResponseFuture::called(future, guard, classifier, on_reject, grpc)
            }
            Ok(Limited::Queued(queued)) => {
                // The inner service was made ready by `poll_ready`: the call happens later
                // (after the wait), so take the ready one and leave a clone behind.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(queued, ready, req, common, classifier, on_reject, grpc)
            }
            Err(refusal) => ResponseFuture::refused(refusal, classifier, on_reject, grpc),
        }
    }
}
