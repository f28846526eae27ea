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

/// A `year` rule (envoyproxy/ratelimit's `unit: year`) on Redis atomic, with group commit
/// and with one script per call: exactly `requests_per_unit` admitted, remaining counted
/// down, denied calls charged nothing, and the emission interval (365 days / 7) rounded
/// up to 8 ns: `duration_until_reset` after the first hit is exactly that interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn year_rules_work_on_redis_atomic() {
    let test = "year_rules_work_on_redis_atomic";
    if !redis_available(test) {
        return;
    }
    const YEAR: &str = r#"
domain: api
descriptors:
  - key: plan
    rate_limit:
      unit: year
      requests_per_unit: 7
"#;
    let server = RedisServer::start().expect("redis");
    for group_commit in [true, false] {
        let opts = ConnectionOptions::default()
            .call_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2));
        let conn = RedisConnection::open(&server.url(), opts).expect("open");
        let store = Store::Redis(
            RedisRateStore::builder(conn)
                .policy(FailurePolicy::FailClosed)
                .group_commit(group_commit)
                .build()
                .expect("store"),
        );
        let mut rls = start_with(&[("api.yaml", YEAR)], store.clone()).await;
        let value = format!("free-{group_commit}");
        let call = || request("api", vec![desc(&[("plan", value.as_str())])], 1);
        let first = rls.call(call()).await;
        assert_eq!(first.overall_code, Code::Ok as i32, "group {group_commit}");
        let s = &first.statuses[0];
        assert_eq!(s.limit_remaining, 6);
        // T = ceil(31 536 000 s / 7) = 4 505 142.857142858 s, rounded up to 8 ns.
        let reset = s.duration_until_reset.expect("reset");
        assert_eq!((reset.seconds, reset.nanos), (4_505_142, 857_142_864));
        let limit = s.current_limit.as_ref().expect("limit");
        assert_eq!(limit.requests_per_unit, 7);
        assert_eq!(limit.unit, tailwater_rls::proto::ProtoUnit::Year as i32);
        for left in (0..6).rev() {
            let r = rls.call(call()).await;
            assert_eq!(r.overall_code, Code::Ok as i32);
            assert_eq!(r.statuses[0].limit_remaining, left);
        }
        for _ in 0..5 {
            let r = rls.call(call()).await;
            assert_eq!(r.overall_code, Code::OverLimit as i32);
            assert_eq!(r.statuses[0].limit_remaining, 0);
        }
        // A check (0 hits) still sees the budget used up, not refilled by denied calls.
        let mut check = request("api", vec![desc(&[("plan", value.as_str())])], 0);
        check.descriptors[0].hits_addend = Some(0);
        assert_eq!(rls.call(check).await.statuses[0].limit_remaining, 0);
        let st = store.redis_stats().expect("redis");
        assert_eq!(st.mismatches, 0, "Lua and Rust agree");
        assert_eq!(st.fallback_closed + st.timeouts + st.errors, 0);
        if group_commit {
            assert!(st.grouped_decisions > 0, "the group script decided");
        }
    }
}
