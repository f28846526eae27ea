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
use std::time::Duration;

use broker_support::{
    Downstream, Held, MAX_LIMIT, TestConsumer as _, TestMessage, assert_refused, fixed, number_in,
    take_over, test_consumer,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_stream::broker::BrokerError;
use tailwater_stream::broker::rabbitmq::{Message, RabbitConfig, RabbitConsumer};
use tailwater_test::rabbitmq::{RabbitServer, rabbitmq_available};
use tokio::time::{Instant, sleep};

const BODY: usize = 100;

test_consumer!(Rabbit, RabbitConfig, RabbitConsumer, Message);

impl TestMessage for Message {
    fn number(&self) -> u64 {
        number_in(self.payload())
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
    let consumer = Rabbit::start(&server.url(), config, limiter.clone(), downstream.boxed()).await;
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

    // A takes 50 and is killed; the broker puts them back in the queue when A's connection
    // closes, and B gets them.
    let (fin, after_kill) = take_over::<Rabbit>(&server.url(), |_| config()).await;
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
    let held = Held::new();
    let consumer = RabbitConsumer::start(&server.url(), config, fixed(10), held.handler())
        .await
        .expect("start");
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
    held.release();
    held.wait_done(100).await;
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
        let started = RabbitConsumer::start(
            "amqp://127.0.0.1:1/%2f",
            config,
            limiter.clone(),
            |_m: Message| async { Ok::<(), BrokerError>(()) },
        )
        .await;
        assert_refused(started, field);
    }
}
