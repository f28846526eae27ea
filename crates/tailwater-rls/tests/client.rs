//! The RLS client behind tailwater-tower's `RemoteRateLimitLayer`, against the real
//! service on 127.0.0.1:0: the limit is enforced with `429` + `Retry-After` from
//! `duration_until_reset`, and an RLS that is down or silent gets the failure policy
//! within the client's timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tailwater_rls::client::{Action, DescriptorSpec, RlsClient};
use tailwater_rls::{ConfigWatcher, MemoryStore, RateLimiter, Store, serve_grpc};
use tailwater_tower::rate_limit::{OnStoreError, RemoteRateLimitLayer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};

const CONFIG: &str = r#"
domain: edge
descriptors:
  - key: api_key
    rate_limit:
      name: per_key
      unit: minute
      requests_per_unit: 2
"#;

/// A real `tailwater rls` (gRPC, in-memory store) on 127.0.0.1:0 over a temporary
/// directory.
struct Rls {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl Rls {
    async fn start(yaml: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tailwater-rls-client-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("edge.yaml"), yaml).expect("write config");
        Self::start_dir(dir).await
    }

    async fn start_dir(dir: PathBuf) -> Self {
        let watcher = ConfigWatcher::open(&dir).expect("config loads");
        let limiter = RateLimiter::new(
            watcher.handle(),
            Store::Memory(Arc::new(MemoryStore::new(10_000))),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _watcher = watcher;
            serve_grpc(listener, limiter, async {
                let _ = rx.await;
            })
            .await
            .expect("grpc serves");
        });
        Self {
            addr,
            stop: Some(tx),
            task: Some(task),
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service and waits until it no longer serves.
    async fn kill(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task");
        }
    }
}

impl Drop for Rls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn per_key() -> DescriptorSpec {
    DescriptorSpec::new(vec![Action::Header {
        name: "x-api-key".into(),
        key: "api_key".into(),
        skip_if_absent: false,
    }])
    .expect("valid spec")
}

/// A request through the layer around a 200 service: (status, headers).
async fn call(
    layer: &RemoteRateLimitLayer<RlsClient>,
    key: Option<&str>,
) -> (StatusCode, http::HeaderMap) {
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let mut req = Request::builder().uri("/items");
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let res = layer
        .layer(inner)
        .oneshot(req.body(()).expect("request"))
        .await
        .expect("infallible");
    (res.status(), res.headers().clone())
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_tower_layer_enforces_the_rls_limit_with_retry_after_from_the_reset() {
    let rls = Rls::start(CONFIG).await;
    let client = RlsClient::new(&rls.url(), "edge")
        .expect("client")
        .timeout(Duration::from_secs(2))
        .expect("timeout")
        .descriptor(per_key());
    let layer = RemoteRateLimitLayer::new(client);

    let (s, h) = call(&layer, Some("k1")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(header(&h, "ratelimit-policy"), Some("\"per_key\";q=2;w=60"));
    assert_eq!(header(&h, "ratelimit"), Some("\"per_key\";r=1;t=30"));
    assert_eq!(call(&layer, Some("k1")).await.0, StatusCode::OK);
    let (s, h) = call(&layer, Some("k1")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // 2 per minute, both used: the bucket is full again in 60 s (duration_until_reset).
    let retry: u64 = header(&h, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    // Another key has its own budget; a request without the header is not limited.
    assert_eq!(call(&layer, Some("k2")).await.0, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(call(&layer, None).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn an_rls_that_is_down_gets_the_failure_policy() {
    let mut rls = Rls::start(CONFIG).await;
    let client = RlsClient::new(&rls.url(), "edge")
        .expect("client")
        .timeout(Duration::from_millis(500))
        .expect("timeout")
        .descriptor(per_key());
    let open = RemoteRateLimitLayer::new(client.clone());
    let closed = RemoteRateLimitLayer::new(client).on_store_error(OnStoreError::FailClosed);
    assert_eq!(call(&closed, Some("k1")).await.0, StatusCode::OK);

    rls.kill().await;
    let started = Instant::now();
    let (s, h) = call(&closed, Some("k1")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&h, "retry-after"), Some("1"));
    assert_eq!(call(&open, Some("k1")).await.0, StatusCode::OK);
    // Refused connections answer at once, well within the timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_rls_gets_the_failure_policy_at_the_timeout() {
    // Accepts connections (the kernel's backlog) but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let timeout = Duration::from_millis(100);
    let client = RlsClient::new(
        &format!("http://{}", silent.local_addr().expect("addr")),
        "edge",
    )
    .expect("client")
    .timeout(timeout)
    .expect("timeout")
    .descriptor(per_key());
    for (policy, want) in [
        (OnStoreError::FailClosed, StatusCode::SERVICE_UNAVAILABLE),
        (OnStoreError::FailOpen, StatusCode::OK),
    ] {
        let layer = RemoteRateLimitLayer::new(client.clone()).on_store_error(policy);
        let started = Instant::now();
        assert_eq!(call(&layer, Some("k1")).await.0, want);
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(400),
            "{policy:?}: {took:?}"
        );
    }
}

#[test]
fn bad_client_settings_name_the_field() {
    let e = RlsClient::new("127.0.0.1:8081", "edge").expect_err("no scheme");
    assert_eq!(e.field, "address");
    let e = RlsClient::new("http://127.0.0.1:8081", "").expect_err("no domain");
    assert_eq!(e.field, "domain");
    let e = RlsClient::new("http://127.0.0.1:8081", "edge")
        .expect("client")
        .timeout(Duration::ZERO)
        .expect_err("zero timeout");
    assert_eq!(e.field, "timeout");
}
