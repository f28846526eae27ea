//! Group commit: concurrent `check_batch` calls decided by a few scripts, each call still
//! atomic on its own keys, denied hits never charged, every call decided on the state its
//! predecessors left.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tailwater_core::rate::{BatchClass, BatchItem, Quota};
use tailwater_redis::{DecisionSource, RedisRateStore};

fn item(quota: Quota, slot: usize) -> BatchItem {
    BatchItem {
        quota,
        n: 1,
        class: BatchClass::Enforce,
        slot,
    }
}

/// 64 concurrent calls, half of them on `[a, b]` and half on `[b]`: `a` admits 5 calls,
/// `b` 100. Exactly 5 `[a, b]` calls are admitted; the denied ones charge neither key,
/// so `b` is charged exactly once per admitted call. The admitted calls on `a` saw 4, 3,
/// 2, 1, 0 remaining: each call was decided on the state left by the calls before it, even
/// inside one script. And far fewer scripts than calls were sent.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_calls_share_scripts_and_stay_exact() {
    let Some(server) = common::server("concurrent_calls_share_scripts_and_stay_exact") else {
        return;
    };
    let store = RedisRateStore::builder(common::connect(&server, common::relaxed()))
        .build()
        .expect("store");
    let qa = Quota::new(5, Duration::from_secs(3600), 5).expect("valid");
    let qb = Quota::new(100, Duration::from_secs(3600), 100).expect("valid");
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let r = store
                        .check_batch(&["a", "b"], &[item(qa, 0), item(qb, 1)])
                        .await;
                    (true, r)
                } else {
                    (false, store.check_batch(&["b"], &[item(qb, 0)]).await)
                }
            })
        })
        .collect();
    let (mut admitted_ab, mut admitted_b) = (0u32, 0u32);
    let mut remaining_a = BTreeSet::new();
    for c in calls {
        let (with_a, r) = c.await.expect("task");
        let r = r.expect("redis up");
        assert_eq!(r.source, DecisionSource::Redis);
        if r.committed {
            admitted_b += 1;
            if with_a {
                admitted_ab += 1;
                assert!(
                    remaining_a.insert(r.decisions[0].remaining),
                    "two calls saw the same state of a"
                );
            }
        }
    }
    assert_eq!(admitted_ab, 5, "key a admits exactly its burst");
    assert_eq!(remaining_a, (0..5).collect::<BTreeSet<u32>>());
    // 32 `[b]` calls and 5 `[a, b]` calls charged b; the 27 denied `[a, b]` calls did not.
    assert_eq!(admitted_b, 37);
    let query = BatchItem {
        n: 0,
        ..item(qb, 0)
    };
    let q = store.check_batch(&["b"], &[query]).await.expect("query");
    assert_eq!(
        q.decisions[0].remaining,
        100 - 37,
        "denied hits were charged"
    );
    let st = store.stats();
    assert_eq!(st.mismatches, 0);
    assert_eq!(st.grouped_decisions, 65);
    // The 64 calls queued before the driver ran: a handful of scripts, not 64.
    assert!(
        st.redis_calls * 4 <= st.grouped_decisions,
        "no grouping: {st:?}"
    );
}

/// With group commit off, each call is its own script: the same exactness, one script
/// per call.
#[tokio::test(flavor = "current_thread")]
async fn group_commit_off_sends_one_script_per_call() {
    let Some(server) = common::server("group_commit_off_sends_one_script_per_call") else {
        return;
    };
    let store = RedisRateStore::builder(common::connect(&server, common::relaxed()))
        .group_commit(false)
        .build()
        .expect("store");
    let qa = Quota::new(5, Duration::from_secs(3600), 5).expect("valid");
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.check_batch(&["a"], &[item(qa, 0)]).await })
        })
        .collect();
    let mut admitted = 0;
    for c in calls {
        admitted += u32::from(c.await.expect("task").expect("redis up").committed);
    }
    assert_eq!(admitted, 5);
    let st = store.stats();
    assert_eq!(st.grouped_decisions, 0);
    assert_eq!(st.redis_calls, 16);
}
