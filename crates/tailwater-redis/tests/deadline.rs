//! A Redis that accepts connections and never answers (hung, or a network black hole): every
//! decision is answered by the failure policy within the per-call timeout + 1 ms.
//!
//! Deterministic: the "Redis" is a real loopback socket that never replies, and tokio's
//! clock is paused, so the only time that passes is the timers' — a decision that waited
//! for anything but its own timeout would show it here exactly, whatever the machine's
//! load. (Wall-clock latency on a loaded machine adds scheduling, which no code can bound;
//! `tests/failure.rs` kills and restarts a real redis-server.)

use std::num::NonZeroU32;
use std::time::Duration;

use tailwater_core::rate::{BatchClass, BatchItem, Quota};
use tailwater_redis::{
    ConnectionOptions, DecisionSource, FailurePolicy, LeasedLimiter, RedisConnection,
    RedisRateStore, RedisStoreError,
};
use tokio::net::TcpListener;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(5);
const SLACK: Duration = Duration::from_millis(1);

/// A listener that accepts connections, holds them, and never writes a byte.
async fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    format!("redis://{addr}/")
}

fn quota() -> Quota {
    Quota::new(100, Duration::from_secs(3600), 100).expect("valid")
}

/// What the policy answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Open,
    Closed,
    Degraded(bool),
}

fn answer(r: Result<tailwater_redis::Checked, RedisStoreError>) -> Answer {
    match r {
        Ok(c) if c.source == DecisionSource::FailOpen && c.decision.allowed => Answer::Open,
        Ok(c) if c.source == DecisionSource::Degraded => Answer::Degraded(c.decision.allowed),
        Err(RedisStoreError::Unavailable { .. }) => Answer::Closed,
        other => panic!("not answered by the policy: {other:?}"),
    }
}

fn expected(policy: FailurePolicy, a: &Answer) -> bool {
    match policy {
        FailurePolicy::FailOpen => *a == Answer::Open,
        FailurePolicy::FailClosed => *a == Answer::Closed,
        _ => matches!(a, Answer::Degraded(_)),
    }
}

async fn every_call_within_the_timeout(policy: FailurePolicy) {
    let url = black_hole().await;
    let opts = ConnectionOptions::default().call_timeout(TIMEOUT);
    let conn = RedisConnection::open(&url, opts).expect("open");
    let store = RedisRateStore::builder(conn.clone())
        .policy(policy)
        .build()
        .expect("store");
    let leased = LeasedLimiter::builder(conn, "leased", quota())
        .policy(policy)
        .build()
        .expect("limiter");
    let item = BatchItem {
        quota: quota(),
        n: 1,
        class: BatchClass::Enforce,
        slot: 0,
    };
    let mut slowest = Duration::ZERO;
    // Enough calls to cross several back-off periods (50 ms of virtual time each).
    for i in 0..200 {
        let start = Instant::now();
        let a = answer(store.check_detailed("k", &[quota()], 1).await);
        let took = start.elapsed();
        assert!(took <= TIMEOUT + SLACK, "call {i} took {took:?}");
        assert!(expected(policy, &a), "call {i}: {a:?} under {policy:?}");
        slowest = slowest.max(took);

        let start = Instant::now();
        let b = store.check_batch(&["b"], &[item]).await;
        let took = start.elapsed();
        assert!(took <= TIMEOUT + SLACK, "batch {i} took {took:?}");
        match (policy, b) {
            (FailurePolicy::FailClosed, Err(RedisStoreError::Unavailable { .. })) => {}
            (FailurePolicy::FailOpen, Ok(c)) => assert_eq!(c.source, DecisionSource::FailOpen),
            (FailurePolicy::Degrade { .. }, Ok(c)) => {
                assert_eq!(c.source, DecisionSource::Degraded)
            }
            (p, other) => panic!("batch {i} under {p:?}: {other:?}"),
        }

        let start = Instant::now();
        let l = answer(leased.check(1).await);
        let took = start.elapsed();
        assert!(took <= TIMEOUT + SLACK, "leased call {i} took {took:?}");
        assert!(
            expected(policy, &l),
            "leased call {i}: {l:?} under {policy:?}"
        );
        // Time moves on between calls (virtual), so the back-off ends and Redis is tried
        // again: both paths (a real attempt timing out, a skip) are covered.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let st = store.stats();
    assert!(st.timeouts > 1, "Redis was never tried again: {st:?}");
    assert!(st.skipped_backoff > 0, "{st:?}");
    assert_eq!(st.redis_allowed + st.redis_denied, 0);
    eprintln!("{policy:?}: slowest decision {slowest:?} (virtual), {st:?}");
}

#[tokio::test(start_paused = true)]
async fn hung_redis_fail_open_within_timeout() {
    every_call_within_the_timeout(FailurePolicy::FailOpen).await;
}

#[tokio::test(start_paused = true)]
async fn hung_redis_fail_closed_within_timeout() {
    every_call_within_the_timeout(FailurePolicy::FailClosed).await;
}

#[tokio::test(start_paused = true)]
async fn hung_redis_degrade_within_timeout() {
    let replicas = NonZeroU32::new(4).expect("4");
    every_call_within_the_timeout(FailurePolicy::Degrade { replicas }).await;
}
