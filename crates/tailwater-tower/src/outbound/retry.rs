//! The retry layer: tailwater-core's [`RetryPolicy`] and shared [`RetryBudget`] around a
//! client.
//!
//! Each request deposits into the budget; after a retryable failure (502/503/504, gRPC
//! `UNAVAILABLE`, or an error from the inner service) the policy decides: capped attempts
//! (3), full-jitter backoff (25–250 ms), `Retry-After` / `grpc-retry-pushback-ms` as the
//! floor, never after `429`, `x-envoy-ratelimited` or a negative gRPC pushback, never past
//! the request's `grpc-timeout`, and only while the budget (charged *before* the backoff
//! sleep) allows. Only idempotent methods are retried unless
//! [`retry_non_idempotent`](RetryLayer::retry_non_idempotent) says otherwise.
//!
//! The request body must be `Clone` (e.g. `Full<Bytes>`): it is sent again as it was.
//! Metric: `tailwater_retries_total` (`decision` = `retried` or the give-up reason, for
//! requests that failed at least once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tailwater_core::clock::Clock;
use tailwater_core::outbound::{Jitter, Pushback, RetryBudget, RetryDecision, RetryPolicy};
use tower::{Layer, Service};

use super::signals::{is_idempotent, read_response};
use crate::edge::grpc_timeout;

/// `tailwater_retries_total`.
pub const RETRIES_TOTAL: &str = "tailwater_retries_total";

/// Copies a request: method, URI, version, headers, extensions and the (cloned) body.
pub fn clone_request<B: Clone>(r: &Request<B>) -> Request<B> {
    let mut n = Request::new(r.body().clone());
    *n.method_mut() = r.method().clone();
    *n.uri_mut() = r.uri().clone();
    *n.version_mut() = r.version();
    *n.headers_mut() = r.headers().clone();
    *n.extensions_mut() = r.extensions().clone();
    n
}

/// Wraps a client in a [`RetryService`].
///
/// ```
/// use std::sync::Arc;
/// use tailwater_core::outbound::{BudgetConfig, RetryBudget, RetryPolicy};
/// use tailwater_tower::outbound::RetryLayer;
/// let budget = Arc::new(RetryBudget::new(BudgetConfig::default())?); // share with hedging
/// let layer = RetryLayer::new(budget, RetryPolicy::default());
/// # let _ = layer;
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct RetryLayer<C: Clock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Everything a call needs, behind one `Arc` (one reference count per call).
#[derive(Debug)]
struct Shared<C: Clock> {
    budget: Arc<RetryBudget<C>>,
    policy: RetryPolicy,
    jitter: Jitter,
    non_idempotent: bool,
}

impl<C: Clock> RetryLayer<C> {
    /// Retries within `budget` (share it with the [`HedgeLayer`](super::HedgeLayer) of the
    /// same downstream) by `policy`.
    pub fn new(budget: Arc<RetryBudget<C>>, policy: RetryPolicy) -> Self {
        Self {
            shared: Arc::new(Shared {
                budget,
                policy,
                jitter: Jitter::default(),
                non_idempotent: false,
            }),
        }
    }

    /// Also retry POST and PATCH (default `false`: they may not be safe to repeat).
    pub fn retry_non_idempotent(self, yes: bool) -> Self {
        let s = &self.shared;
        Self {
            shared: Arc::new(Shared {
                budget: Arc::clone(&s.budget),
                policy: s.policy,
                jitter: Jitter::default(),
                non_idempotent: yes,
            }),
        }
    }
}

impl<S, C: Clock> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`RetryLayer`].
#[derive(Debug)]
pub struct RetryService<S, C: Clock> {
    inner: S,
    layer: RetryLayer<C>,
}

impl<S: Clone, C: Clock> Clone for RetryService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, C, B, RB> Service<Request<B>> for RetryService<S, C>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    C: Clock,
    B: Clone + Send + 'static,
    RB: Send,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let layer = Arc::clone(&self.layer.shared);
        layer.budget.deposit();
        // The ready service answers the first attempt; a fresh clone the retries.
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        let may_retry = layer.non_idempotent || is_idempotent(req.method());
        let deadline = grpc_timeout(req.headers()).map(|t| tokio::time::Instant::now() + t);
        Box::pin(async move {
            let mut attempt = 1u32;
            let mut result = svc.call(clone_request(&req)).await;
            loop {
                let (retryable, pushback) = match &result {
                    Ok(res) => read_response(res.status(), res.headers()),
                    Err(_) => (true, Pushback::None),
                };
                let remaining =
                    deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
                let decision = layer.policy.decide(
                    attempt,
                    retryable && may_retry,
                    pushback,
                    remaining,
                    &layer.budget,
                    layer.jitter.next_f64(),
                );
                match decision {
                    RetryDecision::After(delay) => {
                        metrics::counter!(RETRIES_TOTAL, "decision" => "retried").increment(1);
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                        result = svc.call(clone_request(&req)).await;
                    }
                    RetryDecision::GiveUp(why) => {
                        if retryable {
                            metrics::counter!(RETRIES_TOTAL, "decision" => why.as_str())
                                .increment(1);
                        }
                        return result;
                    }
                }
            }
        })
    }
}
