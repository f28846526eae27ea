//! The client-side adaptive throttling layer (SRE book): tailwater-core's
//! [`AdaptiveThrottle`], per criticality tier.
//!
//! The tier is the request's [`Criticality`] extension (set by the
//! [`CriticalityLayer`](crate::CriticalityLayer)), `Critical` when absent. A request
//! rejected locally is answered `503` + `Retry-After: 1` (gRPC `UNAVAILABLE`) without
//! calling the backend; a response the [`Classify`] policy does not call `Dropped` counts
//! as accepted. Metric: `tailwater_throttled_total` (`tier`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tailwater_core::Criticality;
use tailwater_core::algorithm::Outcome;
use tailwater_core::clock::Clock;
use tailwater_core::outbound::{AdaptiveThrottle, Jitter};
use tower::{Layer, Service};

use crate::classify::{Classify, DefaultClassifier};
use crate::edge::{EdgeBody, is_grpc, shed_response};

/// `tailwater_throttled_total`.
pub const THROTTLED_TOTAL: &str = "tailwater_throttled_total";

/// Wraps a client in a [`ThrottleService`].
#[derive(Debug, Clone)]
pub struct ThrottleLayer<C: Clock, P = DefaultClassifier> {
    throttle: Arc<AdaptiveThrottle<C>>,
    jitter: Arc<Jitter>,
    classify: P,
}

impl<C: Clock> ThrottleLayer<C> {
    /// Throttles with `throttle` (one per backend) and the default classification.
    pub fn new(throttle: Arc<AdaptiveThrottle<C>>) -> Self {
        Self {
            throttle,
            jitter: Arc::new(Jitter::default()),
            classify: DefaultClassifier::new(),
        }
    }
}

impl<C: Clock, P> ThrottleLayer<C, P> {
    /// Which responses count as rejections by the backend (default: [`DefaultClassifier`]'s
    /// `Dropped`).
    pub fn classify<Q: Classify>(self, classify: Q) -> ThrottleLayer<C, Q> {
        ThrottleLayer {
            throttle: self.throttle,
            jitter: self.jitter,
            classify,
        }
    }
}

impl<S, C: Clock + Clone, P: Clone> Layer<S> for ThrottleLayer<C, P> {
    type Service = ThrottleService<S, C, P>;
    fn layer(&self, inner: S) -> Self::Service {
        ThrottleService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`ThrottleLayer`].
#[derive(Debug, Clone)]
pub struct ThrottleService<S, C: Clock, P> {
    inner: S,
    layer: ThrottleLayer<C, P>,
}

impl<S, C, P, B, RB> Service<Request<B>> for ThrottleService<S, C, P>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: Clock + Clone,
    P: Classify,
    RB: Send + 'static,
{
    type Response = Response<EdgeBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let tier = req
            .extensions()
            .get::<Criticality>()
            .copied()
            .unwrap_or_default();
        if !self
            .layer
            .throttle
            .admit(tier, self.layer.jitter.next_f64())
        {
            metrics::counter!(THROTTLED_TOTAL, "tier" => tier.as_str()).increment(1);
            let res = shed_response(
                "throttled by the client",
                Duration::from_secs(1),
                is_grpc(req.headers()),
            );
            return Box::pin(std::future::ready(Ok(res.map(EdgeBody::fixed))));
        }
        let fut = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let r = fut.await;
            if let Ok(res) = &r
                && layer
                    .classify
                    .classify_response(res.status(), res.headers())
                    != Outcome::Dropped
            {
                layer.throttle.accepted(tier);
            }
            r.map(|res| res.map(EdgeBody::inner))
        })
    }
}
