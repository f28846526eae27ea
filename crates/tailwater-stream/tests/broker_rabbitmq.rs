//! RabbitMQ consumers against a real `rabbitmq-server` (started by `tailwater-test` on
//! private loopback ports; run with `TAILWATER_REQUIRE_RABBITMQ=1` so they cannot be
//! skipped): the same goals as the Redis and NATS tests, on `broker_support`'s shared
//! scenarios. A downstream 5× slower mid-run keeps in-flight and memory bounded while the lag
//! grows and is reported, nothing is lost and every redelivery is counted; a killed
//! consumer's unacknowledged messages go to another, flagged and counted; the prefetch
//! (`basic.qos`) follows the limiter, so the broker pushes no more than the limit.
//!
//! RabbitMQ takes seconds to boot, so one broker serves every scenario, one after the
//! other, each on its own queue. No sleep synchronises anything: waits are on watch
//! channels and the consumer's stats, with deadlines.
#![cfg(feature = "rabbitmq")]

mod broker_support;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use broker_support::{
    Downstream, Holder, MAX_LIMIT, Recorder, TestMessage, check_taken_over, fixed,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_stream::broker::BrokerError;
use tailwater_stream::broker::rabbitmq::{Message, RabbitConfig, RabbitConsumer};
use tailwater_test::rabbitmq::{RabbitServer, rabbitmq_available};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, timeout};

const BODY: usize = 100;

impl TestMessage for Message {
    fn number(&self) -> u64 {
        std::str::from_utf8(&self.payload()[..6])
            .expect("utf8")
            .parse()
            .expect("number")
    }

    fn again(&self) -> bool {
        self.is_redelivery()
    }
}

/// A producer: a channel with publisher confirms, and `queue` declared (durable).
struct Producer {
    _connection: Connection,
    channel: Channel,
}

impl Producer {
    async fn new(server: &RabbitServer, queue: &str) -> Self {
        let connection = Connection::connect(&server.url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .expect("queue.declare");
        Self {
            _connection: connection,
            channel,
        }
    }

    /// Publishes messages `from..to` (payload: the number in 6 digits, then 100 bytes) to
    /// `queue` and waits for the broker's confirms.
    async fn produce(&self, queue: &str, from: u64, to: u64) {
        let mut confirms = Vec::new();
        for n in from..to {
            let mut payload = format!("{n:06}").into_bytes();
            payload.extend_from_slice(&[b'x'; BODY]);
            confirms.push(
                self.channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &payload,
                        BasicProperties::default(),
                    )
                    .await
                    .expect("publish"),
            );
        }
        for confirm in confirms {
            let confirmation = confirm.await.expect("confirm");
            assert!(confirmation.is_ack(), "{confirmation:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_consumers_push_back() {
    if !rabbitmq_available("rabbitmq_consumers_push_back") {
        return;
    }
    let booted = Instant::now();
    let server = RabbitServer::start().expect("start rabbitmq-server");
    eprintln!("rabbitmq-server ready after {:?}", booted.elapsed());
    a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag(&server).await;
    a_killed_consumers_messages_go_to_another(&server).await;
    the_prefetch_follows_the_limiter(&server).await;
    a_missing_queue_is_a_typed_error(&server).await;
    // The launcher's kill on drop: the broker (script and Erlang VM) is gone.
    let port = server.port();
    drop(server);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the broker still listens after drop"
    );
}

async fn a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag(server: &RabbitServer) {
    let producer = Producer::new(server, "orders").await;
    let downstream = Downstream::new();
    let limiter = fixed(MAX_LIMIT);
    let config = RabbitConfig::new("orders")
        .max_fetch(NonZeroUsize::new(32).expect("non-zero"))
        .wait(Duration::from_millis(20))
        .lag_interval(Duration::from_millis(100));
    let consumer = RabbitConsumer::start(
        &server.url(),
        config,
        limiter.clone(),
        downstream.handler::<Message>(),
    )
    .await
    .expect("start");
    let samples = downstream
        .drive(
            |from, to| producer.produce("orders", from, to),
            || consumer.stats(),
            &limiter,
        )
        .await;
    let fin = consumer.stop().await.expect("stop");
    // AMQP does not report the unacknowledged count.
    downstream.check(&fin, &samples, 6 + BODY, false);
    assert_eq!(fin.pending, None);
}

async fn a_killed_consumers_messages_go_to_another(server: &RabbitServer) {
    let producer = Producer::new(server, "jobs").await;
    producer.produce("jobs", 0, 200).await;
    let config = || {
        RabbitConfig::new("jobs")
            .wait(Duration::from_millis(20))
            .lag_interval(Duration::from_millis(100))
    };

    // Consumer A takes 50 messages and hangs on them.
    let holder = Holder::new();
    let a = RabbitConsumer::start(&server.url(), config(), fixed(50), holder.handler())
        .await
        .expect("start a");
    let held = holder.wait_holding(50).await;
    let a_stats = a.kill();
    let killed = Instant::now();
    assert_eq!(a_stats.acked, 0);
    assert_eq!(a_stats.peak_in_flight, 50, "{a_stats:?}");
    assert_eq!(held.len(), 50);

    // Consumer B handles the rest, and A's messages, which the broker put back in the queue
    // when A's connection closed.
    let recorder = Recorder::new();
    let b = RabbitConsumer::start(&server.url(), config(), fixed(20), recorder.handler())
        .await
        .expect("start b");
    recorder.wait_handled(200).await;
    let fin = b.stop().await.expect("stop b");
    let after_kill = check_taken_over(&held, &recorder, &fin, 200, killed);
    eprintln!("A's 50 messages redelivered to B {after_kill:?} after the kill; {fin:?}");
    // No ack deadline to wait for: the broker requeues as soon as the connection is gone.
    // The bound is slack for B's start and a shared 2-core machine.
    assert!(
        after_kill <= Duration::from_secs(3),
        "redelivered {after_kill:?} after the kill"
    );
    assert_eq!(fin.lag, Some(0));
}

async fn the_prefetch_follows_the_limiter(server: &RabbitServer) {
    let producer = Producer::new(server, "events").await;
    producer.produce("events", 0, 100).await;
    // The prefetch allows 64; the limiter's limit of 10 lowers it, so the broker pushes 10
    // and keeps the other 90 in the queue.
    let config = RabbitConfig::new("events")
        .prefetch(64)
        .wait(Duration::from_millis(20))
        .lag_interval(Duration::from_millis(20));
    let release = Arc::new(Notify::new());
    let released = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    let consumer = {
        let (release, released, done_tx) = (
            Arc::clone(&release),
            Arc::clone(&released),
            Arc::clone(&done_tx),
        );
        RabbitConsumer::start(&server.url(), config, fixed(10), move |_msg: Message| {
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
    // Wait (deadline 5 s, polling the stats) until 10 are held and the lag was sampled
    // at least 5 more times since: the broker kept the other 90.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen_at_ten = None;
    let mut samples = 0;
    loop {
        let s = consumer.stats();
        match seen_at_ten {
            None if s.in_flight == 10 => seen_at_ten = Some(s.lag),
            Some(_) if s.lag == Some(90) => {
                samples += 1;
                if samples >= 5 {
                    break;
                }
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "stuck: {s:?}");
        // Polling the consumer's stats with a deadline (no event to wait on).
        sleep(Duration::from_millis(20)).await;
    }
    let s = consumer.stats();
    assert_eq!(s.in_flight, 10, "{s:?}");
    assert_eq!(s.peak_in_flight, 10, "{s:?}");
    assert_eq!(s.delivered, 10, "{s:?}");
    assert_eq!(s.lag, Some(90), "the broker kept the rest: {s:?}");
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
    assert!(fin.peak_in_flight <= 10, "{fin:?}");
    assert_eq!(fin.lag, Some(0), "{fin:?}");
}

async fn a_missing_queue_is_a_typed_error(server: &RabbitServer) {
    let err = RabbitConsumer::start(
        &server.url(),
        RabbitConfig::new("nope").declare(false),
        fixed(1),
        |_m: Message| async { Ok::<(), BrokerError>(()) },
    )
    .await
    .expect_err("no such queue");
    assert!(
        matches!(
            err,
            BrokerError::Broker {
                op: "queue.declare",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_configuration_names_the_field() {
    let limiter = Limiter::new(Fixed::new(1).expect("fixed"));
    let cases = [
        (RabbitConfig::new(""), "queue"),
        (RabbitConfig::new("x".repeat(256)), "queue"),
        (
            RabbitConfig::new("q").consumer_tag("t".repeat(256)),
            "consumer_tag",
        ),
        (RabbitConfig::new("q").prefetch(0), "prefetch"),
        (RabbitConfig::new("q").wait(Duration::ZERO), "wait"),
        (
            RabbitConfig::new("q").lag_interval(Duration::ZERO),
            "lag_interval",
        ),
    ];
    for (config, field) in cases {
        let err = RabbitConsumer::start(
            "amqp://127.0.0.1:1/%2f",
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
