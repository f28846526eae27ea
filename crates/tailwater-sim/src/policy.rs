//! Admission policies: which real tailwater-core limiter sits in front of the server.
//!
//! A policy is named `ALGORITHM[+QUEUE][+tiers]`:
//!
//! | Part | Values |
//! |---|---|
//! | ALGORITHM | `none` (no limiter), or any name of [`AlgorithmName`] (tailwater-core's one spelling: `recommended`, `static`, `aimd`, `vegas`, `vegas-windowed`, `gradient2` (in Netflix's 1 s `WindowedLimit`), `gradient2-raw` (per sample), `gradient2-corrected` (windowed), `gradient2-corrected-fast` (20–100 ms windows), `envoy`, `envoy-corrected`, `ll-guard` (the research notes' corrected Gradient2 with a Little's-law guard), `headroom` (what `recommended` is today: binding-only correction, noise-scaled queue test, the same guard)); `static` is a fixed limit = the server's workers, `static:N` one of N |
//! | QUEUE | a [`QueueName`] other than `none`: `fifo`, `lifo`, `adaptive-lifo`, `codel`, each optionally `:K` waiters (default 100; without a queue: reject at once when full) |
//! | `tiers` | criticality thresholds 100/80/50/20 % (tailwater-core defaults) |
//!
//! Reference algorithms use their anchors' defaults unchanged (Netflix AIMD and Gradient2
//! floor the limit at 20; Gradient2 runs in Netflix's `WindowedLimit` as its README
//! recommends; Envoy uses a 100 ms update interval and minRTT windows pinned to 3, one every
//! 2 s, see [`ENVOY_MIN_RTT_INTERVAL`]); `-corrected` variants are tailwater's fixes of them.
//! Queues hold 100 waiters (Netflix's
//! `LifoBlockingLimiter` backlog) for at most the client's timeout.

use std::time::Duration;

use tailwater_core::algorithm::LimitAlgorithm;
use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::QueueConfig;
use tailwater_core::names::{AlgorithmName, AlgorithmParams, QueueName};
use tailwater_core::{Limiter, TierThresholds};

use crate::error::SimError;

/// Envoy's `min_rtt_calc_params.interval` has no default (it is required; the docs example
/// uses 60 s). The built-in runs last 8–10 s, so the simulator uses 2 s to let minRTT windows
/// recur within a run, where their cost (the limit pinned to 3) shows.
pub const ENVOY_MIN_RTT_INTERVAL: Duration = Duration::from_secs(2);

/// Waiters a policy's queue holds.
pub const QUEUE_CAPACITY: usize = 100;

/// The standard lineup compared in every built-in scenario.
pub const LINEUP: [&str; 23] = [
    "none",
    "static",
    "static+fifo",
    "static+lifo",
    "static+adaptive-lifo",
    "static+codel",
    "static+tiers",
    "headroom",
    "aimd",
    "vegas",
    "vegas-windowed",
    "gradient2",
    "gradient2-raw",
    "gradient2-corrected",
    "gradient2-corrected-fast",
    "envoy",
    "envoy-corrected",
    "aimd+codel",
    "vegas+codel",
    "gradient2-corrected+codel",
    "gradient2-corrected-fast+codel",
    "gradient2-corrected+tiers",
    "ll-guard",
];

/// A parsed policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The name as given.
    pub name: String,
    /// The algorithm, or `None` for `none` (no limiter).
    pub algorithm: Option<AlgorithmName>,
    /// A fixed limit for `static:N`.
    pub static_limit: Option<usize>,
    /// The queue, if any.
    pub queue: Option<QueueName>,
    /// Whether tiers are on.
    pub tiers: bool,
    /// Waiters the queue holds (`fifo:K`; default [`QUEUE_CAPACITY`]).
    pub queue_capacity: Option<usize>,
}

impl PolicySpec {
    /// Parses `ALGORITHM[+QUEUE][+tiers]`; the algorithm and queue names go through
    /// tailwater-core's one [`FromStr`](std::str::FromStr) each.
    pub fn parse(name: &str) -> Result<Self, SimError> {
        let unknown = |detail: String| SimError::Unknown {
            kind: "policy",
            name: name.to_string(),
            known: format!(
                "ALGORITHM[+QUEUE][+tiers] with ALGORITHM none, static:N or one of {}; QUEUE one of {}{}",
                AlgorithmName::NAMES.join(", "),
                QueueName::NAMES[1..].join(", "),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
        };
        let mut parts = name.trim().split('+');
        let algo = parts.next().unwrap_or_default();
        let (algorithm, static_limit) = match algo.split_once(':') {
            Some((a, n)) if a == AlgorithmName::Static.as_str() => {
                let n: usize = n
                    .parse()
                    .map_err(|_| unknown(format!("`{n}` is not a number")))?;
                if n == 0 {
                    return Err(SimError::invalid(
                        "policy",
                        "a static limit must be at least 1",
                    ));
                }
                (Some(AlgorithmName::Static), Some(n))
            }
            Some(_) => return Err(unknown(String::new())),
            None if algo == "none" => (None, None),
            None => (
                Some(algo.parse().map_err(|e| unknown(format!("{e}")))?),
                None,
            ),
        };
        let mut queue = None;
        let mut tiers = false;
        let mut queue_capacity = None;
        for part in parts {
            let part = match part.split_once(':') {
                Some((q, k)) if q != "tiers" => {
                    let k: usize = k
                        .parse()
                        .map_err(|_| unknown(format!("`{k}` is not a number")))?;
                    if k == 0 {
                        return Err(SimError::invalid(
                            "policy",
                            "a queue must hold at least 1 waiter",
                        ));
                    }
                    queue_capacity = Some(k);
                    q
                }
                Some(_) => return Err(unknown(String::new())),
                None => part,
            };
            if part == "tiers" && !tiers {
                tiers = true;
                continue;
            }
            match part.parse::<QueueName>() {
                Ok(q) if q != QueueName::None && queue.is_none() => queue = Some(q),
                Ok(_) => return Err(unknown(String::new())),
                Err(e) => return Err(unknown(format!("{e}"))),
            }
        }
        if algorithm.is_none() && (queue.is_some() || tiers) {
            return Err(SimError::invalid(
                "policy",
                format!("`{name}`: `none` has no limiter to queue or tier"),
            ));
        }
        Ok(Self {
            name: name.trim().to_string(),
            algorithm,
            static_limit,
            queue,
            tiers,
            queue_capacity,
        })
    }

    /// The algorithm object, fresh, built by tailwater-core's [`AlgorithmName::build`]:
    /// `static` gets the server's `workers` unless `static:N`, Envoy's controllers re-measure
    /// minRTT every [`ENVOY_MIN_RTT_INTERVAL`], and every algorithm gets `seed`.
    pub fn algorithm(
        &self,
        workers: usize,
        seed: u64,
    ) -> Result<Option<Box<dyn LimitAlgorithm>>, SimError> {
        let Some(name) = self.algorithm else {
            return Ok(None);
        };
        let params = AlgorithmParams {
            limit: (name == AlgorithmName::Static).then(|| self.static_limit.unwrap_or(workers)),
            min_rtt_interval: matches!(name, AlgorithmName::Envoy | AlgorithmName::EnvoyCorrected)
                .then_some(ENVOY_MIN_RTT_INTERVAL),
            seed: Some(seed),
            ..AlgorithmParams::default()
        };
        name.build(&params).map(Some).map_err(|e| SimError::Core {
            policy: self.name.clone(),
            source: e,
        })
    }

    /// The limiter on `clock`, or `None` for `none`.
    pub fn build(
        &self,
        clock: &ManualClock,
        workers: usize,
        client_timeout: Duration,
        seed: u64,
    ) -> Result<Option<Limiter<ManualClock>>, SimError> {
        let Some(algorithm) = self.algorithm(workers, seed)? else {
            return Ok(None);
        };
        let core = |e| SimError::Core {
            policy: self.name.clone(),
            source: e,
        };
        let mut b = Limiter::builder()
            .clock(clock.clone())
            .boxed_algorithm(algorithm);
        if self.tiers {
            b = b.tiers(TierThresholds::default());
        }
        if let Some(discipline) = self.queue.and_then(QueueName::discipline) {
            b = b.queue(
                QueueConfig::new(
                    self.queue_capacity.unwrap_or(QUEUE_CAPACITY),
                    discipline,
                    client_timeout,
                )
                .map_err(core)?,
            );
        }
        b.build().map(Some).map_err(core)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineup_parses_and_builds() {
        let clock = ManualClock::new();
        for name in LINEUP {
            let spec = PolicySpec::parse(name).unwrap();
            spec.build(&clock, 16, Duration::from_secs(1), 1).unwrap();
        }
        assert!(PolicySpec::parse("static:0").is_err());
        assert!(PolicySpec::parse("magic").is_err());
        assert!(PolicySpec::parse("none+fifo").is_err());
        assert!(PolicySpec::parse("aimd+fifo+lifo").is_err());
        assert!(PolicySpec::parse("aimd+none").is_err());
        assert!(PolicySpec::parse("aimd+adaptive_lifo").is_err());
        assert!(PolicySpec::parse("fixed").is_err());
        // Every algorithm of the core is a policy, under its one name.
        for name in AlgorithmName::NAMES {
            let spec = PolicySpec::parse(name).unwrap();
            assert_eq!(spec.algorithm.map(AlgorithmName::as_str), Some(name));
            spec.build(&clock, 16, Duration::from_secs(1), 1).unwrap();
        }
        let e = PolicySpec::parse("gradient").unwrap_err().to_string();
        assert!(e.contains("gradient2-corrected-fast"), "{e}");
    }
}
