//! Per-call overhead of the outbound layers, side by side with tower's own where one
//! exists: `tower::retry::Retry` with its `TpsBudget` (Finagle's budget), and
//! `tower::hedge::Hedge` armed (its histogram pre-filled, so every call starts the hedge
//! timer). The breaker and the throttle have no tower equivalent: compare them with the
//! bare service.
//!
//! Every service answers `200` at once; a call is polled to completion with a no-op waker
//! inside a tokio runtime context (both hedges create a timer). What is measured is the
//! layer's own work on the happy path.
//!
//! `cargo bench -p tailwater-tower --bench outbound`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use tailwater_core::clock::{ManualClock, MonotonicClock};
use tailwater_core::outbound::*;
use tailwater_tower::deadline::request_deadline;
use tailwater_tower::outbound::signals::read_response;
use tailwater_tower::outbound::{CircuitBreakerLayer, HedgeLayer, RetryLayer, ThrottleLayer};
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service};

fn main() {
    divan::main();
}

type Req = Request<()>;

fn ok(_req: Req) -> std::future::Ready<Result<Response<()>, Infallible>> {
    std::future::ready(Ok(Response::new(())))
}

/// One request through `svc`, everything ready at once.
fn one<S, B>(svc: &mut S)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(Request::new(())));
    let Poll::Ready(Ok(res)) = fut.poll(&mut cx) else {
        panic!("not ready");
    };
    divan::black_box(res);
}

/// A request and an answer with the headers a real client and server exchange (none of
/// them read by the layers), so that every header look-up hashes and probes: the layers'
/// shortcut for a head with no header at all does not apply.
fn headed_request() -> Req {
    Request::builder()
        .uri("http://users.internal/v1/users/42")
        .header("host", "users.internal")
        .header("user-agent", "tailwater-bench/1")
        .header("accept", "application/json")
        .body(())
        .expect("a request")
}

fn ok_headed(_req: Req) -> std::future::Ready<Result<Response<()>, Infallible>> {
    let mut res = Response::new(());
    let h = res.headers_mut();
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    h.insert("content-length", http::HeaderValue::from_static("0"));
    std::future::ready(Ok(res))
}

/// [`one`] with a prepared request (its copy is made outside the measured call's layer
/// work, the same for every contender).
fn one_headed<S, B>(svc: &mut S, req: &Req)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(req.clone()));
    let Poll::Ready(Ok(res)) = fut.poll(&mut cx) else {
        panic!("not ready");
    };
    divan::black_box(res);
}

#[divan::bench]
fn headed_baseline_service_fn(b: divan::Bencher<'_, '_>) {
    let req = headed_request();
    let mut svc = tower::service_fn(ok_headed);
    b.bench_local(|| one_headed(&mut svc, &req));
}

#[divan::bench]
fn headed_tower_retry_tps_budget(b: divan::Bencher<'_, '_>) {
    let req = headed_request();
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let mut svc = tower::retry::RetryLayer::new(TowerBudgetPolicy(budget))
        .layer(tower::service_fn(ok_headed));
    b.bench_local(|| one_headed(&mut svc, &req));
}

#[divan::bench]
fn headed_tower_retry_tps_budget_same_work(b: divan::Bencher<'_, '_>) {
    let req = headed_request();
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let mut svc = tower::retry::RetryLayer::new(TowerSameWorkPolicy(budget))
        .layer(tower::service_fn(ok_headed));
    b.bench_local(|| one_headed(&mut svc, &req));
}

#[divan::bench]
fn headed_tailwater_retry(b: divan::Bencher<'_, '_>) {
    let req = headed_request();
    let budget = Arc::new(RetryBudget::new(BudgetConfig::default()).unwrap());
    let mut svc =
        RetryLayer::new(budget, RetryPolicy::default()).layer(tower::service_fn(ok_headed));
    b.bench_local(|| one_headed(&mut svc, &req));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

fn copy(req: &Req) -> Req {
    let mut r = Request::new(());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.headers_mut() = req.headers().clone();
    r
}

#[divan::bench]
fn baseline_service_fn(b: divan::Bencher<'_, '_>) {
    let mut svc = tower::service_fn(ok);
    b.bench_local(|| one(&mut svc));
}

/// tower's documented retry-with-budget policy: deposit on success, withdraw to retry.
#[derive(Clone)]
struct TowerBudgetPolicy(Arc<TpsBudget>);

impl<Res, E> tower::retry::Policy<Req, Res, E> for TowerBudgetPolicy {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| std::future::ready(())),
        }
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(copy(req))
    }
}

#[divan::bench]
fn tower_retry_tps_budget(b: divan::Bencher<'_, '_>) {
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let mut svc =
        tower::retry::RetryLayer::new(TowerBudgetPolicy(budget)).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

/// tower's `Retry` + `TpsBudget` doing the same reading of the request and the response
/// as tailwater's layer (the request's deadline; the status, `grpc-status` and pushback of
/// the answer): the machinery compared like for like.
#[derive(Clone)]
struct TowerSameWorkPolicy(Arc<TpsBudget>);

impl<B, E> tower::retry::Policy<Req, Response<B>, E> for TowerSameWorkPolicy {
    type Future = std::future::Ready<()>;
    fn retry(
        &mut self,
        req: &mut Req,
        result: &mut Result<Response<B>, E>,
    ) -> Option<Self::Future> {
        divan::black_box(request_deadline(req.headers(), None));
        let retryable = match result {
            Ok(res) => read_response(res.status(), res.headers()).0,
            Err(_) => true,
        };
        if !retryable {
            self.0.deposit();
            return None;
        }
        self.0.withdraw().then(|| std::future::ready(()))
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(copy(req))
    }
}

#[divan::bench]
fn tower_retry_tps_budget_same_work(b: divan::Bencher<'_, '_>) {
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let mut svc =
        tower::retry::RetryLayer::new(TowerSameWorkPolicy(budget)).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_retry(b: divan::Bencher<'_, '_>) {
    let budget = Arc::new(RetryBudget::new(BudgetConfig::default()).unwrap());
    let mut svc = RetryLayer::new(budget, RetryPolicy::default()).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

#[derive(Clone)]
struct HedgeAll;

impl tower::hedge::Policy<Req> for HedgeAll {
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(copy(req))
    }
    fn can_retry(&self, _req: &Req) -> bool {
        true
    }
}

#[divan::bench]
fn tower_hedge(b: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut svc = tower::hedge::Hedge::new_with_mock_latencies(
        tower::service_fn(ok),
        HedgeAll,
        10,
        0.95,
        Duration::from_secs(3600),
        &[10; 100],
    );
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_hedge(b: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let _guard = rt.enter();
    let clock = ManualClock::new();
    let cfg = HedgeConfig {
        min_data_points: 10,
        period: Duration::from_secs(1),
        ..Default::default()
    };
    let hedger = Arc::new(Hedger::with_clock(cfg, clock.clone()).unwrap());
    for _ in 0..100 {
        hedger.record(Duration::from_millis(10));
    }
    clock.advance(Duration::from_secs(1));
    assert!(hedger.delay().is_some(), "armed");
    let budget = Arc::new(RetryBudget::with_clock(BudgetConfig::default(), clock).unwrap());
    let mut svc = HedgeLayer::new(hedger, budget).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_breaker(b: divan::Bencher<'_, '_>) {
    let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    let mut svc = CircuitBreakerLayer::new(breaker, "bench").layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_throttle(b: divan::Bencher<'_, '_>) {
    let throttle = Arc::new(AdaptiveThrottle::new(ThrottleConfig::default()).unwrap());
    let mut svc = ThrottleLayer::new(throttle).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

/// The monotonic clock's read, for scale (every core state machine reads it once or twice).
#[divan::bench]
fn clock_read(b: divan::Bencher<'_, '_>) {
    use tailwater_core::clock::Clock;
    let clock = MonotonicClock::new();
    b.bench_local(|| divan::black_box(clock.now()));
}

/// The budgets alone: one deposit (every request pays it).
#[divan::bench]
fn tower_tps_budget_deposit(b: divan::Bencher<'_, '_>) {
    let budget = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    b.bench_local(|| budget.deposit());
}

#[divan::bench]
fn tailwater_budget_deposit(b: divan::Bencher<'_, '_>) {
    let budget = RetryBudget::new(BudgetConfig::default()).unwrap();
    b.bench_local(|| budget.deposit());
}
