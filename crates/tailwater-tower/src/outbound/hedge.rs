//! The hedging layer: a second attempt after the p95 of recent latency, within the shared
//! budget; the first answer wins and the other attempt is dropped (cancelled).
//!
//! Every attempt's latency is recorded in tailwater-core's [`Hedger`]: the winner's, and
//! the loser's time until it was cancelled (tower's `Hedge` records only the winner's, so
//! its histogram drifts down and it hedges more). Hedges draw from the same
//! [`RetryBudget`] as retries (at most `hedge_ratio`, 5 %, of requests). Only idempotent
//! methods are hedged. Metric: `tailwater_hedges_total` (`decision` = `sent`, `budget`).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tailwater_core::clock::Clock;
use tailwater_core::outbound::{Extra, Hedger, RetryBudget};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::retry::clone_request;
use super::signals::is_idempotent;
use super::signals::mark_attempt;

/// `tailwater_hedges_total`.
pub const HEDGES_TOTAL: &str = "tailwater_hedges_total";

/// Wraps a client in a [`HedgeService`].
#[derive(Debug, Clone)]
pub struct HedgeLayer<C: Clock> {
    hedger: Arc<Hedger<C>>,
    budget: Arc<RetryBudget<C>>,
    deposits: bool,
}

impl<C: Clock> HedgeLayer<C> {
    /// Hedges after `hedger`'s delay, within `budget` (the one the retry layer uses).
    pub fn new(hedger: Arc<Hedger<C>>, budget: Arc<RetryBudget<C>>) -> Self {
        Self {
            hedger,
            budget,
            deposits: true,
        }
    }

    /// Whether each request is deposited into the budget here (default `true`). Set it to
    /// `false` under a [`RetryLayer`](super::RetryLayer) that shares the budget: that layer
    /// deposits once per request, and a second deposit per attempt would double the budget.
    pub fn deposits(mut self, yes: bool) -> Self {
        self.deposits = yes;
        self
    }
}

impl<S, C: Clock + Clone> Layer<S> for HedgeLayer<C> {
    type Service = HedgeService<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        HedgeService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`HedgeLayer`].
#[derive(Debug, Clone)]
pub struct HedgeService<S, C: Clock> {
    inner: S,
    layer: HedgeLayer<C>,
}

enum First<T> {
    Primary(T),
    Timer,
}

impl<S, C, B, RB> Service<Request<B>> for HedgeService<S, C>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    C: Clock + Clone,
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
        let layer = self.layer.clone();
        if layer.deposits {
            layer.budget.deposit();
        }
        let delay = layer.hedger.delay().filter(|_| is_idempotent(req.method()));
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        let Some(delay) = delay else {
            let fut = svc.call(req);
            return Box::pin(async move {
                let r = fut.await;
                layer.hedger.record(start.elapsed());
                r
            });
        };
        let mut hedge_req = clone_request(&req);
        let primary = svc.call(req);
        Box::pin(async move {
            let mut primary = pin!(primary);
            let mut timer = pin!(tokio::time::sleep(delay));
            let first = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = primary.as_mut().poll(cx) {
                    return Poll::Ready(First::Primary(r));
                }
                timer.as_mut().poll(cx).map(|()| First::Timer)
            })
            .await;
            if let First::Primary(r) = first {
                layer.hedger.record(start.elapsed());
                return r;
            }
            if !layer.budget.try_withdraw(Extra::Hedge) {
                metrics::counter!(HEDGES_TOTAL, "decision" => "budget").increment(1);
                let r = primary.await;
                layer.hedger.record(start.elapsed());
                return r;
            }
            metrics::counter!(HEDGES_TOTAL, "decision" => "sent").increment(1);
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            mark_attempt(&mut hedge_req, 2);
            let hedge_start = Instant::now();
            let mut hedge = pin!(svc.call(hedge_req));
            let (r, winner, loser): (_, Duration, Duration) = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = primary.as_mut().poll(cx) {
                    return Poll::Ready((r, start.elapsed(), hedge_start.elapsed()));
                }
                hedge
                    .as_mut()
                    .poll(cx)
                    .map(|r| (r, hedge_start.elapsed(), start.elapsed()))
            })
            .await;
            // The loser is dropped with this future (cancelled); both latencies count.
            layer.hedger.record(winner);
            layer.hedger.record(loser);
            r
        })
    }
}
