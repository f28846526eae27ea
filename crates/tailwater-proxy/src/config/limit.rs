//! `[route.limit]` as a type: one variant per algorithm of tailwater-core, tagged by its one
//! name (`algorithm = "aimd"`), each holding exactly the parameters that algorithm takes.
//!
//! A key the table does not know, a parameter the named algorithm does not take, and a
//! missing required parameter (`limit` of `static`) are errors at parse time that name the
//! key and its line; ranges (`min_limit <= max_limit`, `backoff_ratio` in `[0.5, 1)`) are
//! checked by tailwater-core's builders in [`LimitConfig::validate`]. Parameters left out
//! take the defaults of tailwater-core's builders, the same as the library's and the tower
//! layers', whether or not the table is written: there are no proxy-only defaults.

use std::time::Duration;

use serde::Deserialize;
use tailwater_core::algorithm::LimitAlgorithm;
use tailwater_core::names::{AlgorithmName, AlgorithmParams};

use super::{admission::de_name, duration};

/// The limit algorithm of a route and its parameters (`[route.limit]`).
///
/// With no `[route.limit]`, or one without `algorithm`, a route uses `recommended`:
/// tailwater-core's [`recommended()`](tailwater_core::algorithm::recommended), the same
/// default as the library, the tower layers and the drill. Each other variant is one of
/// tailwater-core's [`AlgorithmName`]s; unset parameters take that algorithm's defaults in
/// tailwater-core, which are given with each field. Two configurations are equal when
/// they build the same algorithm, which is how a reload decides to keep a route's limiter.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LimitConfig {
    /// `recommended`: whatever tailwater-core recommends (today Headroom); takes no parameters.
    #[default]
    Recommended,
    /// `static`: a constant limit.
    Static(StaticLimit),
    /// `aimd`: additive increase, multiplicative decrease (Netflix's `AIMDLimit`).
    Aimd(AimdLimit),
    /// `vegas`: TCP Vegas' queue estimate fed every sample (Netflix's `VegasLimit`).
    Vegas(VegasLimit),
    /// `vegas-windowed`: Vegas in Netflix's 1 s windows.
    VegasWindowed(VegasLimit),
    /// `gradient2`: Netflix's `Gradient2Limit` in its 1 s `WindowedLimit`.
    Gradient2(Gradient2Limit),
    /// `gradient2-raw`: Netflix's `Gradient2Limit` fed every sample.
    Gradient2Raw(Gradient2Limit),
    /// `gradient2-corrected`: tailwater's corrected Gradient2 in 1 s windows.
    Gradient2Corrected(CorrectedGradient2Limit),
    /// `gradient2-corrected-fast`: the corrected Gradient2 in 20–100 ms windows.
    Gradient2CorrectedFast(CorrectedGradient2Limit),
    /// `envoy`: Envoy's adaptive concurrency gradient controller.
    Envoy(EnvoyLimit),
    /// `envoy-corrected`: tailwater's corrected Envoy controller.
    EnvoyCorrected(EnvoyLimit),
    /// `headroom`: tailwater's Headroom, with its knobs open.
    Headroom(HeadroomLimit),
    /// `ll-guard`: the corrected Gradient2 with a Little's-law guard; takes no parameters.
    LlGuard,
}

/// `algorithm = "static"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticLimit {
    /// The limit; it has no default (a constant has none worth guessing).
    pub limit: usize,
}

/// `algorithm = "aimd"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AimdLimit {
    /// Starting limit (default 20, moved inside `[min_limit, max_limit]` when only a bound is given).
    pub initial_limit: Option<usize>,
    /// Floor (default 20, as Netflix).
    pub min_limit: Option<usize>,
    /// Ceiling (default 200).
    pub max_limit: Option<usize>,
    /// Multiplicative decrease on a drop, in `[0.5, 1)` (default 0.9).
    pub backoff_ratio: Option<f64>,
    /// An RTT above this counts as a drop (default 5 s, as Netflix's `AIMDLimit`).
    pub timeout: Option<Duration>,
}

/// `algorithm = "vegas"` or `"vegas-windowed"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VegasLimit {
    /// Starting limit (default 20).
    pub initial_limit: Option<usize>,
    /// Floor (default 1: Netflix's Vegas has none).
    pub min_limit: Option<usize>,
    /// Ceiling (default 1000).
    pub max_limit: Option<usize>,
    /// Weight of the new estimate, in `(0, 1]` (default 1.0: no smoothing).
    pub smoothing: Option<f64>,
}

/// `algorithm = "gradient2"` or `"gradient2-raw"` (Netflix's, which has no backoff and no
/// timeout).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gradient2Limit {
    /// Starting limit (default 20).
    pub initial_limit: Option<usize>,
    /// Floor (default 20, as Netflix).
    pub min_limit: Option<usize>,
    /// Ceiling (default 200).
    pub max_limit: Option<usize>,
    /// Weight of the new estimate, in `(0, 1]` (default 0.2).
    pub smoothing: Option<f64>,
}

/// `algorithm = "gradient2-corrected"` or `"gradient2-corrected-fast"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CorrectedGradient2Limit {
    /// Starting limit (default 20).
    pub initial_limit: Option<usize>,
    /// Floor (default 20).
    pub min_limit: Option<usize>,
    /// Ceiling (default 200).
    pub max_limit: Option<usize>,
    /// Weight of the new estimate, in `(0, 1]` (default 0.2).
    pub smoothing: Option<f64>,
    /// Multiplicative decrease on a drop or a timeout, in `[0.5, 1)` (default 0.9).
    pub backoff_ratio: Option<f64>,
    /// An RTT at or above this counts as a drop (default 5 s).
    pub timeout: Option<Duration>,
}

/// `algorithm = "envoy"` or `"envoy-corrected"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EnvoyLimit {
    /// Floor of the computed limit (default 3, Envoy's `min_concurrency`).
    pub min_limit: Option<usize>,
    /// Ceiling (default 1000).
    pub max_limit: Option<usize>,
    /// How often the controller re-measures its minRTT, at least 1 ms (default 60 s).
    pub min_rtt_interval: Option<Duration>,
}

/// `algorithm = "headroom"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeadroomLimit {
    /// Starting limit (tailwater-core's Headroom default).
    pub initial_limit: Option<usize>,
    /// Floor (tailwater-core's Headroom default).
    pub min_limit: Option<usize>,
    /// Ceiling (tailwater-core's Headroom default).
    pub max_limit: Option<usize>,
    /// Multiplicative decrease on a drop or timeout, in `[0.5, 1)` (default 0.9).
    pub backoff_ratio: Option<f64>,
    /// An RTT at or above this counts as a drop (default 5 s).
    pub timeout: Option<Duration>,
    /// The floor while demand comes in bursts (default 20, Netflix's floor; raised to
    /// `min_limit` if below it). Set it near the workers of a small pool whose bursts need
    /// less room.
    pub burst_floor: Option<usize>,
    /// The floor while the limiter turns away at least twice what completes (default 2, or
    /// `min_limit` when that is set; never above `min_limit`).
    pub overload_floor: Option<usize>,
}

impl LimitConfig {
    /// The configuration of algorithm `name` with parameters `p`: the typed form of
    /// tailwater-core's (name, parameters) pair. A parameter `name` does not take, or a
    /// missing `limit` for `static`, is an error naming the parameter (`p.seed` is ignored:
    /// the proxy uses the core's fixed seed).
    pub fn new(
        name: AlgorithmName,
        p: &AlgorithmParams,
    ) -> Result<Self, tailwater_core::ConfigError> {
        let takes = name.parameters();
        for (field, set) in p.set_fields() {
            if set && !takes.contains(&field) {
                let takes = if takes.is_empty() {
                    "none; name an algorithm to tune it".to_owned()
                } else {
                    takes.join(", ")
                };
                return Err(tailwater_core::ConfigError::new(
                    field,
                    format!("is not a parameter of algorithm `{name}` (it takes: {takes})"),
                ));
            }
        }
        let vegas = VegasLimit {
            initial_limit: p.initial_limit,
            min_limit: p.min_limit,
            max_limit: p.max_limit,
            smoothing: p.smoothing,
        };
        let gradient2 = Gradient2Limit {
            initial_limit: p.initial_limit,
            min_limit: p.min_limit,
            max_limit: p.max_limit,
            smoothing: p.smoothing,
        };
        let corrected = CorrectedGradient2Limit {
            initial_limit: p.initial_limit,
            min_limit: p.min_limit,
            max_limit: p.max_limit,
            smoothing: p.smoothing,
            backoff_ratio: p.backoff_ratio,
            timeout: p.timeout,
        };
        let envoy = EnvoyLimit {
            min_limit: p.min_limit,
            max_limit: p.max_limit,
            min_rtt_interval: p.min_rtt_interval,
        };
        Ok(match name {
            AlgorithmName::Recommended => Self::Recommended,
            AlgorithmName::Static => match p.limit {
                Some(limit) => Self::Static(StaticLimit { limit }),
                None => {
                    return Err(tailwater_core::ConfigError::new(
                        "limit",
                        "is required for algorithm `static`",
                    ));
                }
            },
            AlgorithmName::Aimd => Self::Aimd(AimdLimit {
                initial_limit: p.initial_limit,
                min_limit: p.min_limit,
                max_limit: p.max_limit,
                backoff_ratio: p.backoff_ratio,
                timeout: p.timeout,
            }),
            AlgorithmName::Vegas => Self::Vegas(vegas),
            AlgorithmName::VegasWindowed => Self::VegasWindowed(vegas),
            AlgorithmName::Gradient2 => Self::Gradient2(gradient2),
            AlgorithmName::Gradient2Raw => Self::Gradient2Raw(gradient2),
            AlgorithmName::Gradient2Corrected => Self::Gradient2Corrected(corrected),
            AlgorithmName::Gradient2CorrectedFast => Self::Gradient2CorrectedFast(corrected),
            AlgorithmName::Envoy => Self::Envoy(envoy),
            AlgorithmName::EnvoyCorrected => Self::EnvoyCorrected(envoy),
            AlgorithmName::Headroom => Self::Headroom(HeadroomLimit {
                initial_limit: p.initial_limit,
                min_limit: p.min_limit,
                max_limit: p.max_limit,
                backoff_ratio: p.backoff_ratio,
                timeout: p.timeout,
                burst_floor: p.burst_floor,
                overload_floor: p.overload_floor,
            }),
            AlgorithmName::LlGuard => Self::LlGuard,
        })
    }

    /// The algorithm's one name.
    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            Self::Recommended => AlgorithmName::Recommended,
            Self::Static(_) => AlgorithmName::Static,
            Self::Aimd(_) => AlgorithmName::Aimd,
            Self::Vegas(_) => AlgorithmName::Vegas,
            Self::VegasWindowed(_) => AlgorithmName::VegasWindowed,
            Self::Gradient2(_) => AlgorithmName::Gradient2,
            Self::Gradient2Raw(_) => AlgorithmName::Gradient2Raw,
            Self::Gradient2Corrected(_) => AlgorithmName::Gradient2Corrected,
            Self::Gradient2CorrectedFast(_) => AlgorithmName::Gradient2CorrectedFast,
            Self::Envoy(_) => AlgorithmName::Envoy,
            Self::EnvoyCorrected(_) => AlgorithmName::EnvoyCorrected,
            Self::Headroom(_) => AlgorithmName::Headroom,
            Self::LlGuard => AlgorithmName::LlGuard,
        }
    }

    /// The parameters as tailwater-core's one constructor takes them (the inverse of
    /// [`new`](Self::new)).
    pub fn params(&self) -> AlgorithmParams {
        let d = AlgorithmParams::default();
        match *self {
            Self::Recommended | Self::LlGuard => d,
            Self::Static(s) => AlgorithmParams {
                limit: Some(s.limit),
                ..d
            },
            Self::Aimd(a) => AlgorithmParams {
                initial_limit: a.initial_limit,
                min_limit: a.min_limit,
                max_limit: a.max_limit,
                backoff_ratio: a.backoff_ratio,
                timeout: a.timeout,
                ..d
            },
            Self::Vegas(v) | Self::VegasWindowed(v) => AlgorithmParams {
                initial_limit: v.initial_limit,
                min_limit: v.min_limit,
                max_limit: v.max_limit,
                smoothing: v.smoothing,
                ..d
            },
            Self::Gradient2(g) | Self::Gradient2Raw(g) => AlgorithmParams {
                initial_limit: g.initial_limit,
                min_limit: g.min_limit,
                max_limit: g.max_limit,
                smoothing: g.smoothing,
                ..d
            },
            Self::Gradient2Corrected(g) | Self::Gradient2CorrectedFast(g) => AlgorithmParams {
                initial_limit: g.initial_limit,
                min_limit: g.min_limit,
                max_limit: g.max_limit,
                smoothing: g.smoothing,
                backoff_ratio: g.backoff_ratio,
                timeout: g.timeout,
                ..d
            },
            Self::Envoy(e) | Self::EnvoyCorrected(e) => AlgorithmParams {
                min_limit: e.min_limit,
                max_limit: e.max_limit,
                min_rtt_interval: e.min_rtt_interval,
                ..d
            },
            Self::Headroom(h) => AlgorithmParams {
                initial_limit: h.initial_limit,
                min_limit: h.min_limit,
                max_limit: h.max_limit,
                backoff_ratio: h.backoff_ratio,
                timeout: h.timeout,
                burst_floor: h.burst_floor,
                overload_floor: h.overload_floor,
                ..d
            },
        }
    }

    /// The configured floor, if one is set.
    pub fn min_limit(&self) -> Option<usize> {
        self.params().min_limit
    }

    /// The configured ceiling, if one is set.
    pub fn max_limit(&self) -> Option<usize> {
        self.params().max_limit
    }

    /// Checks the values (ranges, `min_limit <= initial_limit <= max_limit`) with
    /// tailwater-core's builders, building nothing that outlives the call. The error names
    /// the parameter, without its table.
    pub fn validate(&self) -> Result<(), tailwater_core::ConfigError> {
        self.build().map(drop)
    }

    /// A fresh algorithm, built by tailwater-core's one constructor for named algorithms.
    pub fn build(&self) -> Result<Box<dyn LimitAlgorithm>, tailwater_core::ConfigError> {
        self.algorithm().build(&self.params())
    }
}

/// `[route.limit]` as written: every key any algorithm takes, so that a key no algorithm
/// takes is refused by the parser at its own position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitTable {
    #[serde(default, deserialize_with = "de_name_opt")]
    algorithm: Option<AlgorithmName>,
    limit: Option<usize>,
    initial_limit: Option<usize>,
    min_limit: Option<usize>,
    max_limit: Option<usize>,
    backoff_ratio: Option<f64>,
    #[serde(default, deserialize_with = "duration::de_opt")]
    timeout: Option<Duration>,
    smoothing: Option<f64>,
    #[serde(default, deserialize_with = "duration::de_opt")]
    min_rtt_interval: Option<Duration>,
    burst_floor: Option<usize>,
    overload_floor: Option<usize>,
}

fn de_name_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AlgorithmName>, D::Error> {
    de_name(d).map(Some)
}

impl<'de> Deserialize<'de> for LimitConfig {
    /// Reads the table, then checks it against the named algorithm. An error about one key
    /// starts with that key in backticks, which the proxy's error locator turns into the
    /// key's line (the parser itself places it at the table's header).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = LimitTable::deserialize(d)?;
        let p = AlgorithmParams {
            limit: t.limit,
            initial_limit: t.initial_limit,
            min_limit: t.min_limit,
            max_limit: t.max_limit,
            backoff_ratio: t.backoff_ratio,
            timeout: t.timeout,
            smoothing: t.smoothing,
            min_rtt_interval: t.min_rtt_interval,
            burst_floor: t.burst_floor,
            overload_floor: t.overload_floor,
            seed: None,
        };
        let name = t.algorithm.unwrap_or_default();
        LimitConfig::new(name, &p)
            .map_err(|e| serde::de::Error::custom(format_args!("`{}` {}", e.field(), e.reason())))
    }
}

#[cfg(test)]
mod tests;
