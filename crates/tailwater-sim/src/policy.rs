//! Admission policies: which real tailwater-core limiter sits in front of the server.
//!
//! A policy is named `ALGORITHM[+QUEUE][+tiers]`:
//!
//! | Part | Values |
//! |---|---|
//! | ALGORITHM | `none` (no limiter), `static` (a fixed limit = the server's workers), `static:N`, `aimd`, `vegas`, `vegas-windowed` (in Netflix's 1 s `WindowedLimit`), `gradient2` (in Netflix's 1 s `WindowedLimit`), `gradient2-raw` (per sample), `gradient2-corrected` (windowed), `gradient2-corrected-fast` (20–100 ms windows), `envoy`, `envoy-corrected`, `ll-guard` (the research notes' corrected Gradient2 with a Little's-law guard), `headroom` (tailwater's default: binding-only correction, noise-scaled queue test, the same guard) |
//! | QUEUE | `fifo`, `lifo`, `adaptive-lifo`, `codel`, each optionally `:K` waiters (default 100; without a queue: reject at once when full) |
//! | `tiers` | criticality thresholds 100/80/50/20 % (tailwater-core defaults) |
//!
//! Reference algorithms use their anchors' defaults unchanged (Netflix AIMD and Gradient2
//! floor the limit at 20; Gradient2 runs in Netflix's `WindowedLimit` as its README
//! recommends; Envoy uses a 100 ms update interval and minRTT windows pinned to 3, one every
//! 2 s, see [`ENVOY_MIN_RTT_INTERVAL`]); `-corrected` variants are tailwater's fixes of them.
//! Queues hold 100 waiters (Netflix's
//! `LifoBlockingLimiter` backlog) for at most the client's timeout.

use std::time::Duration;

use tailwater_core::algorithm::{
    Aimd, EnvoyGradient, Fixed, Gradient2, Headroom, LimitAlgorithm, LlGuard, Vegas, Windowed,
};
use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_core::{Limiter, TierThresholds};

use crate::error::SimError;

/// Envoy's `min_rtt_calc_params.interval` has no default (it is required; the docs example
/// uses 60 s). The built-in runs last 8–10 s, so the simulator uses 2 s to let minRTT windows
/// recur within a run, where their cost (the limit pinned to 3) shows.
pub const ENVOY_MIN_RTT_INTERVAL: Duration = Duration::from_secs(2);

/// `gradient2-corrected-fast`: windows of `clamp(2·minRTT, 20 ms, 100 ms)` instead of
/// Netflix's fixed 1 s, so that the limit can move within a second of a load step.
pub const FAST_WINDOW: (Duration, Duration) =
    (Duration::from_millis(20), Duration::from_millis(100));

/// Waiters a policy's queue holds.
pub const QUEUE_CAPACITY: usize = 100;

/// The algorithms a policy can name.
pub const ALGORITHMS: [&str; 13] = [
    "none",
    "static",
    "aimd",
    "vegas",
    "vegas-windowed",
    "gradient2",
    "gradient2-raw",
    "gradient2-corrected",
    "gradient2-corrected-fast",
    "envoy",
    "envoy-corrected",
    "ll-guard",
    "headroom",
];

/// The standard lineup compared in every built-in scenario.
pub const LINEUP: [&str; 23] = [
    "none",
    "static",
    "static+fifo",
    "static+lifo",
    "static+adaptive-lifo",
    "static+codel",
    "static+tiers",
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
    "headroom",
];

/// A queue discipline by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Oldest first.
    Fifo,
    /// Newest first.
    Lifo,
    /// FIFO, LIFO under a standing queue (Fail at Scale).
    AdaptiveLifo,
    /// Controlled delay, 5 ms / 100 ms (Fail at Scale).
    CoDel,
}

/// A parsed policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The name as given.
    pub name: String,
    /// The algorithm part.
    pub algorithm: String,
    /// A fixed limit for `static:N`.
    pub static_limit: Option<usize>,
    /// The queue, if any.
    pub queue: Option<QueueKind>,
    /// Whether tiers are on.
    pub tiers: bool,
    /// Waiters the queue holds (`fifo:K`; default [`QUEUE_CAPACITY`]).
    pub queue_capacity: Option<usize>,
}

impl PolicySpec {
    /// Parses `ALGORITHM[+QUEUE][+tiers]`.
    pub fn parse(name: &str) -> Result<Self, SimError> {
        let unknown = || SimError::Unknown {
            kind: "policy",
            name: name.to_string(),
            known: format!(
                "ALGORITHM[+QUEUE][+tiers] with ALGORITHM one of {}, static:N; QUEUE one of fifo, lifo, adaptive-lifo, codel",
                ALGORITHMS.join(", ")
            ),
        };
        let mut parts = name.trim().split('+');
        let algo = parts.next().unwrap_or_default();
        let (algorithm, static_limit) = match algo.split_once(':') {
            Some(("static", n)) => {
                let n: usize = n.parse().map_err(|_| unknown())?;
                if n == 0 {
                    return Err(SimError::invalid(
                        "policy",
                        "a static limit must be at least 1",
                    ));
                }
                ("static".to_string(), Some(n))
            }
            Some(_) => return Err(unknown()),
            None if ALGORITHMS.contains(&algo) => (algo.to_string(), None),
            None => return Err(unknown()),
        };
        let mut queue = None;
        let mut tiers = false;
        let mut queue_capacity = None;
        for part in parts {
            let part = match part.split_once(':') {
                Some((q, k)) if q != "tiers" => {
                    let k: usize = k.parse().map_err(|_| unknown())?;
                    if k == 0 {
                        return Err(SimError::invalid(
                            "policy",
                            "a queue must hold at least 1 waiter",
                        ));
                    }
                    queue_capacity = Some(k);
                    q
                }
                Some(_) => return Err(unknown()),
                None => part,
            };
            match part {
                "fifo" if queue.is_none() => queue = Some(QueueKind::Fifo),
                "lifo" if queue.is_none() => queue = Some(QueueKind::Lifo),
                "adaptive-lifo" if queue.is_none() => queue = Some(QueueKind::AdaptiveLifo),
                "codel" if queue.is_none() => queue = Some(QueueKind::CoDel),
                "tiers" if !tiers => tiers = true,
                _ => return Err(unknown()),
            }
        }
        if algorithm == "none" && (queue.is_some() || tiers) {
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

    /// The algorithm object, fresh.
    pub fn algorithm(
        &self,
        workers: usize,
        seed: u64,
    ) -> Result<Option<Box<dyn LimitAlgorithm>>, SimError> {
        let core = |e| SimError::Core {
            policy: self.name.clone(),
            source: e,
        };
        let algo: Box<dyn LimitAlgorithm> = match self.algorithm.as_str() {
            "none" => return Ok(None),
            "static" => Box::new(Fixed::new(self.static_limit.unwrap_or(workers)).map_err(core)?),
            "aimd" => Box::new(Aimd::default()),
            "vegas" => Box::new(Vegas::builder().seed(seed).build().map_err(core)?),
            "vegas-windowed" => Box::new(Windowed::new(
                Vegas::builder().seed(seed).build().map_err(core)?,
            )),
            "gradient2" => Box::new(Windowed::new(Gradient2::reference())),
            "gradient2-raw" => Box::new(Gradient2::reference()),
            "gradient2-corrected" => Box::new(Windowed::new(Gradient2::corrected())),
            "gradient2-corrected-fast" => Box::new(
                Windowed::builder()
                    .min_window(FAST_WINDOW.0)
                    .max_window(FAST_WINDOW.1)
                    .build(Gradient2::corrected())
                    .map_err(core)?,
            ),
            "envoy" => Box::new(
                EnvoyGradient::builder()
                    .min_rtt_interval(ENVOY_MIN_RTT_INTERVAL)
                    .seed(seed)
                    .build()
                    .map_err(core)?,
            ),
            "envoy-corrected" => Box::new(
                EnvoyGradient::builder()
                    .corrected()
                    .min_rtt_interval(ENVOY_MIN_RTT_INTERVAL)
                    .seed(seed)
                    .build()
                    .map_err(core)?,
            ),
            "ll-guard" => Box::new(LlGuard::default()),
            "headroom" => Box::new(Headroom::default()),
            _ => {
                return Err(SimError::Unknown {
                    kind: "policy",
                    name: self.name.clone(),
                    known: ALGORITHMS.join(", "),
                });
            }
        };
        Ok(Some(algo))
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
        if let Some(q) = self.queue {
            let discipline = match q {
                QueueKind::Fifo => QueueDiscipline::Fifo,
                QueueKind::Lifo => QueueDiscipline::Lifo,
                QueueKind::AdaptiveLifo => QueueDiscipline::adaptive_lifo(),
                QueueKind::CoDel => QueueDiscipline::codel(),
            };
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
    }
}
