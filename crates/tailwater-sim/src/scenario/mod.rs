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

mod builtins;
mod components;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use tailwater_core::toml_locate::{find_field, line_col};

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

pub use builtins::{BUILTIN, builtin};
pub use components::{
    ArrivalConfig, CapacityChange, ClientConfig, Phase, RetryMode, ServerConfig, ServerModel,
    ServiceConfig, TierMix,
};

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
                let (line, column) = find_field(text, &field).unwrap_or((1, 1));
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

/// Pulls the field name out of a serde message such as "unknown field `foo`, expected ...".
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}
