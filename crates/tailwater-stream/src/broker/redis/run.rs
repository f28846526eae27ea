//! Redis's side of the consumer driver: reads, claims, acknowledgements and lag.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};
use tokio::time::Instant;

use super::{Message, RedisStreamConfig, reply};
use crate::broker::BrokerError;
use crate::broker::driver::{self, Broker, Fetched, Settle};

async fn call(
    conn: &mut MultiplexedConnection,
    cmd: &Cmd,
    op: &'static str,
    timeout: Duration,
) -> Result<Value, BrokerError> {
    driver::call(op, timeout, cmd.query_async::<Value>(conn)).await
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
    match call(conn, &cmd, "XGROUP CREATE", config.common.call_timeout).await {
        Ok(_) => Ok(()),
        Err(BrokerError::Broker { reason, .. }) if reason.contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Redis side of a consumer: a connection for the blocking reads, one for
/// acknowledgements, claims and lag, and where the consumer is in its own pending list and in
/// the claim scan.
pub(super) struct Redis {
    pub(super) fetch: MultiplexedConnection,
    pub(super) control: MultiplexedConnection,
    pub(super) config: RedisStreamConfig,
    /// This consumer's own pending entries are read first (a restart under the same name),
    /// from this id on, until read through.
    backlog: Option<String>,
    claim_cursor: String,
    next_claim: Instant,
    deleted: u64,
}

impl Redis {
    pub(super) fn new(
        fetch: MultiplexedConnection,
        control: MultiplexedConnection,
        config: RedisStreamConfig,
    ) -> Self {
        let next_claim = Instant::now() + config.claim_interval;
        Self {
            fetch,
            control,
            config,
            backlog: Some("0".to_owned()),
            claim_cursor: "0-0".to_owned(),
            next_claim,
            deleted: 0,
        }
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

    async fn read(&mut self, asked: usize, batch: &mut Vec<Message>) -> Result<(), BrokerError> {
        let mut deleted = Vec::new();
        let timeout = self.config.common.call_timeout;
        if let Some(cursor) = self.backlog.take() {
            let cmd = self.read_cmd(asked, &cursor, None);
            let v = call(&mut self.fetch, &cmd, "XREADGROUP", timeout).await?;
            reply::read_group(v, true, batch, &mut deleted)?;
            // Until the pending list is read through (ids only grow).
            let last = batch
                .last()
                .map(|m| m.id().to_owned())
                .or(deleted.last().cloned());
            if let Some(last) = last {
                self.backlog = Some(last);
            }
        } else if Instant::now() >= self.next_claim {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.config.consumer)
                .arg(self.config.claim_idle.as_millis() as u64)
                .arg(&self.claim_cursor)
                .arg("COUNT")
                .arg(asked);
            let v = call(&mut self.control, &cmd, "XAUTOCLAIM", timeout).await?;
            self.claim_cursor = reply::auto_claim(v, batch, &mut deleted)?;
            if self.claim_cursor == "0-0" {
                // Scanned through: wait for the next round.
                self.next_claim = Instant::now() + self.config.claim_interval;
            }
        } else {
            let cmd = self.read_cmd(asked, ">", Some(self.config.block));
            let wait = self.config.block + timeout;
            let v = call(&mut self.fetch, &cmd, "XREADGROUP", wait).await?;
            reply::read_group(v, false, batch, &mut deleted)?;
        }
        self.forget_deleted(&deleted).await
    }

    /// Entries deleted from the stream while pending cannot be handled: acknowledge them so
    /// they leave the pending list, and count them.
    async fn forget_deleted(&mut self, deleted: &[String]) -> Result<(), BrokerError> {
        if deleted.is_empty() {
            return Ok(());
        }
        self.deleted += deleted.len() as u64;
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(deleted);
        call(
            &mut self.control,
            &cmd,
            "XACK",
            self.config.common.call_timeout,
        )
        .await?;
        Ok(())
    }
}

/// `XACK` of one entry after its handler; a failed handler leaves it pending, to be claimed
/// after `claim_idle`.
pub(super) struct Ack {
    conn: MultiplexedConnection,
    cmd: Cmd,
    timeout: Duration,
}

impl Settle for Ack {
    async fn ack(mut self) -> Result<(), BrokerError> {
        call(&mut self.conn, &self.cmd, "XACK", self.timeout)
            .await
            .map(drop)
    }

    async fn nack(self) -> Result<(), BrokerError> {
        Ok(())
    }
}

impl Broker for Redis {
    type Message = Message;
    type Settle = Ack;

    async fn fetch(
        &mut self,
        n: usize,
        deliver: &mut (dyn FnMut(Message, Ack) + Send),
    ) -> Result<Fetched, BrokerError> {
        let mut batch = Vec::with_capacity(n);
        self.read(n, &mut batch).await?;
        for msg in batch {
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(msg.id());
            let ack = Ack {
                conn: self.control.clone(),
                cmd,
                timeout: self.config.common.call_timeout,
            };
            deliver(msg, ack);
        }
        Ok(Fetched::default())
    }

    async fn lag(&mut self) -> Result<(Option<u64>, Option<u64>), BrokerError> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.config.stream);
        let timeout = self.config.common.call_timeout;
        let v = call(&mut self.control, &cmd, "XINFO GROUPS", timeout).await?;
        reply::group_info(v, &self.config.group)
    }

    fn take_deleted(&mut self) -> u64 {
        std::mem::take(&mut self.deleted)
    }
}
