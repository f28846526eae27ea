use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tailwater_core::algorithm::Outcome;
use tailwater_core::clock::TokioClock;
use tailwater_core::{Criticality, Limiter, TierThresholds};
use tailwater_tower::concurrency::Bypass;
use tailwater_tower::concurrency::error::Overloaded;
use tailwater_tower::{BoxError, ConcurrencyLayer, CriticalityLayer, edge};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::support::*;

/// A service that answers every request with the next body from `bodies` (empty when none
/// is left), with `status` and `headers`.
fn answering(
    status: StatusCode,
    headers: HeaderMap,
    bodies: Vec<TestBody>,
) -> impl Service<Request<()>, Response = Response<TestBody>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    let bodies = Arc::new(Mutex::new(bodies));
    service_fn(move |_req: Request<()>| {
        let body = bodies.lock().unwrap().pop().unwrap_or_else(empty);
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = headers.clone();
        async move { Ok::<_, Infallible>(res) }
    })
}

#[tokio::test(start_paused = true)]
async fn permit_is_held_until_the_body_ends_and_rtt_runs_to_the_end() {
    let (limiter, samples) = limiter(1);
    let (tx, body) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));

    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The response future resolved, but the body is unfinished: the permit is still held.
    assert_eq!(limiter.in_flight(), 1);
    assert!(res.body().holds_permit());

    // ... so a second request is shed.
    let shed = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);

    let mut body = res.into_body();
    tokio::time::advance(Duration::from_millis(30)).await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"chunk"))))
        .await
        .unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "chunk");
    assert_eq!(limiter.in_flight(), 1, "still streaming");

    tokio::time::advance(Duration::from_millis(70)).await;
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(limiter.in_flight(), 0, "released at end of stream");
    assert!(!body.holds_permit());

    let samples = samples.lock().unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].outcome, Outcome::Success);
    assert_eq!(
        samples[0].rtt,
        Duration::from_millis(100),
        "RTT until body end"
    );
}

#[tokio::test(start_paused = true)]
async fn streaming_grpc_response_holds_its_permit_until_the_trailers() {
    let (limiter, samples) = limiter(4);
    let (tx, body) = channel_body();
    let mut grpc = HeaderMap::new();
    grpc.insert("content-type", "application/grpc".parse().unwrap());
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, grpc, vec![body]));

    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    let mut body = res.into_body();
    for i in 0..5u8 {
        tokio::time::advance(Duration::from_millis(10)).await;
        tx.send(Ok(Frame::data(Bytes::from(vec![i]))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().unwrap().is_data());
        assert_eq!(limiter.in_flight(), 1, "message {i}: stream still open");
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    assert_eq!(limiter.in_flight(), 0, "released on the trailers");
    let samples = samples.lock().unwrap();
    assert_eq!(samples[0].outcome, Outcome::Success);
    assert_eq!(samples[0].rtt, Duration::from_millis(50));
}

/// One row of the classification table: the response, then how the limiter counted it.
async fn outcome_of(
    status: u16,
    headers: &[(&'static str, &str)],
    trailers: &[(&'static str, &str)],
) -> Outcome {
    let (limiter, _) = limiter(4);
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, v.parse().unwrap());
    }
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    if !trailers.is_empty() {
        let mut t = HeaderMap::new();
        for (k, v) in trailers {
            t.insert(*k, v.parse().unwrap());
        }
        tx.send(Ok(Frame::trailers(t))).await.unwrap();
    }
    drop(tx);
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(
            StatusCode::from_u16(status).unwrap(),
            h,
            vec![body],
        ));
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    res.into_body().collect().await.unwrap();
    assert_eq!(limiter.in_flight(), 0);
    single_outcome(&limiter)
}

fn single_outcome(limiter: &Limiter<TokioClock>) -> Outcome {
    let c = limiter.stats().counters;
    match (c.success, c.dropped, c.ignored) {
        (1, 0, 0) => Outcome::Success,
        (0, 1, 0) => Outcome::Dropped,
        (0, 0, 1) => Outcome::Ignored,
        other => panic!("expected one outcome, got (success, dropped, ignored) = {other:?}"),
    }
}

/// Status, headers, trailers, expected outcome.
type Row = (
    u16,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
    Outcome,
);

#[tokio::test(start_paused = true)]
async fn classification_table() {
    use Outcome::*;
    const G: (&str, &str) = ("content-type", "application/grpc");
    let rows: &[Row] = &[
        (200, &[], &[], Success),
        (204, &[], &[], Success),
        (404, &[], &[], Success),
        (400, &[], &[], Success),
        (429, &[], &[], Dropped),
        (500, &[], &[], Dropped),
        (502, &[], &[], Dropped),
        (503, &[], &[], Dropped),
        (504, &[], &[], Dropped),
        // gRPC trailers-only responses: the status is in the headers.
        (200, &[G, ("grpc-status", "0")], &[], Success),
        (200, &[G, ("grpc-status", "5")], &[], Success),
        (200, &[G, ("grpc-status", "4")], &[], Dropped),
        (200, &[G, ("grpc-status", "8")], &[], Dropped),
        (200, &[G, ("grpc-status", "14")], &[], Dropped),
        // gRPC with the status in the trailers.
        (200, &[G], &[("grpc-status", "0")], Success),
        (200, &[G], &[("grpc-status", "3")], Success),
        (200, &[G], &[("grpc-status", "4")], Dropped),
        (200, &[G], &[("grpc-status", "8")], Dropped),
        (200, &[G], &[("grpc-status", "14")], Dropped),
        // Trailers never turn a dropped head into a success.
        (503, &[], &[("grpc-status", "0")], Dropped),
    ];
    for (status, headers, trailers, want) in rows {
        let got = outcome_of(*status, headers, trailers).await;
        assert_eq!(
            got, *want,
            "status {status} headers {headers:?} trailers {trailers:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn inner_error_counts_as_dropped() {
    let (limiter, _) = limiter(2);
    let svc = service_fn(|_req: Request<()>| async {
        Err::<Response<TestBody>, BoxError>("upstream reset".into())
    });
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(svc);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "upstream reset");
    assert_eq!(single_outcome(&limiter), Outcome::Dropped);
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_counts_as_dropped() {
    let (limiter, _) = limiter(2);
    let slow = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, BoxError>(Response::new(empty()))
    });
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .timeout(Duration::from_millis(250))
        .service(slow);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(single_outcome(&limiter), Outcome::Dropped);
}

#[tokio::test(start_paused = true)]
async fn body_error_counts_as_dropped() {
    let (limiter, _) = limiter(2);
    let (tx, body) = channel_body();
    tx.send(Err("connection reset mid-body".into()))
        .await
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert!(res.into_body().collect().await.is_err());
    assert_eq!(single_outcome(&limiter), Outcome::Dropped);
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn client_cancellation_before_the_response_is_ignored() {
    let (limiter, samples) = limiter(2);
    let never = service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<TestBody>, Infallible>>()
    });
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(never);
    let mut fut = Box::pin(svc.ready().await.unwrap().call(request(&[])));
    assert!(poll_once(&mut fut).is_pending());
    assert_eq!(limiter.in_flight(), 1);
    drop(fut);
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(single_outcome(&limiter), Outcome::Ignored);
    assert!(
        samples.lock().unwrap().is_empty(),
        "no sample for the algorithm"
    );
}

#[tokio::test(start_paused = true)]
async fn body_dropped_mid_stream_is_ignored() {
    let (limiter, _) = limiter(2);
    let (tx, body) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(limiter.in_flight(), 1);
    drop(res);
    drop(tx);
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(single_outcome(&limiter), Outcome::Ignored);
}

#[tokio::test(start_paused = true)]
async fn empty_body_releases_with_the_head() {
    let (limiter, _) = limiter(1);
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![]));
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    // hyper never polls a body that is already at its end: the permit must not wait for it.
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(single_outcome(&limiter), Outcome::Success);
    drop(res);
}

fn full_limiter(
    retry_after: Duration,
) -> (Limiter<TokioClock>, tailwater_core::OwnedPermit<TokioClock>) {
    let limiter = Limiter::builder()
        .algorithm(tailwater_core::algorithm::Fixed::new(1).unwrap())
        .clock(TokioClock::new())
        .retry_after(retry_after)
        .build()
        .unwrap();
    let held = limiter.try_acquire_owned().unwrap();
    (limiter, held)
}

#[tokio::test(start_paused = true)]
async fn shed_is_503_with_retry_after() {
    let (limiter, _held) = full_limiter(Duration::from_millis(1500));
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![]));
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers(&res),
        [
            (
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned()
            ),
            ("retry-after".to_owned(), "2".to_owned()),
        ]
    );
    assert_eq!(text(res.into_body()).await, "overloaded: limit_reached\n");
}

#[tokio::test(start_paused = true)]
async fn shed_grpc_is_unavailable_with_pushback() {
    let (limiter, _held) = full_limiter(Duration::from_millis(1500));
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![]));
    let req = request(&[("content-type", "application/grpc+proto")]);
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        headers(&res),
        [
            ("content-type".to_owned(), "application/grpc".to_owned()),
            (
                "grpc-message".to_owned(),
                "overloaded: limit_reached".to_owned()
            ),
            ("grpc-retry-pushback-ms".to_owned(), "1500".to_owned()),
            ("grpc-status".to_owned(), "14".to_owned()),
        ]
    );
    assert_eq!(text(res.into_body()).await, "");
}

#[tokio::test(start_paused = true)]
async fn typed_error_mode_returns_overloaded() {
    let (limiter, _held) = full_limiter(Duration::from_secs(1));
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter).return_error())
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![]));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap_err();
    let overloaded = err
        .downcast_ref::<Overloaded>()
        .expect("an Overloaded error");
    assert_eq!(overloaded.rejection().reason.as_str(), "limit_reached");
    let res = edge::error_response(&*err, false).expect("a rejection");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test(start_paused = true)]
async fn waiting_times_out_at_the_deadline_with_503() {
    let (limiter, _) = queued_limiter(1, 4, Duration::from_secs(1));
    let (_tx, body) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()).wait(Duration::from_millis(100)))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));
    let first = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(limiter.in_flight(), 1);

    let start = tokio::time::Instant::now();
    let second = svc.ready().await.unwrap().call(request(&[]));
    let second = tokio::spawn(second);
    tokio::task::yield_now().await;
    assert_eq!(limiter.queue_depth(), 1);
    // Bounded by a generous outer timeout: if the layer armed no timer, this fails
    // instead of hanging.
    let res = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the waiter must time out on its own")
        .unwrap()
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text(res.into_body()).await, "overloaded: queue_timeout\n");
    assert_eq!(limiter.queue_depth(), 0);
    drop(first);
}

#[tokio::test(start_paused = true)]
async fn waiting_request_gets_the_permit_when_the_body_ends() {
    let (limiter, _) = queued_limiter(1, 4, Duration::from_secs(1));
    let (tx, body) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()).wait(Duration::from_millis(500)))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));
    let first = svc.ready().await.unwrap().call(request(&[])).await.unwrap();

    let second = tokio::spawn(svc.ready().await.unwrap().call(request(&[])));
    tokio::task::yield_now().await;
    assert_eq!(limiter.queue_depth(), 1);

    tokio::time::advance(Duration::from_millis(40)).await;
    drop(tx);
    first.into_body().collect().await.unwrap();

    let res = second.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(limiter.queue_depth(), 0);
    assert_eq!(limiter.in_flight(), 0, "the second body was empty");
    assert_eq!(limiter.stats().counters.admitted_from_queue, 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_leaves_the_queue() {
    let (limiter, _) = queued_limiter(1, 4, Duration::from_secs(1));
    let (_tx, body) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()).wait(Duration::from_millis(500)))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));
    let _first = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    let mut second = Box::pin(svc.ready().await.unwrap().call(request(&[])));
    assert!(matches!(poll_once(&mut second), Poll::Pending));
    assert_eq!(limiter.queue_depth(), 1);
    drop(second);
    assert_eq!(limiter.queue_depth(), 0);
    assert_eq!(limiter.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn bypass_requests_are_not_limited() {
    let (limiter, _held) = full_limiter(Duration::from_secs(1));
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![]));
    let mut req = request(&[]);
    req.extensions_mut().insert(Bypass);
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(limiter.in_flight(), 1, "only the held permit");
}

#[tokio::test(start_paused = true)]
async fn sheddable_requests_are_shed_first() {
    let limiter = Limiter::builder()
        .algorithm(tailwater_core::algorithm::Fixed::new(10).unwrap())
        .clock(TokioClock::new())
        .tiers(
            TierThresholds::default()
                .with_contention_window(Duration::from_secs(3600))
                .unwrap(),
        )
        .build()
        .unwrap();
    // Critical work was turned away at the full limit, more often than Sheddable has
    // headroom to give: Sheddable is held to its reservation, 20 % of 10 (2 in flight).
    let held: Vec<_> = (0..10).map(|_| limiter.try_acquire().unwrap()).collect();
    for _ in 0..8 {
        assert!(limiter.try_acquire().is_err());
    }
    let _held: Vec<_> = held.into_iter().take(2).collect();
    let mut svc = ServiceBuilder::new()
        .layer(CriticalityLayer::new())
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![]));
    let shed = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("x-criticality", "SHEDDABLE")]))
        .await
        .unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text(shed.into_body()).await, "overloaded: tier_threshold\n");
    let ok = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let c = limiter.stats().counters;
    assert_eq!(c.rejected_in_tier(Criticality::Sheddable), 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services_and_takes_no_permit() {
    let (limiter, _) = limiter(1);
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<TestBody>, _>(
        ConcurrencyLayer::new(limiter.clone()),
    );
    handle.allow(0);
    assert!(
        svc.poll_ready().is_pending(),
        "inner not ready: neither are we"
    );
    assert_eq!(limiter.in_flight(), 0, "no permit reserved in poll_ready");

    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(request(&[]));
    let (_req, send) = handle.next_request().await.unwrap();
    assert_eq!(limiter.in_flight(), 1, "the permit is taken at call");
    send.send_response(Response::new(full("ok")));
    let res = fut.await.unwrap();
    assert_eq!(limiter.in_flight(), 1, "body not read yet");
    assert_eq!(text(res.into_body()).await, "ok");
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn mock_error_is_dropped_and_passed_through() {
    let (limiter, _) = limiter(1);
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<TestBody>, _>(
        ConcurrencyLayer::new(limiter.clone()),
    );
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(request(&[]));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_error("connect refused");
    let err = fut.await.unwrap_err();
    assert_eq!(err.to_string(), "connect refused");
    assert_eq!(single_outcome(&limiter), Outcome::Dropped);
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_shortens_the_queue_wait() {
    let (limiter, _) = queued_limiter(1, 4, Duration::from_secs(1));
    let (_tx, body) = channel_body();
    let mut svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()).wait(Duration::from_millis(500)))
        .service(answering(StatusCode::OK, HeaderMap::new(), vec![body]));
    let _first = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    let start = tokio::time::Instant::now();
    let req = request(&[
        ("content-type", "application/grpc"),
        ("grpc-timeout", "30m"),
    ]);
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(res.headers()["grpc-message"], "overloaded: queue_timeout");
}
