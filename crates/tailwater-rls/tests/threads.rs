//! `spawn_grpc_threads`: the gRPC server on several single-threaded runtimes accepting on
//! one socket. Calls over many connections (spread over the threads) share one store
//! exactly, and the threads stop and join when told to.

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use common::{TempDir, desc, request};
use tailwater_core::clock::ManualClock;
use tailwater_rls::proto::{Code, RateLimitServiceClient};
use tailwater_rls::{
    ConfigWatcher, GrpcServerOptions, MemoryStore, RateLimiter, Store, spawn_grpc_threads,
};
use tonic::transport::Channel;

const CONFIG: &str = r#"
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 40
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_share_one_store_exactly_and_stop_when_told() {
    let dir = TempDir::new();
    dir.write("api.yaml", CONFIG);
    let watcher = ConfigWatcher::open(&dir.0).expect("config loads");
    // A manual clock that never moves: no refill during the test.
    let store = Store::Memory(Arc::new(MemoryStore::with_clock(
        1_000,
        Arc::new(ManualClock::new()),
    )));
    let limiter = RateLimiter::new(watcher.handle(), store);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let threads = spawn_grpc_threads(
        listener,
        limiter.clone(),
        NonZeroUsize::new(3).expect("3"),
        GrpcServerOptions::default(),
        stop_rx,
    )
    .expect("threads start");

    // 8 connections x 10 calls for a budget of 40: exactly 40 admitted, whichever thread
    // each connection landed on.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut client = RateLimitServiceClient::new(channel);
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..10 {
                let r = client
                    .should_rate_limit(request("api", vec![desc(&[("user", "u")])], 1))
                    .await
                    .expect("answered")
                    .into_inner();
                if r.overall_code == Code::Ok as i32 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.expect("client task");
    }
    assert_eq!(admitted, 40);
    assert_eq!(
        limiter
            .stats()
            .calls_over_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        40
    );

    // Told to stop: every thread ends (the clients are gone, nothing to drain).
    stop_tx.send(true).expect("threads listen");
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || threads.join()),
    )
    .await
    .expect("the threads stop within 10 s")
    .expect("join task");
    joined.expect("no thread failed");
    // The listening socket is closed with them: a new connection is refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
