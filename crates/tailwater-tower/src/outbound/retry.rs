//! The retry layer: tailwater-core's [`RetryPolicy`] and shared [`RetryBudget`] around a
//! client.
//!
//! Each request deposits into the budget; after a retryable failure (502/503/504, gRPC
//! `UNAVAILABLE`, or an error from the inner service) the policy decides: capped attempts
//! (3), full-jitter backoff (25–250 ms), `Retry-After` / `grpc-retry-pushback-ms` as the
//! floor (delta-seconds or an HTTP-date), never after `429`, `x-envoy-ratelimited` or a
//! negative gRPC pushback, never past the request's `grpc-timeout` (or
//! [`deadline_header`](RetryLayer::deadline_header)), and only while the budget (charged
//! *before* the backoff sleep) allows. Only idempotent methods are retried unless
//! [`retry_non_idempotent`](RetryLayer::retry_non_idempotent) says otherwise.
//!
//! A response is judged on its head: a gRPC status arriving in the trailers of a streamed
//! response is not retried (gRPC A6: an RPC is committed once response headers arrive; the
//! body may already be with the caller).
//!
//! Every retry carries `x-tailwater-attempt: N` (and, for gRPC, `grpc-previous-rpc-attempts`;
//! see [`mark_attempt`]).
//!
//! The request body must be `Clone` (e.g. `Full<Bytes>`): it is sent again as it was.
//! Metric: `tailwater_retries_total` (`decision` = `retried` or the give-up reason, for
//! requests that failed at least once).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderName, Request, Response};
use pin_project_lite::pin_project;
use tailwater_core::clock::Clock;
use tailwater_core::outbound::{GiveUp, Jitter, Pushback, RetryBudget, RetryDecision, RetryPolicy};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::signals::{is_idempotent, mark_attempt, read_response};
use crate::deadline::request_deadline;

/// `tailwater_retries_total`.
pub const RETRIES_TOTAL: &str = "tailwater_retries_total";

/// Copies a request: method, URI, version, headers, extensions and the (cloned) body.
///
/// `Request`'s own `Clone`, field by field: building a default request and overwriting its
/// parts (default URI and header map built, then dropped) cost ~40 % more per call.
#[inline]
pub fn clone_request<B: Clone>(r: &Request<B>) -> Request<B> {
    r.clone()
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
    /// Read with `grpc-timeout` for the request's deadline ([`request_deadline`]).
    deadline_header: Option<HeaderName>,
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
                deadline_header: None,
            }),
        }
    }

    /// Also retry POST and PATCH (default `false`: they may not be safe to repeat).
    pub fn retry_non_idempotent(self, yes: bool) -> Self {
        self.with(|s| s.non_idempotent = yes)
    }

    /// Also read the request's deadline from `header` (remaining milliseconds, as the
    /// proxy's route `deadline_header`), besides `grpc-timeout`: no retry is made that would
    /// outlast it. Default: `grpc-timeout` only.
    pub fn deadline_header(self, header: HeaderName) -> Self {
        self.with(|s| s.deadline_header = Some(header))
    }

    /// A layer with `change` made to a copy of its settings (the budget stays shared, the
    /// jitter starts afresh).
    fn with(self, change: impl FnOnce(&mut Shared<C>)) -> Self {
        let s = &self.shared;
        let mut shared = Shared {
            budget: Arc::clone(&s.budget),
            policy: s.policy,
            jitter: Jitter::default(),
            non_idempotent: s.non_idempotent,
            deadline_header: s.deadline_header.clone(),
        };
        change(&mut shared);
        Self {
            shared: Arc::new(shared),
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
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = RetryFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let layer = Arc::clone(&self.layer.shared);
        layer.budget.deposit();
        // The ready service answers the first attempt; a fresh clone the retries.
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        // A request that may not be repeated is sent as it is, never copied, and its deadline
        // is not read (no retry will ask for it). (Each branch builds the future in place:
        // moving the kept request around shows in benchmarks.)
        if layer.non_idempotent || is_idempotent(req.method()) {
            // The deadline headers are read only after a failure, from the kept request, and
            // counted from here: a clock read is cheaper than two header look-ups. A request
            // with no header at all has no deadline, and no start is taken.
            let start = (!req.headers().is_empty()).then(Instant::now);
            RetryFuture {
                first: Some(svc.call(clone_request(&req))),
                rest: None,
                ctx: Some(Ctx {
                    svc,
                    req: Some(req),
                    layer,
                    start,
                }),
            }
        } else {
            RetryFuture {
                first: Some(svc.call(req)),
                rest: None,
                ctx: Some(Ctx {
                    svc,
                    req: None,
                    layer,
                    start: None,
                }),
            }
        }
    }
}

/// What a retry needs once the first attempt failed.
struct Ctx<S, B, C: Clock> {
    svc: S,
    /// `None` when the request may not be repeated.
    req: Option<Request<B>>,
    layer: Arc<Shared<C>>,
    /// When the call began, if the request carries headers (a deadline may be among them):
    /// its budget (`grpc-timeout`, the layer's `deadline_header`) counts from here.
    start: Option<Instant>,
}

impl<S, B, C, RB> Ctx<S, B, C>
where
    S: Service<Request<B>, Response = Response<RB>>,
    C: Clock,
    B: Clone,
{
    /// The delay before the next attempt, or `None` to give up, after `attempt` ended with
    /// `result`.
    ///
    /// The answer is judged in place (a success costs no call); the policy is asked only
    /// after a retryable failure.
    #[inline]
    fn next(&self, attempt: u32, result: &Result<Response<RB>, S::Error>) -> Option<Duration> {
        let (retryable, pushback) = match result {
            Ok(res) => read_response(res.status(), res.headers()),
            Err(_) => (true, Pushback::None),
        };
        if !retryable {
            return None;
        }
        self.decide(attempt, pushback)
    }

    /// What is left of the request's deadline (`grpc-timeout`, or the layer's
    /// `deadline_header`; the shorter), read from the kept request: `None` without one.
    fn remaining(&self) -> Option<Duration> {
        let start = self.start?;
        let req = self.req.as_ref()?;
        let budget = request_deadline(req.headers(), self.layer.deadline_header.as_ref())?;
        Some(budget.saturating_sub(start.elapsed()))
    }

    /// The policy's decision after a retryable failure of `attempt`, counted in the metric.
    #[inline(never)]
    fn decide(&self, attempt: u32, pushback: Pushback) -> Option<Duration> {
        let decision = match self.req {
            None => RetryDecision::GiveUp(GiveUp::NotRetryable),
            Some(_) => self.layer.policy.decide(
                attempt,
                true,
                pushback,
                self.remaining(),
                &self.layer.budget,
                self.layer.jitter.next_f64(),
            ),
        };
        match decision {
            RetryDecision::After(delay) => {
                metrics::counter!(RETRIES_TOTAL, "decision" => "retried").increment(1);
                Some(delay)
            }
            RetryDecision::GiveUp(why) => {
                metrics::counter!(RETRIES_TOTAL, "decision" => why.as_str()).increment(1);
                None
            }
        }
    }

    /// Every attempt after the first.
    async fn retry(mut self, mut delay: Duration) -> Result<Response<RB>, S::Error> {
        let mut attempt = 1;
        loop {
            tokio::time::sleep(delay).await;
            attempt += 1;
            std::future::poll_fn(|cx| self.svc.poll_ready(cx)).await?;
            let mut req = match &self.req {
                Some(r) => clone_request(r),
                None => unreachable!("only repeatable requests are retried"),
            };
            mark_attempt(&mut req, attempt);
            let result = self.svc.call(req).await;
            match self.next(attempt, &result) {
                Some(d) => delay = d,
                None => return result,
            }
        }
    }
}

type BoxResponse<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

pin_project! {
    /// The response future of [`RetryService`]: the first attempt is polled in place (no
    /// allocation on the happy path); only a retry moves the request into a boxed future.
    pub struct RetryFuture<S, B, C>
    where
        S: Service<Request<B>>,
        C: Clock,
    {
        #[pin]
        first: Option<S::Future>,
        rest: Option<BoxResponse<S::Response, S::Error>>,
        ctx: Option<Ctx<S, B, C>>,
    }
}

impl<S, C, B> fmt::Debug for RetryFuture<S, B, C>
where
    S: Service<Request<B>>,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFuture")
            .field("retrying", &self.rest.is_some())
            .finish()
    }
}

impl<S, C, B, RB> Future for RetryFuture<S, B, C>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    C: Clock,
    B: Clone + Send + 'static,
    RB: Send + 'static,
{
    type Output = Result<Response<RB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(rest) = this.rest.as_mut() {
            return rest.as_mut().poll(cx);
        }
        let Some(first) = this.first.as_mut().as_pin_mut() else {
            panic!("RetryFuture polled after completion");
        };
        let result = ready!(first.poll(cx));
        this.first.set(None);
        // Decided in place: the context (the kept request) moves only for a retry.
        match this.ctx.as_ref().and_then(|ctx| ctx.next(1, &result)) {
            None => Poll::Ready(result),
            Some(delay) => {
                let Some(ctx) = this.ctx.take() else {
                    return Poll::Ready(result);
                };
                let mut rest: BoxResponse<Response<RB>, S::Error> = Box::pin(ctx.retry(delay));
                let poll = rest.as_mut().poll(cx);
                *this.rest = Some(rest);
                poll
            }
        }
    }
}
