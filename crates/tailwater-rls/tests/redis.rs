//! The Redis store behind the service: one atomic script per call (all descriptors charged
//! or none, denied hits never counted), and Redis killed: every call answered by the
//! failure policy within the per-call timeout, never a stall.

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::{desc, request, start_with};
use tailwater_redis::{ConnectionOptions, FailurePolicy, RedisConnection, RedisRateStore};
use tailwater_rls::Store;
use tailwater_rls::proto::Code;
use tailwater_test::redis::{RedisServer, redis_available};

const CONFIG: &str = r#"
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 100
  - key: path
    rate_limit:
      unit: hour
      requests_per_unit: 3
"#;

fn store(server: &RedisServer, policy: FailurePolicy, timeout: Duration) -> Store {
    let opts = ConnectionOptions::default()
        .call_timeout(timeout)
        .response_timeout(Duration::from_secs(1));
    let conn = RedisConnection::open(&server.url(), opts).expect("open");
    Store::Redis(
        RedisRateStore::builder(conn)
            .policy(policy)
            .build()
            .expect("store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_is_charged_all_or_nothing() {
    let test = "one_call_is_charged_all_or_nothing";
    if !redis_available(test) {
        return;
    }
    let server = RedisServer::start().expect("redis");
    // Generous timeout: this test is about exactness, not about the failure policy.
    let s = store(&server, FailurePolicy::FailClosed, Duration::from_secs(2));
    let mut rls = start_with(&[("api.yaml", CONFIG)], s).await;
    let both = || {
        request(
            "api",
            vec![desc(&[("user", "u")]), desc(&[("path", "/p")])],
            1,
        )
    };
    for _ in 0..3 {
        assert_eq!(rls.call(both()).await.overall_code, Code::Ok as i32);
    }
    for _ in 0..20 {
        let r = rls.call(both()).await;
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        // `user` alone would admit, but the call was denied: not charged.
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(r.statuses[0].limit_remaining, 97);
    }
    // The 20 denied calls counted nothing on either key.
    assert_eq!(rls.one("api", &[("user", "u")], 97).await, Code::Ok);
    assert_eq!(rls.one("api", &[("user", "u")], 1).await, Code::OverLimit);
    // The same descriptor twice in one call: the second sees the first's charge.
    let twice = request(
        "api",
        vec![desc(&[("path", "/q")]), desc(&[("path", "/q")])],
        2,
    );
    let r = rls.call(twice).await;
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    assert_eq!(rls.one("api", &[("path", "/q")], 3).await, Code::Ok);
    // The store's Redis counters in /metrics: 27 calls, all through group commit, 5
    // admitted and 22 denied by Redis, no fallback.
    let (_, metrics) = rls.http("GET", "/metrics", "").await;
    for line in [
        "tailwater_rls_redis_grouped_decisions_total{store=\"redis\"} 27",
        "tailwater_rls_redis_allowed_total{store=\"redis\"} 5",
        "tailwater_rls_redis_denied_total{store=\"redis\"} 22",
        "tailwater_rls_redis_fallback_open_total{store=\"redis\"} 0",
        "tailwater_rls_redis_mismatches_total{store=\"redis\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }
}

async fn killed(policy: FailurePolicy, test: &str) -> Vec<Result<i32, tonic::Code>> {
    if !redis_available(test) {
        return Vec::new();
    }
    let mut server = RedisServer::start().expect("redis");
    let timeout = Duration::from_millis(5);
    let s = store(&server, policy, timeout);
    let mut rls = start_with(&[("api.yaml", CONFIG)], s).await;
    tokio::task::block_in_place(|| server.kill());
    let mut out = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let r = rls
            .client
            .should_rate_limit(request("api", vec![desc(&[("path", "/k")])], 1))
            .await;
        // The per-call timeout plus a loopback gRPC round trip on a loaded machine: far
        // from envoyproxy/ratelimit's multi-second stalls, and under Envoy's 20 ms.
        let took = start.elapsed();
        assert!(took < Duration::from_millis(250), "a call took {took:?}");
        out.push(r.map(|r| r.into_inner().overall_code).map_err(|s| s.code()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_open_admits() {
    let out = killed(FailurePolicy::FailOpen, "redis_killed_fail_open_admits").await;
    assert!(out.iter().all(|r| *r == Ok(Code::Ok as i32)), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_closed_is_unavailable() {
    let out = killed(
        FailurePolicy::FailClosed,
        "redis_killed_fail_closed_is_unavailable",
    )
    .await;
    assert!(
        out.iter().all(|r| *r == Err(tonic::Code::Unavailable)),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_degrades_to_a_local_limit_over_n() {
    let replicas = NonZeroU32::new(3).expect("3");
    let out = killed(
        FailurePolicy::Degrade { replicas },
        "redis_killed_degrades_to_a_local_limit_over_n",
    )
    .await;
    if out.is_empty() {
        return;
    }
    // 3 per hour over 3 replicas: 1 admitted locally, then over limit.
    let ok = out.iter().filter(|r| **r == Ok(Code::Ok as i32)).count();
    let over = out
        .iter()
        .filter(|r| **r == Ok(Code::OverLimit as i32))
        .count();
    assert_eq!((ok, over), (1, 49), "{out:?}");
}
