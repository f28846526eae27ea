//! The leased Redis backend against a real redis-server: a refused call is charged
//! nothing, and three replicas hammering one key never admit more than the key's GCRA
//! allows over the run, each holding at most `H = max_chunk + ceil(max_chunk / 2)`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{desc, request, start_with};
use tailwater_core::rate::{BatchClass, BatchItem, Quota};
use tailwater_redis::{ConnectionOptions, FailurePolicy, RedisConnection};
use tailwater_rls::proto::Code;
use tailwater_rls::{LeasedOptions, LeasedStore, Store};
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

fn leased(server: &RedisServer, max_chunk: u32) -> LeasedStore {
    // Generous timeouts: these tests are about accounting, not the failure policy; a long
    // lease so that no credit expires mid-test (expiry is an undershoot, tested in
    // tailwater-redis).
    let opts = ConnectionOptions::default()
        .call_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2));
    let conn = RedisConnection::open(&server.url(), opts).expect("open");
    LeasedStore::new(
        conn,
        LeasedOptions {
            max_chunk,
            lease_ttl: Duration::from_secs(60),
            policy: FailurePolicy::FailClosed,
            ..LeasedOptions::default()
        },
    )
    .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_refused_calls_are_charged_nothing() {
    let test = "leased_refused_calls_are_charged_nothing";
    if !redis_available(test) {
        return;
    }
    let server = RedisServer::start().expect("redis");
    let store = Store::Leased(Arc::new(leased(&server, 10)));
    let mut rls = start_with(&[("api.yaml", CONFIG)], store).await;
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
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(r.statuses[1].code, Code::OverLimit as i32);
    }
    // The 20 refused calls took `user` hits from local credit and put them back: exactly
    // the 97 hits left of the 100 per hour are admitted, then none.
    let mut admitted = 0;
    for _ in 0..110 {
        if rls.one("api", &[("user", "u")], 1).await == Code::Ok {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 97);
    // The same descriptor twice in one call sees its own charge.
    let twice = request(
        "api",
        vec![desc(&[("path", "/q")]), desc(&[("path", "/q")])],
        2,
    );
    assert_eq!(rls.call(twice).await.overall_code, Code::OverLimit as i32);
    assert_eq!(rls.one("api", &[("path", "/q")], 3).await, Code::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_leased_replicas_never_admit_beyond_the_budget() {
    let test = "three_leased_replicas_never_admit_beyond_the_budget";
    if !redis_available(test) {
        return;
    }
    let server = RedisServer::start().expect("redis");
    const REPLICAS: usize = 3;
    const MAX_CHUNK: u32 = 20;
    const BUDGET: u32 = 600;
    // Per hour: no refill during the test, so the GCRA's allowance over the run is
    // exactly the burst, and every cell beyond it would be an overshoot.
    let quota = Quota::new(BUDGET, Duration::from_secs(3600), BUDGET).expect("valid");
    let item = BatchItem {
        quota,
        n: 1,
        class: BatchClass::Enforce,
        slot: 0,
    };
    let stores: Vec<Arc<LeasedStore>> = (0..REPLICAS)
        .map(|_| Arc::new(leased(&server, MAX_CHUNK)))
        .collect();
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..2 {
            let (store, admitted) = (Arc::clone(store), Arc::clone(&admitted));
            tasks.push(tokio::spawn(async move {
                // Until this caller saw 50 refusals in a row: the budget is gone.
                let mut refused_in_a_row = 0;
                while refused_in_a_row < 50 {
                    let d = store
                        .decide(&["shared"], &[item])
                        .await
                        .expect("redis answers");
                    if d.committed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        refused_in_a_row = 0;
                    } else {
                        refused_in_a_row += 1;
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let admitted = admitted.load(Ordering::Relaxed);
    // H per replica: the most credit one replica can hold.
    let h = u64::from(MAX_CHUNK + MAX_CHUNK.div_ceil(2));
    assert!(
        admitted <= u64::from(BUDGET),
        "overshoot: {admitted} admitted of a budget of {BUDGET}"
    );
    // Whatever was not admitted is at most what the replicas may still hold.
    assert!(
        admitted + REPLICAS as u64 * h >= u64::from(BUDGET),
        "undershoot beyond N*H: {admitted} of {BUDGET}"
    );
    eprintln!("{test}: {admitted} admitted of {BUDGET} by {REPLICAS} replicas (H = {h})");
}

/// A `year` rule on the leased store: exactly `requests_per_unit` admitted over the run,
/// leases taken from Redis with the rounded (8 ns) emission interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn year_rules_work_on_redis_leased() {
    let test = "year_rules_work_on_redis_leased";
    if !redis_available(test) {
        return;
    }
    const YEAR: &str = r#"
domain: api
descriptors:
  - key: plan
    rate_limit:
      unit: year
      requests_per_unit: 25
"#;
    let server = RedisServer::start().expect("redis");
    let store = Arc::new(leased(&server, 10));
    let mut rls = start_with(&[("api.yaml", YEAR)], Store::Leased(Arc::clone(&store))).await;
    let mut admitted = 0;
    for _ in 0..40 {
        if rls.one("api", &[("plan", "free")], 1).await == Code::Ok {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 25);
    let st = store.redis_stats();
    assert_eq!(st.fallback_closed + st.timeouts + st.errors, 0);
    assert!(
        st.lease_granted >= 25,
        "every admitted hit was leased from Redis"
    );
}
