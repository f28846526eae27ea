//! Configuration: the TOML file format, the same structure built in code, and validation
//! errors that point at `file:line:column` and name the field.
//!
//! Every table rejects unknown keys (`deny_unknown_fields`), durations are strings with a
//! unit (`"250ms"`), and semantic checks (for example `min_limit > max_limit`) run when the
//! route table is built, so an error from [`Config::from_toml`] is the only way a bad file
//! is reported: it never panics and never half-applies.
//!
//! ```
//! use tailwater_proxy::config::Config;
//! let cfg = Config::from_toml(r#"
//! [[route]]
//! name = "api"
//! path_prefix = "/api"
//! upstream = "http://127.0.0.1:9000"
//! [route.limit]
//! algorithm = "aimd"
//! min_limit = 4
//! max_limit = 64
//! "#, None).unwrap();
//! assert_eq!(cfg.routes[0].name, "api");
//!
//! let err = Config::from_toml("[[route]]\nupstream = \"http://x:1\"\n[route.limit]\nalgorithm = \"gradient\"\n", None)
//!     .unwrap_err();
//! assert_eq!(err.line(), Some(4));
//! assert!(err.message().contains("gradient2-corrected-fast"));
//!
//! let err = Config::from_toml("[[route]]\nupstream = \"http://x:1\"\n[route.limit]\nalgorithm = \"vegas\"\nmin_limit = 9\nmax_limit = 2\n", None)
//!     .unwrap_err();
//! assert_eq!(err.line(), Some(5));
//! assert_eq!(err.field(), "route[0].limit.min_limit");
//!
//! // Each algorithm takes its own parameters only: `static` has no floor.
//! let err = Config::from_toml("[[route]]\nupstream = \"http://x:1\"\n[route.limit]\nalgorithm = \"static\"\nlimit = 8\nmin_limit = 2\n", None)
//!     .unwrap_err();
//! assert_eq!((err.field(), err.line()), ("route[0].limit.min_limit", Some(6)));
//! ```

mod access_log;
mod admission;
mod balance;
pub(crate) mod bounds;
mod cell;
pub(crate) mod duration;
mod error;
mod limit;
mod rls;
pub(crate) mod tls;
pub(crate) mod upgrade;

pub use access_log::{AccessLogConfig, AccessLogFormat};
pub use admission::{
    CriticalityConfig, QueueSettings, RateKey, RateLimitConfig, RateStoreKind, TierSettings,
};
pub use balance::{BalanceSettings, Upstreams};
pub use cell::{CellConfig, CellKey};
pub use error::ConfigError;
pub use limit::{
    AimdLimit, CorrectedGradient2Limit, EnvoyLimit, Gradient2Limit, HeadroomLimit, LimitConfig,
    StaticLimit, VegasLimit,
};
pub use rls::{RlsAction, RlsConfig, RlsDescriptor, RlsFailurePolicy};

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

/// The whole proxy configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The proxy listener and its own protection.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin listener (metrics, status, health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Defaults for talking to upstreams.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Routes, matched by host and the longest path prefix.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// The access log (off when absent).
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Cells of routes (`[[cell]]`, see [`CellConfig`]): a route's requests spread by a
    /// stable key over cells with their own upstreams and admission.
    #[serde(default, rename = "cell")]
    pub cells: Vec<CellConfig>,
}

/// The proxy listener: connection cap, header and body limits, HTTP/2 settings, drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (the CLI's `--listen` overrides it).
    pub listen: Option<SocketAddr>,
    /// Most client connections held at once. When all are taken, a new client makes the
    /// proxy close its oldest idle keep-alive connection (as nginx reclaims idle
    /// connections; on either engine, a connection with a request in flight never); if
    /// none is idle, the new connection waits for a slot (each worker holds at most one
    /// accepted connection waiting, the rest wait in the kernel's accept backlog).
    pub max_connections: usize,
    /// HTTP/1 read buffer, which bounds the request head (minimum 8192). Larger heads are
    /// answered with 431.
    pub max_header_bytes: usize,
    /// Most request headers; more is 431.
    pub max_headers: usize,
    /// Request bodies above this are answered with 413 (none by default).
    pub max_body_bytes: Option<u64>,
    /// Time allowed to receive a complete request head (slowloris protection).
    #[serde(deserialize_with = "duration::de")]
    pub header_read_timeout: Duration,
    /// Time allowed to receive a whole request body, counted from the end of its head: a
    /// total deadline, not an idle timer (nginx's `client_body_timeout` is reset by every
    /// read, so a client sending a byte every few seconds holds on for ever). A body not
    /// complete in time is answered 408 and counted as the client's fault, never the
    /// upstream's. Default 30 s.
    #[serde(deserialize_with = "duration::de")]
    pub body_timeout: Duration,
    /// Request bodies with a declared `Content-Length` up to this many bytes are read
    /// whole before admission (as nginx buffers request bodies), so a client trickling a
    /// small body holds a connection but no permit. Larger and chunked bodies stream to
    /// the upstream after admission; `body_timeout` bounds how long they hold the permit.
    /// Default 16 KiB; 0 streams every body.
    pub body_buffer_bytes: usize,
    /// How long an HTTP/1.1 connection may sit idle between requests before the proxy
    /// closes it (nginx's `keepalive_timeout`; keep it longer than the idle timeout of any
    /// load balancer in front, or it will race the proxy's close). HTTP/1 connections that
    /// hyper serves (HTTP/1.0, or all with `lean_http1 = false`) close after
    /// `header_read_timeout` of idleness instead: hyper's header timer also runs between
    /// requests.
    #[serde(deserialize_with = "duration::de")]
    pub keep_alive_timeout: Duration,
    /// How long writing a response to a client may make no progress before the connection
    /// is closed (nginx's `send_timeout`): a client that stops reading cannot hold its
    /// connection and its permit indefinitely.
    #[serde(deserialize_with = "duration::de")]
    pub send_timeout: Duration,
    /// How long a drain waits for in-flight requests before closing connections.
    #[serde(deserialize_with = "duration::de")]
    pub drain_timeout: Duration,
    /// HTTP/2 flow control and stream limits.
    pub http2: Http2Config,
    /// Worker threads of `tailwater proxy`, each with its own listener (`SO_REUSEPORT`),
    /// event loop and upstream connections, as nginx's `worker_processes`. Default: the
    /// number of CPUs the process may use.
    pub workers: Option<NonZeroUsize>,
    /// Serve plain HTTP/1.1 requests bound for HTTP/1.1 upstreams on tailwater's lean
    /// forwarding path (heads parsed with `httparse`, the upstream socket driven by the
    /// request itself) instead of through hyper's server and client. Anything else on the
    /// connection (h2c, `Upgrade`, `Expect`, HTTP/1.0, absolute-form targets, h2c routes) is
    /// handed to hyper either way. Default: true.
    pub lean_http1: bool,
    /// Let `tailwater proxy` share its address with another process that listens on it
    /// with `SO_REUSEPORT` (the kernel spreads connections over both, and each admits
    /// against its own limits): for a deliberate hand-over only. Default false: a second
    /// proxy on the same address refuses to start.
    pub reuse_port_shared: bool,
    /// Serve TLS on the listener (`[server.tls]`; see [`crate::tls::TlsSettings`]). TLS
    /// connections are served by the hyper engine; certificates reload with the config.
    pub tls: Option<tls::TlsSettings>,
    /// Most `Upgrade` (WebSocket) tunnels open at once, across routes (see
    /// [`crate::tunnel`]); an upgrade request beyond them is answered 503. Default 1024; 0
    /// refuses every upgrade.
    pub max_tunnels: usize,
}

impl ServerConfig {
    /// The worker thread count: [`workers`](Self::workers), else the available parallelism
    /// (1 if unknown).
    pub fn worker_threads(&self) -> NonZeroUsize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: None,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_buffer_bytes: 16 * 1024,
            keep_alive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            http2: Http2Config::default(),
            workers: None,
            lean_http1: true,
            reuse_port_shared: false,
            tls: None,
            max_tunnels: 1024,
        }
    }
}

/// HTTP/2 settings (used for clients connecting with h2c and for h2c upstreams).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to clients.
    pub max_concurrent_streams: u32,
    /// Initial stream-level flow-control window, bytes.
    pub initial_stream_window: u32,
    /// Initial connection-level flow-control window, bytes.
    pub initial_connection_window: u32,
    /// BDP-based adaptive windows (overrides the two windows above).
    pub adaptive_window: bool,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, bytes.
    pub max_header_list_size: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            initial_stream_window: 1024 * 1024,
            initial_connection_window: 4 * 1024 * 1024,
            adaptive_window: false,
            max_header_list_size: 16 * 1024,
        }
    }
}

/// The admin listener. It has limits of its own, so that it can never take the file
/// descriptors the main listener needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (default 127.0.0.1:9901; the CLI's `--admin` wins).
    pub listen: SocketAddr,
    /// Most admin connections held at once (default 64); further ones wait in the
    /// kernel's accept backlog.
    pub max_connections: usize,
    /// Time allowed to receive a request head, and longest idleness between requests on
    /// an admin connection (default 10 s).
    #[serde(deserialize_with = "duration::de")]
    pub header_read_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Which HTTP version to speak to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// Defaults for every upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// TCP connect timeout (→ 502 on expiry).
    #[serde(deserialize_with = "duration::de")]
    pub connect_timeout: Duration,
    /// Time until the upstream's response head arrives (→ 504 on expiry). Bodies stream
    /// afterwards without a total deadline.
    #[serde(deserialize_with = "duration::de")]
    pub request_timeout: Duration,
    /// A streaming response body that sends nothing for this long is cut, releasing its
    /// permit as a drop (every wait has a deadline, including a stuck stream's).
    #[serde(deserialize_with = "duration::de")]
    pub body_idle_timeout: Duration,
    /// Idle keep-alive connections kept per upstream and per worker thread (as nginx's
    /// `keepalive`, which is per worker process). In-use connections are bounded by the
    /// routes' admission limits (one request, at most one connection).
    pub pool_max_idle_per_host: usize,
    /// Idle connections are closed after this.
    #[serde(deserialize_with = "duration::de")]
    pub pool_idle_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 256,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// One route: what it matches, where it goes, and how admission works for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics labels and `/status`.
    #[serde(default = "default_route_name")]
    pub name: String,
    /// Host to match (case-insensitive, port ignored); none matches any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix to match (plain string prefix of the request's normalised path, which is
    /// also the path forwarded: see the proxy's `target` rules); the longest match wins.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// `http://host:port` of the upstream, or an array of them (at most 64) to balance
    /// over (`balance`); the request's path and query are kept.
    pub upstream: Upstreams,
    /// How requests are spread over several upstreams (ignored for one).
    #[serde(default)]
    pub balance: BalanceSettings,
    /// A request header carrying the client's time budget in whole milliseconds (for
    /// example `x-request-timeout`), read besides `grpc-timeout` (always read); none by
    /// default. A spent budget is refused at once (504, or gRPC `DEADLINE_EXCEEDED`), the
    /// queue wait and the upstream timeout are cut to what remains, and the remaining
    /// budget is forwarded in place of the one received.
    #[serde(default, deserialize_with = "de_header_opt")]
    pub deadline_header: Option<http::HeaderName>,
    /// HTTP version spoken to the upstream.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Whether to forward the client's `Host` (true) or use the upstream's authority.
    #[serde(default = "yes")]
    pub preserve_host: bool,
    /// The adaptive concurrency limit.
    #[serde(default)]
    pub limit: LimitConfig,
    /// The bounded wait queue used when the limit is reached (default: CoDel, 128 waiters,
    /// 100 ms at most). `discipline = "none"` rejects at once instead.
    #[serde(default = "default_queue")]
    pub queue: Option<QueueSettings>,
    /// Criticality tiers (utilisation thresholds); the tier comes from `x-criticality`.
    #[serde(default)]
    pub tiers: Option<TierSettings>,
    /// The highest tier a client may claim, and who may claim more
    /// (`[route.criticality]`, see [`CriticalityConfig`]); none by default.
    #[serde(default)]
    pub criticality: Option<CriticalityConfig>,
    /// Rate limits (in this process or in Redis), all of which must admit a request.
    #[serde(default)]
    pub rate_limit: Vec<RateLimitConfig>,
    /// A rate limit service asked about each request (`[route.rls]`, see [`RlsConfig`]).
    #[serde(default)]
    pub rls: Option<RlsConfig>,
    /// The `Retry-After` hint sent with 503s.
    #[serde(default = "default_retry_after", deserialize_with = "duration::de")]
    pub retry_after: Duration,
    /// The availability objective, percent in (0, 100), of the route's in-process burn
    /// rates (`tailwater_slo_burn_rate`, "budget left" in `/status`); default 99.9.
    #[serde(default = "default_slo_objective")]
    pub slo_objective: f64,
    /// Tunnel HTTP/1.1 `Upgrade` requests (WebSocket) of this route (`[route.upgrade]`;
    /// see [`crate::tunnel::UpgradeSettings`]). None by default: `Upgrade` is removed.
    #[serde(default)]
    pub upgrade: Option<upgrade::UpgradeSettings>,
    /// How `https://` upstreams are verified and authenticated to (`[route.tls]`; see
    /// [`crate::upstream_tls::UpstreamTlsSettings`]). Without it, an `https://` upstream is
    /// verified against the system's roots.
    #[serde(default)]
    pub tls: Option<tls::UpstreamTlsSettings>,
}

/// The availability objective of a route that sets none, percent (`slo_objective`).
pub(crate) const DEFAULT_OBJECTIVE: f64 = 99.9;

fn default_slo_objective() -> f64 {
    DEFAULT_OBJECTIVE
}

fn default_route_name() -> String {
    "default".to_owned()
}
fn default_prefix() -> String {
    "/".to_owned()
}
fn yes() -> bool {
    true
}
fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}
fn default_queue() -> Option<QueueSettings> {
    Some(QueueSettings::default())
}

/// Parses one upstream URI: `http://host:port`, nothing else.
pub(crate) fn parse_upstream(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("invalid upstream URI `{s}`: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(format!(
            "upstream `{s}` must be http://host:port or https://host:port"
        ));
    }
    Ok(uri)
}

fn de_header_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<http::HeaderName>, D::Error> {
    let s = String::deserialize(d)?;
    http::HeaderName::from_bytes(s.trim().as_bytes())
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("invalid header name `{s}`")))
}

impl RouteConfig {
    /// A catch-all route to `upstream` with the adaptive defaults.
    pub fn new(name: impl Into<String>, upstream: Uri) -> Self {
        Self {
            name: name.into(),
            host: None,
            path_prefix: default_prefix(),
            upstream: Upstreams::from(upstream),
            balance: BalanceSettings::default(),
            deadline_header: None,
            protocol: UpstreamProtocol::Http1,
            preserve_host: true,
            limit: LimitConfig::default(),
            queue: default_queue(),
            tiers: None,
            criticality: None,
            rate_limit: Vec::new(),
            rls: None,
            retry_after: default_retry_after(),
            slo_objective: default_slo_objective(),
            upgrade: None,
            tls: None,
        }
    }
}

impl Config {
    /// One catch-all route to `upstream` with the adaptive defaults.
    pub fn simple(upstream: Uri) -> Self {
        Self {
            server: ServerConfig::default(),
            admin: AdminConfig::default(),
            upstream: UpstreamConfig::default(),
            routes: vec![RouteConfig::new("default", upstream)],
            access_log: None,
            cells: Vec::new(),
        }
    }

    /// Parses and validates TOML. `path` is only used in error messages.
    pub fn from_toml(src: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(src).map_err(|e| ConfigError::from_toml(&e, src, path))?;
        cfg.validate().map_err(|e| e.locate(src, path))?;
        Ok(cfg)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        Self::from_toml(&src, Some(path))
    }

    /// The checks of [`validate`](Self::validate) that need nothing built: the access
    /// log's settings.
    pub(crate) fn check_access_log(&self) -> Result<(), ConfigError> {
        if let Some(log) = &self.access_log {
            let n = log.buffer_lines;
            if n == 0 || n > access_log::MAX_BUFFER_LINES {
                return Err(ConfigError::new(
                    "access_log.buffer_lines",
                    format_args!("must be 1 to {}, not {n}", access_log::MAX_BUFFER_LINES),
                ));
            }
            let b = log.buffer_bytes;
            if !access_log::BUFFER_BYTES.contains(&b) {
                return Err(ConfigError::new(
                    "access_log.buffer_bytes",
                    format_args!(
                        "must be {} to {}, not {b}",
                        access_log::BUFFER_BYTES.start(),
                        access_log::BUFFER_BYTES.end()
                    ),
                ));
            }
            if log.path.is_empty() {
                return Err(ConfigError::new(
                    "access_log.path",
                    "must be a file path or \"-\" (stdout)",
                ));
            }
        }
        Ok(())
    }
}
