//! Redis killed mid-run: the failure policy is honoured and every decision returns within
//! the timeout; Redis restarted on the same port: decisions go back to Redis by themselves.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tailwater_core::rate::Quota;
use tailwater_redis::{
    Checked, ConnectionOptions, DecisionSource, FailurePolicy, LeasedLimiter, RedisRateStore,
    RedisStoreError,
};

/// The per-call timeout of these tests. Not the 5 ms default: on a loaded 2-core machine a
/// healthy Redis round trip can take well over 100 ms (redis-server and the test are both
/// descheduled), and the "Redis up" phases assert that Redis — not the policy — answered.
/// The previous 100 ms made that a bet on the scheduler, lost about one run in ten. A
/// killed Redis answers with a connection error at once, whatever the timeout, so the
/// outage phases still exercise the policy; the 5 ms default against a hung Redis is
/// tested on virtual time in `tests/deadline.rs`.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Every decision is answered within the per-call timeout + 1 ms (the bound).
const BOUND: Duration = Duration::from_millis(2001);

/// Decisions are back on Redis within 1 s of the restart.
const RECOVERY: Duration = Duration::from_secs(1);

fn options() -> ConnectionOptions {
    ConnectionOptions::default()
        .call_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
}

fn quota() -> Quota {
    Quota::new(100, Duration::from_secs(3600), 100).expect("valid")
}

#[derive(Debug, Default)]
struct Latency {
    max_micros: AtomicU64,
    calls: AtomicU64,
}

impl Latency {
    fn record(&self, d: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.max_micros.fetch_max(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros.load(Ordering::Relaxed))
    }
}

async fn timed<F: std::future::Future>(lat: &Latency, f: F) -> F::Output {
    let start = Instant::now();
    let out = f.await;
    let took = start.elapsed();
    lat.record(took);
    assert!(took <= BOUND, "a decision took {took:?}");
    out
}

/// The start of the latest background decision that did not come from Redis (µs since
/// `origin`; 0 = none).
#[derive(Debug)]
struct LastFallback {
    origin: Instant,
    micros: AtomicU64,
}

impl LastFallback {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            micros: AtomicU64::new(0),
        }
    }
    fn record(&self, started: Instant) {
        let us = started.duration_since(self.origin).as_micros() + 1;
        self.micros
            .fetch_max(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    /// Whether some fallback decision started at or after `t`.
    fn since(&self, t: Instant) -> bool {
        let us = self.micros.load(Ordering::Relaxed);
        us != 0 && self.origin + Duration::from_micros(us - 1) >= t
    }
}

/// Background callers that keep deciding while Redis dies and comes back.
fn background(
    store: &RedisRateStore,
    lat: &Arc<Latency>,
    fallback: &Arc<LastFallback>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|i| {
            let (store, lat, fallback, stop) = (
                store.clone(),
                Arc::clone(lat),
                Arc::clone(fallback),
                Arc::clone(stop),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let c =
                        timed(&lat, store.check_detailed(&format!("bg{i}"), &[quota()], 1)).await;
                    if !matches!(
                        c,
                        Ok(Checked {
                            source: DecisionSource::Redis,
                            ..
                        })
                    ) {
                        fallback.record(started);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect()
}

/// Polls (with a deadline) until a decision comes from Redis; returns how long after
/// `start` it began and the instant it completed. From then on every decision must come
/// from Redis (checked by the caller): a failure of a call that was in flight before that
/// success must not send later calls to the fallback.
async fn wait_for_redis(store: &RedisRateStore, lat: &Latency) -> (Duration, Instant) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(10);
    loop {
        let began = start.elapsed();
        let c = timed(lat, store.check_detailed("probe", &[quota()], 1)).await;
        if let Ok(Checked {
            source: DecisionSource::Redis,
            ..
        }) = c
        {
            return (began, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "decisions never went back to Redis"
        );
        // Polling an external process (the restarted redis-server and the background
        // reconnection) with a deadline.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run_policy(policy: FailurePolicy, test: &str) {
    let Some(mut server) = common::server(test) else {
        return;
    };
    let store = RedisRateStore::builder(common::connect(&server, options()))
        .policy(policy)
        .build()
        .expect("store");
    let lat = Arc::new(Latency::default());
    let stop = Arc::new(AtomicBool::new(false));
    let last_fallback = Arc::new(LastFallback::new());
    let bg = background(&store, &lat, &last_fallback, &stop);

    // Phase 1: Redis up.
    for _ in 0..50 {
        let c = timed(&lat, store.check_detailed("k", &[quota()], 1))
            .await
            .expect("redis up");
        assert_eq!(c.source, DecisionSource::Redis);
        assert!(c.decision.allowed);
    }

    // Phase 2: Redis killed (SIGKILL) while the background callers run. The launcher is
    // synchronous: `block_in_place` keeps it from stalling the callers on this worker.
    tokio::task::block_in_place(|| server.kill());
    let (mut open, mut closed, mut degraded_ok, mut degraded_no) = (0, 0, 0, 0);
    for _ in 0..300 {
        match timed(&lat, store.check_detailed("k", &[quota()], 1)).await {
            Ok(c) => match c.source {
                DecisionSource::FailOpen => {
                    assert!(c.decision.allowed);
                    open += 1;
                }
                DecisionSource::Degraded if c.decision.allowed => degraded_ok += 1,
                DecisionSource::Degraded => degraded_no += 1,
                other => panic!("Redis is dead but the source is {other:?}"),
            },
            Err(RedisStoreError::Unavailable { .. }) => closed += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    match policy {
        FailurePolicy::FailOpen => assert_eq!(open, 300),
        FailurePolicy::FailClosed => assert_eq!(closed, 300),
        FailurePolicy::Degrade { replicas } => {
            // limit / N: burst 100 / 4 = 25 cells locally, then denials.
            assert_eq!(degraded_ok, 100 / replicas.get());
            assert_eq!(degraded_ok + degraded_no, 300);
        }
        _ => unreachable!(),
    }
    let during = store.stats();

    // Phase 3: Redis restarted on the same port (empty data set); nothing else restarted.
    tokio::task::block_in_place(|| server.restart()).expect("restart redis-server");
    let (recovered, first_ok) = wait_for_redis(&store, &lat).await;
    assert!(
        recovered < RECOVERY,
        "back on Redis only {recovered:?} after the restart"
    );
    // From the first success on, Redis answers every call, the probe's and the background
    // callers' alike (strict: no run of successes to wait for, no fallback forgiven).
    for i in 0..200 {
        let c = timed(&lat, store.check_detailed("k2", &[quota()], 1))
            .await
            .expect("redis back");
        assert_eq!(
            c.source,
            DecisionSource::Redis,
            "decision {i} after the first success fell back"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in bg {
        t.await.expect("background caller");
    }
    assert!(
        !last_fallback.since(first_ok),
        "a background decision that started after the first success fell back"
    );
    let st = store.stats();
    let fallbacks = st.fallback_open + st.fallback_closed + st.fallback_degraded;
    assert!(st.timeouts + st.errors + st.skipped_backoff > 0);
    assert!(fallbacks >= 300);
    eprintln!(
        "{test}: max decision latency {:?} over {} calls; outage answers: open {open}, closed \
         {closed}, degraded {degraded_ok} allowed / {degraded_no} denied; back on Redis {:?} \
         after restart; stats at outage end {during:?}; final {st:?}",
        lat.max(),
        lat.calls.load(Ordering::Relaxed),
        recovered,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_open() {
    run_policy(FailurePolicy::FailOpen, "redis_killed_fail_open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_closed() {
    run_policy(FailurePolicy::FailClosed, "redis_killed_fail_closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_degrade_to_limit_over_n() {
    let replicas = NonZeroU32::new(4).expect("4");
    run_policy(
        FailurePolicy::Degrade { replicas },
        "redis_killed_degrade_to_limit_over_n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_redis_killed_then_restarted() {
    let test = "leased_redis_killed_then_restarted";
    let Some(mut server) = common::server(test) else {
        return;
    };
    let q = Quota::new(100_000, Duration::from_secs(1), 1_000).expect("valid");
    let limiter = LeasedLimiter::builder(common::connect(&server, options()), "lk", q)
        .max_chunk(50)
        .lease_ttl(Duration::from_millis(200))
        .policy(FailurePolicy::FailClosed)
        .build()
        .expect("limiter");
    let lat = Latency::default();
    for _ in 0..200 {
        let c = timed(&lat, limiter.check(1)).await.expect("redis up");
        assert!(c.decision.allowed);
    }
    let granted_before = limiter.stats().lease_granted;
    tokio::task::block_in_place(|| server.kill());
    // Local credit is still spent (until its lease expires), then the policy answers.
    let (mut local, mut closed) = (0u64, 0u64);
    let start = Instant::now();
    // Until the policy answered (the lease ends 200 ms after the last refill), with a
    // deadline: no bet on how many iterations fit in a time slice.
    while closed == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "FailClosed never applied"
        );
        match timed(&lat, limiter.check(1)).await {
            Ok(c) => {
                assert_eq!(c.source, DecisionSource::Local);
                local += 1;
            }
            Err(RedisStoreError::Unavailable { .. }) => closed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::task::yield_now().await;
    }
    assert!(local <= limiter.max_held(), "spent more than it could hold");
    tokio::task::block_in_place(|| server.restart()).expect("restart");
    let back = Instant::now();
    let deadline = back + Duration::from_secs(10);
    loop {
        if let Ok(c) = timed(&lat, limiter.check(1)).await
            && c.decision.allowed
        {
            let took = back.elapsed();
            assert!(
                took < RECOVERY,
                "leases resumed only {took:?} after the restart"
            );
            break;
        }
        assert!(Instant::now() < deadline, "leases never resumed");
        // Polling the restarted external redis-server with a deadline.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let st = limiter.stats();
    assert!(st.lease_granted > granted_before);
    eprintln!(
        "{test}: max latency {:?} over {} calls; during outage {local} local + {closed} \
         fail-closed; leases resumed {:?} after restart; {st:?}",
        lat.max(),
        lat.calls.load(Ordering::Relaxed),
        back.elapsed()
    );
}
