//! Contract details against a real redis-server: the core's store seam, idle expiry,
//! denied hits not written, NOSCRIPT reload, a hung Redis under the default 5 ms timeout,
//! chunk sizing, lease expiry and release.

mod common;

use std::time::{Duration, Instant};

use tailwater_core::rate::{DenyReason, Quota, StoreLimiter};
use tailwater_redis::{
    ConnectionOptions, DecisionSource, FailurePolicy, LeasedLimiter, RedisRateStore,
};

fn parse_int(reply: &str) -> i64 {
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .expect("integer reply")
}

#[tokio::test]
async fn store_limiter_from_core_runs_on_redis() {
    let Some(server) = common::server("store_limiter_from_core_runs_on_redis") else {
        return;
    };
    let store = RedisRateStore::builder(common::connect(&server, common::relaxed()))
        .build()
        .expect("store");
    let q = Quota::new(3, Duration::from_secs(3600), 3).expect("valid");
    let limiter = StoreLimiter::new(store, q);
    let mut allowed = 0;
    let mut last = None;
    for _ in 0..5 {
        let d = limiter.check("seam").await.expect("check");
        allowed += u32::from(d.allowed);
        last = Some(d);
    }
    let last = last.expect("a decision");
    assert_eq!(allowed, 3);
    assert_eq!(last.reason, Some(DenyReason::RateExceeded));
    assert_eq!(last.limit, 3);
    // Retry after one emission interval (20 min), give or take the test's own duration.
    let retry = last.retry_after.expect("retry hint");
    assert!(retry > Duration::from_secs(1190) && retry <= Duration::from_secs(1200));
    // n > burst is ExceedsBurst, never admitted.
    let d = limiter.check_n("other", 4).await.expect("check");
    assert_eq!(d.reason, Some(DenyReason::ExceedsBurst));
}

#[tokio::test]
async fn idle_keys_expire_and_denied_hits_do_not_write() {
    let Some(server) = common::server("idle_keys_expire_and_denied_hits_do_not_write") else {
        return;
    };
    let store = RedisRateStore::builder(common::connect(&server, common::relaxed()))
        .build()
        .expect("store");
    // 10/s (T = 100 ms), burst 2.
    let q = Quota::new(10, Duration::from_secs(1), 2).expect("valid");
    let key = store.layout().quota_key("user:{x}", &q);
    assert_eq!(key, "tw:{user%3A%7Bx%7D}:g:100000000:2");
    for _ in 0..2 {
        assert!(
            store
                .check_detailed("user:{x}", &[q], 1)
                .await
                .expect("ok")
                .decision
                .allowed
        );
    }
    let before = server.command(&["GET", &key]).expect("GET");
    let pttl = parse_int(&server.command(&["PTTL", &key]).expect("PTTL"));
    assert!(
        pttl > 0 && pttl <= 200,
        "PTTL {pttl} ms must be the time until the TAT"
    );
    for _ in 0..10 {
        let c = store.check_detailed("user:{x}", &[q], 1).await.expect("ok");
        assert!(!c.decision.allowed);
    }
    let after = server.command(&["GET", &key]).expect("GET");
    assert_eq!(before, after, "denied hits must not change the stored TAT");
    eprintln!(
        "idle expiry: PTTL {pttl} ms after a burst of 2 at 10/s; state {}",
        before.trim()
    );
}

#[tokio::test]
async fn script_is_reloaded_after_script_flush() {
    let Some(server) = common::server("script_is_reloaded_after_script_flush") else {
        return;
    };
    let store = RedisRateStore::builder(common::connect(&server, common::relaxed()))
        .build()
        .expect("store");
    let q = Quota::per_second(100).expect("valid");
    assert!(
        store
            .check_detailed("k", &[q], 1)
            .await
            .expect("ok")
            .decision
            .allowed
    );
    assert!(
        server
            .command(&["SCRIPT", "FLUSH"])
            .expect("flush")
            .starts_with("+OK")
    );
    let c = store
        .check_detailed("k", &[q], 1)
        .await
        .expect("NOSCRIPT must reload");
    assert_eq!(c.source, DecisionSource::Redis);
    assert_eq!(store.stats().errors, 0);
}

/// A Redis that hangs (DEBUG SLEEP, like a stalled or overloaded server) under the default
/// options: every decision is answered by the policy within the 5 ms call timeout (bounded
/// here at 250 ms for a loaded machine), not after the hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_is_cut_off_by_the_default_timeout() {
    if !common::redis_available("hung_redis_is_cut_off_by_the_default_timeout") {
        return;
    }
    let server = common::RedisServer::start_with(&["--enable-debug-command", "yes"])
        .expect("start redis-server");
    let opts = ConnectionOptions::default();
    assert_eq!(opts.get_call_timeout(), Duration::from_millis(5));
    let store = RedisRateStore::builder(common::connect(&server, opts))
        .policy(FailurePolicy::FailOpen)
        .build()
        .expect("store");
    let q = Quota::per_second(1_000).expect("valid");
    // Warm up the connection (its first use connects).
    let deadline = Instant::now() + Duration::from_secs(5);
    while store
        .check_detailed("k", &[q], 1)
        .await
        .expect("open")
        .source
        != DecisionSource::Redis
    {
        assert!(Instant::now() < deadline, "never reached Redis");
        // Polling the external redis-server (first connection) with a deadline.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let port = server.port();
    let hang = std::thread::spawn(move || {
        // Blocks the server for 1.5 s; the reply may time out on our side, which is fine.
        let _ = tailwater_test::redis::raw_command_with_timeout(
            port,
            &["DEBUG", "SLEEP", "1.5"],
            Duration::from_secs(3),
        );
    });
    // Give the DEBUG command a moment to reach the server (an external process).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut worst = Duration::ZERO;
    let mut open = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        let t = Instant::now();
        let c = store.check_detailed("k", &[q], 1).await.expect("fail open");
        worst = worst.max(t.elapsed());
        if c.source == DecisionSource::FailOpen {
            open += 1;
        }
    }
    hang.join().expect("hang thread");
    let st = store.stats();
    eprintln!(
        "hung redis: worst decision {worst:?} with the default 5 ms timeout; {open} fail-open \
         answers; {st:?}"
    );
    assert!(
        worst < Duration::from_millis(250),
        "a decision took {worst:?}"
    );
    assert!(open > 0 && st.timeouts > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_follow_the_observed_rate() {
    let Some(server) = common::server("chunks_follow_the_observed_rate") else {
        return;
    };
    let q = Quota::new(1_000_000, Duration::from_secs(1), 100_000).expect("valid");
    let slow = LeasedLimiter::builder(common::connect(&server, common::relaxed()), "slow", q)
        .max_chunk(1_000)
        .refill_interval(Duration::from_millis(20))
        .build()
        .expect("limiter");
    for _ in 0..15 {
        assert!(slow.check(1).await.expect("ok").decision.allowed);
        // Pacing the workload at ~50 calls/s (this is the load, not synchronisation).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fast = LeasedLimiter::builder(common::connect(&server, common::relaxed()), "fast", q)
        .max_chunk(1_000)
        .refill_interval(Duration::from_millis(20))
        .build()
        .expect("limiter");
    // One sequential caller answered locally can outrun 1 M/s: count, do not assert each.
    let mut fast_ok = 0u32;
    for _ in 0..200_000 {
        fast_ok += u32::from(fast.check(1).await.expect("ok").decision.allowed);
    }
    assert!(fast_ok >= 100_000, "fast admitted only {fast_ok}");
    let (s, f) = (slow.stats(), fast.stats());
    eprintln!(
        "chunk sizing: slow (50/s) chunk {} after {} refills; fast chunk {} after {} refills \
         for 200000 decisions",
        slow.chunk(),
        s.lease_refills,
        fast.chunk(),
        f.lease_refills
    );
    assert!(slow.chunk() <= 2, "slow chunk {}", slow.chunk());
    assert_eq!(fast.chunk(), 1_000);
    assert!(
        f.lease_refills < 2_000,
        "fast path made {} refills",
        f.lease_refills
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_and_release_returns_credit() {
    let Some(server) = common::server("leases_expire_and_release_returns_credit") else {
        return;
    };
    // 100 per 10 h, burst 100: no refill during the test.
    let q = Quota::new(100, Duration::from_secs(36_000), 100).expect("valid");
    let a = LeasedLimiter::builder(common::connect(&server, common::relaxed()), "shared", q)
        .min_chunk(40)
        .max_chunk(40)
        .lease_ttl(Duration::from_millis(100))
        .build()
        .expect("limiter");
    assert!(a.check(1).await.expect("ok").decision.allowed);
    // One chunk of 40 plus possibly the prefetched second chunk.
    let held = a.credit();
    assert!(held == 39 || held == 79, "held {held}");
    // Let the lease expire (pacing against the lease TTL, not synchronisation).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let held_before_expiry = a.credit();
    assert!(a.check(1).await.expect("ok").decision.allowed);
    let st = a.stats();
    assert!(st.lease_expired >= held_before_expiry, "{st:?}");
    // Release: what `a` holds goes back to Redis and `b` can use it.
    let held_now = a.credit();
    let returned = a.release().await.expect("release");
    assert_eq!(returned, held_now);
    let store = RedisRateStore::builder(common::connect(&server, common::relaxed()))
        .build()
        .expect("store");
    let mut got = 0u64;
    while store
        .check_detailed("shared", &[q], 1)
        .await
        .expect("ok")
        .decision
        .allowed
    {
        got += 1;
    }
    let used_or_lost = 100 - got;
    eprintln!(
        "lease expiry/release: expired {} cells, returned {returned}, atomic store then got \
         {got} of 100 ({used_or_lost} spent or expired)",
        st.lease_expired
    );
    assert_eq!(got + st.lease_expired + 2 + a.credit(), 100);
}
