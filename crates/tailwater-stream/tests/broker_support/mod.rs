//! The scenarios every broker consumer's tests run (Redis Streams, NATS JetStream,
//! RabbitMQ), written once: each test file supplies its broker's producer, consumer and
//! message type.
//!
//! - [`Downstream`]: a downstream of 4 servers whose service time goes from 1 ms to 5 ms
//!   mid-run while a producer adds 1 500 messages/s; every 97th message fails on its first
//!   delivery. [`Downstream::drive`] produces and samples; [`Downstream::check`] asserts:
//!   nothing lost, every redelivery counted, in-flight and bytes bounded, the lag grew and
//!   was reported, the pull rate fell to the downstream's pace.
//! - [`Holder`] / [`Recorder`]: a consumer that takes messages and hangs on them (to be
//!   killed), and one that records what it handles; [`check_taken_over`] asserts that
//!   exactly the killed one's messages came back, flagged and counted, and nothing was lost.
//!
//! No sleep synchronises anything: waits are on watch channels with deadlines. The sleeps
//! inside handlers are the downstream's service time (the workload).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_stream::broker::{ConsumerHandle, ConsumerStats};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep, timeout};

/// Messages in the slow-downstream scenario.
pub(crate) const TOTAL: u64 = 2400;
/// A fixed limit of 16: at most 16 messages in the consumer, whatever the downstream does
/// (an adaptive algorithm would move the bound; the scenario pins it to assert it).
pub(crate) const MAX_LIMIT: usize = 16;

/// What the scenarios need of a broker's message.
pub(crate) trait TestMessage: Send + 'static {
    /// The number the producer put in it.
    fn number(&self) -> u64;
    /// Whether the broker flagged it as delivered before.
    fn again(&self) -> bool;
}

/// A handler's future, boxed so that one scenario serves every broker.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), &'static str>> + Send>>;

/// A count that handlers bump and tests wait on.
#[derive(Clone)]
pub(crate) struct Count {
    tx: Arc<watch::Sender<usize>>,
    rx: watch::Receiver<usize>,
}

impl Count {
    /// Zero.
    pub(crate) fn new() -> Self {
        let (tx, rx) = watch::channel(0usize);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// One more.
    pub(crate) fn bump(&self) {
        self.tx.send_modify(|n| *n += 1);
    }

    /// Waits until the count reaches `n`, failing the test (naming `what`) after `within`.
    pub(crate) async fn reaches(&self, n: usize, within: Duration, what: &str) {
        let mut rx = self.rx.clone();
        timeout(within, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{what}: {n} not reached within {within:?}"))
            .expect("watch");
    }
}

/// The number a producer wrote as the payload's first 6 bytes.
pub(crate) fn number_in(payload: &[u8]) -> u64 {
    std::str::from_utf8(&payload[..6])
        .expect("utf8")
        .parse()
        .expect("number")
}

/// Asserts that a consumer's start was refused for its configuration, naming `field`.
pub(crate) fn assert_refused(
    started: Result<
        tailwater_stream::broker::ConsumerHandle,
        tailwater_stream::broker::BrokerError,
    >,
    field: &str,
) {
    match started {
        Err(tailwater_stream::broker::BrokerError::Config(e)) => assert_eq!(e.field(), field),
        Err(other) => panic!("expected a config error naming {field}, got {other:?}"),
        Ok(_) => panic!("expected a config error naming {field}, the consumer started"),
    }
}

/// A limiter with a fixed limit of `n`.
pub(crate) fn fixed(n: usize) -> Limiter {
    Limiter::builder()
        .algorithm(Fixed::new(n).expect("fixed"))
        .build()
        .expect("limiter")
}

/// One sample of the slow-downstream scenario: seconds since the start, the consumer's
/// stats, the limiter's limit.
pub(crate) type Sample = (f64, ConsumerStats, usize);

/// The downstream of the slow-downstream scenario.
#[derive(Clone)]
pub(crate) struct Downstream {
    servers: Arc<Semaphore>,
    service_us: Arc<AtomicU64>,
    seen: Arc<Mutex<HashMap<u64, u32>>>,
    done: Count,
}

impl Downstream {
    /// 4 servers at 1 ms per message (about 4000/s at best, 2000/s with tokio's 1 ms timer).
    pub(crate) fn new() -> Self {
        Self {
            servers: Arc::new(Semaphore::new(4)),
            service_us: Arc::new(AtomicU64::new(1_000)),
            seen: Arc::default(),
            done: Count::new(),
        }
    }

    /// The consumer's handler.
    pub(crate) fn handler<M: TestMessage>(
        &self,
    ) -> impl Fn(M) -> HandlerFuture + Send + Sync + 'static {
        let this = self.clone();
        move |msg: M| {
            let this = this.clone();
            Box::pin(async move {
                let n = msg.number();
                let first = {
                    let mut seen = this.seen.lock().expect("lock");
                    let count = seen.entry(n).or_insert(0);
                    *count += 1;
                    *count == 1
                };
                // Every 97th message fails on its first delivery: it must come back, counted.
                if first && n.is_multiple_of(97) {
                    return Err("injected failure");
                }
                let _server = this.servers.acquire().await.expect("semaphore");
                sleep(Duration::from_micros(
                    this.service_us.load(Ordering::Relaxed),
                ))
                .await;
                this.done.bump();
                Ok(())
            })
        }
    }

    /// [`handler`](Self::handler), boxed for [`TestConsumer::start`].
    pub(crate) fn boxed<M: TestMessage>(&self) -> BoxedHandler<M> {
        Box::new(self.handler())
    }

    /// Produces 1 500 messages/s (15 every 10 ms) for 1.6 s, the downstream 5× slower from
    /// 0.6 s to 1.6 s; samples the consumer every 150 messages; then waits (20 s at most)
    /// until every message was handled successfully once.
    pub(crate) async fn drive<P, Fut>(
        &self,
        mut produce: P,
        stats: impl Fn() -> ConsumerStats,
        limiter: &Limiter,
    ) -> Vec<Sample>
    where
        P: FnMut(u64, u64) -> Fut,
        Fut: Future<Output = ()>,
    {
        let start = Instant::now();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut next = 0;
        while next < TOTAL {
            tick.tick().await;
            produce(next, next + 15).await;
            next += 15;
            let t = start.elapsed().as_secs_f64();
            if (0.6..1.6).contains(&t) {
                self.service_us.store(5_000, Ordering::Relaxed);
            } else if t >= 1.6 {
                self.service_us.store(1_000, Ordering::Relaxed);
            }
            if next % 150 == 0 {
                samples.push((t, stats(), limiter.limit()));
            }
        }
        self.service_us.store(1_000, Ordering::Relaxed);
        let produced_at = start.elapsed();
        self.done
            .reaches(TOTAL as usize, Duration::from_secs(20), "messages handled")
            .await;
        eprintln!(
            "produced in {produced_at:?}, drained at {:?}",
            start.elapsed()
        );
        samples
    }

    /// The scenario's assertions on the consumer's final stats `fin` and `samples`.
    /// `bytes_per_message`: what one message counts in the in-flight bytes;
    /// `pending_known`: whether the broker reports its pending count.
    pub(crate) fn check(
        &self,
        fin: &ConsumerStats,
        samples: &[Sample],
        bytes_per_message: usize,
        pending_known: bool,
    ) {
        for (t, s, limit) in samples {
            eprintln!(
                "t={t:.2}s lag={:?} growth={:?}/s pending={:?} in_flight={} limit={limit} fetch={} delivered={}",
                s.lag,
                s.lag_growth_per_second,
                s.pending,
                s.in_flight,
                s.last_fetch_size,
                s.delivered
            );
        }
        eprintln!("final {fin:?}");
        // Nothing lost: every number handled, and acknowledged.
        let seen = self.seen.lock().expect("lock");
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
            fin.peak_in_flight_bytes <= MAX_LIMIT * bytes_per_message,
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
        eprintln!(
            "pulled {fast_rate:.0}/s while fast, {slow_rate:.0}/s while slow (producer 1500/s)"
        );
        assert!(slow_rate < 1000.0, "pulled {slow_rate:.0}/s while slow");
        assert!(
            fast_rate > 1.5 * slow_rate,
            "fast {fast_rate:.0}/s, slow {slow_rate:.0}/s"
        );
        // And drained at the end.
        assert_eq!(fin.lag, Some(0), "{fin:?}");
        if pending_known {
            assert_eq!(fin.pending, Some(0), "{fin:?}");
        }
    }
}

/// A consumer's handler that records each message and then hangs on it (the consumer is
/// to be killed holding them).
#[derive(Clone)]
pub(crate) struct Holder {
    held: Arc<Mutex<HashSet<u64>>>,
    count: Count,
}

impl Holder {
    /// Holding nothing yet.
    pub(crate) fn new() -> Self {
        Self {
            held: Arc::default(),
            count: Count::new(),
        }
    }

    /// The hanging handler.
    pub(crate) fn handler<M: TestMessage>(
        &self,
    ) -> impl Fn(M) -> HandlerFuture + Send + Sync + 'static {
        let this = self.clone();
        move |msg: M| {
            let this = this.clone();
            Box::pin(async move {
                this.held.lock().expect("lock").insert(msg.number());
                this.count.bump();
                std::future::pending::<()>().await;
                Ok(())
            })
        }
    }

    /// Waits (5 s at most) until `n` messages are held, and returns their numbers.
    pub(crate) async fn wait_holding(&self, n: usize) -> HashSet<u64> {
        self.count
            .reaches(n, Duration::from_secs(5), "messages held")
            .await;
        self.held.lock().expect("lock").clone()
    }
}

/// A consumer's handler that records what it handles: number, redelivery flag, when.
#[derive(Clone)]
pub(crate) struct Recorder {
    handled: Arc<Mutex<Vec<(u64, bool, Instant)>>>,
    count: Count,
}

impl Recorder {
    /// Nothing handled yet.
    pub(crate) fn new() -> Self {
        Self {
            handled: Arc::default(),
            count: Count::new(),
        }
    }

    /// The recording handler.
    pub(crate) fn handler<M: TestMessage>(
        &self,
    ) -> impl Fn(M) -> HandlerFuture + Send + Sync + 'static {
        let this = self.clone();
        move |msg: M| {
            let this = this.clone();
            Box::pin(async move {
                this.handled.lock().expect("lock").push((
                    msg.number(),
                    msg.again(),
                    Instant::now(),
                ));
                this.count.bump();
                Ok(())
            })
        }
    }

    /// Waits (10 s at most) until `n` messages were handled.
    pub(crate) async fn wait_handled(&self, n: usize) {
        self.count
            .reaches(n, Duration::from_secs(10), "messages handled")
            .await;
    }
}

/// A handler of any of the scenarios, boxed so that one [`TestConsumer::start`] serves them all.
pub(crate) type BoxedHandler<M> = Box<dyn Fn(M) -> HandlerFuture + Send + Sync>;

/// How a test file starts its broker's consumer, so that every scenario starts any of them
/// the same way (each test file implements it once).
pub(crate) trait TestConsumer {
    /// The broker's consumer configuration.
    type Config;
    /// The broker's message.
    type Message: TestMessage;
    /// Starts a consumer at `url` with `handler` (a failure fails the test).
    async fn start(
        url: &str,
        config: Self::Config,
        limiter: Limiter,
        handler: BoxedHandler<Self::Message>,
    ) -> ConsumerHandle;
}

/// Implements [`TestConsumer`] for a unit struct `$name`: `$consumer::start` with `$config`
/// on `$message`.
macro_rules! test_consumer {
    ($name:ident, $config:ty, $consumer:ty, $message:ty) => {
        /// This file's broker for the shared scenarios.
        struct $name;

        impl $crate::broker_support::TestConsumer for $name {
            type Config = $config;
            type Message = $message;

            async fn start(
                url: &str,
                config: $config,
                limiter: tailwater_core::Limiter,
                handler: $crate::broker_support::BoxedHandler<$message>,
            ) -> tailwater_stream::broker::ConsumerHandle {
                <$consumer>::start(url, config, limiter, handler)
                    .await
                    .expect("start")
            }
        }
    };
}
pub(crate) use test_consumer;

/// The killed-consumer scenario on 200 messages already in the broker: consumer A (limit
/// 50, configured by `config(0)`) takes 50 and hangs on them, and is killed; consumer B
/// (limit 20, `config(1)`) handles all 200, A's 50 again among them. Checks what
/// [`check_taken_over`] checks and returns B's final stats and how long after the kill the
/// last of A's messages reached B.
pub(crate) async fn take_over<B: TestConsumer>(
    url: &str,
    config: impl Fn(usize) -> B::Config,
) -> (ConsumerStats, Duration) {
    let holder = Holder::new();
    let a = B::start(url, config(0), fixed(50), Box::new(holder.handler())).await;
    let held = holder.wait_holding(50).await;
    let a_stats = a.kill();
    let killed = Instant::now();
    assert_eq!(a_stats.acked, 0);
    assert_eq!(a_stats.peak_in_flight, 50, "{a_stats:?}");
    assert_eq!(held.len(), 50);
    let recorder = Recorder::new();
    let b = B::start(url, config(1), fixed(20), Box::new(recorder.handler())).await;
    recorder.wait_handled(200).await;
    let fin = b.stop().await.expect("stop b");
    let after_kill = check_taken_over(&held, &recorder, &fin, 200, killed);
    eprintln!("A's 50 messages came back to B {after_kill:?} after the kill; {fin:?}");
    (fin, after_kill)
}

/// After a consumer holding `held` was killed at `killed` and another (`recorder`, final
/// stats `fin`) handled all `total` messages: exactly the held ones came back, flagged and
/// counted, and nothing was lost. Returns how long after the kill the last of them came.
pub(crate) fn check_taken_over(
    held: &HashSet<u64>,
    recorder: &Recorder,
    fin: &ConsumerStats,
    total: u64,
    killed: Instant,
) -> Duration {
    let handled = recorder.handled.lock().expect("lock").clone();
    let again: Vec<_> = handled.iter().filter(|(_, again, _)| *again).collect();
    let again_ids: HashSet<u64> = again.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        &again_ids, held,
        "exactly the killed consumer's messages came back"
    );
    assert_eq!(fin.redelivered, held.len() as u64, "{fin:?}");
    // Which numbers were handled more than once, with their redelivery flags: the first
    // thing to know when the counts below disagree.
    let mut seen: HashMap<u64, Vec<bool>> = HashMap::new();
    for (n, again, _) in &handled {
        seen.entry(*n).or_default().push(*again);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, flags)| flags.len() > 1).collect();
    assert_eq!(
        fin.acked, total,
        "{fin:?}; handled more than once: {twice:?}"
    );
    let all: HashSet<u64> = handled.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(all.len() as u64, total, "nothing lost");
    let last = again
        .iter()
        .map(|(_, _, at)| *at)
        .max()
        .expect("redeliveries");
    last.duration_since(killed)
}

/// A consumer's handler that holds every message until [`release`](Self::release), then
/// lets them all finish: what the broker delivers while they are held is what its bound
/// (NATS's `max_ack_pending`, RabbitMQ's prefetch) lets through.
#[derive(Clone)]
pub(crate) struct Held {
    release: Arc<tokio::sync::Notify>,
    released: Arc<std::sync::atomic::AtomicBool>,
    done: Count,
}

impl Held {
    /// Holding until released.
    pub(crate) fn new() -> Self {
        Self {
            release: Arc::default(),
            released: Arc::default(),
            done: Count::new(),
        }
    }

    /// The holding handler.
    pub(crate) fn handler<M: TestMessage>(
        &self,
    ) -> impl Fn(M) -> HandlerFuture + Send + Sync + 'static {
        let this = self.clone();
        move |_msg: M| {
            let this = this.clone();
            Box::pin(async move {
                let wait = this.release.notified();
                if !this.released.load(Ordering::SeqCst) {
                    wait.await;
                }
                this.done.bump();
                Ok(())
            })
        }
    }

    /// Lets every held and later message finish.
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.release.notify_waiters();
    }

    /// Waits (10 s at most) until `n` messages finished.
    pub(crate) async fn wait_done(&self, n: usize) {
        self.done
            .reaches(n, Duration::from_secs(10), "messages finished")
            .await;
    }
}
