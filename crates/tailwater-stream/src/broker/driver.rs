//! The consumer driver shared by every broker: the credit-sized fetch loop, one task per
//! message holding its permit, acknowledgement after the handler, the lag samples and the
//! drain on stop.
//!
//! A broker plugs in through [`Broker`] (fetch a batch of at most `n`, sample the lag) and
//! [`Settle`] (acknowledge or negatively acknowledge one message). What differs between
//! brokers (Redis's claims of a dead consumer's entries, NATS's pull requests, RabbitMQ's
//! prefetch window) stays in the broker's own module; what is the same (how credit is
//! taken, how a handler's time becomes the limiter's sample, what is counted) lives here,
//! once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tailwater_core::clock::Clock;
use tailwater_core::{Limiter, OwnedPermit};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::counters::{Counters, LagState};
use super::gate::Gate;
use super::handle::ConsumerHandle;
use super::lag::LagMeter;
use super::{BrokerError, metrics};

/// Runs `fut` with a deadline, turning both failures into a [`BrokerError`] naming `op`.
pub(crate) async fn call<T, E: std::fmt::Display>(
    op: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BrokerError::Broker {
            op,
            reason: e.to_string(),
        }),
        Err(_) => Err(BrokerError::Timeout { op, after: timeout }),
    }
}

/// What the driver needs to know of a message.
pub(crate) trait Delivery: Send + 'static {
    /// Payload bytes (what the in-flight byte figures count).
    fn size(&self) -> usize;
    /// Whether the broker had delivered it before.
    fn is_redelivery(&self) -> bool;
}

/// Settles one message after its handler: the broker's acknowledgement, or the negative one
/// that makes it come back.
pub(crate) trait Settle: Send + 'static {
    /// Acknowledges: the broker forgets the message. `Err` when the broker did not confirm.
    fn ack(self) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// The handler failed: the message is to be delivered again (at once or after the
    /// broker's own delay; Redis leaves it pending to be claimed).
    fn nack(self) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// What one fetch did besides handing messages over.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The broker refused the fetch (NATS `409` and the like) before giving anything: the
    /// driver waits this long, or until stopped, before asking again.
    pub(crate) backoff: Option<Duration>,
}

/// A broker's side of a consumer.
pub(crate) trait Broker: Send + 'static {
    /// A message as the handler gets it.
    type Message: Delivery;
    /// How one message is settled.
    type Settle: Settle;

    /// Asks the broker for at most `n` messages and hands each to `deliver` as it arrives
    /// (the driver gives it its permit and starts its handler). Returns within the broker's
    /// server-side wait plus the call deadline.
    fn fetch(
        &mut self,
        n: usize,
        deliver: &mut (dyn FnMut(Self::Message, Self::Settle) + Send),
    ) -> impl Future<Output = Result<Fetched, BrokerError>> + Send;

    /// The group's lag (messages not yet delivered to it) and pending count (delivered,
    /// not acknowledged), each `None` when the broker cannot tell.
    fn lag(
        &mut self,
    ) -> impl Future<Output = Result<(Option<u64>, Option<u64>), BrokerError>> + Send;

    /// The limiter's limit is now `limit` (called before the first fetch and whenever it
    /// changed): a broker that pushes (RabbitMQ) resizes its window to it. Brokers that are
    /// asked for each batch do nothing.
    fn limit_changed(
        &mut self,
        limit: usize,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        let _ = limit;
        async { Ok(()) }
    }

    /// Acknowledges messages the broker had already lost (Redis: entries trimmed while
    /// pending), counted as `deleted`. Most brokers have none.
    fn take_deleted(&mut self) -> u64 {
        0
    }
}

/// The settings every broker's driver takes.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The metric label `broker`.
    pub(crate) broker: &'static str,
    /// The metric labels `stream` and `group`.
    pub(crate) stream: String,
    pub(crate) group: String,
    /// The most messages one fetch asks for.
    pub(crate) max_fetch: usize,
    /// The longest the gate waits for a free permit before looking at the stop signal.
    pub(crate) max_wait: Duration,
    pub(crate) lag_interval: Duration,
    pub(crate) drain_timeout: Duration,
}

/// Spawns the driver on the current runtime and returns its handle.
pub(crate) fn spawn<B, C, F, Fut, E>(
    broker: B,
    settings: Settings,
    limiter: Limiter<C>,
    handler: F,
) -> ConsumerHandle
where
    B: Broker,
    C: Clock,
    F: Fn(B::Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Gate::new(limiter, settings.max_fetch, settings.max_wait));
    let (stop_tx, stop_rx) = watch::channel(false);
    let drain_timeout = settings.drain_timeout;
    let driver = Driver {
        broker,
        settings,
        gate,
        counters: Arc::clone(&counters),
        handler: Arc::new(handler),
        stop: stop_rx,
    };
    let task = tokio::spawn(driver.run());
    ConsumerHandle::new(counters, stop_tx, task, drain_timeout)
}

struct Driver<B, C: Clock, F> {
    broker: B,
    settings: Settings,
    gate: Arc<Gate<C>>,
    counters: Arc<Counters>,
    handler: Arc<F>,
    stop: watch::Receiver<bool>,
}

impl<B, C, F, Fut, E> Driver<B, C, F>
where
    B: Broker,
    C: Clock,
    F: Fn(B::Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    async fn run(mut self) -> Result<(), BrokerError> {
        let mut tasks = JoinSet::new();
        let outcome = self.fetch_until_stopped(&mut tasks).await;
        // Drain: every handler already running finishes and settles (or the deadline passes
        // and they are aborted; their messages come back from the broker).
        let drained = tokio::time::timeout(self.settings.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        self.sample_lag(&mut LagMeter::default(), Instant::now())
            .await
            .ok();
        outcome?;
        match drained {
            Ok(()) => Ok(()),
            Err(_) => Err(BrokerError::DrainTimeout {
                in_flight: tasks.len(),
                after: self.settings.drain_timeout,
            }),
        }
    }

    async fn fetch_until_stopped(&mut self, tasks: &mut JoinSet<()>) -> Result<(), BrokerError> {
        let start = Instant::now();
        let mut next_lag = start;
        let mut meter = LagMeter::default();
        let mut limit = None;
        while !*self.stop.borrow() {
            while tasks.try_join_next().is_some() {}
            let now = Instant::now();
            if now >= next_lag {
                self.sample_lag(&mut meter, start).await?;
                next_lag = now + self.settings.lag_interval;
            }
            if limit != Some(self.gate.limit()) {
                let now = self.gate.limit();
                self.broker.limit_changed(now).await?;
                limit = Some(now);
            }
            let permits = self.gate.acquire().await;
            if permits.is_empty() {
                continue;
            }
            let asked = permits.len();
            let mut permits = permits.into_iter();
            let (handler, counters, gate) = (&self.handler, &self.counters, &self.gate);
            let mut deliver = |msg: B::Message, settle: B::Settle| match permits.next() {
                Some(permit) => start_handler(tasks, handler, counters, gate, msg, settle, permit),
                // More than asked: given back rather than exceed the credit (at least once:
                // the broker delivers it again).
                None => {
                    tasks.spawn(async move {
                        let _ = settle.nack().await;
                    });
                }
            };
            let fetched = self.broker.fetch(asked, &mut deliver).await;
            // Credit not used by this fetch goes back without a sample.
            permits.for_each(OwnedPermit::ignore);
            let fetched = fetched?;
            self.counters.fetched(asked, self.gate.limit());
            let deleted = self.broker.take_deleted();
            if deleted > 0 {
                self.counters.deleted.fetch_add(deleted, Ordering::Relaxed);
            }
            if let Some(backoff) = fetched.backoff {
                let _ = tokio::time::timeout(backoff, self.stop.changed()).await;
            }
        }
        Ok(())
    }

    async fn sample_lag(
        &mut self,
        meter: &mut LagMeter,
        start: Instant,
    ) -> Result<(), BrokerError> {
        let (lag, pending) = self.broker.lag().await?;
        let growth = match lag {
            Some(l) => meter.observe(l, start.elapsed()),
            None => meter.rate(),
        };
        self.counters.set_lag(LagState {
            lag,
            pending,
            growth,
        });
        metrics::record(
            self.settings.broker,
            &self.settings.stream,
            &self.settings.group,
            &self.counters.snapshot(),
        );
        Ok(())
    }
}

/// Runs the handler for `msg` in its own task, holding `permit`, and settles the message
/// after it.
fn start_handler<M, S, C, F, Fut, E>(
    tasks: &mut JoinSet<()>,
    handler: &Arc<F>,
    counters: &Arc<Counters>,
    gate: &Arc<Gate<C>>,
    msg: M,
    settle: S,
    permit: OwnedPermit<C>,
) where
    M: Delivery,
    S: Settle,
    C: Clock,
    F: Fn(M) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let bytes = msg.size();
    counters.enter(bytes, msg.is_redelivery());
    let fut = handler(msg);
    let counters = Arc::clone(counters);
    let gate = Arc::clone(gate);
    tasks.spawn(async move {
        // The limit algorithm sees the handler's time only: not the fetch's wait for
        // messages nor the acknowledgement's round trip.
        let began = Instant::now();
        let outcome = fut.await;
        let rtt = began.elapsed();
        match outcome {
            Ok(()) => match settle.ack().await {
                Ok(()) => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                    permit.success_with_rtt(rtt);
                }
                Err(_) => {
                    counters.ack_errors.fetch_add(1, Ordering::Relaxed);
                    permit.dropped();
                }
            },
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                // Best effort: without it the broker's own timer brings the message back.
                let _ = settle.nack().await;
                permit.dropped();
            }
        }
        counters.leave(bytes);
        gate.released();
    });
}
