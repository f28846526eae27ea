//! The caller's deadline on the server side (issue 12, item 5): `grpc-timeout` and the
//! configured header, refused on arrival when spent, the queue wait cut to it, a permit
//! granted after it handed back, and the remaining budget passed on. Paused time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use metrics::{
    Counter, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tailwater_core::Limiter;
use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_tower::concurrency::error::DeadlineExceeded;
use tailwater_tower::deadline::Deadline;
use tailwater_tower::{BoxError, ConcurrencyLayer, edge};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::support::*;

/// Counts every counter increment by key (gauges and histograms ignored).
#[derive(Default, Clone)]
struct Counts(Arc<Mutex<Vec<Count>>>);

/// One counter's key and value.
type Count = (Key, Arc<AtomicU64>);

struct Ignore;
impl GaugeFn for Ignore {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}
impl HistogramFn for Ignore {
    fn record(&self, _: f64) {}
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let n = Arc::new(AtomicU64::new(0));
        self.0.lock().unwrap().push((key.clone(), Arc::clone(&n)));
        Counter::from_arc(n)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Ignore))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Ignore))
    }
}

const HEADER: HeaderName = HeaderName::from_static("x-request-timeout");

/// What the service saw of each request: its budget headers and its `Deadline` extension.
type Saw = (Option<String>, Option<String>, Option<Deadline>);
type Seen = Arc<Mutex<Vec<Saw>>>;

/// A service that records what it saw and answers with the next body of `bodies` (empty
/// when none is left).
fn recording(
    seen: Seen,
    bodies: Vec<TestBody>,
) -> impl Service<Request<()>, Response = Response<TestBody>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    let bodies = Arc::new(Mutex::new(bodies));
    service_fn(move |req: Request<()>| {
        let h = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().push((
            h("grpc-timeout"),
            h("x-request-timeout"),
            req.extensions().get::<Deadline>().copied(),
        ));
        let body = bodies.lock().unwrap().pop().unwrap_or_else(empty);
        async move { Ok::<_, Infallible>(Response::new(body)) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_is_refused_on_arrival_without_a_permit() {
    let (limiter, samples) = limiter(4);
    let seen = Seen::default();
    let recorder = Counts::default();
    let mut svc = ServiceBuilder::new()
        .layer(
            ConcurrencyLayer::new(limiter.clone())
                .route("dl")
                .deadline_header(HEADER),
        )
        .service(recording(Arc::clone(&seen), vec![]));
    let _guard = metrics::set_default_local_recorder(&recorder);

    // gRPC: trailers-only DEADLINE_EXCEEDED, "do not retry".
    let grpc = request(&[("content-type", "application/grpc"), ("grpc-timeout", "0m")]);
    let res = svc.ready().await.unwrap().call(grpc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "4");
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "-1");
    // HTTP, the configured header: 504.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("x-request-timeout", "0")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(text(res.into_body()).await, "deadline exceeded\n");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the service never saw them"
    );
    assert!(
        samples.lock().unwrap().is_empty(),
        "nothing fed to the limit"
    );
    assert_eq!(limiter.in_flight(), 0);

    // A budget left: served, with the deadline in its extensions; a malformed one is none.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[
            ("x-request-timeout", "250"),
            ("grpc-timeout", "soon"),
        ]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    let (_, ms, d) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(ms.as_deref(), Some("250"), "not rewritten without a wait");
    assert_eq!(d.unwrap().remaining(), Duration::from_millis(250));

    let count = |name: &str, labels: &[(&str, &str)]| -> u64 {
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.name() == name)
            .filter(|(k, _)| {
                labels
                    .iter()
                    .all(|(l, v)| k.labels().any(|x| x.key() == *l && x.value() == *v))
            })
            .map(|(_, n)| n.load(Ordering::SeqCst))
            .sum()
    };
    let rejected = [
        ("outcome", "rejected"),
        ("reason", "deadline_exceeded"),
        ("tier", "critical"),
    ];
    assert_eq!(count("tailwater_requests_total", &rejected), 2);
    let decision = [
        ("mechanism", "concurrency"),
        ("decision", "rejected"),
        ("reason", "deadline_exceeded"),
    ];
    assert_eq!(count("tailwater_decisions_total", &decision), 2);
}

#[tokio::test(start_paused = true)]
async fn without_the_header_configured_only_grpc_timeout_counts() {
    let (limiter, _) = limiter(4);
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter))
        .service(recording(Arc::clone(&seen), vec![]));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("x-request-timeout", "0")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the header is not read");
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("grpc-timeout", "0n")]))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::GATEWAY_TIMEOUT,
        "grpc-timeout always is"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn return_error_gives_the_typed_rejection() {
    let (limiter, _) = limiter(4);
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter).return_error())
        .service(recording(Seen::default(), vec![]));
    let err: BoxError = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("grpc-timeout", "0m")]))
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<DeadlineExceeded>().is_some(), "{err}");
    let res = edge::error_response(err.as_ref(), false).expect("an edge answer");
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn the_queue_wait_is_cut_to_the_budget_and_the_rest_is_passed_on() {
    let (limiter, _) = queued_limiter(1, 4, Duration::from_secs(10));
    let seen = Seen::default();
    let (tx, held) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(
            ConcurrencyLayer::new(limiter.clone())
                .wait(Duration::from_secs(10))
                .deadline_header(HEADER),
        )
        .service(recording(Arc::clone(&seen), vec![held]));
    let first = svc.ready().await.unwrap().call(request(&[])).await.unwrap();

    // 40 ms of budget against a 10 s wait: shed when the budget runs out.
    let start = tokio::time::Instant::now();
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("x-request-timeout", "40")]))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    // 500 ms of budget (both fields); the permit comes free after 120 ms: the service sees
    // what is left, in the fields the caller sent.
    let req = request(&[("x-request-timeout", "500"), ("grpc-timeout", "900m")]);
    let mut fut = Box::pin(svc.ready().await.unwrap().call(req));
    assert!(poll_once(&mut fut).is_pending(), "queued");
    tokio::time::advance(Duration::from_millis(120)).await;
    drop(tx);
    drop(first.into_body().collect().await);
    let res = fut.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (grpc, ms, d) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(ms.as_deref(), Some("380"));
    assert_eq!(
        grpc.as_deref(),
        Some("380000u"),
        "the shorter budget, in gRPC units"
    );
    assert_eq!(d.unwrap().remaining(), Duration::from_millis(380));
}

/// A permit granted after the budget ran out (here the limiter's own clock stands still,
/// so its queue deadline has not passed) goes back unused: the service is not called.
#[tokio::test(start_paused = true)]
async fn a_permit_granted_after_the_budget_ran_out_goes_back_unused() {
    let limiter = Limiter::builder()
        .algorithm(tailwater_core::algorithm::Fixed::new(1).unwrap())
        .clock(ManualClock::new())
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, Duration::from_secs(10)).unwrap())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, held) = channel_body();
    let bodies = Arc::new(Mutex::new(vec![held]));
    let c = Arc::clone(&calls);
    let inner = service_fn(move |_req: Request<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        let body = bodies.lock().unwrap().pop().unwrap_or_else(empty);
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let mut svc = ServiceBuilder::new()
        .layer(
            ConcurrencyLayer::new(limiter.clone())
                .wait(Duration::from_secs(10))
                .deadline_header(HEADER),
        )
        .service(inner);
    let first = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    let req = request(&[("x-request-timeout", "50")]);
    let mut fut = Box::pin(svc.ready().await.unwrap().call(req));
    assert!(matches!(poll_once(&mut fut), Poll::Pending));
    tokio::time::advance(Duration::from_millis(60)).await;
    drop(tx);
    drop(first.into_body().collect().await);
    let res = fut.await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the first reached the service"
    );
    assert_eq!(limiter.in_flight(), 0, "the late permit went back");
}
