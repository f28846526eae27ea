//! `[route.rls]` against the real rate limit service (`tailwater-rls`) on 127.0.0.1:0: the
//! service's limits are enforced (`429` + `Retry-After` from `duration_until_reset`),
//! descriptors come from a header and from the path, a service that is down or silent gets
//! the route's failure policy within the timeout, and configuration errors name the field
//! and its line.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, config, start_proxy, text_backend};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tailwater_proxy::Config;
use tailwater_rls::{ConfigWatcher, MemoryStore, RateLimiter, Store, serve_grpc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const LIMITS: &str = r#"
domain: edge
descriptors:
  - key: api_key
    rate_limit:
      name: per_key
      unit: minute
      requests_per_unit: 2
  - key: path
    value: /slow
    rate_limit:
      name: slow_path
      unit: minute
      requests_per_unit: 1
"#;

/// The real service (gRPC, in memory) on 127.0.0.1:0.
struct Rls {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl Rls {
    async fn start() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tailwater-proxy-rls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("edge.yaml"), LIMITS).expect("write config");
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

fn route(backend: SocketAddr, rls: SocketAddr, timeout: &str, policy: &str) -> Config {
    config(&format!(
        r#"
[[route]]
upstream = "http://{backend}"
[route.rls]
address = "http://{rls}"
domain = "edge"
timeout = "{timeout}"
failure_policy = "{policy}"
[[route.rls.descriptor]]
entries = [{{ source = "header", name = "x-api-key", key = "api_key" }}]
[[route.rls.descriptor]]
entries = [{{ source = "path" }}]
"#
    ))
}

/// GET `path` with an optional API key: (status, Retry-After, RateLimit-Policy).
async fn get(
    c: &common::TestClient,
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
) -> (u16, Option<String>, Option<String>) {
    let mut req = Request::get(format!("http://{addr}{path}"));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = c
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let out = (
        resp.status().as_u16(),
        h("retry-after"),
        h("ratelimit-policy"),
    );
    let _ = resp.into_body().collect().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_limits_are_enforced_by_header_and_path() {
    let backend = text_backend("ok").await;
    let rls = Rls::start().await;
    let running = start_proxy(route(backend.addr, rls.addr, "2s", "closed")).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(get(&c, running.addr, "/a", Some("k1")).await.0, 200);
    }
    let (status, retry, policy) = get(&c, running.addr, "/a", Some("k1")).await;
    assert_eq!(status, 429);
    let retry: u64 = retry.and_then(|r| r.parse().ok()).expect("Retry-After");
    // Both of 2 per minute used: the service's duration_until_reset is 60 s.
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(policy.as_deref(), Some("\"per_key\";q=2;w=60"));
    // Another key is not limited; the path descriptor limits /slow to 1 per minute.
    assert_eq!(get(&c, running.addr, "/a", Some("k2")).await.0, 200);
    assert_eq!(get(&c, running.addr, "/slow?x=1", None).await.0, 200);
    let (status, _, policy) = get(&c, running.addr, "/slow", None).await;
    assert_eq!(status, 429);
    assert_eq!(policy.as_deref(), Some("\"slow_path\";q=1;w=60"));
    assert_eq!(get(&c, running.addr, "/fast", None).await.0, 200);
    assert_eq!(backend.received.load(Ordering::SeqCst), 5);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_gets_the_failure_policy() {
    let backend = text_backend("ok").await;
    let mut rls = Rls::start().await;
    let closed = start_proxy(route(backend.addr, rls.addr, "500ms", "closed")).await;
    let open = start_proxy(route(backend.addr, rls.addr, "500ms", "open")).await;
    let c = client();
    assert_eq!(get(&c, closed.addr, "/a", Some("k")).await.0, 200);
    rls.kill().await;
    let started = Instant::now();
    let (status, retry, _) = get(&c, closed.addr, "/a", Some("k")).await;
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(get(&c, open.addr, "/a", Some("k")).await.0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    closed.shutdown(Duration::from_secs(5)).await;
    open.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_service_gets_the_failure_policy_at_the_timeout() {
    let backend = text_backend("ok").await;
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let at = silent.local_addr().expect("addr");
    let c = client();
    for (policy, want) in [("closed", 503), ("open", 200)] {
        let running = start_proxy(route(backend.addr, at, "100ms", policy)).await;
        let started = Instant::now();
        assert_eq!(get(&c, running.addr, "/a", Some("k")).await.0, want);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(600),
            "{policy}: {took:?}"
        );
        running.shutdown(Duration::from_secs(5)).await;
    }
}

#[test]
fn config_errors_name_the_field_and_line() {
    let head = "[[route]]\nupstream = \"http://127.0.0.1:9\"\n[route.rls]\n";
    for (what, body, field, line) in [
        (
            "address without scheme",
            "address = \"127.0.0.1:8081\"\ndomain = \"d\"\n[[route.rls.descriptor]]\nentries = [{ source = \"path\" }]\n",
            "route[0].rls.address",
            4,
        ),
        (
            "no descriptor",
            "address = \"http://127.0.0.1:8081\"\ndomain = \"d\"\n",
            "route[0].rls.descriptor",
            3,
        ),
        (
            "bad header name",
            "address = \"http://127.0.0.1:8081\"\ndomain = \"d\"\n[[route.rls.descriptor]]\nentries = [{ source = \"header\", name = \"bad name\", key = \"k\" }]\n",
            "route[0].rls.descriptor[0].entries[0].name",
            6,
        ),
        (
            "zero timeout",
            "address = \"http://127.0.0.1:8081\"\ndomain = \"d\"\ntimeout = \"0s\"\n[[route.rls.descriptor]]\nentries = [{ source = \"path\" }]\n",
            "route[0].rls.timeout",
            6,
        ),
    ] {
        let src = format!("{head}{body}");
        let err =
            Config::from_toml(&src, Some(std::path::Path::new("proxy.toml"))).expect_err(what);
        assert_eq!(err.field(), field, "{what}: {err}");
        assert_eq!(err.line(), Some(line), "{what}: {err}");
        assert!(
            err.to_string().contains(&format!("proxy.toml:{line}")),
            "{what}: {err}"
        );
    }
    // Unknown entry sources are refused by the parser, at their line.
    let src = format!(
        "{head}address = \"http://127.0.0.1:8081\"\ndomain = \"d\"\n[[route.rls.descriptor]]\nentries = [{{ source = \"cookie\" }}]\n"
    );
    let err = Config::from_toml(&src, None).expect_err("unknown source");
    assert_eq!(err.line(), Some(7), "{err}");
}
