//! h2c on both sides, routing, headers, rate limits, tiers and config errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_and_h2c_upstreams() {
    let backend = text_backend("hello").await;
    let running = start_proxy(config(&format!(
        r#"
[[route]]
name = "h1"
path_prefix = "/h1"
upstream = "http://{0}"
[[route]]
name = "h2"
path_prefix = "/h2"
upstream = "http://{0}"
protocol = "h2c"
"#,
        backend.addr
    )))
    .await;
    let h2 = h2_client();
    let (parts, body) = get(&h2, running.addr, "/h2/x").await.expect("h2c → h2c");
    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(parts.headers["x-version"], "HTTP/2.0");
    assert_eq!(&body[..], b"hello");
    let (parts, _) = get(&h2, running.addr, "/h1/x")
        .await
        .expect("h2c → http/1.1");
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(parts.headers["x-version"], "HTTP/1.1");
    let (parts, _) = get(&client(), running.addr, "/h2/x")
        .await
        .expect("http/1.1 → h2c");
    assert_eq!(parts.version, http::Version::HTTP_11);
    assert_eq!(parts.headers["x-version"], "HTTP/2.0");
    let (parts, _) = get(&client(), running.addr, "/nope")
        .await
        .expect("unrouted");
    assert_eq!(parts.status, 404);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop_removal() {
    let backend = backend(Arc::new(|req: Request<Incoming>| {
        let mut seen = String::new();
        for (k, v) in req.headers() {
            seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        Box::pin(async move {
            let mut resp = Response::new(Full::new(Bytes::from(seen)));
            resp.headers_mut()
                .insert("connection", "x-internal".parse().expect("value"));
            resp.headers_mut()
                .insert("x-internal", "1".parse().expect("value"));
            resp
        })
    }))
    .await;
    let running = start_proxy(config(&format!(
        "[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let c = client();
    let req = Request::get(format!("http://{}/", running.addr))
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-end", "kept")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = c.request(req).await.expect("response");
    assert!(
        !resp.headers().contains_key("x-internal"),
        "response hop-by-hop removed"
    );
    let seen = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    assert!(seen.contains("x-end: kept"), "{seen}");
    assert!(!seen.contains("x-hop"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{seen}"
    );
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http"),
        "{seen}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_ratelimit_headers() {
    let backend = text_backend("ok").await;
    let running = start_proxy(config(&format!(
        r#"
[[route]]
upstream = "http://{}"
[[route.rate_limit]]
name = "per-client"
rate = 2
period = "1m"
key = "client_ip"
"#,
        backend.addr
    )))
    .await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(get(&c, running.addr, "/").await.expect("ok").0.status, 200);
    }
    let (parts, _) = get(&c, running.addr, "/").await.expect("limited");
    assert_eq!(parts.status, 429);
    let retry: u64 = parts.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry), "retry-after {retry}");
    assert_eq!(parts.headers["ratelimit-policy"], "\"per-client\";q=2;w=60");
    assert!(
        parts.headers["ratelimit"]
            .to_str()
            .expect("ascii")
            .starts_with("\"per-client\";r=0;t=")
    );
    assert_eq!(backend.received.load(Ordering::SeqCst), 2);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_is_503_with_retry_after_and_sheddable_goes_first() {
    let release = Arc::new(Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    // Limit 5; under contention sheddable keeps 20 % (1 slot), critical 80 % (4). The long
    // contention window keeps the test independent of timing.
    let running = start_proxy(config(&format!(
        r#"
[[route]]
upstream = "http://{}"
queue = {{ discipline = "none" }}
retry_after = "3s"
[route.limit]
algorithm = "static"
limit = 5
[route.tiers]
contention_window = "1h"
"#,
        backend.addr
    )))
    .await;
    let addr = running.addr;
    let send = |tier: &'static str| {
        let c = client();
        tokio::spawn(async move {
            let req = Request::get(format!("http://{addr}/"))
                .header("x-criticality", tier)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let resp = c.request(req).await.expect("response");
            let (parts, body) = resp.into_parts();
            let _ = body.collect().await;
            parts
        })
    };
    // Nothing more important contends: critical work may use the whole limit.
    let held: Vec<_> = (0..5).map(|_| send("critical")).collect();
    let received = Arc::clone(&backend.received);
    eventually(Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == 5
    })
    .await;
    let full = send("critical_plus").await.expect("task");
    assert_eq!(full.status, 503);
    assert_eq!(full.headers["x-tailwater-rejection"], "limit_reached");
    // One request finishes: the freed slot is kept for the refused tier, so sheddable
    // (cap 1) and critical (cap 4) are refused, and critical_plus is not.
    release.notify_one();
    let proxy = &running.proxy;
    eventually(Duration::from_secs(5), || proxy.status()[0].in_flight == 4).await;
    let shed = send("sheddable").await.expect("task");
    assert_eq!(shed.status, 503);
    assert_eq!(shed.headers["retry-after"], "3");
    assert_eq!(shed.headers["x-tailwater-rejection"], "tier_threshold");
    let critical = send("critical").await.expect("task");
    assert_eq!(critical.status, 503);
    assert_eq!(critical.headers["x-tailwater-rejection"], "tier_threshold");
    let plus = send("critical_plus");
    eventually(Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == 6
    })
    .await;
    // A gRPC request is shed as UNAVAILABLE with a pushback, not as HTTP 503.
    let c = h2_client();
    let req = Request::post(format!("http://{addr}/pkg.Svc/Method"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let grpc = c.request(req).await.expect("response");
    assert_eq!(grpc.status(), 200);
    assert_eq!(grpc.headers()["grpc-status"], "14");
    assert_eq!(grpc.headers()["grpc-retry-pushback-ms"], "3000");
    release.notify_waiters();
    for h in held {
        assert_eq!(h.await.expect("task").status, 200);
    }
    assert_eq!(plus.await.expect("task").status, 200);
    let status = running.proxy.status();
    assert_eq!(status[0].shed, 4);
    // The proxy settles a permit just after its last write, which the client may read first.
    let proxy = running.proxy.clone();
    eventually(Duration::from_secs(5), || proxy.status()[0].in_flight == 0).await;
    running.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn config_errors_name_file_line_and_field() {
    use tailwater_proxy::Config;
    let path = std::path::Path::new("proxy.toml");
    let e = Config::from_toml(
        "[[route]]\nupstream = \"http://x:1\"\nbogus = 1\n",
        Some(path),
    )
    .expect_err("unknown key");
    assert_eq!(e.line(), Some(3), "{e}");
    assert_eq!(e.field(), "route[0].bogus", "{e}");
    assert!(e.to_string().starts_with("proxy.toml:3:1:"), "{e}");

    let e =
        Config::from_toml("[server]\nheader_read_timeout = \"10\"\n", None).expect_err("no unit");
    assert_eq!(e.line(), Some(2), "{e}");
    assert_eq!(e.field(), "server.header_read_timeout", "{e}");

    let e = Config::from_toml(
        "[[route]]\nupstream = \"http://x:1\"\n\n[[route]]\nname = \"b\"\nupstream = \"http://y:1\"\n[route.queue]\ncapacity = 0\n",
        None,
    )
    .expect_err("zero capacity");
    assert_eq!(e.field(), "route[1].queue.capacity", "{e}");
    assert_eq!(e.line(), Some(8), "{e}");

    let e = Config::from_toml("[[route]]\nupstream = \"ftp://x:1\"\n", None).expect_err("ftp");
    assert_eq!(e.line(), Some(2), "{e}");

    let e = Config::simple("ftp://x:1".parse().expect("uri"))
        .validate()
        .expect_err("ftp in code");
    assert_eq!(e.field(), "route[0].upstream", "{e}");

    let e = Config::from_toml("", None).expect_err("no routes");
    assert_eq!(e.field(), "route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_upstream_is_504_both_counted_as_drops() {
    // A port with nothing listening, held so that no other test takes it.
    let refused = tailwater_test::port::RefusedPort::new().expect("port");
    let closed = refused.addr();
    let release = Arc::new(Notify::new());
    let slow = gated_backend(Arc::clone(&release)).await;
    let running = start_proxy(config(&format!(
        r#"
[upstream]
connect_timeout = "500ms"
request_timeout = "200ms"
[[route]]
name = "down"
path_prefix = "/down"
upstream = "http://{closed}"
[[route]]
name = "slow"
path_prefix = "/slow"
upstream = "http://{}"
"#,
        slow.addr
    )))
    .await;
    let c = client();
    let (parts, _) = get(&c, running.addr, "/down").await.expect("answered");
    assert_eq!(parts.status, 502);
    let t0 = tokio::time::Instant::now();
    let (parts, _) = get(&c, running.addr, "/slow").await.expect("answered");
    assert_eq!(parts.status, 504);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bounded by request_timeout"
    );
    release.notify_waiters();
    for r in running.proxy.status() {
        assert_eq!(r.dropped, 1, "{}: {r:?}", r.name);
        assert_eq!(r.in_flight, 0, "{}: permit released", r.name);
    }
    let metrics = running.proxy.metrics_text();
    assert!(metrics.contains("reason=\"upstream_error\""), "{metrics}");
    assert!(metrics.contains("reason=\"upstream_timeout\""), "{metrics}");
    running.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn the_documented_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/proxy.toml");
    let cfg = tailwater_proxy::Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.routes.len(), 4);
    assert_eq!(
        cfg.routes[2].upstream.endpoints().len(),
        3,
        "the balanced route"
    );
    tailwater_proxy::Proxy::new(cfg).expect("builds");
}

/// A body that sends one chunk and then never anything again.
struct Stall(bool);

impl http_body::Body for Stall {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 {
            std::task::Poll::Pending
        } else {
            self.0 = true;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"first",
            )))))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_response_body_is_cut_and_releases_its_permit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Stall(false)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let running = start_proxy(config(&format!(
        "[upstream]\nbody_idle_timeout = \"200ms\"\n[[route]]\nupstream = \"http://{upstream}\"\n"
    )))
    .await;
    let c = client();
    let req = Request::get(format!("http://{}/stream", running.addr))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = c.request(req).await.expect("head arrives");
    assert_eq!(resp.status(), 200);
    let t0 = tokio::time::Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the body ends (cut) within the deadline");
    assert!(body.is_err(), "a cut body is an error to the client");
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "not cut early: {:?}",
        t0.elapsed()
    );
    let s = &running.proxy.status()[0];
    assert_eq!(s.in_flight, 0, "permit released");
    assert_eq!(s.dropped, 1, "counted as a drop");
    server.abort();
    running.shutdown(Duration::from_secs(5)).await;
}
