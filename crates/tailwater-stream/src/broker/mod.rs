//! Broker consumers that push back: the fetch size is what a tailwater
//! [`Limiter`](tailwater_core::Limiter) lets in, so a slow downstream shrinks what is pulled
//! from the broker instead of piling messages up in the consumer's memory.
//!
//! The pattern is the one the seed describes for RabbitMQ's `basic.qos` prefetch and NATS
//! JetStream's `max_ack_pending`: a consumer never holds more unacknowledged messages than
//! it has credit for. Here the credit is the limiter's free permits: before each fetch the
//! consumer takes as many permits as are free (at most `max_fetch`) and asks the broker for
//! exactly that many messages; each message holds its permit until its handler finishes and
//! the message is acknowledged. With an adaptive algorithm (Gradient2, AIMD) the handler's
//! latency drives the limit, so a downstream that slows down lowers both the number in
//! flight and the size of each fetch. The messages the consumer does not pull stay in the
//! broker, where they show as **lag**; the consumer samples the lag and its growth rate and
//! reports both (Kafka's consumer-lag monitoring, the seed's Kafka section).
//!
//! Delivery is **at least once**: a message is acknowledged only after its handler returned
//! `Ok`; a handler error, a crash or a kill leaves it pending in the broker, from where it
//! is delivered again (claimed after an idle time). Every such redelivery is counted.
//!
//! Backends, each behind a cargo feature so the default build stays lean:
//! - [`redis`] (feature `redis-streams`): Redis Streams consumer groups (`XREADGROUP`,
//!   `XACK`, `XAUTOCLAIM` of a dead consumer's pending entries).
//! - [`nats`] (feature `nats`): NATS JetStream pull consumers (pull requests of the credit's
//!   size, `max_ack_pending` on the server, redelivery of a dead consumer's messages after
//!   `ack_wait`).
//! - [`rabbitmq`] (feature `rabbitmq`): RabbitMQ consumers (the channel's `basic.qos`
//!   prefetch kept at the limiter's limit, `basic.nack` with requeue on failure, a dead
//!   consumer's unacknowledged messages requeued by the broker).
//!
//! All three run on one driver (the private `driver` module): the fetch loop, the permits,
//! the acknowledgement after the handler, the counters and the lag samples are written
//! once; each broker supplies only its fetch, its acknowledgements and its lag.
//!
//! Metric names are in [`metrics`].

/// The setters every broker's config shares (`lag_interval`, `call_timeout`,
/// `drain_timeout`), with the broker's own words on what `call_timeout` covers.
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
macro_rules! common_setters {
    ($call_timeout_doc:literal) => {
        /// How often to sample the lag (and record the metrics). At least 1 ms.
        pub fn lag_interval(mut self, every: Duration) -> Self {
            self.lag_interval = every;
            self
        }

        #[doc = $call_timeout_doc]
        pub fn call_timeout(mut self, timeout: Duration) -> Self {
            self.call_timeout = timeout;
            self
        }

        /// How long [`ConsumerHandle::stop`] waits for running handlers.
        pub fn drain_timeout(mut self, timeout: Duration) -> Self {
            self.drain_timeout = timeout;
            self
        }
    };
}

#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
mod driver;
mod gate;
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
mod handle;
mod lag;
pub mod metrics;
mod stats;

#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis-streams")]
pub mod redis;

#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
pub use handle::ConsumerHandle;
pub use lag::LagMeter;
pub use stats::ConsumerStats;

use std::time::Duration;

/// Why a broker consumer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The configuration was refused (the field is named).
    #[error(transparent)]
    Config(#[from] tailwater_core::ConfigError),
    /// The broker refused a command or the connection failed.
    #[error("broker `{op}` failed: {reason}")]
    Broker {
        /// The command or step (`XREADGROUP`, `connect`, ...).
        op: &'static str,
        /// The broker's or the client's message.
        reason: String,
    },
    /// The broker did not answer within the deadline.
    #[error("broker `{op}` timed out after {after:?}")]
    Timeout {
        /// The command or step.
        op: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The broker's reply did not have the expected shape.
    #[error("unexpected reply to `{op}`: {detail}")]
    Protocol {
        /// The command.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// `ConsumerHandle::stop` waited its deadline and handlers were still
    /// running; their messages stay pending in the broker and will be delivered again.
    #[error("{in_flight} handlers still running after the drain deadline of {after:?}")]
    DrainTimeout {
        /// Handlers that had not finished.
        in_flight: usize,
        /// The deadline.
        after: Duration,
    },
}

/// The server-side wait of one fetch (Redis's `block`, NATS's `expires`, RabbitMQ's `wait`):
/// within 1 ms and 60 s.
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
fn check_wait(field: &'static str, d: Duration) -> Result<(), tailwater_core::ConfigError> {
    if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
        return Err(tailwater_core::ConfigError::new(
            field,
            format!("must be within 1 ms and 60 s, got {d:?}"),
        ));
    }
    Ok(())
}

/// Intervals and deadlines: at least 1 ms each; the first that is not names its field.
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
fn check_at_least_1ms(
    fields: &[(&'static str, Duration)],
) -> Result<(), tailwater_core::ConfigError> {
    for &(field, d) in fields {
        if d < Duration::from_millis(1) {
            return Err(tailwater_core::ConfigError::new(
                field,
                format!("must be at least 1 ms, got {d:?}"),
            ));
        }
    }
    Ok(())
}
