//! Redis Streams consumer groups against a real `redis-server` (started per test by
//! `tailwater-test`; run with `TAILWATER_REQUIRE_REDIS=1` so they cannot be skipped):
//! a downstream 5× slower mid-run keeps in-flight and memory bounded while the lag grows and
//! is reported, nothing is lost and every redelivery is counted; a killed consumer's pending
//! entries are claimed by another within the configured time.
#![cfg(feature = "redis-streams")]

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_stream::broker::BrokerError;
use tailwater_stream::broker::redis::{Message, RedisStreamConfig, RedisStreamConsumer};
use tailwater_test::redis::{RedisServer, redis_available};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep, timeout};

fn server(test: &str) -> Option<RedisServer> {
    if !redis_available(test) {
        return None;
    }
    Some(RedisServer::start().expect("start redis-server"))
}

async fn conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Adds entries `from..to` (field `n`, and a 100-byte `body`) in one pipeline.
async fn produce(conn: &mut redis::aio::MultiplexedConnection, stream: &str, from: u64, to: u64) {
    let mut pipe = redis::pipe();
    for n in from..to {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("n")
            .arg(n)
            .arg("body")
            .arg(&[b'x'; 100][..])
            .ignore();
    }
    let () = pipe.query_async(conn).await.expect("XADD");
}

fn number(msg: &Message) -> u64 {
    std::str::from_utf8(msg.field("n").expect("field n"))
        .expect("utf8")
        .parse()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag() {
    let Some(server) = server("a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag")
    else {
        return;
    };
    let mut producer = conn(&server).await;
    // The downstream: 4 servers; 1 ms per message (about 4000/s at best, 2000/s with
    // tokio's 1 ms timer), then 5 ms (about 700/s) mid-run. The producer adds 1500/s.
    let servers = Arc::new(Semaphore::new(4));
    let service_us = Arc::new(AtomicU64::new(1_000));
    // Every 97th message fails on its first delivery: it must come back, counted.
    let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    const TOTAL: u64 = 2400;
    // A fixed limit of 16: at most 16 messages in the consumer, whatever the downstream
    // does (an adaptive algorithm would move the bound; this test pins it to assert it).
    const MAX_LIMIT: usize = 16;
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(MAX_LIMIT).expect("fixed"))
        .build()
        .expect("limiter");
    let config = RedisStreamConfig::new("orders", "billing", "billing-1")
        .max_fetch(NonZeroUsize::new(32).expect("non-zero"))
        .block(Duration::from_millis(20))
        .claim_idle(Duration::from_millis(300))
        .claim_interval(Duration::from_millis(100))
        .lag_interval(Duration::from_millis(100));
    let handler = {
        let (servers, service_us, seen, done_tx) = (
            Arc::clone(&servers),
            Arc::clone(&service_us),
            Arc::clone(&seen),
            Arc::clone(&done_tx),
        );
        move |msg: Message| {
            let (servers, service_us, seen, done_tx) = (
                Arc::clone(&servers),
                Arc::clone(&service_us),
                Arc::clone(&seen),
                Arc::clone(&done_tx),
            );
            async move {
                let n = number(&msg);
                let first = {
                    let mut seen = seen.lock().expect("lock");
                    let count = seen.entry(n).or_insert(0);
                    *count += 1;
                    *count == 1
                };
                if first && n.is_multiple_of(97) {
                    return Err("injected failure");
                }
                let _server = servers.acquire().await.expect("semaphore");
                sleep(Duration::from_micros(service_us.load(Ordering::Relaxed))).await;
                done_tx.send_modify(|d| *d += 1);
                Ok(())
            }
        }
    };
    let consumer = RedisStreamConsumer::start(&server.url(), config, limiter.clone(), handler)
        .await
        .expect("start");

    // Produce 1500/s for 1.6 s; the downstream is 5× slower from 0.6 s to 1.6 s.
    let start = Instant::now();
    let mut samples = Vec::new(); // (seconds, stats, limit)
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next = 0;
    while next < TOTAL {
        tick.tick().await;
        produce(&mut producer, "orders", next, next + 15).await;
        next += 15;
        let t = start.elapsed().as_secs_f64();
        if (0.6..1.6).contains(&t) {
            service_us.store(5_000, Ordering::Relaxed);
        } else if t >= 1.6 {
            service_us.store(1_000, Ordering::Relaxed);
        }
        if next % 150 == 0 {
            samples.push((t, consumer.stats(), limiter.limit()));
        }
    }
    service_us.store(1_000, Ordering::Relaxed);
    let produced_at = start.elapsed();
    // Every message handled successfully once (failures come back after claim_idle).
    timeout(
        Duration::from_secs(20),
        done_rx.wait_for(|d| *d >= TOTAL as usize),
    )
    .await
    .expect("every message handled within 20 s")
    .expect("watch");
    let drained_at = start.elapsed();
    let fin = consumer.stop().await.expect("stop");

    for (t, s, limit) in &samples {
        eprintln!(
            "t={t:.2}s lag={:?} growth={:?}/s pending={:?} in_flight={} limit={limit} fetch={} delivered={}",
            s.lag, s.lag_growth_per_second, s.pending, s.in_flight, s.last_fetch_size, s.delivered
        );
    }
    eprintln!("produced in {produced_at:?}, drained at {drained_at:?}; final {fin:?}");

    // Nothing lost: every number handled, and acknowledged.
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len() as u64, TOTAL, "every message delivered");
    assert_eq!(fin.acked, TOTAL, "every message acknowledged once");
    // Every redelivery counted: the duplicates the sink saw are exactly the consumer's
    // redeliveries, and each injected failure came back once.
    let duplicates: u64 = seen.values().map(|&c| u64::from(c - 1)).sum();
    let injected = (0..TOTAL).filter(|n| n.is_multiple_of(97)).count() as u64;
    assert_eq!(fin.failed, injected);
    assert_eq!(fin.redelivered, duplicates, "{fin:?}");
    assert_eq!(fin.redelivered, injected, "{fin:?}");
    assert_eq!(fin.delivered, TOTAL + injected);
    // Bounded: never more in flight than the limiter's maximum, so memory is flat.
    assert!(fin.peak_in_flight <= MAX_LIMIT, "{fin:?}");
    assert!(
        fin.peak_in_flight_bytes <= MAX_LIMIT * (1 + 4 + 4 + 100),
        "{fin:?}"
    );
    assert!(fin.max_fetch_size <= 32);
    // The lag grew while the downstream was slow, and was reported with its growth rate.
    let slow: Vec<_> = samples
        .iter()
        .filter(|(t, _, _)| (0.8..1.6).contains(t))
        .collect();
    let peak_lag = slow.iter().filter_map(|(_, s, _)| s.lag).max().unwrap_or(0);
    assert!(peak_lag >= 200, "lag while slow: {peak_lag}");
    assert!(
        slow.iter()
            .any(|(_, s, _)| s.lag_growth_per_second.is_some_and(|g| g > 100.0)),
        "a positive growth rate was reported while slow"
    );
    // What was pulled shrank to what the downstream handled: while slow, the consumer
    // took entries at the downstream's pace (about 700/s), not the producer's 1500/s.
    let at = |lo: f64| {
        samples
            .iter()
            .find(|(t, _, _)| *t >= lo)
            .map(|(t, s, _)| (*t, s.delivered))
            .expect("sample")
    };
    let ((t0, d0), (t1, d1)) = (at(0.8), at(1.5));
    let slow_rate = (d1 - d0) as f64 / (t1 - t0);
    let ((f0, e0), (f1, e1)) = (at(0.1), at(0.5));
    let fast_rate = (e1 - e0) as f64 / (f1 - f0);
    eprintln!("pulled {fast_rate:.0}/s while fast, {slow_rate:.0}/s while slow (producer 1500/s)");
    assert!(slow_rate < 1000.0, "pulled {slow_rate:.0}/s while slow");
    assert!(
        fast_rate > 1.5 * slow_rate,
        "fast {fast_rate:.0}/s, slow {slow_rate:.0}/s"
    );
    // And drained at the end.
    assert_eq!(fin.lag, Some(0), "{fin:?}");
    assert_eq!(fin.pending, Some(0), "{fin:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumers_pending_entries_are_claimed_within_the_idle_time() {
    let Some(server) =
        server("a_killed_consumers_pending_entries_are_claimed_within_the_idle_time")
    else {
        return;
    };
    let mut producer = conn(&server).await;
    produce(&mut producer, "jobs", 0, 200).await;
    let claim_idle = Duration::from_millis(500);
    let claim_interval = Duration::from_millis(100);
    let config = |name: &str| {
        RedisStreamConfig::new("jobs", "workers", name)
            .block(Duration::from_millis(20))
            .claim_idle(claim_idle)
            .claim_interval(claim_interval)
            .lag_interval(Duration::from_millis(100))
    };
    let fixed = |n| {
        Limiter::builder()
            .algorithm(Fixed::new(n).expect("fixed"))
            .build()
            .expect("limiter")
    };

    // Consumer A takes 50 entries and hangs on them.
    let held: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let (held_tx, mut held_rx) = watch::channel(0usize);
    let a = {
        let held = Arc::clone(&held);
        let held_tx = Arc::new(held_tx);
        RedisStreamConsumer::start(
            &server.url(),
            config("a"),
            fixed(50),
            move |msg: Message| {
                let (held, held_tx) = (Arc::clone(&held), Arc::clone(&held_tx));
                async move {
                    held.lock().expect("lock").insert(number(&msg));
                    held_tx.send_modify(|n| *n += 1);
                    std::future::pending::<()>().await;
                    Ok::<(), BrokerError>(())
                }
            },
        )
        .await
        .expect("start a")
    };
    timeout(Duration::from_secs(5), held_rx.wait_for(|n| *n == 50))
        .await
        .expect("a holds 50 within 5 s")
        .expect("watch");
    let a_stats = a.kill();
    let killed = Instant::now();
    assert_eq!(a_stats.acked, 0);
    let held = held.lock().expect("lock").clone();
    assert_eq!(held.len(), 50);

    // Consumer B handles the rest, and claims A's entries once they are idle long enough.
    let handled: Arc<Mutex<Vec<(u64, bool, Instant)>>> = Arc::default();
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let b = {
        let handled = Arc::clone(&handled);
        let done_tx = Arc::new(done_tx);
        RedisStreamConsumer::start(
            &server.url(),
            config("b"),
            fixed(20),
            move |msg: Message| {
                let (handled, done_tx) = (Arc::clone(&handled), Arc::clone(&done_tx));
                async move {
                    handled.lock().expect("lock").push((
                        number(&msg),
                        msg.is_redelivery(),
                        Instant::now(),
                    ));
                    done_tx.send_modify(|n| *n += 1);
                    Ok::<(), BrokerError>(())
                }
            },
        )
        .await
        .expect("start b")
    };
    timeout(Duration::from_secs(10), done_rx.wait_for(|n| *n >= 200))
        .await
        .expect("b handles all 200 within 10 s")
        .expect("watch");
    let fin = b.stop().await.expect("stop b");
    let handled = handled.lock().expect("lock").clone();
    let claimed: Vec<_> = handled.iter().filter(|(_, again, _)| *again).collect();
    let claimed_ids: HashSet<u64> = claimed.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(claimed_ids, held, "exactly A's entries came back to B");
    assert_eq!(fin.redelivered, 50, "{fin:?}");
    assert_eq!(fin.acked, 200, "{fin:?}");
    let all: HashSet<u64> = handled.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(all.len(), 200, "nothing lost");
    // Within the configured time: claim_idle (counted from A's delivery, before the kill)
    // plus one claim interval, plus scheduling slack on a shared 2-core machine.
    let last_claim = claimed.iter().map(|(_, _, at)| *at).max().expect("claims");
    let after_kill = last_claim.duration_since(killed);
    eprintln!("A's 50 entries claimed by B {after_kill:?} after the kill; {fin:?}");
    assert!(
        after_kill <= claim_idle + claim_interval + Duration::from_millis(300),
        "claimed {after_kill:?} after the kill"
    );
    assert_eq!(fin.pending, Some(0));
}

#[tokio::test]
async fn bad_configuration_names_the_field() {
    let limiter = Limiter::new(Fixed::new(1).expect("fixed"));
    let cases = [
        (RedisStreamConfig::new("", "g", "c"), "stream"),
        (
            RedisStreamConfig::new("s", "g", "c").block(Duration::ZERO),
            "block",
        ),
        (
            RedisStreamConfig::new("s", "g", "c").claim_idle(Duration::ZERO),
            "claim_idle",
        ),
    ];
    for (config, field) in cases {
        let err = RedisStreamConsumer::start(
            "redis://127.0.0.1:1/",
            config,
            limiter.clone(),
            |_m: Message| async { Ok::<(), BrokerError>(()) },
        )
        .await
        .expect_err("refused");
        match err {
            BrokerError::Config(e) => assert_eq!(e.field(), field),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}
