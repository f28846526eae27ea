use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use tailwater_core::clock::TokioClock;
use tailwater_core::rate::{
    KeyedLimiter, MemoryStore, MultiQuota, Quota, RateDecision, RateStore, StoreError,
};
use tailwater_tower::RateLimitLayer;
use tailwater_tower::rate_limit::error::RateLimited;
use tailwater_tower::rate_limit::{HeaderKey, MissingKey, OnStoreError, PathKey, PeerAddr, PeerIp};
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::support::*;

fn store(quotas: impl Into<MultiQuota>) -> MemoryStore<TokioClock> {
    MemoryStore::new(
        KeyedLimiter::<String>::builder(quotas)
            .max_keys(1000)
            .clock(TokioClock::new())
            .build()
            .unwrap(),
    )
}

fn ok_service()
-> impl Service<Request<()>, Response = Response<TestBody>, Error = Infallible, Future: Send> + Clone
{
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(full("ok"))) })
}

fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn keyed_by_header_answers_429_with_draft_10_headers() {
    let quota = Quota::per_minute(2).unwrap();
    let layer = RateLimitLayer::new(
        store(quota),
        quota,
        HeaderKey::new("x-api-key".parse().unwrap()),
    );
    let mut svc = layer.layer(ok_service());
    let alice = || request(&[("x-api-key", "alice")]);

    let res = svc.ready().await.unwrap().call(alice()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=2;w=60");
    assert_eq!(res.headers()["ratelimit"], "\"default\";r=1;t=30");
    assert_eq!(text(res.into_body()).await, "ok");

    let res = svc.ready().await.unwrap().call(alice()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], "\"default\";r=0;t=60");

    let res = svc.ready().await.unwrap().call(alice()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers(&res),
        s(&[
            ("content-type", "text/plain; charset=utf-8"),
            ("ratelimit", "\"default\";r=0;t=30"),
            ("ratelimit-policy", "\"default\";q=2;w=60"),
            ("retry-after", "30"),
        ])
    );
    assert_eq!(text(res.into_body()).await, "rate limited: rate_exceeded\n");

    // Another key has its own budget.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[("x-api-key", "bob")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // After T = 30 s alice gets one more.
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    let res = svc.ready().await.unwrap().call(alice()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn grpc_rate_limit_is_resource_exhausted_with_pushback() {
    let quota = Quota::per_minute(1).unwrap();
    let layer = RateLimitLayer::new(store(quota), quota, PathKey)
        .policy_names(["per-method"])
        .unwrap();
    let mut svc = layer.layer(ok_service());
    let grpc = || request(&[("content-type", "application/grpc")]);
    let res = svc.ready().await.unwrap().call(grpc()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.ready().await.unwrap().call(grpc()).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "gRPC errors travel in grpc-status"
    );
    assert_eq!(
        headers(&res),
        s(&[
            ("content-type", "application/grpc"),
            ("grpc-message", "rate limited: rate_exceeded"),
            ("grpc-retry-pushback-ms", "60000"),
            ("grpc-status", "8"),
            ("ratelimit", "\"per-method\";r=0;t=60"),
            ("ratelimit-policy", "\"per-method\";q=1;w=60"),
        ])
    );
    assert_eq!(text(res.into_body()).await, "");
}

#[tokio::test(start_paused = true)]
async fn several_quotas_report_the_most_restrictive() {
    let quotas =
        MultiQuota::new([Quota::per_second(10).unwrap(), Quota::per_hour(2).unwrap()]).unwrap();
    let layer = RateLimitLayer::new(store(quotas.clone()), quotas, PathKey)
        .policy_names(["burst", "hourly"])
        .unwrap();
    let mut svc = layer.layer(ok_service());
    for _ in 0..2 {
        let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"burst\";q=10;w=1, \"hourly\";q=2;w=3600"
    );
    assert_eq!(res.headers()["ratelimit"], "\"hourly\";r=0;t=1800");
    assert_eq!(res.headers()["retry-after"], "1800");
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key() {
    let quota = Quota::per_minute(1).unwrap();
    let key = HeaderKey::new("x-api-key".parse().unwrap());
    // Default: not limited.
    let mut svc = RateLimitLayer::new(store(quota), quota, key.clone()).layer(ok_service());
    for _ in 0..3 {
        let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit").is_none());
    }
    // Shared: limited together.
    let mut svc = RateLimitLayer::new(store(quota), quota, key)
        .missing_key(MissingKey::Shared("anonymous".into()))
        .layer(ok_service());
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn keyed_by_peer_ip() {
    let quota = Quota::per_minute(1).unwrap();
    let mut svc = RateLimitLayer::new(store(quota), quota, PeerIp::new()).layer(ok_service());
    let from = |addr: &str| {
        let mut r = request(&[]);
        r.extensions_mut()
            .insert(PeerAddr(addr.parse::<SocketAddr>().unwrap()));
        r
    };
    let st = |r: Response<_>| r.status();
    assert_eq!(
        st(svc
            .ready()
            .await
            .unwrap()
            .call(from("10.0.0.1:1000"))
            .await
            .unwrap()),
        200
    );
    // Same IP, another port: same key.
    assert_eq!(
        st(svc
            .ready()
            .await
            .unwrap()
            .call(from("10.0.0.1:2000"))
            .await
            .unwrap()),
        429
    );
    assert_eq!(
        st(svc
            .ready()
            .await
            .unwrap()
            .call(from("10.0.0.2:1000"))
            .await
            .unwrap()),
        200
    );
}

/// A store whose backend is down.
struct Down;

impl RateStore for Down {
    #[allow(clippy::manual_async_fn)] // the trait's signature, spelled out
    fn check<'a>(
        &'a self,
        _key: &'a str,
        _quotas: &'a [Quota],
        _n: u32,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send + 'a {
        async { Err(StoreError::Unavailable("connection refused".into())) }
    }
}

#[tokio::test(start_paused = true)]
async fn store_failure_fails_open_by_default_or_closed_on_request() {
    let quota = Quota::per_minute(1).unwrap();
    let mut open = RateLimitLayer::new(Down, quota, PathKey).layer(ok_service());
    let res = open
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let mut closed = RateLimitLayer::new(Down, quota, PathKey)
        .on_store_error(OnStoreError::FailClosed)
        .layer(ok_service());
    let res = closed
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
}

/// A store that answers asynchronously, like a network store.
struct Remote(MemoryStore<TokioClock>);

impl RateStore for Remote {
    #[allow(clippy::manual_async_fn)] // the trait's signature, spelled out
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        n: u32,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send + 'a {
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.0.check(key, quotas, n).await
        }
    }
}

#[tokio::test(start_paused = true)]
async fn asynchronous_store() {
    let quota = Quota::per_minute(1).unwrap();
    let mut svc = RateLimitLayer::new(Remote(store(quota)), quota, PathKey).layer(ok_service());
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn typed_error_mode_returns_rate_limited() {
    let quota = Quota::per_minute(1).unwrap();
    let mut svc = RateLimitLayer::new(store(quota), quota, PathKey)
        .return_error()
        .layer(ok_service());
    svc.ready().await.unwrap().call(request(&[])).await.unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(&[]))
        .await
        .unwrap_err();
    let rl = err.downcast_ref::<RateLimited>().expect("RateLimited");
    assert_eq!(rl.reason(), "rate_exceeded");
    assert_eq!(rl.decision().unwrap().remaining, 0);
    let res = tailwater_tower::edge::error_response(&*err, false).unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[cfg(feature = "axum")]
#[test]
fn peer_ip_reads_axum_connect_info() {
    use tailwater_tower::rate_limit::KeyExtractor;
    let (mut parts, ()) = request(&[]).into_parts();
    parts.extensions.insert(axum::extract::ConnectInfo(
        "[::ffff:192.0.2.7]:80".parse::<SocketAddr>().unwrap(),
    ));
    assert_eq!(PeerIp::new().extract(&parts).as_deref(), Some("192.0.2.7"));
}
