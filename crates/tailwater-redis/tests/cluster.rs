//! Redis Cluster: three masters on loopback ports, limits keyed across slots.

mod common;

#[cfg(not(feature = "cluster"))]
#[test]
fn cluster_tests_need_the_cluster_feature() {
    let msg = "cluster tests SKIPPED: build with `--features cluster` (or --all-features)";
    if std::env::var(common::REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{msg}, which TAILWATER_REQUIRE_REDIS=1 requires");
    }
    // Straight to stderr so that the harness's capture cannot hide it.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {msg} !!!!!!!!\n");
}

#[cfg(feature = "cluster")]
mod with_cluster {
    use std::time::Duration;

    use tailwater_core::rate::{Quota, RateStore};
    use tailwater_redis::{DecisionSource, LeasedLimiter, RedisConnection, RedisRateStore};

    use super::common;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_keyed_across_slots_on_three_masters() {
        if !common::redis_available("limits_keyed_across_slots_on_three_masters") {
            return;
        }
        let cluster = common::RedisCluster::start().expect("start a 3-master cluster");
        let conn = RedisConnection::open_cluster(&cluster.urls(), common::relaxed())
            .await
            .expect("cluster connection");
        let store = RedisRateStore::builder(conn.clone())
            .build()
            .expect("store");
        // Two quotas per key (hash tag keeps both in one slot, so one script updates both).
        let quotas = [
            Quota::new(5, Duration::from_secs(3600), 5).expect("valid"),
            Quota::new(100, Duration::from_secs(86_400), 100).expect("valid"),
        ];
        const KEYS: usize = 60;
        let mut admitted_total = 0;
        for k in 0..KEYS {
            let key = format!("tenant:{k}");
            let mut admitted = 0;
            for _ in 0..8 {
                let d = RateStore::check(&store, &key, &quotas, 1)
                    .await
                    .expect("cluster check");
                if d.allowed {
                    admitted += 1;
                }
            }
            assert_eq!(admitted, 5, "key {key}");
            admitted_total += admitted;
        }
        // Both quota keys of one user key share a slot (the hash tag), across many slots.
        let mut slots = std::collections::HashSet::new();
        for k in 0..KEYS {
            let keys = store.layout().quota_keys(&format!("tenant:{k}"), &quotas);
            let slot = |key: &str| {
                cluster.nodes()[0]
                    .command(&["CLUSTER", "KEYSLOT", key])
                    .expect("KEYSLOT")
                    .trim()
                    .to_owned()
            };
            let s0 = slot(&keys[0]);
            assert_eq!(s0, slot(&keys[1]), "quotas of one key in different slots");
            slots.insert(s0);
        }
        assert!(
            slots.len() > KEYS / 2,
            "only {} distinct slots",
            slots.len()
        );
        // The keys really are spread over all three masters.
        let mut per_node = Vec::new();
        for node in cluster.nodes() {
            let reply = node.command(&["DBSIZE"]).expect("DBSIZE");
            let n: u64 = reply
                .trim()
                .trim_start_matches(':')
                .parse()
                .expect("integer reply");
            per_node.push(n);
        }
        assert!(
            per_node.iter().all(|n| *n > 0),
            "keys per node {per_node:?}"
        );
        assert_eq!(per_node.iter().sum::<u64>(), 2 * KEYS as u64);

        // The leased path on the cluster too.
        let q = Quota::new(50, Duration::from_secs(3600), 50).expect("valid");
        let leased = LeasedLimiter::builder(conn, "leased:global", q)
            .max_chunk(10)
            .build()
            .expect("limiter");
        let mut leased_ok = 0;
        for _ in 0..80 {
            let c = leased.check(1).await.expect("leased");
            assert_ne!(c.source, DecisionSource::FailOpen);
            if c.decision.allowed {
                leased_ok += 1;
            }
        }
        assert_eq!(leased_ok, 50);
        let st = store.stats();
        assert_eq!(st.errors + st.timeouts + st.mismatches, 0);
        eprintln!(
            "cluster: {KEYS} keys x 2 quotas, {admitted_total} admitted (5 per key of 8 tries), \
             keys per master {per_node:?}; leased {leased_ok}/80 admitted of burst 50"
        );
    }
}
