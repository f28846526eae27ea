//! NATS JetStream pull consumers that push back (feature `nats`).
//!
//! A [`JetStreamConsumer`] is one member of a **durable pull consumer** (`durable`) on a
//! JetStream stream (`stream`). Several members (processes, or tasks) pulling from the same
//! durable share its messages, as the members of a Redis consumer group do. Its fetch loop:
//!
//! 1. takes the free permits of its [`Limiter`] (at most
//!    [`max_fetch`](JetStreamConfig::max_fetch)), waiting for a handler to finish when none
//!    is free: the size of each **pull request** is the credit, so a slow downstream shrinks
//!    what is pulled (the seed's NATS section: a pull consumer that asks for no more than it
//!    can take never becomes a "slow consumer");
//! 2. sends one pull request (`$JS.API.CONSUMER.MSG.NEXT`) for that many messages, which the
//!    server holds for at most [`expires`](JetStreamConfig::expires);
//! 3. runs the handler for each message in its own task, holding the message's permit, and
//!    acknowledges it (a confirmed `+ACK`) only when the handler returned `Ok` (**at least
//!    once**); a handler error sends `-NAK` (optionally with
//!    [`nak_delay`](JetStreamConfig::nak_delay)) so the server delivers it again.
//!
//! On the server, the durable consumer is created (if missing) with explicit acks,
//! [`max_ack_pending`](JetStreamConfig::max_ack_pending) (the most unacknowledged messages
//! across *all* members: the server-side bound, while the limiter is each member's) and
//! [`ack_wait`](JetStreamConfig::ack_wait): a message not acknowledged within `ack_wait` (its
//! member died, or hangs) is delivered again to whichever member pulls next. Every
//! redelivery is counted (the message's delivery count, from its reply subject, is above 1).
//!
//! Every [`lag_interval`](JetStreamConfig::lag_interval) it reads the consumer's info: the
//! lag is `num_pending` (messages in the stream not yet delivered to the consumer), the
//! pending count `num_ack_pending`; the lag's growth rate and the
//! [`metrics`](crate::broker::metrics) (label `broker="nats"`, `group` = the durable name)
//! follow, as for Redis.
//!
//! `ack_wait` must exceed the slowest handler: a message still being handled after
//! `ack_wait` is delivered again, so handlers must be idempotent, as with any at-least-once
//! delivery. The stream itself is not created here (its subjects, retention and limits are
//! the producer's or the operator's choice); the consumer fails with
//! [`BrokerError::Broker`] naming `get_stream` when it is missing.
//!
//! ```no_run
//! use std::time::Duration;
//! use tailwater_core::Limiter;
//! use tailwater_core::algorithm::Gradient2;
//! use tailwater_stream::broker::nats::{JetStreamConfig, JetStreamConsumer, Message};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::new(Gradient2::corrected());
//! let config = JetStreamConfig::new("ORDERS", "billing").ack_wait(Duration::from_secs(30));
//! let consumer = JetStreamConsumer::start("nats://127.0.0.1:4222", config, limiter, |msg: Message| async move {
//!     // ... bill the order in msg.payload() ...
//!     let _ = msg;
//!     Ok::<(), std::io::Error>(())
//! })
//! .await?;
//! println!("{:?}", consumer.stats());
//! let _final_stats = consumer.stop().await?;
//! # Ok(()) }
//! ```

mod run;

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use tailwater_core::clock::Clock;
use tailwater_core::{ConfigError, Limiter};

use super::BrokerError;
pub use super::ConsumerHandle;
use super::driver;

/// One message of the stream, as handed to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    subject: String,
    payload: Bytes,
    stream_sequence: u64,
    delivered: u64,
}

impl Message {
    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Its sequence number in the stream (stable across redeliveries).
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// How many times the server has delivered it, this delivery included.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Whether it had been delivered before (a `-NAK`, or `ack_wait` passed: a dead or slow
    /// member, or this one's failed attempt).
    pub fn is_redelivery(&self) -> bool {
        self.delivered > 1
    }

    /// Payload bytes (what the in-flight byte figures count).
    pub fn size(&self) -> usize {
        self.payload.len()
    }
}

delivery_of!(Message);

/// Where and how a consumer pulls. Built with [`new`](Self::new) and setters; checked by
/// [`JetStreamConsumer::start`] (a [`ConfigError`] names the field).
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) filter_subject: String,
    pub(crate) expires: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) max_ack_pending: usize,
    pub(crate) nak_delay: Duration,
    pub(crate) common: super::Common,
}

impl JetStreamConfig {
    /// A member of durable pull consumer `durable` on stream `stream`, with defaults: every
    /// subject of the stream from its first message, pull requests of at most 64 held 100 ms
    /// by the server, `ack_wait` 30 s, `max_ack_pending` 1 000 (the server's default), `-NAK`
    /// without delay, the lag sampled every second, a 1 s deadline on every other call and a
    /// 10 s drain on [`ConsumerHandle::stop`].
    pub fn new(stream: impl Into<String>, durable: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            durable: durable.into(),
            filter_subject: String::new(),
            expires: Duration::from_millis(100),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1_000,
            nak_delay: Duration::ZERO,
            common: super::Common::default(),
        }
    }

    /// Only messages whose subject matches (wildcards allowed) when the consumer is created.
    /// Empty (the default): every subject of the stream.
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter_subject = subject.into();
        self
    }

    /// How long the server holds a pull request waiting for messages (also the longest a
    /// stop request waits for the fetch loop). 1 ms to 60 s.
    pub fn expires(mut self, expires: Duration) -> Self {
        self.expires = expires;
        self
    }

    /// How long a delivered message may stay unacknowledged before the server delivers it
    /// again: the time after which a dead member's messages go to another. Must exceed the
    /// slowest handler. At least 1 ms. Set when the consumer is created.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// The most messages delivered and not yet acknowledged across all members (the
    /// server's bound; each member's own is its limiter). At least 1. Set when the consumer
    /// is created.
    pub fn max_ack_pending(mut self, n: usize) -> Self {
        self.max_ack_pending = n;
        self
    }

    /// How long the server waits before delivering again a message whose handler failed
    /// (`-NAK` with a delay). Zero (the default): at once.
    pub fn nak_delay(mut self, delay: Duration) -> Self {
        self.nak_delay = delay;
        self
    }

    common_setters!(
        "The most messages one pull request asks for (further capped by the limiter's free permits).",
        "The deadline of every call but the pull request (which gets `expires` plus this)."
    );

    fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [("stream", &self.stream), ("durable", &self.durable)] {
            if v.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
            // NATS names become subject tokens: no separators or wildcards.
            if v.contains(['.', '*', '>', ' ', '\t', '\r', '\n']) {
                return Err(ConfigError::new(
                    field,
                    format!("must not contain `.`, `*`, `>` or whitespace, got {v:?}"),
                ));
            }
        }
        if self.max_ack_pending == 0 || i64::try_from(self.max_ack_pending).is_err() {
            return Err(ConfigError::new(
                "max_ack_pending",
                format!("must be at least 1, got {}", self.max_ack_pending),
            ));
        }
        self.common
            .check(("expires", self.expires), &[("ack_wait", self.ack_wait)])
    }
}

/// Starts JetStream pull consumers; see the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct JetStreamConsumer;

impl JetStreamConsumer {
    /// Connects to `url` (`nats://host:port`), looks the stream up, creates the durable pull
    /// consumer if it is missing (an existing one is used as it is), and spawns the fetch
    /// loop on the current tokio runtime. `handler` runs once per delivery; returning `Err`
    /// sends `-NAK`, so the message is delivered again.
    pub async fn start<C, F, Fut, E>(
        url: &str,
        config: JetStreamConfig,
        limiter: Limiter<C>,
        handler: F,
    ) -> Result<ConsumerHandle, BrokerError>
    where
        C: Clock,
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + 'static,
    {
        config.validate()?;
        let consumer = run::connect(url, &config).await?;
        let settings =
            config
                .common
                .settings("nats", &config.stream, &config.durable, config.expires);
        let broker = run::Nats { consumer, config };
        Ok(driver::spawn(broker, settings, limiter, handler))
    }
}
