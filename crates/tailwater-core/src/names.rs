//! The one name and spelling of every limit algorithm and queue discipline.
//!
//! The library, `tailwater sim`, the proxy's TOML and the drill's CLI all parse names with
//! these [`FromStr`] implementations and build algorithms with [`AlgorithmName::build`], so
//! that a name means the same configuration everywhere (`gradient2` is Netflix's
//! `Gradient2Limit` in its 1 s `WindowedLimit`, wherever it is written). Names are
//! lower-case with hyphens; parsing trims surrounding white space and is case-insensitive,
//! but accepts no other spelling. An unknown name is an [`UnknownName`] error that lists the
//! valid ones.
//!
//! ```
//! use tailwater_core::names::{AlgorithmName, AlgorithmParams, QueueName};
//! let name: AlgorithmName = "envoy-corrected".parse().unwrap();
//! let algorithm = name.build(&AlgorithmParams::default()).unwrap();
//! assert_eq!(algorithm.name(), "envoy-gradient-corrected");
//! assert_eq!("adaptive-lifo".parse::<QueueName>().unwrap(), QueueName::AdaptiveLifo);
//! let err = "gradient".parse::<AlgorithmName>().unwrap_err();
//! assert!(err.to_string().contains("gradient2-corrected-fast"));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::algorithm::{
    Aimd, EnvoyGradient, Fixed, Gradient2, Headroom, LimitAlgorithm, LlGuard, Vegas, Windowed,
    recommended,
};
use crate::error::ConfigError;
use crate::limiter::QueueDiscipline;

/// A name that is not one of the valid names of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{name}` (expected one of: {})", valid.join(", "))]
pub struct UnknownName {
    kind: &'static str,
    name: String,
    valid: &'static [&'static str],
}

impl UnknownName {
    /// What was being named: `"algorithm"` or `"queue discipline"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every valid name of this kind.
    pub fn valid(&self) -> &'static [&'static str] {
        self.valid
    }
}

/// Parses `s` (trimmed, case-insensitive) as one of `all`, whose names are `as_str`.
pub(crate) fn parse_name<T: Copy>(
    kind: &'static str,
    s: &str,
    all: &[T],
    as_str: fn(T) -> &'static str,
    valid: &'static [&'static str],
) -> Result<T, UnknownName> {
    let want = s.trim();
    all.iter()
        .copied()
        .find(|n| as_str(*n).eq_ignore_ascii_case(want))
        .ok_or_else(|| UnknownName {
            kind,
            name: s.to_owned(),
            valid,
        })
}

/// Every limit algorithm the core has, by its one name.
///
/// | Name | What it builds |
/// |---|---|
/// | `recommended` | [`recommended()`](crate::algorithm::recommended): the default everywhere |
/// | `static` | [`Fixed`]: a constant (`limit`) |
/// | `aimd` | [`Aimd`] (Netflix `AIMDLimit`) |
/// | `vegas` | [`Vegas`] per sample (Netflix `VegasLimit`, Netflix's default) |
/// | `vegas-windowed` | [`Vegas`] in Netflix's 1 s [`Windowed`] |
/// | `gradient2` | Netflix `Gradient2Limit` ([`Variant::Reference`](crate::algorithm::Variant)) in Netflix's 1 s [`Windowed`], as Netflix ships it |
/// | `gradient2-raw` | the same fed every sample, without windows |
/// | `gradient2-corrected` | tailwater's corrected [`Gradient2`] in 1 s [`Windowed`] |
/// | `gradient2-corrected-fast` | the corrected [`Gradient2`] in `clamp(2·minRTT, 20 ms, 100 ms)` windows |
/// | `envoy` | Envoy's adaptive concurrency gradient controller ([`EnvoyGradient`]) |
/// | `envoy-corrected` | tailwater's corrected [`EnvoyGradient`] |
/// | `headroom` | [`Headroom`]: what `recommended` is today, with its knobs open |
/// | `ll-guard` | [`LlGuard`]: the corrected Gradient2 with a Little's-law guard (for comparison) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AlgorithmName {
    /// Whatever [`recommended()`](crate::algorithm::recommended) returns.
    #[default]
    Recommended,
    /// A constant limit ([`Fixed`]).
    Static,
    /// Additive increase, multiplicative decrease.
    Aimd,
    /// Vegas, fed every sample.
    Vegas,
    /// Vegas in 1 s windows.
    VegasWindowed,
    /// Netflix's Gradient2 in its 1 s `WindowedLimit`.
    Gradient2,
    /// Netflix's Gradient2 fed every sample.
    Gradient2Raw,
    /// The corrected Gradient2 in 1 s windows.
    Gradient2Corrected,
    /// The corrected Gradient2 in 20–100 ms windows.
    Gradient2CorrectedFast,
    /// Envoy's gradient controller.
    Envoy,
    /// The corrected Envoy gradient controller.
    EnvoyCorrected,
    /// [`Headroom`], tunable.
    Headroom,
    /// [`LlGuard`], the research notes' guarded gradient.
    LlGuard,
}

/// `b` with `apply` run on it when a parameter was given: each builder arm of
/// [`AlgorithmName::build`] passes the parameters it takes, unset ones keep the defaults.
fn set<B, T>(b: B, value: Option<T>, apply: impl FnOnce(B, T) -> B) -> B {
    match value {
        Some(v) => apply(b, v),
        None => b,
    }
}

/// The windows of `gradient2-corrected-fast`: `clamp(2·minRTT, 20 ms, 100 ms)` instead of
/// Netflix's fixed 1 s, so that the limit can move within a second of a load step.
pub const FAST_WINDOW: (Duration, Duration) =
    (Duration::from_millis(20), Duration::from_millis(100));

impl AlgorithmName {
    /// Every algorithm, in the order of the table above.
    pub const ALL: [AlgorithmName; 13] = [
        AlgorithmName::Recommended,
        AlgorithmName::Static,
        AlgorithmName::Aimd,
        AlgorithmName::Vegas,
        AlgorithmName::VegasWindowed,
        AlgorithmName::Gradient2,
        AlgorithmName::Gradient2Raw,
        AlgorithmName::Gradient2Corrected,
        AlgorithmName::Gradient2CorrectedFast,
        AlgorithmName::Envoy,
        AlgorithmName::EnvoyCorrected,
        AlgorithmName::Headroom,
        AlgorithmName::LlGuard,
    ];

    /// Every name, in the order of [`ALL`](Self::ALL).
    pub const NAMES: [&'static str; 13] = {
        let mut out = [""; 13];
        let mut i = 0;
        while i < 13 {
            out[i] = Self::ALL[i].as_str();
            i += 1;
        }
        out
    };

    /// The one spelling of this name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlgorithmName::Recommended => "recommended",
            AlgorithmName::Static => "static",
            AlgorithmName::Aimd => "aimd",
            AlgorithmName::Vegas => "vegas",
            AlgorithmName::VegasWindowed => "vegas-windowed",
            AlgorithmName::Gradient2 => "gradient2",
            AlgorithmName::Gradient2Raw => "gradient2-raw",
            AlgorithmName::Gradient2Corrected => "gradient2-corrected",
            AlgorithmName::Gradient2CorrectedFast => "gradient2-corrected-fast",
            AlgorithmName::Envoy => "envoy",
            AlgorithmName::EnvoyCorrected => "envoy-corrected",
            AlgorithmName::Headroom => "headroom",
            AlgorithmName::LlGuard => "ll-guard",
        }
    }

    /// The parameters this algorithm takes (a subset of [`AlgorithmParams`]' fields, by
    /// name; `seed` is accepted by every algorithm and not listed).
    pub const fn parameters(self) -> &'static [&'static str] {
        match self {
            AlgorithmName::Recommended => &[],
            AlgorithmName::Static => &["limit"],
            AlgorithmName::Aimd => &[
                "initial_limit",
                "min_limit",
                "max_limit",
                "backoff_ratio",
                "timeout",
            ],
            AlgorithmName::Vegas | AlgorithmName::VegasWindowed => {
                &["initial_limit", "min_limit", "max_limit", "smoothing"]
            }
            // Netflix's Gradient2 has no backoff and no timeout (only the corrected one
            // backs off on a drop or a timeout): they are not its parameters.
            AlgorithmName::Gradient2 | AlgorithmName::Gradient2Raw => {
                &["initial_limit", "min_limit", "max_limit", "smoothing"]
            }
            AlgorithmName::Gradient2Corrected | AlgorithmName::Gradient2CorrectedFast => &[
                "initial_limit",
                "min_limit",
                "max_limit",
                "smoothing",
                "backoff_ratio",
                "timeout",
            ],
            AlgorithmName::Envoy | AlgorithmName::EnvoyCorrected => {
                &["min_limit", "max_limit", "min_rtt_interval"]
            }
            AlgorithmName::Headroom => &[
                "initial_limit",
                "min_limit",
                "max_limit",
                "backoff_ratio",
                "timeout",
                "burst_floor",
                "overload_floor",
            ],
            AlgorithmName::LlGuard => &[],
        }
    }

    /// Builds a fresh algorithm of this name. Parameters left `None` take the algorithm's
    /// own defaults (the anchors' defaults for the reference algorithms). A parameter the
    /// algorithm does not take is an error naming it, never silently ignored.
    pub fn build(self, p: &AlgorithmParams) -> Result<Box<dyn LimitAlgorithm>, ConfigError> {
        for (field, set) in p.set_fields() {
            if set && !self.parameters().contains(&field) {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "is not a parameter of algorithm `{self}` (it takes: {})",
                        if self.parameters().is_empty() {
                            "none; name the algorithm to tune it".to_string()
                        } else {
                            self.parameters().join(", ")
                        }
                    ),
                ));
            }
        }
        let seed = p.seed.unwrap_or(crate::algorithm::DEFAULT_SEED);
        Ok(match self {
            AlgorithmName::Recommended => Box::new(recommended()),
            AlgorithmName::LlGuard => Box::new(LlGuard::default()),
            AlgorithmName::Headroom => {
                let mut b = Headroom::builder();
                b = set(b, p.initial_limit, |b, v| b.initial_limit(v));
                b = set(b, p.min_limit, |b, v| b.min_limit(v));
                b = set(b, p.max_limit, |b, v| b.max_limit(v));
                b = set(b, p.backoff_ratio, |b, v| b.backoff_ratio(v));
                b = set(b, p.timeout, |b, v| b.timeout(v));
                b = set(b, p.burst_floor, |b, v| b.burst_floor(v));
                b = set(b, p.overload_floor, |b, v| b.overload_floor(v));
                Box::new(b.build()?)
            }
            AlgorithmName::Static => {
                let Some(limit) = p.limit else {
                    return Err(ConfigError::new(
                        "limit",
                        "is required for algorithm `static`",
                    ));
                };
                Box::new(Fixed::new(limit)?)
            }
            AlgorithmName::Aimd => {
                let mut b = Aimd::builder();
                b = set(b, p.min_limit, |b, v| b.min_limit(v));
                b = set(b, p.max_limit, |b, v| b.max_limit(v));
                // Keep the default initial limit inside [min, max] when only a bound is given.
                let initial = p.initial_limit.unwrap_or_else(|| {
                    let (lo, hi) = (p.min_limit.unwrap_or(20), p.max_limit.unwrap_or(200));
                    20usize.clamp(lo.min(hi), hi)
                });
                b = b.initial_limit(initial);
                b = set(b, p.backoff_ratio, |b, v| b.backoff_ratio(v));
                b = set(b, p.timeout, |b, v| b.timeout(v));
                Box::new(b.build()?)
            }
            AlgorithmName::Vegas | AlgorithmName::VegasWindowed => {
                let mut b = Vegas::builder().seed(seed);
                b = set(b, p.initial_limit, |b, v| b.initial_limit(v));
                b = set(b, p.min_limit, |b, v| b.min_limit(v));
                b = set(b, p.max_limit, |b, v| b.max_limit(v));
                b = set(b, p.smoothing, |b, v| b.smoothing(v));
                let vegas = b.build()?;
                if self == AlgorithmName::Vegas {
                    Box::new(vegas)
                } else {
                    Box::new(Windowed::new(vegas))
                }
            }
            AlgorithmName::Gradient2
            | AlgorithmName::Gradient2Raw
            | AlgorithmName::Gradient2Corrected
            | AlgorithmName::Gradient2CorrectedFast => {
                let mut b = Gradient2::builder();
                if matches!(
                    self,
                    AlgorithmName::Gradient2Corrected | AlgorithmName::Gradient2CorrectedFast
                ) {
                    b = b.corrected();
                }
                b = set(b, p.initial_limit, |b, v| b.initial_limit(v));
                b = set(b, p.min_limit, |b, v| b.min_limit(v));
                b = set(b, p.max_limit, |b, v| b.max_limit(v));
                b = set(b, p.smoothing, |b, v| b.smoothing(v));
                b = set(b, p.backoff_ratio, |b, v| b.backoff_ratio(v));
                b = set(b, p.timeout, |b, v| b.timeout(v));
                let gradient2 = b.build()?;
                match self {
                    AlgorithmName::Gradient2Raw => Box::new(gradient2),
                    AlgorithmName::Gradient2CorrectedFast => Box::new(
                        Windowed::builder()
                            .min_window(FAST_WINDOW.0)
                            .max_window(FAST_WINDOW.1)
                            .build(gradient2)?,
                    ),
                    _ => Box::new(Windowed::new(gradient2)),
                }
            }
            AlgorithmName::Envoy | AlgorithmName::EnvoyCorrected => {
                let mut b = EnvoyGradient::builder().seed(seed);
                if self == AlgorithmName::EnvoyCorrected {
                    b = b.corrected();
                }
                b = set(b, p.min_limit, |b, v| b.min_limit(v));
                b = set(b, p.max_limit, |b, v| b.max_limit(v));
                b = set(b, p.min_rtt_interval, |b, v| b.min_rtt_interval(v));
                Box::new(b.build()?)
            }
        })
    }
}

impl fmt::Display for AlgorithmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlgorithmName {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name("algorithm", s, &Self::ALL, Self::as_str, &Self::NAMES)
    }
}

/// The tunable parameters of [`AlgorithmName::build`]. Each applies to the algorithms whose
/// [`parameters`](AlgorithmName::parameters) list it; `None` means the algorithm's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AlgorithmParams {
    /// The constant limit (`static`, required there).
    pub limit: Option<usize>,
    /// The starting limit.
    pub initial_limit: Option<usize>,
    /// The floor.
    pub min_limit: Option<usize>,
    /// The ceiling.
    pub max_limit: Option<usize>,
    /// Multiplicative decrease on a drop (`aimd`, `gradient2-corrected*`, `headroom`).
    pub backoff_ratio: Option<f64>,
    /// An RTT above this counts as a drop (`aimd`, `gradient2-corrected*`, `headroom`).
    pub timeout: Option<Duration>,
    /// Smoothing factor (`vegas*`, `gradient2*`).
    pub smoothing: Option<f64>,
    /// How often Envoy's controller re-measures its minRTT (`envoy*`).
    pub min_rtt_interval: Option<Duration>,
    /// The floor while demand comes in bursts (`headroom`, see
    /// [`HeadroomBuilder::burst_floor`](crate::algorithm::HeadroomBuilder::burst_floor)).
    pub burst_floor: Option<usize>,
    /// The floor under overload proven by the limiter's refusals (`headroom`, see
    /// [`HeadroomBuilder::overload_floor`](crate::algorithm::HeadroomBuilder::overload_floor)).
    pub overload_floor: Option<usize>,
    /// Seed of the algorithm's jitter (Vegas' probes, Envoy's minRTT windows); every
    /// algorithm accepts it, those without randomness ignore it.
    pub seed: Option<u64>,
}

impl AlgorithmParams {
    /// Every tunable field by name (`seed` aside), with whether it is set: what a surface
    /// checks against [`AlgorithmName::parameters`] to name a parameter an algorithm does not
    /// take.
    pub fn set_fields(&self) -> [(&'static str, bool); 10] {
        [
            ("limit", self.limit.is_some()),
            ("initial_limit", self.initial_limit.is_some()),
            ("min_limit", self.min_limit.is_some()),
            ("max_limit", self.max_limit.is_some()),
            ("backoff_ratio", self.backoff_ratio.is_some()),
            ("timeout", self.timeout.is_some()),
            ("smoothing", self.smoothing.is_some()),
            ("min_rtt_interval", self.min_rtt_interval.is_some()),
            ("burst_floor", self.burst_floor.is_some()),
            ("overload_floor", self.overload_floor.is_some()),
        ]
    }
}

/// Every wait-queue discipline, by its one name: what a limiter does with a request that
/// arrives when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QueueName {
    /// No queue: reject at once.
    None,
    /// Oldest first.
    Fifo,
    /// Newest first.
    Lifo,
    /// FIFO that flips to LIFO under a standing queue (Fail at Scale).
    AdaptiveLifo,
    /// FIFO with controlled delay (Fail at Scale).
    #[default]
    Codel,
}

impl QueueName {
    /// Every discipline.
    pub const ALL: [QueueName; 5] = [
        QueueName::None,
        QueueName::Fifo,
        QueueName::Lifo,
        QueueName::AdaptiveLifo,
        QueueName::Codel,
    ];

    /// Every name, in the order of [`ALL`](Self::ALL).
    pub const NAMES: [&'static str; 5] = ["none", "fifo", "lifo", "adaptive-lifo", "codel"];

    /// The one spelling of this name.
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueName::None => "none",
            QueueName::Fifo => "fifo",
            QueueName::Lifo => "lifo",
            QueueName::AdaptiveLifo => "adaptive-lifo",
            QueueName::Codel => "codel",
        }
    }

    /// The discipline with its defaults (CoDel 5 ms / 100 ms, adaptive LIFO after 100 ms),
    /// or `None` for no queue.
    pub const fn discipline(self) -> Option<QueueDiscipline> {
        match self {
            QueueName::None => None,
            QueueName::Fifo => Some(QueueDiscipline::Fifo),
            QueueName::Lifo => Some(QueueDiscipline::Lifo),
            QueueName::AdaptiveLifo => Some(QueueDiscipline::adaptive_lifo()),
            QueueName::Codel => Some(QueueDiscipline::codel()),
        }
    }

    /// The name of a discipline.
    pub const fn of(discipline: &QueueDiscipline) -> Self {
        match discipline {
            QueueDiscipline::Fifo => QueueName::Fifo,
            QueueDiscipline::Lifo => QueueName::Lifo,
            QueueDiscipline::AdaptiveLifo { .. } => QueueName::AdaptiveLifo,
            QueueDiscipline::CoDel { .. } => QueueName::Codel,
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(
            "queue discipline",
            s,
            &Self::ALL,
            Self::as_str,
            &Self::NAMES,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_builds() {
        for name in AlgorithmName::ALL {
            assert_eq!(name.as_str().parse::<AlgorithmName>(), Ok(name));
            assert_eq!(name.to_string(), name.as_str());
            let p = AlgorithmParams {
                limit: (name == AlgorithmName::Static).then_some(10),
                ..AlgorithmParams::default()
            };
            let algorithm = name.build(&p).unwrap();
            assert!(algorithm.limit() >= 1);
        }
        for name in QueueName::ALL {
            assert_eq!(name.as_str().parse::<QueueName>(), Ok(name));
            if let Some(d) = name.discipline() {
                assert_eq!(QueueName::of(&d), name);
            }
        }
        assert_eq!(" Gradient2 ".parse(), Ok(AlgorithmName::Gradient2));
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        for bad in ["gradient", "fixed", "envoy-gradient", "", "vegas windowed"] {
            let e = bad.parse::<AlgorithmName>().unwrap_err();
            assert_eq!(e.valid(), &AlgorithmName::NAMES[..]);
            assert!(e.to_string().contains("envoy-corrected"), "{e}");
        }
        let e = "adaptive_lifo".parse::<QueueName>().unwrap_err();
        assert_eq!(e.kind(), "queue discipline");
        assert!(e.to_string().contains("adaptive-lifo"), "{e}");
    }

    #[test]
    fn names_build_what_they_say() {
        let build = |n: AlgorithmName| n.build(&AlgorithmParams::default()).unwrap();
        // `gradient2` is Netflix's, windowed: its name is the reference one and it aggregates.
        let g = build(AlgorithmName::Gradient2);
        assert_eq!(g.name(), "gradient2");
        assert!(g.aggregates_samples());
        assert!(!build(AlgorithmName::Gradient2Raw).aggregates_samples());
        assert_eq!(
            build(AlgorithmName::Gradient2CorrectedFast).name(),
            "gradient2-corrected"
        );
        assert_eq!(build(AlgorithmName::Envoy).name(), "envoy-gradient");
        assert_eq!(
            build(AlgorithmName::Recommended).name(),
            recommended().name()
        );
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let p = AlgorithmParams {
            smoothing: Some(0.5),
            ..AlgorithmParams::default()
        };
        assert_eq!(
            AlgorithmName::Aimd.build(&p).unwrap_err().field(),
            "smoothing"
        );
        assert_eq!(
            AlgorithmName::Recommended.build(&p).unwrap_err().field(),
            "smoothing"
        );
        assert_eq!(
            AlgorithmName::Static
                .build(&AlgorithmParams::default())
                .unwrap_err()
                .field(),
            "limit"
        );
        // Netflix's Gradient2 ignores a backoff: naming one is an error, not a no-op.
        let p = AlgorithmParams {
            backoff_ratio: Some(0.8),
            ..AlgorithmParams::default()
        };
        assert_eq!(
            AlgorithmName::Gradient2.build(&p).unwrap_err().field(),
            "backoff_ratio"
        );
        assert!(AlgorithmName::Gradient2Corrected.build(&p).is_ok());
        let p = AlgorithmParams {
            min_limit: Some(9),
            max_limit: Some(2),
            ..AlgorithmParams::default()
        };
        assert!(AlgorithmName::Envoy.build(&p).is_err());
        assert_eq!(
            AlgorithmName::Vegas.build(&p).unwrap_err().field(),
            "min_limit"
        );
        let p = AlgorithmParams {
            min_limit: Some(1),
            max_limit: Some(5),
            ..AlgorithmParams::default()
        };
        assert_eq!(AlgorithmName::Aimd.build(&p).unwrap().limit(), 5);
        // Headroom's two floors are its own: accepted there, named anywhere else, and
        // checked by its builder (an overload floor of 0 is no floor).
        let p = AlgorithmParams {
            burst_floor: Some(8),
            overload_floor: Some(2),
            ..AlgorithmParams::default()
        };
        assert!(AlgorithmName::Headroom.build(&p).is_ok());
        assert_eq!(
            AlgorithmName::Aimd.build(&p).unwrap_err().field(),
            "burst_floor"
        );
        let p = AlgorithmParams {
            overload_floor: Some(0),
            ..AlgorithmParams::default()
        };
        assert_eq!(
            AlgorithmName::Headroom.build(&p).unwrap_err().field(),
            "overload_floor"
        );
    }
}
