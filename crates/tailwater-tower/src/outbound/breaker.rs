//! The circuit-breaker layer: tailwater-core's [`CircuitBreaker`] in front of a client.
//!
//! Open (or half-open with every probe out) → the layer answers `503` + `Retry-After`, or
//! gRPC `UNAVAILABLE` + `grpc-retry-pushback-ms`, at once: the inner service is never
//! called. Otherwise the call goes through and its outcome, read by a [`Classify`] policy
//! from the response head or the error, is recorded with the server's pushback (a floor for
//! the open interval). A gRPC response whose head carries no `grpc-status` (a streamed
//! answer) is judged when its body ends: the trailers' status (through
//! [`Classify::classify_trailers`]), a body error, or a clean end without trailers (success);
//! the permit rides in the [`BreakerBody`] until then.
//!
//! Metrics ([`crate::observe`] conventions): `tailwater_breaker_state` (gauge: 0 closed,
//! 1 half-open, 2 open), `tailwater_breaker_transitions_total` (`from`, `to`) and
//! `tailwater_breaker_rejections_total`, each labelled `breaker` with the layer's name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tailwater_core::algorithm::Outcome;
use tailwater_core::clock::Clock;
use tailwater_core::outbound::{BreakerConfig, BreakerPermit, CircuitBreaker, Transition};
use tower::{Layer, Service};

use super::signals::{hint, read_response};
use crate::classify::{Classify, DefaultClassifier};
use crate::edge::{EdgeBody, GRPC_STATUS, is_grpc, shed_response};

/// `tailwater_breaker_state`.
pub const BREAKER_STATE: &str = "tailwater_breaker_state";
/// `tailwater_breaker_transitions_total`.
pub const BREAKER_TRANSITIONS_TOTAL: &str = "tailwater_breaker_transitions_total";
/// `tailwater_breaker_rejections_total`.
pub const BREAKER_REJECTIONS_TOTAL: &str = "tailwater_breaker_rejections_total";

/// The breaker's default policy: [`DefaultClassifier`], except that `429` says nothing about
/// the dependency's health (it is alive and rate limiting: `research/outbound.md` §4 counts
/// only server failures), so it is `Ignored`.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tailwater_tower::classify::{Classify, Outcome};
/// use tailwater_tower::outbound::breaker::ServerFailures;
/// let c = ServerFailures;
/// assert_eq!(c.classify_response(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()), Outcome::Ignored);
/// assert_eq!(c.classify_response(StatusCode::BAD_GATEWAY, &HeaderMap::new()), Outcome::Dropped);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerFailures;

impl Classify for ServerFailures {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        match status {
            StatusCode::TOO_MANY_REQUESTS => Outcome::Ignored,
            _ => DefaultClassifier::new().classify_response(status, headers),
        }
    }
}

/// Builds a core breaker whose transitions are metrics labelled `breaker = name`.
///
/// ```
/// use tailwater_core::clock::MonotonicClock;
/// use tailwater_core::outbound::BreakerConfig;
/// use tailwater_tower::outbound::{CircuitBreakerLayer, breaker::observed_breaker};
/// let breaker = observed_breaker("users", BreakerConfig::default(), MonotonicClock::new())?;
/// let layer = CircuitBreakerLayer::new(breaker, "users");
/// # let _ = layer;
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub fn observed_breaker<C: Clock>(
    name: &'static str,
    config: BreakerConfig,
    clock: C,
) -> Result<CircuitBreaker<C>, tailwater_core::ConfigError> {
    metrics::gauge!(BREAKER_STATE, "breaker" => name).set(0.0);
    CircuitBreaker::with_observer(
        config,
        clock,
        Arc::new(move |t: Transition| {
            metrics::gauge!(BREAKER_STATE, "breaker" => name).set(t.to.as_gauge());
            metrics::counter!(BREAKER_TRANSITIONS_TOTAL, "breaker" => name,
                "from" => t.from.as_str(), "to" => t.to.as_str())
            .increment(1);
            tracing::info!(target: "tailwater", breaker = name, from = t.from.as_str(),
                to = t.to.as_str(), open_for = ?t.open_for, "circuit breaker transition");
        }),
    )
}

/// Wraps a client service in a [`CircuitBreakerService`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C: Clock, P = ServerFailures> {
    breaker: CircuitBreaker<C>,
    classify: P,
    name: &'static str,
}

impl<C: Clock> CircuitBreakerLayer<C> {
    /// A layer on `breaker` (shared by every service it wraps) with the default
    /// classification; `name` labels its metrics.
    pub fn new(breaker: CircuitBreaker<C>, name: &'static str) -> Self {
        Self {
            breaker,
            classify: ServerFailures,
            name,
        }
    }
}

impl<C: Clock, P> CircuitBreakerLayer<C, P> {
    /// Which outcomes count as failures (default: [`ServerFailures`]: 5xx, gRPC 4 / 8 / 14,
    /// errors; not 429).
    pub fn classify<Q: Classify>(self, classify: Q) -> CircuitBreakerLayer<C, Q> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify,
            name: self.name,
        }
    }
}

impl<S, C: Clock, P: Clone> Layer<S> for CircuitBreakerLayer<C, P> {
    type Service = CircuitBreakerService<S, C, P>;
    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
            name: self.name,
        }
    }
}

/// See [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C: Clock, P> {
    inner: S,
    breaker: CircuitBreaker<C>,
    classify: P,
    name: &'static str,
}

impl<S, C, P, B, RB> Service<Request<B>> for CircuitBreakerService<S, C, P>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    S::Error: 'static,
    C: Clock,
    P: Classify,
    RB: Send + 'static,
{
    type Response = Response<EdgeBody<BreakerBody<RB, C, P>>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let permit = match self.breaker.try_acquire() {
            Ok(p) => p,
            Err(open) => {
                metrics::counter!(BREAKER_REJECTIONS_TOTAL, "breaker" => self.name).increment(1);
                let res = shed_response(
                    "circuit breaker open",
                    open.retry_after,
                    is_grpc(req.headers()),
                );
                return Box::pin(std::future::ready(Ok(res.map(EdgeBody::fixed))));
            }
        };
        let fut = self.inner.call(req);
        let classify = self.classify.clone();
        Box::pin(async move {
            match fut.await {
                Ok(res) => {
                    let streamed = res.status() == StatusCode::OK
                        && is_grpc(res.headers())
                        && !res.headers().contains_key(&GRPC_STATUS);
                    if streamed {
                        // The status comes in the trailers: judged when the body ends.
                        return Ok(res.map(|b| {
                            EdgeBody::inner(BreakerBody {
                                inner: b,
                                pending: Some((permit, classify)),
                            })
                        }));
                    }
                    let outcome = classify.classify_response(res.status(), res.headers());
                    let (_, pushback) = read_response(res.status(), res.headers());
                    permit.record_with_hint(outcome, hint(pushback));
                    Ok(res.map(|b| {
                        EdgeBody::inner(BreakerBody {
                            inner: b,
                            pending: None,
                        })
                    }))
                }
                Err(e) => {
                    permit.record(classify.classify_error(&e));
                    Err(e)
                }
            }
        })
    }
}

pin_project! {
    /// The body of a response through [`CircuitBreakerService`]: for a streamed gRPC answer
    /// it holds the breaker's permit and records the outcome when the body ends (trailers,
    /// error, or a clean end); otherwise it only forwards. Dropped before its end, the call
    /// counts as `Ignored` (the caller stopped reading; nothing was learnt).
    pub struct BreakerBody<B, C: Clock, P> {
        #[pin]
        inner: B,
        pending: Option<(BreakerPermit<C>, P)>,
    }
}

impl<B, C, P> Body for BreakerBody<B, C, P>
where
    B: Body,
    B::Error: 'static,
    C: Clock,
    P: Classify,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some((permit, classify)) = this.pending.take() {
            match &frame {
                Some(Ok(f)) => match f.trailers_ref() {
                    Some(t) => {
                        permit.record(classify.classify_trailers(t).unwrap_or(Outcome::Success))
                    }
                    None => *this.pending = Some((permit, classify)),
                },
                Some(Err(e)) => permit.record(classify.classify_body_error(e)),
                None => permit.record(Outcome::Success),
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
