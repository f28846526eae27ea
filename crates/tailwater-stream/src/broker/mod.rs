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

/// The setters every broker's config shares (`max_fetch`, `lag_interval`, `call_timeout`,
/// `drain_timeout`: the fields of [`Common`]), with the broker's own words on what one fetch
/// and `call_timeout` are.
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
macro_rules! common_setters {
    ($max_fetch_doc:literal, $call_timeout_doc:literal) => {
        #[doc = $max_fetch_doc]
        pub fn max_fetch(mut self, n: NonZeroUsize) -> Self {
            self.common.max_fetch = n;
            self
        }

        /// How often to sample the lag (and record the metrics). At least 1 ms.
        pub fn lag_interval(mut self, every: Duration) -> Self {
            self.common.lag_interval = every;
            self
        }

        #[doc = $call_timeout_doc]
        pub fn call_timeout(mut self, timeout: Duration) -> Self {
            self.common.call_timeout = timeout;
            self
        }

        /// How long [`ConsumerHandle::stop`] waits for running handlers.
        pub fn drain_timeout(mut self, timeout: Duration) -> Self {
            self.common.drain_timeout = timeout;
            self
        }
    };
}

/// A broker's `Message` as the driver's [`Delivery`](driver::Delivery): its own `size` and
/// `is_redelivery`.
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
macro_rules! delivery_of {
    ($message:ty) => {
        impl super::driver::Delivery for $message {
            fn size(&self) -> usize {
                <$message>::size(self)
            }

            fn is_redelivery(&self) -> bool {
                <$message>::is_redelivery(self)
            }
        }
    };
}

#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
mod counters;
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

/// The settings every broker's config has: the fetch size, the lag sampling, the deadline of
/// broker calls and the drain, with the same defaults and checks everywhere.
#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
#[derive(Debug, Clone)]
pub(crate) struct Common {
    /// The most messages one fetch asks for (further capped by the limiter's free permits).
    pub(crate) max_fetch: std::num::NonZeroUsize,
    pub(crate) lag_interval: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) drain_timeout: Duration,
}

#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
impl Default for Common {
    /// Fetches of at most 64, the lag sampled every second, a 1 s deadline on broker calls
    /// and a 10 s drain.
    fn default() -> Self {
        Self {
            max_fetch: std::num::NonZeroUsize::new(64).unwrap_or(std::num::NonZeroUsize::MIN),
            lag_interval: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq"))]
impl Common {
    /// Checks the broker's server-side `wait` field (1 ms to 60 s), then the broker's own
    /// intervals `own` and the common ones (at least 1 ms each); the first that fails names
    /// its field.
    fn check(
        &self,
        wait: (&'static str, Duration),
        own: &[(&'static str, Duration)],
    ) -> Result<(), tailwater_core::ConfigError> {
        check_wait(wait.0, wait.1)?;
        check_at_least_1ms(own)?;
        check_at_least_1ms(&[
            ("lag_interval", self.lag_interval),
            ("call_timeout", self.call_timeout),
            ("drain_timeout", self.drain_timeout),
        ])
    }

    /// The driver's settings: metric labels `broker`, `stream` and `group`, and the gate's
    /// longest wait for a permit, `wait` capped at 100 ms (so a stop is seen promptly).
    fn settings(
        &self,
        broker: &'static str,
        stream: &str,
        group: &str,
        wait: Duration,
    ) -> driver::Settings {
        driver::Settings {
            broker,
            stream: stream.to_owned(),
            group: group.to_owned(),
            max_fetch: self.max_fetch.get(),
            max_wait: wait.min(Duration::from_millis(100)),
            lag_interval: self.lag_interval,
            drain_timeout: self.drain_timeout,
        }
    }
}
