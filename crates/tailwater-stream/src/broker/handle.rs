//! A running consumer's handle, the same for every broker.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::counters::Counters;
use super::{BrokerError, ConsumerStats};

/// A running consumer. [`stop`](Self::stop) drains it; [`kill`](Self::kill) (or dropping the
/// handle) ends it at once, as a crash would: its unacknowledged messages stay pending in
/// the broker, to be delivered again (claimed by another Redis consumer after its
/// `claim_idle`; redelivered by NATS after the consumer's `ack_wait`).
pub struct ConsumerHandle {
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), BrokerError>>>,
    drain_timeout: Duration,
}

impl fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ConsumerHandle {
    pub(crate) fn new(
        counters: Arc<Counters>,
        stop: watch::Sender<bool>,
        task: JoinHandle<Result<(), BrokerError>>,
        drain_timeout: Duration,
    ) -> Self {
        Self {
            counters,
            stop,
            task: Some(task),
            drain_timeout,
        }
    }

    /// What the consumer has done so far.
    pub fn stats(&self) -> ConsumerStats {
        self.counters.snapshot()
    }

    /// Whether the fetch loop has ended (stopped, or failed: [`stop`](Self::stop) returns
    /// the error).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops fetching (within one server-side wait: Redis's `block`, NATS's `expires`), waits up to the drain timeout for the running
    /// handlers to finish and acknowledge, and returns the final stats. Fails with the
    /// fetch loop's error if it had failed, or with [`BrokerError::DrainTimeout`] when
    /// handlers were still running at the deadline (they are then aborted and their messages
    /// stay pending).
    pub async fn stop(mut self) -> Result<ConsumerStats, BrokerError> {
        let _ = self.stop.send(true);
        let after = self.drain_timeout + Duration::from_secs(1);
        let Some(task) = self.task.take() else {
            return Ok(self.counters.snapshot());
        };
        match tokio::time::timeout(after, task).await {
            Ok(Ok(Ok(()))) => Ok(self.counters.snapshot()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(join)) => Err(BrokerError::Broker {
                op: "fetch loop",
                reason: join.to_string(),
            }),
            Err(_) => Err(BrokerError::DrainTimeout {
                in_flight: self.counters.snapshot().in_flight,
                after,
            }),
        }
    }

    /// Ends the consumer at once: the fetch loop and every running handler are aborted and
    /// nothing more is acknowledged. Returns the stats at the kill.
    pub fn kill(mut self) -> ConsumerStats {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.counters.snapshot()
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
