//! `tailwater load` in gRPC mode against the real rate limit service on 127.0.0.1:0: every
//! answer is counted by its outcome — `OK`, the service's `OVER_LIMIT` (its own row,
//! recorded as 429, not a success), and an error status from a trailers-only answer
//! (`INVALID_ARGUMENT`, recorded as 400).

use std::sync::Arc;

use serde_json::Value;
use tailwater_rls::{ConfigWatcher, MemoryStore, RateLimiter, Store, serve_grpc};

const LIMITS: &str = "domain: edge\ndescriptors:\n  - key: api_key\n    rate_limit:\n      unit: minute\n      requests_per_unit: 5\n";

/// Starts the service on its own runtime thread; returns its URL and the config dir.
fn start_rls() -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tailwater-load-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("edge.yaml"), LIMITS).expect("config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let watcher = ConfigWatcher::open(&dir).expect("config loads");
    let limiter = RateLimiter::new(
        watcher.handle(),
        Store::Memory(Arc::new(MemoryStore::new(1_000))),
    );
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let _watcher = watcher;
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = serve_grpc(listener, limiter, std::future::pending()).await;
        });
    });
    (format!("http://{addr}"), dir)
}

fn run(args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tailwater"))
        .arg("load")
        .args(args)
        .args(["-q", "--json", "-"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON: {e}; stderr: {stderr}"))
}

fn count(v: &Value, group: &str, key: &str) -> u64 {
    v[group][key].as_u64().unwrap_or(0)
}

#[test]
fn grpc_answers_are_counted_by_outcome_over_a_real_socket() {
    let (url, dir) = start_rls();
    // 20 calls for one key limited to 5 per minute: 5 OK, 15 OVER_LIMIT.
    let v = run(&[
        &url,
        "--rls-domain",
        "edge",
        "--rls-descriptor",
        "api_key=k1",
        "-R",
        "200",
        "-n",
        "20",
        "-c",
        "1",
    ]);
    assert_eq!(count(&v, "grpc", "OK"), 5, "{v:#}");
    assert_eq!(count(&v, "grpc", "OVER_LIMIT"), 15, "{v:#}");
    assert_eq!(count(&v, "status", "200"), 5);
    assert_eq!(count(&v, "status", "429"), 15);
    assert_eq!(v["latency_us"]["success"]["count"].as_u64(), Some(5));
    assert_eq!(v["latency_us"]["rejected"]["count"].as_u64(), Some(15));

    // A raw call: a RateLimitRequest with no domain (field 1 empty, one descriptor with one
    // entry) is refused with INVALID_ARGUMENT in a trailers-only answer.
    let v = run(&[
        &url,
        "--grpc",
        "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        "--grpc-body",
        "12 07 0a 05 0a 01 61 12 00",
        "-R",
        "100",
        "-n",
        "4",
    ]);
    assert_eq!(count(&v, "grpc", "INVALID_ARGUMENT"), 4, "{v:#}");
    assert_eq!(count(&v, "status", "400"), 4, "{v:#}");
    let _ = std::fs::remove_dir_all(dir);
}
