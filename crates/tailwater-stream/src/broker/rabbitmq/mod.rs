//! RabbitMQ consumers that push back (feature `rabbitmq`).
//!
//! A [`RabbitConsumer`] consumes one queue (`queue`) on its own connection and channel.
//! Several consumers (processes, or tasks) on the same queue share its messages, round
//! robin, as the members of a Redis consumer group or a NATS durable do. RabbitMQ pushes
//! messages rather than answering pulls; what bounds the push is the channel's
//! **prefetch** (`basic.qos`): the broker never has more unacknowledged deliveries
//! outstanding on the channel than the prefetch count. The consumer keeps it in step with
//! its [`Limiter`]:
//!
//! 1. the prefetch is the limiter's limit (at most [`prefetch`](RabbitConfig::prefetch)),
//!    set with `basic.qos` (`global`, so it applies to the running consumer at once) at
//!    start and again whenever the limit changes: a slow downstream lowers the limit and so
//!    what the broker sends; the messages it does not send stay in the queue, where they
//!    show as **lag**;
//! 2. each fetch takes the free permits (at most [`max_fetch`](RabbitConfig::max_fetch))
//!    and takes that many deliveries from the channel, waiting at most
//!    [`wait`](RabbitConfig::wait) for the first;
//! 3. runs the handler for each message in its own task, holding the message's permit, and
//!    acknowledges it (`basic.ack`) only when the handler returned `Ok` (**at least
//!    once**); a handler error sends `basic.nack` with `requeue`, so the broker delivers it
//!    again (to this consumer or another), flagged `redelivered`.
//!
//! A consumer that dies (its connection closes, or the broker stops hearing its
//! heartbeats) has its unacknowledged messages put back in the queue by the broker at once
//! and delivered again, flagged `redelivered`; every such redelivery is counted. There is no
//! ack deadline as with NATS's `ack_wait` or Redis's `claim_idle`: a handler may run as
//! long as its connection lives.
//!
//! Every [`lag_interval`](RabbitConfig::lag_interval) it reads the queue's ready count (a
//! passive `queue.declare`): that is the lag. AMQP does not tell the unacknowledged count,
//! so the `pending` figure stays `None`. The lag's growth rate and the
//! [`metrics`](crate::broker::metrics) (label `broker="rabbitmq"`, `stream` and `group`
//! both the queue's name) follow, as for Redis and NATS.
//!
//! Acknowledgements in AMQP 0-9-1 are not confirmed by the broker: an `ack` counts as
//! done once it is written to the connection. The queue is declared durable when it is
//! missing ([`declare`](RabbitConfig::declare)); an existing queue is used as it is.
//!
//! ```no_run
//! use tailwater_core::Limiter;
//! use tailwater_core::algorithm::Gradient2;
//! use tailwater_stream::broker::rabbitmq::{Message, RabbitConfig, RabbitConsumer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::new(Gradient2::corrected());
//! let config = RabbitConfig::new("orders");
//! let consumer = RabbitConsumer::start("amqp://127.0.0.1:5672/%2f", config, limiter, |msg: Message| async move {
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

use tailwater_core::clock::Clock;
use tailwater_core::{ConfigError, Limiter};

use super::BrokerError;
pub use super::ConsumerHandle;
use super::driver;

/// One message of the queue, as handed to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    routing_key: String,
    payload: Vec<u8>,
    delivery_tag: u64,
    redelivered: bool,
}

impl Message {
    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The delivery tag on this consumer's channel (not stable across redeliveries).
    pub fn delivery_tag(&self) -> u64 {
        self.delivery_tag
    }

    /// Whether the broker had delivered it before (a `nack` with requeue, or a consumer
    /// that died holding it).
    pub fn is_redelivery(&self) -> bool {
        self.redelivered
    }

    /// Payload bytes (what the in-flight byte figures count).
    pub fn size(&self) -> usize {
        self.payload.len()
    }
}

delivery_of!(Message);

/// What a consumer consumes and how. Built with [`new`](Self::new) and setters; checked by
/// [`RabbitConsumer::start`] (a [`ConfigError`] names the field).
#[derive(Debug, Clone)]
pub struct RabbitConfig {
    pub(crate) queue: String,
    pub(crate) consumer_tag: String,
    pub(crate) declare: bool,
    pub(crate) prefetch: u16,
    pub(crate) wait: Duration,
    pub(crate) common: super::Common,
}

impl RabbitConfig {
    /// A consumer of queue `queue`, with defaults: the queue declared durable if missing, a
    /// broker-chosen consumer tag, a prefetch of at most 64 (the limiter's limit below
    /// that), fetches of at most 64, each waiting 100 ms for its first delivery, the lag
    /// sampled every second, a 1 s deadline on every call and a 10 s drain on
    /// [`ConsumerHandle::stop`].
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            consumer_tag: String::new(),
            declare: true,
            prefetch: 64,
            wait: Duration::from_millis(100),
            common: super::Common::default(),
        }
    }

    /// The consumer tag (shown by `rabbitmqctl list_consumers`). Empty (the default): the
    /// broker makes one up.
    pub fn consumer_tag(mut self, tag: impl Into<String>) -> Self {
        self.consumer_tag = tag.into();
        self
    }

    /// Whether to declare the queue (durable) when it is missing. With `false` a missing
    /// queue fails the start with [`BrokerError::Broker`] naming `queue.declare`.
    pub fn declare(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// The most unacknowledged messages the broker may push to this consumer (`basic.qos`);
    /// the limiter's limit lowers it further. At least 1.
    pub fn prefetch(mut self, n: u16) -> Self {
        self.prefetch = n;
        self
    }

    /// How long a fetch waits for its first delivery (also the longest a stop request waits
    /// for the fetch loop). 1 ms to 60 s.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    common_setters!(
        "The most messages one fetch hands to handlers (further capped by the limiter's free permits).",
        "The deadline of every call to the broker."
    );

    fn validate(&self) -> Result<(), ConfigError> {
        // AMQP short strings: at most 255 bytes.
        if self.queue.is_empty() || self.queue.len() > 255 {
            return Err(ConfigError::new(
                "queue",
                format!("must be 1 to 255 bytes, got {}", self.queue.len()),
            ));
        }
        if self.consumer_tag.len() > 255 {
            return Err(ConfigError::new(
                "consumer_tag",
                format!("must be at most 255 bytes, got {}", self.consumer_tag.len()),
            ));
        }
        if self.prefetch == 0 {
            return Err(ConfigError::new("prefetch", "must be at least 1, got 0"));
        }
        self.common.check(("wait", self.wait), &[])
    }
}

/// Starts RabbitMQ consumers; see the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct RabbitConsumer;

impl RabbitConsumer {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`; plain TCP, the crate is built
    /// without TLS), opens a channel, declares the queue if asked, sets the prefetch to the
    /// limiter's limit, starts consuming (manual acks) and spawns the fetch loop on the
    /// current tokio runtime. `handler` runs once per delivery; returning `Err` sends
    /// `basic.nack` with requeue, so the message is delivered again.
    pub async fn start<C, F, Fut, E>(
        url: &str,
        config: RabbitConfig,
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
        let prefetch = run::prefetch_for(limiter.limit(), config.prefetch);
        let broker = run::Rabbit::connect(url, config.clone(), prefetch).await?;
        let settings =
            config
                .common
                .settings("rabbitmq", &config.queue, &config.queue, config.wait);
        Ok(driver::spawn(broker, settings, limiter, handler))
    }
}
