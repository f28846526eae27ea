//! Redis Streams consumer groups that push back (feature `redis-streams`).
//!
//! A [`RedisStreamConsumer`] is one member (`consumer`) of a consumer group (`group`) on a
//! stream (`stream`). Its fetch loop:
//!
//! 1. takes the free permits of its [`Limiter`] (at most
//!    [`max_fetch`](RedisStreamConfig::max_fetch)), waiting for a handler to finish when none
//!    is free: the fetch size is the credit, so a slow downstream shrinks it;
//! 2. at start, reads its **own pending entries** back (`XREADGROUP ... 0`): a consumer
//!    restarted under the same name finishes what it had been given;
//! 3. every [`claim_interval`](RedisStreamConfig::claim_interval), claims entries that have
//!    been pending longer than [`claim_idle`](RedisStreamConfig::claim_idle) with
//!    `XAUTOCLAIM`: a dead (or stuck) consumer's entries, and this consumer's own failed
//!    ones, are delivered again;
//! 4. otherwise reads new entries (`XREADGROUP ... BLOCK block COUNT n STREAMS key >`);
//! 5. runs the handler for each entry in its own task, holding the entry's permit, and
//!    acknowledges it (`XACK`) only when the handler returned `Ok` (**at least once**).
//!
//! Every [`lag_interval`](RedisStreamConfig::lag_interval) it samples the group's lag and
//! pending count (`XINFO GROUPS`, Redis 7: the `lag` field), computes the lag's growth rate
//! and records the [`metrics`](crate::broker::metrics).
//!
//! `claim_idle` must exceed the slowest handler's time: an entry still being handled after
//! `claim_idle` is claimed (and handled) again, as Redis's own documentation warns for
//! `XAUTOCLAIM`. Handlers must therefore be idempotent, as with any at-least-once delivery.
//!
//! ```no_run
//! use std::time::Duration;
//! use tailwater_core::Limiter;
//! use tailwater_core::algorithm::Gradient2;
//! use tailwater_stream::broker::redis::{RedisStreamConfig, RedisStreamConsumer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::new(Gradient2::corrected());
//! let config = RedisStreamConfig::new("orders", "billing", "billing-1")
//!     .claim_idle(Duration::from_secs(30));
//! let consumer = RedisStreamConsumer::start("redis://127.0.0.1/", config, limiter, |msg| async move {
//!     // ... bill the order in msg.field("order") ...
//!     let _ = msg;
//!     Ok::<(), std::io::Error>(())
//! })
//! .await?;
//! println!("{:?}", consumer.stats());
//! let _final_stats = consumer.stop().await?;
//! # Ok(()) }
//! ```

mod reply;
mod run;

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use tailwater_core::clock::Clock;
use tailwater_core::{ConfigError, Limiter};

use super::BrokerError;
pub use super::ConsumerHandle;
use super::driver;

/// One entry of the stream, as handed to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    id: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    redelivered: bool,
}

impl Message {
    pub(crate) fn new(id: String, fields: Vec<(Vec<u8>, Vec<u8>)>, redelivered: bool) -> Self {
        Self {
            id,
            fields,
            redelivered,
        }
    }

    /// The entry's id (`<ms>-<seq>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Field names and values, in the order they were added.
    pub fn fields(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.fields
    }

    /// The value of the first field named `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Whether this entry had been delivered before (claimed from another consumer, its own
    /// failed attempt, or read back from this consumer's pending list at start).
    pub fn is_redelivery(&self) -> bool {
        self.redelivered
    }

    /// Payload bytes: field names and values (what the in-flight byte figures count).
    pub fn size(&self) -> usize {
        self.fields.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

delivery_of!(Message);

/// Where and how a consumer reads. Built with [`new`](Self::new) and setters; checked by
/// [`RedisStreamConsumer::start`] (a [`ConfigError`] names the field).
#[derive(Debug, Clone)]
pub struct RedisStreamConfig {
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) start_id: String,
    pub(crate) block: Duration,
    pub(crate) claim_idle: Duration,
    pub(crate) claim_interval: Duration,
    pub(crate) common: super::Common,
}

impl RedisStreamConfig {
    /// Consumer `consumer` of group `group` on stream `stream`, with defaults: the group is
    /// created at id `0` (all entries) if missing, fetches of at most 64, a 100 ms server-side
    /// block, claims after 30 s idle checked every second, the lag sampled every second, a
    /// 1 s deadline on every other call and a 10 s drain on [`ConsumerHandle::stop`].
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        Self {
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            start_id: "0".to_owned(),
            block: Duration::from_millis(100),
            claim_idle: Duration::from_secs(30),
            claim_interval: Duration::from_secs(1),
            common: super::Common::default(),
        }
    }

    /// Where a newly created group starts: `0` (every entry, the default) or `$` (only
    /// entries added from now on). Ignored when the group exists.
    pub fn start_id(mut self, id: impl Into<String>) -> Self {
        self.start_id = id.into();
        self
    }

    /// How long one `XREADGROUP` waits in Redis for new entries (also the longest a stop
    /// request waits for the fetch loop). 1 ms to 60 s.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// How long an entry must have been pending before another consumer may claim it: the
    /// time after which a dead consumer's entries are delivered again. Must exceed the
    /// slowest handler. At least 1 ms.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    /// How often to look for claimable entries. At least 1 ms.
    pub fn claim_interval(mut self, every: Duration) -> Self {
        self.claim_interval = every;
        self
    }

    common_setters!(
        "The most entries one fetch asks for (further capped by the limiter's free permits).",
        "The deadline of every call but the blocking read (which gets `block` plus this)."
    );

    fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("stream", &self.stream),
            ("group", &self.group),
            ("consumer", &self.consumer),
            ("start_id", &self.start_id),
        ] {
            if v.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        self.common.check(
            ("block", self.block),
            &[
                ("claim_idle", self.claim_idle),
                ("claim_interval", self.claim_interval),
            ],
        )
    }
}

/// Starts Redis Streams consumers; see the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct RedisStreamConsumer;

impl RedisStreamConsumer {
    /// Connects to `url` (two connections: one for the blocking reads, one for
    /// acknowledgements, claims and lag), creates the group if it is missing
    /// (`XGROUP CREATE ... MKSTREAM`), and spawns the fetch loop on the current tokio
    /// runtime. `handler` runs once per delivery; returning `Err` leaves the entry pending,
    /// to be claimed again after `claim_idle`.
    pub async fn start<C, F, Fut, E>(
        url: &str,
        config: RedisStreamConfig,
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
        let client = redis::Client::open(url).map_err(|e| ConfigError::new("url", e))?;
        let connect = |response: Duration| {
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.common.call_timeout))
                .set_response_timeout(Some(response));
            let client = client.clone();
            async move {
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(|e| BrokerError::Broker {
                        op: "connect",
                        reason: e.to_string(),
                    })
            }
        };
        let fetch = connect(config.block + config.common.call_timeout).await?;
        let mut control = connect(config.common.call_timeout).await?;
        run::create_group(&mut control, &config).await?;
        let settings = config
            .common
            .settings("redis", &config.stream, &config.group, config.block);
        let broker = run::Redis::new(fetch, control, config);
        Ok(driver::spawn(broker, settings, limiter, handler))
    }
}
