//! Scenarios: the workload, the server and the clients of one simulation, in code or TOML.
//!
//! A scenario file looks like this (every field but `name` and one `[[phase]]` has a default;
//! unknown fields are errors, reported with file and line):
//!
//! ```toml
//! name = "my-spike"
//! description = "0.5x, then 10x for a second"
//! seed = 7
//! step_at = "3s"            # optional: measure convergence of the limit after this time
//!
//! [server]
//! model = "workers"         # or "processor_sharing"
//! workers = 48              # workers, or cores for processor sharing
//! slowdown = 0.0            # processor sharing: efficiency loss per extra in-flight/core
//! service = { dist = "lognormal", mean = "30ms", cv = 0.5 }
//!
//! [arrival]
//! process = "poisson"       # constant, gamma, lognormal (with cv), on_off (with on, off)
//!
//! [client]
//! timeout = "1s"
//! retry = "none"            # naive, budgeted, budget
//! attempts = 3
//! budget = 0.1
//! backoff = "10ms"
//! deadline = "0s"           # the whole request's deadline (0: none)
//! pushback = false          # budget clients honour Retry-After against the deadline
//! throttle_k = 0.0          # SRE adaptive throttle in front (0: none; the book's K is 2)
//!
//! [mix]                     # criticality shares (normalised)
//! critical = 1.0
//!
//! [[phase]]                 # load in multiples of capacity (or of arrival.rate)
//! duration = "3s"
//! load = 0.5
//! [[phase]]
//! duration = "1s"
//! load = 10.0
//! [[phase]]
//! duration = "4s"
//! load = 0.5
//! ramp_to = 0.5             # optional: linear ramp to this load by the end of the phase
//!
//! [[capacity]]              # capacity changes: service speed × factor from `at` on
//! at = "3s"
//! factor = 0.25
//! workers = 24              # optional: the workers (cores) from `at` on
//! ```
//!
//! `replicas = 4` (top level) puts four independent limiters, each its own instance of the
//! policy, in front of the one server behind a round-robin balancer.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::dist::Shape;
use crate::error::{SimError, check};

/// Parses a duration with the project's one parser ([`tailwater_core::duration::parse`]:
/// `10ms`, `1.5s`, `250us`, `2m`, `1h`), the error as text for [`SimError`] messages.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    tailwater_core::duration::parse(s).map_err(String::from)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_secs_f64() * 1e3))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// How the server runs admitted requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ServerModel {
    /// `workers` workers behind an unbounded FIFO (the queue admission control must bound).
    #[default]
    Workers,
    /// Processor sharing on `workers` cores: every in-flight request progresses at
    /// `cores / n` of full speed, times an efficiency loss when `n` exceeds the cores.
    ProcessorSharing,
}

/// A service-time (or inter-arrival) distribution as written in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `constant`, `exponential`, `gamma`, `lognormal` or `bimodal`.
    #[serde(default = "default_dist")]
    pub dist: String,
    /// The mean.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub mean: Duration,
    /// Coefficient of variation (gamma, lognormal, the body of bimodal).
    #[serde(default)]
    pub cv: Option<f64>,
    /// Bimodal: the fraction of slow requests.
    #[serde(default)]
    pub slow_fraction: Option<f64>,
    /// Bimodal: how many times slower they are.
    #[serde(default)]
    pub slow_factor: Option<f64>,
}

fn default_dist() -> String {
    "lognormal".into()
}

impl ServiceConfig {
    /// The shape, validated; `field` prefixes error fields.
    pub fn shape(&self, field: &str) -> Result<Shape, SimError> {
        let cv = |default: Option<f64>| -> Result<f64, SimError> {
            let cv = self.cv.or(default).ok_or_else(|| {
                SimError::invalid(
                    format!("{field}.cv"),
                    format!("required for `{}`", self.dist),
                )
            })?;
            check(&format!("{field}.cv"), cv, 0.0, 100.0)?;
            Ok(cv)
        };
        let shape = match self.dist.as_str() {
            "constant" => Shape::Constant,
            "exponential" => Shape::Exponential,
            "gamma" => Shape::Gamma { cv: cv(None)? },
            "lognormal" => Shape::Lognormal { cv: cv(None)? },
            "bimodal" => {
                let p = self.slow_fraction.unwrap_or(0.01);
                let k = self.slow_factor.unwrap_or(50.0);
                check(&format!("{field}.slow_fraction"), p, 0.0, 0.999)?;
                check(&format!("{field}.slow_factor"), k, 1.0, 1e6)?;
                Shape::Bimodal {
                    slow_fraction: p,
                    slow_factor: k,
                    cv: cv(Some(0.5))?,
                }
            }
            other => {
                return Err(SimError::invalid(
                    format!("{field}.dist"),
                    format!(
                        "unknown distribution `{other}` (constant, exponential, gamma, lognormal, bimodal)"
                    ),
                ));
            }
        };
        if self.mean.is_zero() {
            return Err(SimError::invalid(
                format!("{field}.mean"),
                "must be greater than zero",
            ));
        }
        Ok(shape)
    }
}

/// The server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Workers with a FIFO, or processor sharing.
    #[serde(default)]
    pub model: ServerModel,
    /// Workers (or cores).
    #[serde(default = "default_workers")]
    pub workers: i64,
    /// Processor sharing: with `n` in flight on `c` cores, each request runs at
    /// `min(1, c/n) / (1 + slowdown · max(0, n − c)/c)` of full speed.
    #[serde(default)]
    pub slowdown: f64,
    /// Service times.
    #[serde(default = "default_service")]
    pub service: ServiceConfig,
}

fn default_workers() -> i64 {
    48
}

fn default_service() -> ServiceConfig {
    ServiceConfig {
        dist: "lognormal".into(),
        mean: Duration::from_millis(30),
        cv: Some(0.5),
        slow_fraction: None,
        slow_factor: None,
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model: ServerModel::Workers,
            workers: default_workers(),
            slowdown: 0.0,
            service: default_service(),
        }
    }
}

/// The arrival process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalConfig {
    /// `poisson`, `constant`, `gamma`, `lognormal` or `on_off`.
    #[serde(default = "default_process")]
    pub process: String,
    /// CV of inter-arrival times (gamma, lognormal).
    #[serde(default)]
    pub cv: Option<f64>,
    /// On/off: length of a burst (Poisson at `(on+off)/on` times the rate).
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub on: Option<Duration>,
    /// On/off: length of a silence.
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub off: Option<Duration>,
    /// Base rate in requests/s that phase loads multiply (default: the server's capacity).
    #[serde(default)]
    pub rate: Option<f64>,
}

fn default_process() -> String {
    "poisson".into()
}

impl Default for ArrivalConfig {
    fn default() -> Self {
        Self {
            process: default_process(),
            cv: None,
            on: None,
            off: None,
            rate: None,
        }
    }
}

/// The retry behaviour of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// A failed request is not retried.
    #[default]
    None,
    /// Up to `attempts` attempts per request, whatever happens.
    Naive,
    /// Up to `attempts` attempts, and retries at most `budget` of requests (SRE book: 10 %),
    /// as a token bucket: each new request earns `budget` tokens (at most 10 held), a retry
    /// costs one.
    Budgeted,
    /// Up to `attempts` attempts through tailwater-core's outbound
    /// [`RetryBudget`](tailwater_core::outbound::RetryBudget): `budget` of requests (the
    /// core's default is Finagle's 0.2) + 10/s over 10 s, charged before the backoff; full-jitter
    /// backoff from `backoff` up to 10 × `backoff` (Envoy's ratio).
    Budget,
}

/// The clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client gives up after this long (the server may still work on it).
    #[serde(
        default = "default_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub timeout: Duration,
    /// Retries.
    #[serde(default)]
    pub retry: RetryMode,
    /// Attempts per request, first included.
    #[serde(default = "default_attempts")]
    pub attempts: i64,
    /// Budgeted retries (`budgeted` and `budget`): the largest fraction of requests retried.
    #[serde(default = "default_budget")]
    pub budget: f64,
    /// Delay before a retry.
    #[serde(
        default = "default_backoff",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub backoff: Duration,
    /// The whole request's deadline, every attempt included (gRPC's deadline; Envoy's route
    /// `timeout` over its `per_try_timeout`): an attempt's timeout is cut to what is left of
    /// it. Zero (the default) means none: each attempt has `timeout` whatever came before.
    #[serde(
        default,
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub deadline: Duration,
    /// `budget` clients honour the server's pushback (the limiter's `Retry-After`) as the
    /// floor of the delay, and give up when it would outlast the `deadline` (gRPC A6).
    #[serde(default)]
    pub pushback: bool,
    /// The SRE book's client-side adaptive throttle in front of the retries, with this K
    /// (tailwater-core's `AdaptiveThrottle`, per tier); 0 (the default) means none.
    #[serde(default)]
    pub throttle_k: f64,
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_attempts() -> i64 {
    3
}
fn default_budget() -> f64 {
    0.1
}
fn default_backoff() -> Duration {
    Duration::from_millis(10)
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            retry: RetryMode::None,
            attempts: default_attempts(),
            budget: default_budget(),
            backoff: default_backoff(),
            deadline: Duration::ZERO,
            pushback: false,
            throttle_k: 0.0,
        }
    }
}

/// The share of each criticality tier among requests (normalised to sum 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierMix {
    /// Share of `critical_plus`.
    #[serde(default)]
    pub critical_plus: f64,
    /// Share of `critical`.
    #[serde(default)]
    pub critical: f64,
    /// Share of `sheddable_plus`.
    #[serde(default)]
    pub sheddable_plus: f64,
    /// Share of `sheddable`.
    #[serde(default)]
    pub sheddable: f64,
}

impl Default for TierMix {
    fn default() -> Self {
        Self {
            critical_plus: 0.0,
            critical: 1.0,
            sheddable_plus: 0.0,
            sheddable: 0.0,
        }
    }
}

impl TierMix {
    /// Shares in tier order (`critical_plus` first).
    pub fn shares(&self) -> [f64; 4] {
        [
            self.critical_plus,
            self.critical,
            self.sheddable_plus,
            self.sheddable,
        ]
    }
}

/// One phase of the load schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// How long it lasts.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Load at the start, in multiples of capacity (or of `arrival.rate`).
    pub load: f64,
    /// Load at the end (linear ramp); default: constant.
    #[serde(default)]
    pub ramp_to: Option<f64>,
}

impl Phase {
    /// A constant load for `duration`.
    pub fn constant(duration: Duration, load: f64) -> Self {
        Self {
            duration,
            load,
            ramp_to: None,
        }
    }

    /// A linear ramp from `from` to `to` over `duration`.
    pub fn ramp(duration: Duration, from: f64, to: f64) -> Self {
        Self {
            duration,
            load: from,
            ramp_to: Some(to),
        }
    }
}

/// Load schedules as phase lists (in TOML, write the `[[phase]]`s directly).
///
/// ```
/// use std::time::Duration;
/// use tailwater_sim::scenario::schedule;
/// let s = Duration::from_secs(1);
/// assert_eq!(schedule::spike(0.5, 10.0, 3 * s, s, 4 * s).len(), 3);
/// assert_eq!(schedule::steps(s, &[0.5, 1.0, 1.5]).len(), 3);
/// ```
pub mod schedule {
    use std::time::Duration;

    use super::Phase;

    /// One constant load.
    pub fn constant(duration: Duration, load: f64) -> Vec<Phase> {
        vec![Phase::constant(duration, load)]
    }

    /// A linear ramp.
    pub fn ramp(duration: Duration, from: f64, to: f64) -> Vec<Phase> {
        vec![Phase::ramp(duration, from, to)]
    }

    /// Equal-length steps through `loads`.
    pub fn steps(each: Duration, loads: &[f64]) -> Vec<Phase> {
        loads.iter().map(|&l| Phase::constant(each, l)).collect()
    }

    /// `base` for `before`, `peak` for `during`, `base` for `after`.
    pub fn spike(
        base: f64,
        peak: f64,
        before: Duration,
        during: Duration,
        after: Duration,
    ) -> Vec<Phase> {
        vec![
            Phase::constant(before, base),
            Phase::constant(during, peak),
            Phase::constant(after, base),
        ]
    }
}

/// A capacity change: from `at` on, the service runs at `factor` × its normal speed, and
/// with `workers` workers (cores) if given (a new bottleneck: the limit must fall).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityChange {
    /// When.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub at: Duration,
    /// Speed factor (0.25 = four times slower).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// The number of workers (or cores) from `at` on; default: unchanged. Requests already
    /// running finish; fewer start.
    #[serde(default)]
    pub workers: Option<i64>,
}

fn default_factor() -> f64 {
    1.0
}

impl CapacityChange {
    /// The service runs `factor` × its normal speed from `at` on.
    pub fn speed(at: Duration, factor: f64) -> Self {
        Self {
            at,
            factor,
            workers: None,
        }
    }
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The seed of every random stream.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Time-series resolution.
    #[serde(
        default = "default_sample",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub sample_interval: Duration,
    /// Convergence of the limit is measured after this time (a load step).
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub step_at: Option<Duration>,
    /// The server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Arrivals.
    #[serde(default)]
    pub arrival: ArrivalConfig,
    /// Clients.
    #[serde(default)]
    pub client: ClientConfig,
    /// Criticality mix.
    #[serde(default)]
    pub mix: TierMix,
    /// The load schedule.
    #[serde(default)]
    pub phase: Vec<Phase>,
    /// Capacity changes.
    #[serde(default)]
    pub capacity: Vec<CapacityChange>,
    /// Policies to compare (default: the standard lineup).
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Independent limiters (proxy replicas), each with its own instance of the policy, in
    /// front of the one server behind a round-robin balancer (default 1). The reported limit,
    /// in-flight and queue are the sums over replicas.
    #[serde(default = "default_replicas")]
    pub replicas: i64,
}

fn default_replicas() -> i64 {
    1
}

fn default_seed() -> u64 {
    1
}
fn default_sample() -> Duration {
    Duration::from_millis(10)
}

impl Scenario {
    /// A scenario with the defaults (48 workers, lognormal 30 ms CV 0.5, Poisson, 1 s client
    /// timeout, no retries) and the given phases.
    pub fn new(name: &str, description: &str, phases: Vec<Phase>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            seed: default_seed(),
            sample_interval: default_sample(),
            step_at: None,
            server: ServerConfig::default(),
            arrival: ArrivalConfig::default(),
            client: ClientConfig::default(),
            mix: TierMix::default(),
            phase: phases,
            capacity: Vec::new(),
            policies: None,
            replicas: default_replicas(),
        }
    }

    /// Total simulated time.
    pub fn duration(&self) -> Duration {
        self.phase.iter().map(|p| p.duration).sum()
    }

    /// Requests per second the server completes at full speed (workers / mean service).
    pub fn capacity_rps(&self) -> f64 {
        self.server.workers.max(0) as f64 / self.server.service.mean.as_secs_f64()
    }

    /// Parses a TOML scenario; errors carry `path`, line and column.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, SimError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
            let message = e.message().to_string();
            let field = field_in_message(&message);
            SimError::File {
                path: path.to_path_buf(),
                line,
                column,
                field,
                message,
            }
        })?;
        scenario.validate().map_err(|e| match e {
            SimError::Invalid { field, message } => {
                let (line, column) = locate(text, &field).unwrap_or((1, 1));
                SimError::File {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: format!("invalid `{field}`: {message}"),
                    field: Some(field),
                }
            }
            other => other,
        })?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text, path)
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.name.trim().is_empty() {
            return Err(SimError::invalid("name", "must not be empty"));
        }
        if self.server.workers < 1 || self.server.workers > 1_000_000 {
            return Err(SimError::invalid(
                "server.workers",
                format!("must be within [1, 1000000], got {}", self.server.workers),
            ));
        }
        check("server.slowdown", self.server.slowdown, 0.0, 1000.0)?;
        self.server.service.shape("server.service")?;
        self.arrival_shape()?;
        if let Some(rate) = self.arrival.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(SimError::invalid(
                "arrival.rate",
                format!("must be a positive number of requests per second, got {rate}"),
            ));
        }
        if self.sample_interval < Duration::from_micros(100) {
            return Err(SimError::invalid(
                "sample_interval",
                "must be at least 100us",
            ));
        }
        if self.client.timeout.is_zero() {
            return Err(SimError::invalid(
                "client.timeout",
                "must be greater than zero",
            ));
        }
        if !(1..=100).contains(&self.client.attempts) {
            return Err(SimError::invalid(
                "client.attempts",
                format!("must be within [1, 100], got {}", self.client.attempts),
            ));
        }
        check("client.budget", self.client.budget, 0.0, 1.0)?;
        if self.client.throttle_k != 0.0 {
            check("client.throttle_k", self.client.throttle_k, 1.0, 1000.0)?;
        }
        let shares = self.mix.shares();
        for (i, s) in shares.iter().enumerate() {
            let name = ["critical_plus", "critical", "sheddable_plus", "sheddable"][i];
            check(&format!("mix.{name}"), *s, 0.0, f64::INFINITY)?;
        }
        if shares.iter().sum::<f64>() <= 0.0 {
            return Err(SimError::invalid(
                "mix",
                "at least one share must be positive",
            ));
        }
        if self.phase.is_empty() {
            return Err(SimError::invalid(
                "phase",
                "at least one [[phase]] is needed",
            ));
        }
        for (i, p) in self.phase.iter().enumerate() {
            if p.duration.is_zero() {
                return Err(SimError::invalid(
                    format!("phase[{i}].duration"),
                    "must be greater than zero",
                ));
            }
            check(&format!("phase[{i}].load"), p.load, 0.0, 1000.0)?;
            if let Some(r) = p.ramp_to {
                check(&format!("phase[{i}].ramp_to"), r, 0.0, 1000.0)?;
            }
        }
        if self.duration() > Duration::from_secs(10_000_000) {
            return Err(SimError::invalid(
                "phase",
                "the phases last more than 10^7 s (116 days)",
            ));
        }
        for (i, c) in self.capacity.iter().enumerate() {
            check(&format!("capacity[{i}].factor"), c.factor, 0.001, 1000.0)?;
            if let Some(w) = c.workers
                && !(1..=1_000_000).contains(&w)
            {
                return Err(SimError::invalid(
                    format!("capacity[{i}].workers"),
                    format!("must be within [1, 1000000], got {w}"),
                ));
            }
        }
        if !(1..=64).contains(&self.replicas) {
            return Err(SimError::invalid(
                "replicas",
                format!("must be within [1, 64], got {}", self.replicas),
            ));
        }
        if let Some(step) = self.step_at
            && step >= self.duration()
        {
            return Err(SimError::invalid(
                "step_at",
                "must be before the end of the last phase",
            ));
        }
        Ok(())
    }

    /// The arrival shape (unit mean), validated.
    pub fn arrival_shape(&self) -> Result<Shape, SimError> {
        let cv = || -> Result<f64, SimError> {
            let cv = self.arrival.cv.ok_or_else(|| {
                SimError::invalid(
                    "arrival.cv",
                    format!("required for `{}` arrivals", self.arrival.process),
                )
            })?;
            check("arrival.cv", cv, 0.0, 100.0)?;
            Ok(cv)
        };
        match self.arrival.process.as_str() {
            "poisson" => Ok(Shape::Exponential),
            "constant" => Ok(Shape::Constant),
            "gamma" => Ok(Shape::Gamma { cv: cv()? }),
            "lognormal" => Ok(Shape::Lognormal { cv: cv()? }),
            "on_off" => {
                for (f, v) in [
                    ("arrival.on", self.arrival.on),
                    ("arrival.off", self.arrival.off),
                ] {
                    match v {
                        Some(d) if !d.is_zero() => {}
                        _ => {
                            return Err(SimError::invalid(
                                f,
                                "required (> 0) for `on_off` arrivals",
                            ));
                        }
                    }
                }
                Ok(Shape::Exponential)
            }
            other => Err(SimError::invalid(
                "arrival.process",
                format!("unknown process `{other}` (poisson, constant, gamma, lognormal, on_off)"),
            )),
        }
    }
}

/// 1-based line and column of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Pulls the field name out of a serde message such as "unknown field `foo`, expected ...".
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Finds the line of a dotted field path (`server.workers`, `phase[2].load`) in TOML text;
/// falls back to the enclosing table.
fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let mut path: Vec<&str> = field.split('.').collect();
    while !path.is_empty() {
        if let Some(found) = locate_exact(text, &path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

fn locate_exact(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    // Split "phase[2]" into ("phase", Some(2)).
    let parse = |seg: &str| -> (String, Option<usize>) {
        match seg.find('[') {
            Some(i) => (
                seg[..i].to_string(),
                seg[i + 1..seg.len().saturating_sub(1)].parse().ok(),
            ),
            None => (seg.to_string(), None),
        }
    };
    let (key, key_index) = parse(path[path.len() - 1]);
    let table: Vec<(String, Option<usize>)> =
        path[..path.len() - 1].iter().map(|s| parse(s)).collect();
    let table_name: Vec<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
    let table_name = table_name.join(".");
    let wanted_index = table.last().and_then(|(_, i)| *i);
    let mut current = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut current_index: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            current = h.trim().to_string();
            let c = counts.entry(current.clone()).or_insert(0);
            current_index = Some(*c);
            *c += 1;
            if table.is_empty() && current == key {
                let idx = current_index.unwrap_or(0);
                if key_index.is_none_or(|k| k == idx) {
                    return Some((n + 1, 1));
                }
            }
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = h.trim().to_string();
            current_index = None;
            if table.is_empty() && current == key {
                return Some((n + 1, 1));
            }
            continue;
        }
        let in_table =
            current == table_name && (wanted_index.is_none() || wanted_index == current_index);
        if in_table
            && let Some(rest) = line.strip_prefix(key.as_str())
            && rest.trim_start().starts_with('=')
        {
            let col = raw.find(key.as_str()).unwrap_or(0) + 1;
            return Some((n + 1, col));
        }
    }
    None
}

fn phase(duration_ms: u64, load: f64) -> Phase {
    Phase {
        duration: Duration::from_millis(duration_ms),
        load,
        ramp_to: None,
    }
}

/// The names of the built-in scenarios, in suite order.
pub const BUILTIN: [&str; 11] = [
    "steady-2x",
    "spike-10x",
    "ramp",
    "step-1.4x",
    "drastic-slowdown",
    "heavy-tail",
    "retry-storm",
    "retry-budgeted",
    "tiered-overload",
    "cpu-thrash",
    "small-pool",
];

/// A built-in scenario by name. Every one runs 48 workers with lognormal service times
/// (mean 30 ms, CV 0.5: capacity 1600 requests/s), Poisson arrivals and a 1 s client
/// timeout unless it says otherwise. The ideal concurrency (48) is well above the initial
/// limits and floors of the reference algorithms (Netflix 20, Envoy 3), so they have to
/// find it; `small-pool` is the opposite case (8 workers, below those floors).
pub fn builtin(name: &str) -> Option<Scenario> {
    let mut s = match name {
        "steady-2x" => Scenario::new(
            name,
            "1 s at 0.5x capacity, then 9 s at 2x: sustained overload",
            vec![phase(1000, 0.5), phase(9000, 2.0)],
        ),
        "spike-10x" => Scenario::new(
            name,
            "0.5x for 3 s, 10x for 1 s, 0.5x for 4 s: a sudden spike and the recovery",
            vec![phase(3000, 0.5), phase(1000, 10.0), phase(4000, 0.5)],
        ),
        "ramp" => {
            let mut s = Scenario::new(
                name,
                "load ramps linearly from 0.2x to 3x capacity over 10 s",
                vec![phase(10_000, 0.2)],
            );
            s.phase[0].ramp_to = Some(3.0);
            s
        }
        "step-1.4x" => {
            let mut s = Scenario::new(
                name,
                "0.5x for 3 s, then 1.4x for 7 s (Breakwater's step): how fast the limit settles",
                vec![phase(3000, 0.5), phase(7000, 1.4)],
            );
            s.step_at = Some(Duration::from_secs(3));
            s
        }
        "drastic-slowdown" => {
            let mut s = Scenario::new(
                name,
                "steady 0.7x load; the service becomes 4x slower from 3 s to 6 s (Palantir's drastic_slowdown)",
                vec![phase(9000, 0.7)],
            );
            s.capacity = vec![
                CapacityChange::speed(Duration::from_secs(3), 0.25),
                CapacityChange::speed(Duration::from_secs(6), 1.0),
            ];
            s
        }
        "heavy-tail" => {
            let mut s = Scenario::new(
                name,
                "1.5x load; 0.5% of requests are 50x slower (bimodal): latency noise for latency-based limits",
                vec![phase(1000, 0.5), phase(8000, 1.5)],
            );
            s.server.service = ServiceConfig {
                dist: "bimodal".into(),
                mean: Duration::from_millis(30),
                cv: Some(0.5),
                // 0.5 %, not 1 %: with 1 % the p99 sits exactly on the edge of the slow mode,
                // and the unloaded p99 flips between the two modes.
                slow_fraction: Some(0.005),
                slow_factor: Some(50.0),
            };
            s
        }
        "retry-storm" => {
            let mut s = Scenario::new(
                name,
                "1.5x for 4 s with naive clients (3 attempts, 500 ms timeout, 10 ms backoff): retries amplify the overload",
                vec![phase(1000, 0.5), phase(4000, 1.5), phase(3000, 0.5)],
            );
            s.client.retry = RetryMode::Naive;
            s.client.timeout = Duration::from_millis(500);
            s
        }
        "retry-budgeted" => {
            let mut s = builtin("retry-storm")?;
            s.name = name.into();
            s.description =
                "retry-storm with budgeted clients: retries capped at 10% of requests (SRE book)"
                    .into();
            s.client.retry = RetryMode::Budgeted;
            s
        }
        "tiered-overload" => {
            let mut s = Scenario::new(
                name,
                "3x load with a criticality mix 10/40/25/25% (critical_plus/critical/sheddable_plus/sheddable)",
                vec![phase(1000, 0.5), phase(7000, 3.0)],
            );
            s.mix = TierMix {
                critical_plus: 0.1,
                critical: 0.4,
                sheddable_plus: 0.25,
                sheddable: 0.25,
            };
            s
        }
        "cpu-thrash" => {
            let mut s = Scenario::new(
                name,
                "processor sharing on 48 cores, 2x load; beyond 48 in flight every request slows (slowdown 0.5): admission decides whether the server thrashes",
                vec![phase(1000, 0.5), phase(7000, 2.0)],
            );
            s.server.model = ServerModel::ProcessorSharing;
            s.server.slowdown = 0.5;
            s
        }
        "small-pool" => {
            let mut s = Scenario::new(
                name,
                "8 workers, 5 ms service (1600 req/s), 2x load: the ideal limit (8) is below Netflix's floor of 20",
                vec![phase(1000, 0.5), phase(7000, 2.0)],
            );
            s.server.workers = 8;
            s.server.service.mean = Duration::from_millis(5);
            s
        }
        _ => return None,
    };
    s.seed = 1;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

    #[test]
    fn every_builtin_is_valid() {
        for name in BUILTIN {
            builtin(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn unknown_field_reports_line_and_field() {
        let text = "name = \"x\"\n[[phase]]\nduration = \"1s\"\nload = 1.0\nbogus = 3\n";
        let err = Scenario::from_toml(text, Path::new("s.toml")).unwrap_err();
        match &err {
            SimError::File { line, field, .. } => {
                assert_eq!(*line, 5, "{err}");
                assert_eq!(field.as_deref(), Some("bogus"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with("s.toml:5:"), "{err}");
    }

    #[test]
    fn invalid_values_name_field_and_line() {
        let text = "name = \"x\"\n[server]\nworkers = 4\n[arrival]\nprocess = \"gamma\"\ncv = -1.0\n[[phase]]\nduration = \"1s\"\nload = 1.0\n[[phase]]\nduration = \"1s\"\nload = -2\n";
        let err = Scenario::from_toml(text, Path::new("s.toml")).unwrap_err();
        assert_eq!(err.field(), Some("arrival.cv"), "{err}");
        assert!(err.to_string().starts_with("s.toml:6:"), "{err}");
        let fixed = text.replace("cv = -1.0", "cv = 1.0");
        let err = Scenario::from_toml(&fixed, Path::new("s.toml")).unwrap_err();
        assert_eq!(err.field(), Some("phase[1].load"), "{err}");
        assert!(err.to_string().starts_with("s.toml:12:"), "{err}");
        let neg = text.replace("workers = 4", "workers = -4");
        let err = Scenario::from_toml(&neg, Path::new("s.toml")).unwrap_err();
        assert_eq!(err.field(), Some("server.workers"), "{err}");
        assert!(err.to_string().starts_with("s.toml:3:"), "{err}");
    }
}
