//! The Redis Cluster backend on a real 3-master cluster: a call's descriptors share the
//! domain's hash tag, so one script decides them all or none, and domains spread over
//! the masters.

mod common;

#[cfg(not(feature = "cluster"))]
#[test]
fn cluster_tests_need_the_cluster_feature() {
    let msg = "RLS cluster tests SKIPPED: build with `--features cluster` (or --all-features)";
    if std::env::var(tailwater_test::redis::REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{msg}, which TAILWATER_REQUIRE_REDIS=1 requires");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {msg} !!!!!!!!\n");
}

#[cfg(feature = "cluster")]
mod with_cluster {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use tailwater_redis::{ConnectionOptions, FailurePolicy, RedisConnection, RedisRateStore};
    use tailwater_rls::Store;
    use tailwater_rls::proto::Code;
    use tailwater_test::redis::{RedisCluster, redis_available};

    use super::common::{desc, request, start_with};

    fn config(domain: &str) -> String {
        format!(
            "domain: {domain}\ndescriptors:\n  - key: user\n    rate_limit:\n      unit: hour\n      \
             requests_per_unit: 100\n  - key: path\n    rate_limit:\n      unit: hour\n      \
             requests_per_unit: 3\n"
        )
    }

    /// Every key of the node, from `KEYS *` in raw RESP.
    fn keys(node: &tailwater_test::redis::RedisServer) -> Vec<String> {
        let raw = node.command(&["KEYS", "*"]).expect("KEYS");
        raw.split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_calls_are_atomic_per_domain() {
        let test = "cluster_calls_are_atomic_per_domain";
        if !redis_available(test) {
            return;
        }
        let cluster = RedisCluster::start().expect("start a 3-master cluster");
        let opts = ConnectionOptions::default()
            .call_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2));
        let conn = RedisConnection::open_cluster(&cluster.urls(), opts)
            .await
            .expect("cluster connection");
        let store = RedisRateStore::builder(conn)
            .policy(FailurePolicy::FailClosed)
            .build()
            .expect("store");
        // Domains named so that their hash tags fall on different masters of most slot
        // layouts; the assertion below only needs them to be tagged consistently.
        let domains: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
        let files: Vec<(String, String)> = domains
            .iter()
            .map(|d| (format!("{d}.yaml"), config(d)))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut rls = start_with(&refs, Store::Cluster(store)).await;
        for d in &domains {
            let both = || request(d, vec![desc(&[("user", "u")]), desc(&[("path", "/p")])], 1);
            for _ in 0..3 {
                assert_eq!(rls.call(both()).await.overall_code, Code::Ok as i32);
            }
            for _ in 0..5 {
                let r = rls.call(both()).await;
                assert_eq!(r.overall_code, Code::OverLimit as i32);
                // `user` alone would admit, but the call was refused: not charged.
                assert_eq!(r.statuses[0].code, Code::Ok as i32);
                assert_eq!(r.statuses[0].limit_remaining, 97);
            }
            assert_eq!(rls.one(d, &[("user", "u")], 97).await, Code::Ok);
            assert_eq!(rls.one(d, &[("user", "u")], 1).await, Code::OverLimit);
        }
        // Every key of a domain lives on one master (one slot: its hash tag), and the
        // domains are spread over more than one master.
        let mut masters_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for (i, node) in cluster.nodes().iter().enumerate() {
            for k in keys(node) {
                let tag = k
                    .split_once('{')
                    .and_then(|(_, r)| r.split_once('}'))
                    .map(|(t, _)| t.to_owned())
                    .expect("tagged key");
                masters_of.entry(tag).or_default().insert(i);
            }
        }
        assert_eq!(
            masters_of.keys().cloned().collect::<Vec<_>>(),
            domains,
            "{masters_of:?}"
        );
        assert!(
            masters_of.values().all(|m| m.len() == 1),
            "a domain's keys on several masters: {masters_of:?}"
        );
        let used: BTreeSet<usize> = masters_of.values().flatten().copied().collect();
        assert!(used.len() > 1, "all domains on one master: {masters_of:?}");
    }
}
