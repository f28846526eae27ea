//! Connections: a self-reconnecting [`ConnectionManager`] (single node) or a Redis Cluster
//! connection (feature `cluster`), both with bounded connect and response timeouts.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tailwater_core::ConfigError;

/// Timeouts and retry limits for talking to Redis.
///
/// Defaults are chosen so that a dead Redis never stalls a caller for long (compare
/// envoyproxy/ratelimit #462 and #978, 10 s stalls): each decision gives up after
/// `call_timeout` (5 ms; Envoy's own RLS client gives up after 20 ms), a connection
/// attempt after `connect_timeout`, a response after `response_timeout`, and after a failure
/// Redis is not tried again for `retry_backoff` (calls are answered by the failure policy
/// meanwhile, at no cost).
///
/// ```
/// use std::time::Duration;
/// use tailwater_redis::ConnectionOptions;
/// let opts = ConnectionOptions::default().call_timeout(Duration::from_millis(20));
/// assert!(opts.validate().is_ok());
/// assert_eq!(
///     ConnectionOptions::default().call_timeout(Duration::ZERO).validate().unwrap_err().field(),
///     "call_timeout"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub(crate) call_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) reconnect_retries: usize,
    pub(crate) retry_backoff: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(5),
            connect_timeout: Duration::from_millis(100),
            response_timeout: Duration::from_millis(250),
            reconnect_retries: 1,
            retry_backoff: Duration::from_millis(50),
        }
    }
}

impl ConnectionOptions {
    /// The longest one decision waits for Redis before the failure policy answers
    /// (default 5 ms).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// The longest a (re)connection attempt may take (default 100 ms).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The connection's own response timeout (default 250 ms); a bound on how long a
    /// background lease refill may wait.
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// How many times one reconnection retries (default 1, with a short back-off). Later
    /// calls start a new reconnection, so Redis coming back is always noticed.
    pub fn reconnect_retries(mut self, n: usize) -> Self {
        self.reconnect_retries = n;
        self
    }

    /// After a failed call, how long Redis is left alone (default 50 ms): decisions in that
    /// time go straight to the failure policy.
    pub fn retry_backoff(mut self, d: Duration) -> Self {
        self.retry_backoff = d;
        self
    }

    /// The per-call timeout.
    pub fn get_call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Checks every field (all timeouts must be non-zero).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, d) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// A cheap-to-clone handle to Redis (single node or cluster), shared by stores and
/// limiters. It reconnects by itself: a failed call triggers a background reconnection and
/// later calls use the new connection.
#[derive(Clone)]
pub struct RedisConnection {
    backend: Backend,
    pub(crate) options: ConnectionOptions,
}

#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.backend {
            Backend::Single(_) => "single",
            #[cfg(feature = "cluster")]
            Backend::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisConnection")
            .field("kind", &kind)
            .field("options", &self.options)
            .finish()
    }
}

impl RedisConnection {
    /// A connection to one Redis server at `url` (`redis://host:port/db`).
    ///
    /// Does no I/O: the connection is made on first use, so a service can start while
    /// Redis is down (its decisions follow the failure policy until Redis answers). Must be
    /// called inside a tokio runtime (else a [`ConfigError`] for `runtime`, not a panic).
    pub fn open(url: &str, options: ConnectionOptions) -> Result<Self, ConfigError> {
        options.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "runtime",
                "RedisConnection::open must be called inside a tokio runtime",
            ));
        }
        let client =
            redis::Client::open(url).map_err(|e| ConfigError::new("url", e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_min_delay(Duration::from_millis(5))
            .set_max_delay(Duration::from_millis(50));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ConfigError::new("url", e.to_string()))?;
        Ok(Self {
            backend: Backend::Single(manager),
            options,
        })
    }

    /// A connection to a Redis Cluster, discovered from `urls` (any subset of the nodes).
    ///
    /// Unlike [`open`](Self::open) this connects now (to read the slot map). Errors:
    /// [`RedisStoreError::Config`](crate::RedisStoreError::Config) for bad options or URLs,
    /// [`RedisStoreError::Unavailable`](crate::RedisStoreError::Unavailable) when no node
    /// answers.
    #[cfg(feature = "cluster")]
    pub async fn open_cluster(
        urls: &[String],
        options: ConnectionOptions,
    ) -> Result<Self, crate::RedisStoreError> {
        options.validate()?;
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(u32::try_from(options.reconnect_retries).unwrap_or(u32::MAX))
            .build()
            .map_err(|e| ConfigError::new("urls", e.to_string()))?;
        let conn = client.get_async_connection().await.map_err(|e| {
            crate::RedisStoreError::Unavailable {
                cause: crate::BackendError::Redis(e),
                retry_after: options.retry_backoff,
            }
        })?;
        Ok(Self {
            backend: Backend::Cluster(conn),
            options,
        })
    }

    /// Whether this is a single-node connection (not a cluster).
    pub(crate) fn is_single(&self) -> bool {
        matches!(self.backend, Backend::Single(_))
    }

    /// The options this connection was opened with.
    pub fn options(&self) -> &ConnectionOptions {
        &self.options
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.backend {
            Backend::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Backend::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.backend {
            Backend::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Backend::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.backend {
            Backend::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(c) => c.get_db(),
        }
    }
}
