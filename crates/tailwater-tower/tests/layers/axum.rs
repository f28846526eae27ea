//! The axum example's router, driven in process (`ConnectInfo` inserted by hand).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_core::clock::TokioClock;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_core::rate::Quota;
use tower::ServiceExt;

use crate::axum_example::app;

fn get(path: &str, peer: &str) -> Request<Body> {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

#[tokio::test(start_paused = true)]
async fn axum_app_rate_limits_per_peer_and_sheds_with_503() {
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(1).unwrap())
        .clock(TokioClock::new())
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap();
    let router = app(limiter.clone(), Quota::per_minute(2).unwrap());

    let res = router
        .clone()
        .oneshot(get("/", "10.0.0.1:1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], "\"per-client\";r=1;t=30");
    // Its permit is held until the body is read.
    assert_eq!(limiter.in_flight(), 1);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "hello\n"
    );
    assert_eq!(limiter.in_flight(), 0);

    // A streaming response holds the only permit until its last tick.
    let stream = router
        .clone()
        .oneshot(get("/stream", "10.0.0.2:1"))
        .await
        .unwrap();
    assert_eq!(limiter.in_flight(), 1);
    // Another client waits 50 ms in the queue, then is shed.
    let shed = router
        .clone()
        .oneshot(get("/", "10.0.0.3:1"))
        .await
        .unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = stream.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "tick 4\ntick 3\ntick 2\ntick 1\ntick 0\n"
    );
    assert_eq!(limiter.in_flight(), 0);

    // The first client used its 2 per minute.
    let res = router
        .clone()
        .oneshot(get("/", "10.0.0.1:2"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = router.oneshot(get("/", "10.0.0.1:3")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "30");
}
