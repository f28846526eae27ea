//! The fetch loop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};
use tailwater_core::OwnedPermit;
use tailwater_core::clock::Clock;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Message, RedisStreamConfig, reply};
use crate::broker::gate::Gate;
use crate::broker::lag::LagMeter;
use crate::broker::stats::{Counters, LagState};
use crate::broker::{BrokerError, metrics};

async fn call(
    conn: &mut MultiplexedConnection,
    cmd: &Cmd,
    op: &'static str,
    timeout: Duration,
) -> Result<Value, BrokerError> {
    match tokio::time::timeout(timeout, cmd.query_async::<Value>(conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BrokerError::Broker {
            op,
            reason: e.to_string(),
        }),
        Err(_) => Err(BrokerError::Timeout { op, after: timeout }),
    }
}

/// `XGROUP CREATE key group start MKSTREAM`; an existing group (`BUSYGROUP`) is fine.
pub(super) async fn create_group(
    conn: &mut MultiplexedConnection,
    config: &RedisStreamConfig,
) -> Result<(), BrokerError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(&config.stream)
        .arg(&config.group)
        .arg(&config.start_id)
        .arg("MKSTREAM");
    match call(conn, &cmd, "XGROUP CREATE", config.call_timeout).await {
        Ok(_) => Ok(()),
        Err(BrokerError::Broker { reason, .. }) if reason.contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) struct Loop<C: Clock, F> {
    pub(super) fetch: MultiplexedConnection,
    pub(super) control: MultiplexedConnection,
    pub(super) config: RedisStreamConfig,
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
        // passes and they are aborted; their entries stay pending).
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
        // This consumer's own pending entries first (a restart under the same name).
        let mut backlog: Option<String> = Some("0".to_owned());
        let mut claim_cursor = "0-0".to_owned();
        let mut next_claim = start + self.config.claim_interval;
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
            let (mut batch, mut deleted) = (Vec::with_capacity(asked), Vec::new());
            if let Some(cursor) = backlog.take() {
                let cmd = self.read_cmd(asked, &cursor, None);
                let v = call(
                    &mut self.fetch,
                    &cmd,
                    "XREADGROUP",
                    self.config.call_timeout,
                )
                .await?;
                reply::read_group(v, true, &mut batch, &mut deleted)?;
                // Until the pending list is read through (ids only grow).
                let last = batch
                    .last()
                    .map(|m| m.id().to_owned())
                    .or(deleted.last().cloned());
                if let Some(last) = last {
                    backlog = Some(last);
                }
            } else if Instant::now() >= next_claim {
                let mut cmd = redis::cmd("XAUTOCLAIM");
                cmd.arg(&self.config.stream)
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg(self.config.claim_idle.as_millis() as u64)
                    .arg(&claim_cursor)
                    .arg("COUNT")
                    .arg(asked);
                let v = call(
                    &mut self.control,
                    &cmd,
                    "XAUTOCLAIM",
                    self.config.call_timeout,
                )
                .await?;
                claim_cursor = reply::auto_claim(v, &mut batch, &mut deleted)?;
                if claim_cursor == "0-0" {
                    // Scanned through: wait for the next round.
                    next_claim = Instant::now() + self.config.claim_interval;
                }
            } else {
                let cmd = self.read_cmd(asked, ">", Some(self.config.block));
                let wait = self.config.block + self.config.call_timeout;
                let v = call(&mut self.fetch, &cmd, "XREADGROUP", wait).await?;
                reply::read_group(v, false, &mut batch, &mut deleted)?;
            }
            self.counters.fetched(asked, self.gate.limit());
            self.forget_deleted(&deleted).await?;
            let mut permits = permits.into_iter();
            for msg in batch {
                let Some(permit) = permits.next() else {
                    // Redis returned more than COUNT: keep at-least-once (it stays pending
                    // and is claimed later) rather than exceed the credit.
                    continue;
                };
                self.spawn(tasks, msg, permit);
            }
            // Credit not used by this fetch goes back without a sample.
            permits.for_each(OwnedPermit::ignore);
        }
        Ok(())
    }

    fn read_cmd(&self, count: usize, id: &str, block: Option<Duration>) -> Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.config.stream).arg(id);
        cmd
    }

    /// Entries deleted from the stream while pending cannot be handled: acknowledge them so
    /// they leave the pending list, and count them.
    async fn forget_deleted(&mut self, deleted: &[String]) -> Result<(), BrokerError> {
        if deleted.is_empty() {
            return Ok(());
        }
        self.counters
            .deleted
            .fetch_add(deleted.len() as u64, Ordering::Relaxed);
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(deleted);
        call(&mut self.control, &cmd, "XACK", self.config.call_timeout).await?;
        Ok(())
    }

    fn spawn(&self, tasks: &mut JoinSet<()>, msg: Message, permit: OwnedPermit<C>) {
        let bytes = msg.size();
        self.counters.enter(bytes, msg.is_redelivery());
        let id = msg.id().to_owned();
        let fut = (self.handler)(msg);
        let counters = Arc::clone(&self.counters);
        let gate = Arc::clone(&self.gate);
        let mut conn = self.control.clone();
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&id);
        let timeout = self.config.call_timeout;
        tasks.spawn(async move {
            // The limit algorithm sees the handler's time only: not the fetch's wait for
            // entries (a server-side block) nor the acknowledgement's round trip.
            let began = Instant::now();
            let outcome = fut.await;
            let rtt = began.elapsed();
            match outcome {
                Ok(()) => match call(&mut conn, &ack, "XACK", timeout).await {
                    Ok(_) => {
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
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.config.stream);
        let v = call(
            &mut self.control,
            &cmd,
            "XINFO GROUPS",
            self.config.call_timeout,
        )
        .await?;
        let (lag, pending) = reply::group_info(v, &self.config.group)?;
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
            "redis",
            &self.config.stream,
            &self.config.group,
            &self.counters.snapshot(),
        );
        Ok(())
    }
}
