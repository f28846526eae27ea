//! Redis Streams consumer groups against a real `redis-server` (started per test by
//! `tailwater-test`; run with `TAILWATER_REQUIRE_REDIS=1` so they cannot be skipped):
//! a downstream 5× slower mid-run keeps in-flight and memory bounded while the lag grows and
//! is reported, nothing is lost and every redelivery is counted; a killed consumer's pending
//! entries are claimed by another within the configured time. The scenarios are
//! `broker_support`'s, shared with the NATS and RabbitMQ tests.
#![cfg(feature = "redis-streams")]

mod broker_support;

use std::num::NonZeroUsize;
use std::time::Duration;

use broker_support::{
    Downstream, MAX_LIMIT, TestConsumer as _, TestMessage, assert_refused, fixed, take_over,
    test_consumer,
};
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_stream::broker::BrokerError;
use tailwater_stream::broker::redis::{Message, RedisStreamConfig, RedisStreamConsumer};
use tailwater_test::redis::{RedisServer, redis_available};

fn server(test: &str) -> Option<RedisServer> {
    if !redis_available(test) {
        return None;
    }
    Some(RedisServer::start().expect("start redis-server"))
}

test_consumer!(Redis, RedisStreamConfig, RedisStreamConsumer, Message);

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

impl TestMessage for Message {
    fn number(&self) -> u64 {
        std::str::from_utf8(self.field("n").expect("field n"))
            .expect("utf8")
            .parse()
            .expect("number")
    }

    fn again(&self) -> bool {
        self.is_redelivery()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag() {
    let Some(server) = server("a_downstream_five_times_slower_bounds_in_flight_and_shows_as_lag")
    else {
        return;
    };
    let producer = conn(&server).await;
    let downstream = Downstream::new();
    let limiter = fixed(MAX_LIMIT);
    let config = RedisStreamConfig::new("orders", "billing", "billing-1")
        .max_fetch(NonZeroUsize::new(32).expect("non-zero"))
        .block(Duration::from_millis(20))
        .claim_idle(Duration::from_millis(300))
        .claim_interval(Duration::from_millis(100))
        .lag_interval(Duration::from_millis(100));
    let consumer = Redis::start(&server.url(), config, limiter.clone(), downstream.boxed()).await;
    let samples = downstream
        .drive(
            |from, to| {
                let mut producer = producer.clone();
                async move { produce(&mut producer, "orders", from, to).await }
            },
            || consumer.stats(),
            &limiter,
        )
        .await;
    let fin = consumer.stop().await.expect("stop");
    // Field names and values: `n`, up to 4 digits, `body`, 100 bytes.
    downstream.check(&fin, &samples, 1 + 4 + 4 + 100, true);
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

    // A takes 50 and is killed; B claims them once they are idle long enough.
    let (fin, after_kill) = take_over::<Redis>(&server.url(), |n| config(["a", "b"][n])).await;
    // Within the configured time: claim_idle (counted from A's delivery, before the kill)
    // plus one claim interval, plus scheduling slack on a shared 2-core machine.
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
        let started = RedisStreamConsumer::start(
            "redis://127.0.0.1:1/",
            config,
            limiter.clone(),
            |_m: Message| async { Ok::<(), BrokerError>(()) },
        )
        .await;
        assert_refused(started, field);
    }
}
