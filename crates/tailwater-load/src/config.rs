//! Run configuration.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use tailwater_core::ConfigError;

use crate::schedule::{Schedule, Spacing};

/// Default number of connections for HTTP/1.1 (one request in flight per connection).
pub const DEFAULT_CONNECTIONS_HTTP1: usize = 100;
/// Default number of connections for h2c (requests are multiplexed).
pub const DEFAULT_CONNECTIONS_HTTP2: usize = 4;
/// Default bound on outstanding requests (waiting for a connection or in flight).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
/// Default request timeout, counted from the intended send time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Config::pace_quantum`]: the pacer wakes at most once per 250 µs and releases
/// every request due by then, so a request is released at most 250 µs (plus the OS's wake-up
/// slack) after its intended time, and a run at 20 000/s costs 4 000 wake-ups a second
/// instead of 20 000.
pub const DEFAULT_PACE_QUANTUM: Duration = Duration::from_micros(250);
/// The largest [`Config::pace_quantum`] accepted: beyond it the release lag would dominate
/// the latencies being measured.
pub const MAX_PACE_QUANTUM: Duration = Duration::from_millis(10);

/// The HTTP target: an `http://` or `https://` URL, resolved once at the start of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub(crate) uri: Uri,
    pub(crate) authority: String,
    pub(crate) host: String,
    pub(crate) path: String,
    /// `https://`: connections run TLS (see [`crate::TlsOptions`]).
    pub(crate) tls: bool,
}

impl Target {
    /// Parses an `http://` or `https://host[:port]/path` URL. Errors name `url`.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ConfigError::new("url", format!("`{url}` is not a URL: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "url",
                    format!("scheme `{other}` is not supported (use http:// or https://)"),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "url",
                    format!("`{url}` has no http:// or https:// scheme"),
                ));
            }
        };
        let auth = uri
            .authority()
            .ok_or_else(|| ConfigError::new("url", format!("`{url}` has no host")))?;
        let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = format!("{}:{port}", auth.host());
        let host = auth.host().to_string();
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        Ok(Self {
            uri,
            authority,
            host,
            path,
            tls,
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host, without the port (the TLS server name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the target is `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uri)
    }
}

/// A header whose value is drawn per request from a weighted mix, e.g. an `x-criticality`
/// mix. Each value is a *tag*: the report is also broken down per value.
///
/// ```
/// use tailwater_load::HeaderMix;
/// let mix = HeaderMix::parse("x-criticality: critical_plus=10,critical=40,sheddable=50").unwrap();
/// assert_eq!(mix.values().len(), 3);
/// assert_eq!(mix.values()[2], "sheddable");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMix {
    pub(crate) name: HeaderName,
    pub(crate) values: Vec<HeaderValue>,
    pub(crate) labels: Vec<String>,
    /// Cumulative weights normalised to 1.
    pub(crate) cumulative: Vec<f64>,
}

impl HeaderMix {
    /// A mix from `(value, weight)` pairs; weights are relative. Errors name `header_mix`.
    pub fn new(name: &str, values: &[(&str, f64)]) -> Result<Self, ConfigError> {
        let field = "header_mix";
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| ConfigError::new(field, format!("`{name}` is not a header name")))?;
        if values.is_empty() || values.len() > 64 {
            return Err(ConfigError::new(field, "needs 1 to 64 values"));
        }
        let total: f64 = values.iter().map(|(_, w)| *w).sum();
        if total.is_nan() || total <= 0.0 {
            return Err(ConfigError::new(field, "weights must sum to more than 0"));
        }
        let mut acc = 0.0;
        let mut mix = Self {
            name,
            values: Vec::new(),
            labels: Vec::new(),
            cumulative: Vec::new(),
        };
        for (v, w) in values {
            if !w.is_finite() || *w < 0.0 {
                return Err(ConfigError::new(
                    field,
                    format!("weight of `{v}` must be ≥ 0"),
                ));
            }
            let value = HeaderValue::try_from(v.trim())
                .map_err(|_| ConfigError::new(field, format!("`{v}` is not a header value")))?;
            acc += w / total;
            mix.values.push(value);
            mix.labels.push(v.trim().to_string());
            mix.cumulative.push(acc);
        }
        if let Some(last) = mix.cumulative.last_mut() {
            *last = 1.0;
        }
        Ok(mix)
    }

    /// Parses `NAME: value=weight,value=weight,...` (a missing weight counts as 1).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let (name, rest) = text.split_once(':').ok_or_else(|| {
            ConfigError::new(
                "header_mix",
                format!("`{text}` is not `NAME: value=weight,...`"),
            )
        })?;
        let mut pairs = Vec::new();
        for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (v, w) = match item.split_once('=') {
                Some((v, w)) => {
                    let w: f64 = w.trim().parse().map_err(|_| {
                        ConfigError::new("header_mix", format!("`{item}`: bad weight"))
                    })?;
                    (v.trim(), w)
                }
                None => (item, 1.0),
            };
            pairs.push((v, w));
        }
        Self::new(name, &pairs)
    }

    /// The header name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The values (tags), in order.
    pub fn values(&self) -> &[String] {
        &self.labels
    }

    /// Picks the value index for a uniform draw `u` in `[0, 1)`.
    pub(crate) fn pick(&self, u: f64) -> usize {
        self.cumulative
            .iter()
            .position(|c| u < *c)
            .unwrap_or(self.cumulative.len() - 1)
    }
}

/// Live progress, delivered once per interval to [`Config::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Total schedule duration.
    pub total: Duration,
    /// Target rate at this moment (requests/s).
    pub target_rate: f64,
    /// Responses per second over the last interval.
    pub achieved_rate: f64,
    /// Corrected p99 so far, µs.
    pub p99_us: u64,
    /// Failures (no response) so far.
    pub errors: u64,
    /// Responses so far.
    pub responses: u64,
    /// Requests currently outstanding.
    pub in_flight: usize,
    /// The schedule has ended and the run is waiting for outstanding requests (at most
    /// [`Config::drain`]); `target_rate` is then 0 because nothing new is sent.
    pub draining: bool,
}

/// Callback for live progress.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Everything a run needs. Build with [`Config::new`], then adjust the public fields.
///
/// ```
/// use std::time::Duration;
/// use tailwater_load::{Config, Schedule};
/// let schedule = Schedule::constant(100.0, Duration::from_secs(1)).unwrap();
/// let mut config = Config::new("http://127.0.0.1:9000/", schedule).unwrap();
/// config.timeout = Duration::from_secs(2);
/// ```
#[derive(Clone)]
pub struct Config {
    /// Where to send requests.
    pub target: Target,
    /// The open-loop schedule.
    pub schedule: Schedule,
    /// Uniform or Poisson spacing.
    pub spacing: Spacing,
    /// The pacer's release quantum: it wakes at most once per quantum and releases every
    /// request due by then together. A request is never released before its intended time
    /// and at most one quantum (plus the OS's wake-up slack) after it; its latency is always
    /// measured from the intended time, so batching costs send-lag precision, never
    /// coordinated-omission correctness. Zero releases each request on its own at its time
    /// (one wake-up per request). At most [`MAX_PACE_QUANTUM`].
    pub pace_quantum: Duration,
    /// Seed for Poisson spacing and the header mix.
    pub seed: u64,
    /// Request method.
    pub method: Method,
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Request body (empty by default).
    pub body: Bytes,
    /// Use HTTP/2 instead of HTTP/1.1: h2c (prior knowledge) for `http://`, h2 negotiated by
    /// ALPN for `https://`.
    pub http2: bool,
    /// How `https://` targets are verified.
    pub tls: crate::TlsOptions,
    /// Connections to open (HTTP/1.1: also the bound on requests on the wire).
    pub connections: NonZeroUsize,
    /// Bound on outstanding requests; when reached, the scheduler waits and the requests it
    /// could not send on time are counted (`delayed_by_cap`), never dropped silently.
    pub max_in_flight: NonZeroUsize,
    /// Per-request timeout, counted from the intended send time.
    pub timeout: Duration,
    /// How long to wait, after the schedule ends, for requests still outstanding; those
    /// still outstanding then are reported as `abandoned`. `None` waits up to `timeout`.
    pub drain: Option<Duration>,
    /// Send at most this many requests (the schedule ends early when they are sent).
    pub max_requests: Option<u64>,
    /// Reporting interval (time series, HdrHistogram log, progress).
    pub interval: Duration,
    /// Optional per-request header drawn from a mix; the report is broken down by its values.
    pub header_mix: Option<HeaderMix>,
    /// A unary gRPC run (needs `http2`): each request is a POST of the call's message, and
    /// its `grpc-status` is counted (see [`crate::GrpcCall`]). `None`: plain HTTP.
    pub grpc: Option<crate::grpc::GrpcCall>,
    /// Write an HdrHistogram interval log (V2, DEFLATE, base64) to this file.
    pub hdr_log: Option<PathBuf>,
    /// Called once per interval with live progress.
    pub on_progress: Option<ProgressFn>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("target", &self.target)
            .field("schedule", &self.schedule)
            .field("spacing", &self.spacing)
            .field("pace_quantum", &self.pace_quantum)
            .field("seed", &self.seed)
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("http2", &self.http2)
            .field("tls", &self.tls)
            .field("connections", &self.connections)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout", &self.timeout)
            .field("drain", &self.drain)
            .field("max_requests", &self.max_requests)
            .field("interval", &self.interval)
            .field("header_mix", &self.header_mix)
            .field("grpc", &self.grpc)
            .field("hdr_log", &self.hdr_log)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with safe defaults: GET, HTTP/1.1, 100 connections, at most 10 000
    /// outstanding requests, 10 s timeout, 1 s interval, uniform spacing released in 250 µs
    /// quanta, seed 1.
    pub fn new(url: &str, schedule: Schedule) -> Result<Self, ConfigError> {
        Ok(Self {
            target: Target::parse(url)?,
            schedule,
            spacing: Spacing::Uniform,
            pace_quantum: DEFAULT_PACE_QUANTUM,
            seed: 1,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            http2: false,
            tls: crate::TlsOptions::default(),
            connections: NonZeroUsize::new(DEFAULT_CONNECTIONS_HTTP1).unwrap_or(NonZeroUsize::MIN),
            max_in_flight: NonZeroUsize::new(DEFAULT_MAX_IN_FLIGHT).unwrap_or(NonZeroUsize::MIN),
            timeout: DEFAULT_TIMEOUT,
            drain: None,
            max_requests: None,
            interval: Duration::from_secs(1),
            header_mix: None,
            grpc: None,
            hdr_log: None,
            on_progress: None,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than 0"));
        }
        if self.interval < Duration::from_millis(10) {
            return Err(ConfigError::new("interval", "must be at least 10ms"));
        }
        if self.grpc.is_some() && !self.http2 {
            return Err(ConfigError::new("grpc", "gRPC needs HTTP/2 (set http2)"));
        }
        if self.pace_quantum > MAX_PACE_QUANTUM {
            return Err(ConfigError::new(
                "pace_quantum",
                format!(
                    "{:?} is above the maximum {MAX_PACE_QUANTUM:?}",
                    self.pace_quantum
                ),
            ));
        }
        if self.max_requests == Some(0) {
            return Err(ConfigError::new("requests", "must be at least 1"));
        }
        Ok(())
    }
}
