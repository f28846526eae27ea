//! The parts of a scenario: the server, the arrival process, the clients, the tier mix, the
//! load phases and the capacity changes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_duration, de_opt_duration, ser_duration, ser_opt_duration};
use crate::dist::Shape;
use crate::error::{SimError, check};

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
