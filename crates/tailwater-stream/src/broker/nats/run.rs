//! Connecting, and the fetch loop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tailwater_core::OwnedPermit;
use tailwater_core::clock::Clock;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{JetStreamConfig, Message};
use crate::broker::gate::Gate;
use crate::broker::lag::LagMeter;
use crate::broker::stats::{Counters, LagState};
use crate::broker::{BrokerError, metrics};

/// Runs `fut` with a deadline, turning both failures into a [`BrokerError`].
async fn call<T, E: std::fmt::Display>(
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

/// Connects, finds the stream and gets (or creates) the durable pull consumer.
pub(super) async fn connect(
    url: &str,
    config: &JetStreamConfig,
) -> Result<PullConsumer, BrokerError> {
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(config.call_timeout)
        .request_timeout(Some(config.call_timeout));
    let client = call("connect", config.call_timeout, options.connect(url)).await?;
    let js = jetstream::new(client);
    let stream = call(
        "get_stream",
        config.call_timeout,
        js.get_stream(&config.stream),
    )
    .await?;
    let consumer = pull::Config {
        durable_name: Some(config.durable.clone()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        // Checked to fit at validation.
        max_ack_pending: i64::try_from(config.max_ack_pending).unwrap_or(i64::MAX),
        filter_subject: config.filter_subject.clone(),
        ..Default::default()
    };
    call(
        "get_or_create_consumer",
        config.call_timeout,
        stream.get_or_create_consumer(&config.durable, consumer),
    )
    .await
}

pub(super) struct Loop<C: Clock, F> {
    pub(super) consumer: PullConsumer,
    pub(super) config: JetStreamConfig,
    pub(super) gate: Arc<Gate<C>>,
    pub(super) counters: Arc<Counters>,
    pub(super) handler: Arc<F>,
    pub(super) stop: watch::Receiver<bool>,
}

impl<C, F, Fut, E> Loop<C, F>
where
    C: Clock,
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    pub(super) async fn run(mut self) -> Result<(), BrokerError> {
        let mut tasks = JoinSet::new();
        let outcome = self.fetch_until_stopped(&mut tasks).await;
        // Drain: every handler already running finishes and acknowledges (or the deadline
        // passes and they are aborted; their messages come back after `ack_wait`).
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
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
                after: self.config.drain_timeout,
            }),
        }
    }

    async fn fetch_until_stopped(&mut self, tasks: &mut JoinSet<()>) -> Result<(), BrokerError> {
        let start = Instant::now();
        let mut next_lag = start;
        let mut meter = LagMeter::default();
        while !*self.stop.borrow() {
            while tasks.try_join_next().is_some() {}
            let now = Instant::now();
            if now >= next_lag {
                self.sample_lag(&mut meter, start).await?;
                next_lag = now + self.config.lag_interval;
            }
            let permits = self.gate.acquire().await;
            if permits.is_empty() {
                continue;
            }
            let asked = permits.len();
            let mut batch = call(
                "pull request",
                self.config.call_timeout,
                self.consumer
                    .batch()
                    .max_messages(asked)
                    .expires(self.config.expires)
                    .messages(),
            )
            .await?;
            self.counters.fetched(asked, self.gate.limit());
            let mut permits = permits.into_iter();
            // The batch ends when `asked` messages came, or at the server's timeout status
            // after `expires` (after which the server sends nothing more for this request);
            // our own deadline only guards against a lost status.
            let wait = self.config.expires + self.config.call_timeout;
            let (mut got, mut refused) = (0usize, false);
            while let Ok(Some(next)) = tokio::time::timeout(wait, batch.next()).await {
                let Ok(msg) = next else {
                    // A status other than a timeout (409: max_ack_pending reached, too many
                    // waiting pulls, ...) ends this pull request; the loop asks again.
                    refused = true;
                    break;
                };
                got += 1;
                let Some(permit) = permits.next() else {
                    // More than asked: not acknowledged, so delivered again after ack_wait,
                    // rather than exceed the credit.
                    continue;
                };
                self.spawn(tasks, msg, permit);
            }
            // Credit not used by this pull goes back without a sample.
            permits.for_each(OwnedPermit::ignore);
            if refused && got == 0 {
                // Refused at once: wait one `expires` (or a stop) before asking again, so
                // a refusing server is not asked in a tight loop.
                let backoff = self.config.expires;
                let _ = tokio::time::timeout(backoff, self.stop.changed()).await;
            }
        }
        Ok(())
    }

    fn spawn(&self, tasks: &mut JoinSet<()>, msg: jetstream::Message, permit: OwnedPermit<C>) {
        let (stream_sequence, delivered) = match msg.info() {
            Ok(info) => (
                info.stream_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
            ),
            // Not a JetStream delivery subject: handled as a first delivery.
            Err(_) => (0, 1),
        };
        let (message, acker) = msg.split();
        let msg = Message {
            subject: message.subject.to_string(),
            payload: message.payload,
            stream_sequence,
            delivered,
        };
        let bytes = msg.size();
        self.counters.enter(bytes, msg.is_redelivery());
        let fut = (self.handler)(msg);
        let counters = Arc::clone(&self.counters);
        let gate = Arc::clone(&self.gate);
        let timeout = self.config.call_timeout;
        let nak = if self.config.nak_delay.is_zero() {
            AckKind::Nak(None)
        } else {
            AckKind::Nak(Some(self.config.nak_delay))
        };
        tasks.spawn(async move {
            // The limit algorithm sees the handler's time only: not the pull request's wait
            // for messages nor the acknowledgement's round trip.
            let began = Instant::now();
            let outcome = fut.await;
            let rtt = began.elapsed();
            match outcome {
                Ok(()) => match call("ack", timeout, acker.double_ack()).await {
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
                    // Best effort: without the -NAK, ack_wait brings the message back.
                    let _ = call("nak", timeout, acker.ack_with(nak)).await;
                    permit.dropped();
                }
            }
            counters.leave(bytes);
            gate.released();
        });
    }

    async fn sample_lag(
        &mut self,
        meter: &mut LagMeter,
        start: Instant,
    ) -> Result<(), BrokerError> {
        let info = call(
            "consumer info",
            self.config.call_timeout,
            self.consumer.get_info(),
        )
        .await?;
        let lag = info.num_pending;
        let growth = meter.observe(lag, start.elapsed());
        self.counters.set_lag(LagState {
            lag: Some(lag),
            pending: Some(info.num_ack_pending as u64),
            growth,
        });
        metrics::record(
            "nats",
            &self.config.stream,
            &self.config.durable,
            &self.counters.snapshot(),
        );
        Ok(())
    }
}
