//! A hung Redis (a loopback socket that accepts and never answers) behind the atomic and the
//! leased stores: every call of several descriptors is answered by the failure policy within
//! the per-call timeout + 1 ms — one deadline for the whole call, not one per descriptor.
//! Deterministic: tokio's clock is paused, so only timers move time.

use std::sync::Arc;
use std::time::Duration;

use tailwater_core::rate::{BatchClass, BatchItem, Quota};
use tailwater_redis::{
    ConnectionOptions, DecisionSource, FailurePolicy, RedisConnection, RedisRateStore,
};
use tailwater_rls::{LeasedOptions, LeasedStore, Store};
use tokio::net::TcpListener;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(5);

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

fn items() -> Vec<BatchItem> {
    let q = Quota::new(100, Duration::from_secs(3600), 100).expect("valid");
    (0..4)
        .map(|slot| BatchItem {
            quota: q,
            n: 1,
            class: BatchClass::Enforce,
            slot,
        })
        .collect()
}

async fn stores(policy: FailurePolicy) -> Vec<Store> {
    let url = black_hole().await;
    let conn = RedisConnection::open(&url, ConnectionOptions::default().call_timeout(TIMEOUT))
        .expect("open");
    let atomic = RedisRateStore::builder(conn.clone())
        .policy(policy)
        .build()
        .expect("store");
    let leased = LeasedStore::new(
        conn,
        LeasedOptions {
            policy,
            ..LeasedOptions::default()
        },
    )
    .expect("leased");
    vec![Store::Redis(atomic), Store::Leased(Arc::new(leased))]
}

async fn within_timeout(policy: FailurePolicy) {
    let items = items();
    let keys = ["a", "b", "c", "d"];
    for store in stores(policy).await {
        for i in 0..100 {
            let start = Instant::now();
            let r = store.decide("api", &keys, &items).await;
            let took = start.elapsed();
            assert!(
                took <= TIMEOUT + Duration::from_millis(1),
                "{} call {i} took {took:?}",
                store.kind()
            );
            match (policy, r) {
                (FailurePolicy::FailOpen, Ok(d)) => {
                    assert!(d.committed);
                    assert_eq!(d.source, DecisionSource::FailOpen);
                }
                (FailurePolicy::FailClosed, Err(_)) => {}
                (p, other) => panic!("{} call {i} under {p:?}: {other:?}", store.kind()),
            }
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn hung_redis_open_within_one_timeout_per_call() {
    within_timeout(FailurePolicy::FailOpen).await;
}

#[tokio::test(start_paused = true)]
async fn hung_redis_closed_within_one_timeout_per_call() {
    within_timeout(FailurePolicy::FailClosed).await;
}
