//! NATS JetStream pull consumers against a real `nats-server -js` (started per test by
//! `tailwater-test`; run with `TAILWATER_REQUIRE_NATS=1` so they cannot be skipped): the
//! same goals as the Redis tests. A downstream 5× slower mid-run keeps in-flight and memory
//! bounded while the lag grows and is reported, nothing is lost and every redelivery is
//! counted; a killed consumer's pending messages are redelivered to another within the
//! configured `ack_wait`; the server's `max_ack_pending` bounds what is delivered.
//!
//! No sleep synchronises anything here: the tests wait on conditions (watch channels, the
//! consumer's stats) with deadlines. The sleeps inside handlers are the downstream's service
//! time (the workload).
#![cfg(feature = "nats")]

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_stream::broker::BrokerError;
use tailwater_stream::broker::nats::{JetStreamConfig, JetStreamConsumer, Message};
use tailwater_test::nats::{NatsServer, nats_available};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, sleep, timeout};

const BODY: usize = 100;

fn server(test: &str) -> Option<NatsServer> {
    if !nats_available(test) {
        return None;
    }
    Some(NatsServer::start().expect("start nats-server"))
}

/// A JetStream context on `server`, with stream `name` on subjects `name.>` created.
async fn context(server: &NatsServer, name: &str) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream");
    js
}

/// Publishes messages `from..to` (payload: the number in 6 digits, then 100 bytes) and
/// waits for the server's acknowledgements.
async fn produce(js: &jetstream::Context, stream: &str, from: u64, to: u64) {
    let mut acks = Vec::new();
    for n in from..to {
        let mut payload = format!("{n:06}").into_bytes();
        payload.extend_from_slice(&[b'x'; BODY]);
        acks.push(
            js.publish(format!("{stream}.new"), payload.into())
                .await
                .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("publish ack");
    }
}

fn number(msg: &Message) -> u64 {
    std::str::from_utf8(&msg.payload()[..6])
        .expect("utf8")
        .parse()
        .expect("number")
}

fn fixed(n: usize) -> Limiter {
    Limiter::builder()
        .algorithm(Fixed::new(n).expect("fixed"))
        .build()
        .expect("limiter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag() {
    let Some(server) = server("nats: a_downstream_five_times_slower_bounds_in_flight") else {
        return;
    };
    let js = context(&server, "ORDERS").await;
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
    let limiter = fixed(MAX_LIMIT);
    let config = JetStreamConfig::new("ORDERS", "billing")
        .max_fetch(NonZeroUsize::new(32).expect("non-zero"))
        .expires(Duration::from_millis(20))
        .ack_wait(Duration::from_secs(5))
        .max_ack_pending(64)
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
    let consumer = JetStreamConsumer::start(&server.url(), config, limiter.clone(), handler)
        .await
        .expect("start");

    // Produce 1500/s for 1.6 s; the downstream is 5× slower from 0.6 s to 1.6 s.
    let start = Instant::now();
    let mut samples = Vec::new(); // (seconds, stats, limit)
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next = 0;
    while next < TOTAL {
        tick.tick().await;
        produce(&js, "ORDERS", next, next + 15).await;
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
    // Every message handled successfully once (failures come back at once after -NAK).
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
        fin.peak_in_flight_bytes <= MAX_LIMIT * (6 + BODY),
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
    // took messages at the downstream's pace (about 700/s), not the producer's 1500/s.
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
async fn a_killed_consumers_pending_messages_are_redelivered_within_ack_wait() {
    let Some(server) = server("nats: a_killed_consumers_pending_messages_are_redelivered") else {
        return;
    };
    let js = context(&server, "JOBS").await;
    produce(&js, "JOBS", 0, 200).await;
    let ack_wait = Duration::from_millis(500);
    let expires = Duration::from_millis(20);
    let config = || {
        JetStreamConfig::new("JOBS", "workers")
            .expires(expires)
            .ack_wait(ack_wait)
            .lag_interval(Duration::from_millis(100))
    };

    // Consumer A takes 50 messages and hangs on them.
    let held: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let (held_tx, mut held_rx) = watch::channel(0usize);
    let a = {
        let held = Arc::clone(&held);
        let held_tx = Arc::new(held_tx);
        JetStreamConsumer::start(&server.url(), config(), fixed(50), move |msg: Message| {
            let (held, held_tx) = (Arc::clone(&held), Arc::clone(&held_tx));
            async move {
                held.lock().expect("lock").insert(number(&msg));
                held_tx.send_modify(|n| *n += 1);
                std::future::pending::<()>().await;
                Ok::<(), BrokerError>(())
            }
        })
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
    assert_eq!(a_stats.peak_in_flight, 50, "{a_stats:?}");
    let held = held.lock().expect("lock").clone();
    assert_eq!(held.len(), 50);

    // Consumer B handles the rest, and gets A's messages again once their ack_wait passed.
    let handled: Arc<Mutex<Vec<(u64, bool, Instant)>>> = Arc::default();
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let b = {
        let handled = Arc::clone(&handled);
        let done_tx = Arc::new(done_tx);
        JetStreamConsumer::start(&server.url(), config(), fixed(20), move |msg: Message| {
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
        })
        .await
        .expect("start b")
    };
    timeout(Duration::from_secs(10), done_rx.wait_for(|n| *n >= 200))
        .await
        .expect("b handles all 200 within 10 s")
        .expect("watch");
    let fin = b.stop().await.expect("stop b");
    let handled = handled.lock().expect("lock").clone();
    let again: Vec<_> = handled.iter().filter(|(_, again, _)| *again).collect();
    let again_ids: HashSet<u64> = again.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(again_ids, held, "exactly A's messages came back to B");
    assert_eq!(fin.redelivered, 50, "{fin:?}");
    assert_eq!(fin.acked, 200, "{fin:?}");
    let all: HashSet<u64> = handled.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(all.len(), 200, "nothing lost");
    // Within the configured time: ack_wait (counted from A's delivery, before the kill)
    // plus one pull request's wait, plus scheduling slack on a shared 2-core machine.
    let last = again
        .iter()
        .map(|(_, _, at)| *at)
        .max()
        .expect("redeliveries");
    let after_kill = last.duration_since(killed);
    eprintln!("A's 50 messages redelivered to B {after_kill:?} after the kill; {fin:?}");
    assert!(
        after_kill <= ack_wait + expires + Duration::from_millis(300),
        "redelivered {after_kill:?} after the kill"
    );
    assert_eq!(fin.pending, Some(0));
    assert_eq!(fin.lag, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ack_pending_bounds_what_the_server_delivers() {
    let Some(server) = server("nats: max_ack_pending_bounds_what_the_server_delivers") else {
        return;
    };
    let js = context(&server, "EVENTS").await;
    produce(&js, "EVENTS", 0, 100).await;
    // The limiter would take 100; the server lets at most 10 be unacknowledged.
    let config = JetStreamConfig::new("EVENTS", "audit")
        .expires(Duration::from_millis(20))
        .max_ack_pending(10)
        .lag_interval(Duration::from_millis(20));
    let release = Arc::new(Notify::new());
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    let consumer = {
        let (release, released, done_tx) = (
            Arc::clone(&release),
            Arc::clone(&released),
            Arc::clone(&done_tx),
        );
        JetStreamConsumer::start(&server.url(), config, fixed(100), move |_msg: Message| {
            let (release, released, done_tx) = (
                Arc::clone(&release),
                Arc::clone(&released),
                Arc::clone(&done_tx),
            );
            async move {
                let wait = release.notified();
                if !released.load(Ordering::SeqCst) {
                    wait.await;
                }
                done_tx.send_modify(|n| *n += 1);
                Ok::<(), BrokerError>(())
            }
        })
        .await
        .expect("start")
    };
    // Wait (deadline 5 s, polling the stats) until 10 are held and the consumer has asked
    // the server again at least 5 more times since: the server delivered nothing more.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fetches_at_ten = None;
    loop {
        let s = consumer.stats();
        match fetches_at_ten {
            None if s.in_flight == 10 => fetches_at_ten = Some(s.fetches),
            Some(f) if s.fetches >= f + 5 => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "stuck: {s:?}");
        // Polling the consumer's stats with a deadline (no event to wait on).
        sleep(Duration::from_millis(5)).await;
    }
    let s = consumer.stats();
    assert_eq!(s.in_flight, 10, "{s:?}");
    assert_eq!(s.peak_in_flight, 10, "{s:?}");
    assert_eq!(s.delivered, 10, "{s:?}");
    // Released: the other 90 follow. (Our own in-flight count may briefly exceed 10 after
    // this: a handler counts until its ack is confirmed, while the server may already have
    // delivered the next message. The server's bound is what the held phase above shows.)
    released.store(true, Ordering::SeqCst);
    release.notify_waiters();
    timeout(Duration::from_secs(10), done_rx.wait_for(|n| *n >= 100))
        .await
        .expect("all 100 within 10 s")
        .expect("watch");
    let fin = consumer.stop().await.expect("stop");
    assert_eq!(fin.acked, 100, "{fin:?}");
    assert_eq!(fin.delivered, 100, "{fin:?}");
    assert_eq!(fin.redelivered, 0, "{fin:?}");
    assert_eq!(fin.pending, Some(0), "{fin:?}");
}

#[tokio::test]
async fn bad_configuration_names_the_field() {
    let limiter = Limiter::new(Fixed::new(1).expect("fixed"));
    let cases = [
        (JetStreamConfig::new("", "d"), "stream"),
        (JetStreamConfig::new("S", "a.b"), "durable"),
        (
            JetStreamConfig::new("S", "d").expires(Duration::ZERO),
            "expires",
        ),
        (
            JetStreamConfig::new("S", "d").ack_wait(Duration::ZERO),
            "ack_wait",
        ),
        (
            JetStreamConfig::new("S", "d").max_ack_pending(0),
            "max_ack_pending",
        ),
    ];
    for (config, field) in cases {
        let err = JetStreamConsumer::start(
            "nats://127.0.0.1:1",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_typed_error() {
    let Some(server) = server("nats: a_missing_stream_is_a_typed_error") else {
        return;
    };
    let err = JetStreamConsumer::start(
        &server.url(),
        JetStreamConfig::new("NOPE", "d"),
        fixed(1),
        |_m: Message| async { Ok::<(), BrokerError>(()) },
    )
    .await
    .expect_err("no such stream");
    assert!(
        matches!(
            err,
            BrokerError::Broker {
                op: "get_stream",
                ..
            }
        ),
        "{err:?}"
    );
}
