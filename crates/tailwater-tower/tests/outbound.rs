//! The outbound layers against mock services on tokio's paused clock.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use tailwater_core::Criticality;
use tailwater_core::clock::ManualClock;
use tailwater_core::outbound::*;
use tailwater_tower::outbound::breaker::observed_breaker;
use tailwater_tower::outbound::{CircuitBreakerLayer, HedgeLayer, RetryLayer, ThrottleLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

type Calls = Arc<AtomicU32>;
/// A status, an optional header, and how long the backend takes.
type Answer = (StatusCode, Option<(&'static str, &'static str)>, Duration);

/// A backend answering `status` (and `header`, if any) after `delay`, counting calls.
fn backend(
    calls: Calls,
    answers: Vec<Answer>,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let answers = Arc::new(answers);
    service_fn(move |_req: Request<String>| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        let (status, header, delay) = answers[n.min(answers.len() - 1)];
        async move {
            tokio::time::sleep(delay).await;
            let mut res = Response::new(String::new());
            *res.status_mut() = status;
            if let Some((k, v)) = header {
                res.headers_mut().insert(k, v.parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        }
    })
}

fn get() -> Request<String> {
    Request::new(String::new())
}

#[tokio::test(start_paused = true)]
async fn open_breaker_answers_503_without_calling() {
    let calls = Calls::default();
    let cfg = BreakerConfig {
        window: Window::Count(4),
        min_calls: 4,
        jitter: 0.0,
        ..Default::default()
    };
    let breaker = observed_breaker("test", cfg, ManualClock::new()).unwrap();
    let inner = backend(
        calls.clone(),
        vec![(StatusCode::BAD_GATEWAY, None, Duration::ZERO)],
    );
    let mut svc = CircuitBreakerLayer::new(breaker.clone(), "test").layer(inner);
    for _ in 0..4 {
        let r = svc.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let r = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");
    let mut grpc = get();
    grpc.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let r = svc.ready().await.unwrap().call(grpc).await.unwrap();
    assert_eq!(r.headers()["grpc-status"], "14");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "an open breaker never calls"
    );
}

fn retry_layer(budget: BudgetConfig) -> RetryLayer<ManualClock> {
    let budget = Arc::new(RetryBudget::with_clock(budget, ManualClock::new()).unwrap());
    RetryLayer::new(budget, RetryPolicy::default())
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_and_honours_pushback() {
    let calls = Calls::default();
    let answers = vec![
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(("retry-after", "2")),
            Duration::ZERO,
        ),
        (StatusCode::BAD_GATEWAY, None, Duration::ZERO),
        (StatusCode::OK, None, Duration::ZERO),
    ];
    let mut svc = retry_layer(BudgetConfig::default()).layer(backend(calls.clone(), answers));
    let start = tokio::time::Instant::now();
    let r = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The first retry waited for Retry-After (2 s), the second at most 50 ms.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(2050),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn never_retries_what_the_server_or_method_forbids() {
    type Case = (StatusCode, Option<(&'static str, &'static str)>, Method);
    let cases: Vec<Case> = vec![
        (StatusCode::TOO_MANY_REQUESTS, None, Method::GET),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(("x-envoy-ratelimited", "true")),
            Method::GET,
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(("grpc-retry-pushback-ms", "-1")),
            Method::GET,
        ),
        (StatusCode::SERVICE_UNAVAILABLE, None, Method::POST),
        (StatusCode::NOT_FOUND, None, Method::GET),
    ];
    for (i, (status, header, method)) in cases.into_iter().enumerate() {
        let calls = Calls::default();
        let mut svc = retry_layer(BudgetConfig::default()).layer(backend(
            calls.clone(),
            vec![(status, header, Duration::ZERO)],
        ));
        let mut req = get();
        *req.method_mut() = method;
        svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "case {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_stops_retries() {
    let calls = Calls::default();
    // 10 % of requests, no floor: 10 requests earn one retry in all.
    let cfg = BudgetConfig {
        ratio: 0.1,
        min_per_sec: 0,
        ..Default::default()
    };
    let mut svc = retry_layer(cfg).layer(backend(
        calls.clone(),
        vec![(StatusCode::SERVICE_UNAVAILABLE, None, Duration::ZERO)],
    ));
    for _ in 0..10 {
        svc.ready().await.unwrap().call(get()).await.unwrap();
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        11,
        "10 requests + 1 budgeted retry"
    );
}

#[tokio::test(start_paused = true)]
async fn hedges_a_slow_call_and_takes_the_first_answer() {
    let clock = ManualClock::new();
    let hedger = Arc::new(
        Hedger::with_clock(
            HedgeConfig {
                min_data_points: 10,
                ..Default::default()
            },
            clock.clone(),
        )
        .unwrap(),
    );
    for _ in 0..100 {
        hedger.record(Duration::from_millis(10));
    }
    clock.advance(Duration::from_secs(1));
    let budget = Arc::new(RetryBudget::with_clock(BudgetConfig::default(), clock.clone()).unwrap());
    for _ in 0..100 {
        budget.deposit(); // room for 5 hedges
    }
    let calls = Calls::default();
    let answers = vec![
        (
            StatusCode::OK,
            Some(("x-attempt", "primary")),
            Duration::from_secs(10),
        ),
        (
            StatusCode::OK,
            Some(("x-attempt", "hedge")),
            Duration::from_millis(5),
        ),
    ];
    let mut svc = HedgeLayer::new(hedger, budget.clone()).layer(backend(calls.clone(), answers));
    let start = tokio::time::Instant::now();
    let r = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(r.headers()["x-attempt"], "hedge");
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(budget.stats().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn throttles_locally_per_tier() {
    let throttle = Arc::new(
        AdaptiveThrottle::with_clock(ThrottleConfig::default(), ManualClock::new()).unwrap(),
    );
    let calls = Calls::default();
    let inner = backend(
        calls.clone(),
        vec![(StatusCode::SERVICE_UNAVAILABLE, None, Duration::ZERO)],
    );
    let mut svc = ThrottleLayer::new(throttle.clone()).layer(inner);
    for _ in 0..200 {
        let mut req = get();
        req.extensions_mut().insert(Criticality::Sheddable);
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    let sent = calls.load(Ordering::SeqCst);
    assert!(
        sent < 100,
        "most rejected locally once the backend rejects all: {sent}"
    );
    assert_eq!(throttle.reject_probability(Criticality::Critical), 0.0);
    let r = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        sent + 1,
        "a critical request still goes out"
    );
}

/// Envoy #30205: retries waiting in backoff count against the budget, so 100 simultaneous
/// failures all entering backoff get at most 20 % retries, not 100.
#[tokio::test(start_paused = true)]
async fn retries_in_backoff_count_against_the_budget() {
    let calls = Calls::default();
    // Envoy's and Finagle's 20 % (tailwater's default is 10 %).
    let cfg = BudgetConfig {
        ratio: 0.2,
        min_per_sec: 0,
        ..Default::default()
    };
    let answers = vec![(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("retry-after", "1")),
        Duration::ZERO,
    )];
    let svc = retry_layer(cfg).layer(backend(calls.clone(), answers));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.ready().await.unwrap().call(get()).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // 100 first attempts + at most 20 % of 100 retries, all decided while the others slept.
    assert_eq!(calls.load(Ordering::SeqCst), 120);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiting_dependency_does_not_trip_the_breaker() {
    let calls = Calls::default();
    let cfg = BreakerConfig {
        window: Window::Count(4),
        min_calls: 4,
        ..Default::default()
    };
    let breaker = CircuitBreaker::with_clock(cfg, ManualClock::new()).unwrap();
    let inner = backend(
        calls.clone(),
        vec![(StatusCode::TOO_MANY_REQUESTS, None, Duration::ZERO)],
    );
    let mut svc = CircuitBreakerLayer::new(breaker.clone(), "test").layer(inner);
    for _ in 0..10 {
        svc.ready().await.unwrap().call(get()).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 10);
}

/// Retries carry the attempt number (gRPC also A6's previous-attempt count), and a
/// `Retry-After` given as an HTTP-date is honoured like delta-seconds.
#[tokio::test(start_paused = true)]
async fn retries_carry_the_attempt_number_and_honour_an_http_date() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = service_fn(move |req: Request<String>| {
        let h = req.headers();
        let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_owned());
        let mut log = log.lock().unwrap();
        log.push((
            get("x-tailwater-attempt"),
            get("grpc-previous-rpc-attempts"),
        ));
        let first = log.len() == 1;
        async move {
            let mut res = Response::new(String::new());
            if first {
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let at = std::time::SystemTime::now() + Duration::from_secs(3);
                let date = httpdate::fmt_http_date(at);
                res.headers_mut()
                    .insert("retry-after", date.parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        }
    });
    let mut svc = retry_layer(BudgetConfig::default()).layer(svc);
    let mut req = get();
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let start = tokio::time::Instant::now();
    let r = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The date has whole seconds: 3 s ahead is more than 2 s ahead.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![(None, None), (Some("2".into()), Some("1".into()))]
    );
}

/// The configurable deadline header: a retry that would outlast it is not made.
#[tokio::test(start_paused = true)]
async fn the_deadline_header_stops_a_retry_that_would_outlast_it() {
    let calls = Calls::default();
    let answers = vec![(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("retry-after", "2")),
        Duration::ZERO,
    )];
    let name = http::HeaderName::from_static("x-deadline-ms");
    let mut svc = retry_layer(BudgetConfig::default())
        .deadline_header(name.clone())
        .layer(backend(calls.clone(), answers));
    let mut req = get();
    req.headers_mut().insert(&name, "1500".parse().unwrap());
    let r = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "2 s pushback > 1.5 s left");
}

/// The deadline is read only after a failure (from the kept request), but counted from the
/// call's start: time spent in the first attempt is not given back.
#[tokio::test(start_paused = true)]
async fn the_deadline_counts_the_first_attempt_though_read_after_it() {
    let name = http::HeaderName::from_static("x-deadline-ms");
    // 3 s of budget, 2 s of pushback: the retry fits after a 0.5 s attempt, not after 1.5 s.
    for (first_takes, retried) in [(500, true), (1500, false)] {
        let calls = Calls::default();
        let answers = vec![
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(("retry-after", "2")),
                Duration::from_millis(first_takes),
            ),
            (StatusCode::OK, None, Duration::ZERO),
        ];
        let mut svc = retry_layer(BudgetConfig::default())
            .deadline_header(name.clone())
            .layer(backend(calls.clone(), answers));
        let mut req = get();
        req.headers_mut().insert(&name, "3000".parse().unwrap());
        let r = svc.ready().await.unwrap().call(req).await.unwrap();
        let want = if retried {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        assert_eq!(r.status(), want, "first attempt {first_takes} ms");
        assert_eq!(calls.load(Ordering::SeqCst), 1 + u32::from(retried));
    }
    // The same with gRPC's own field (3S = 3 s).
    let calls = Calls::default();
    let answers = vec![(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("retry-after", "2")),
        Duration::from_millis(1500),
    )];
    let mut svc = retry_layer(BudgetConfig::default()).layer(backend(calls.clone(), answers));
    let mut req = get();
    req.headers_mut()
        .insert("grpc-timeout", "3S".parse().unwrap());
    let r = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "2 s pushback > 1.5 s left");
}

/// Pushback is read only on a retryable failure: a success carrying `Retry-After` is final
/// and answered at once; a trailers-only gRPC failure (HTTP 200, `grpc-status: 14`) is
/// retried after its `grpc-retry-pushback-ms`.
#[tokio::test(start_paused = true)]
async fn pushback_on_a_success_is_ignored_and_on_a_failure_honoured() {
    let calls = Calls::default();
    let answers = vec![(StatusCode::OK, Some(("retry-after", "5")), Duration::ZERO)];
    let mut svc = retry_layer(BudgetConfig::default()).layer(backend(calls.clone(), answers));
    let start = tokio::time::Instant::now();
    let r = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["retry-after"],
        "5",
        "the answer is passed on untouched"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);

    let seen = Arc::new(AtomicU32::new(0));
    let n = seen.clone();
    let grpc = service_fn(move |_req: Request<String>| {
        let first = n.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let mut res = Response::new(String::new());
            let h = res.headers_mut();
            h.insert("content-type", "application/grpc".parse().unwrap());
            if first {
                h.insert("grpc-status", "14".parse().unwrap());
                h.insert("grpc-retry-pushback-ms", "700".parse().unwrap());
            } else {
                h.insert("grpc-status", "0".parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        }
    });
    let mut svc = retry_layer(BudgetConfig::default()).layer(grpc);
    let start = tokio::time::Instant::now();
    let r = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(r.headers()["grpc-status"], "0");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
}

/// A body that ends with `grpc-status: 14` in its trailers (a streamed gRPC failure).
struct Trailers(Option<http::HeaderMap>);

impl http_body::Body for Trailers {
    type Data = bytes::Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.take().map(|t| Ok(http_body::Frame::trailers(t))))
    }
}

/// gRPC puts the status of a streamed answer in the trailers: the breaker reads it there.
#[tokio::test(start_paused = true)]
async fn the_breaker_reads_a_streamed_grpc_status_from_the_trailers() {
    use http_body_util::BodyExt;
    let cfg = BreakerConfig {
        window: Window::Count(4),
        min_calls: 4,
        jitter: 0.0,
        ..Default::default()
    };
    let breaker = observed_breaker("trailers", cfg, ManualClock::new()).unwrap();
    let inner = service_fn(|_req: Request<String>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let mut res = Response::new(Trailers(Some(trailers)));
        res.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        Ok::<_, Infallible>(res)
    });
    let mut svc = CircuitBreakerLayer::new(breaker.clone(), "trailers").layer(inner);
    for _ in 0..4 {
        let r = svc.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(breaker.state(), BreakerState::Closed, "judged at the end");
        let collected = r.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
}
