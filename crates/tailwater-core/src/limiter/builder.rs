//! [`LimiterBuilder`]: every optional part of a [`Limiter`], validated in one place.

use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::algorithm::{LimitAlgorithm, recommended};
use crate::clock::{Clock, MonotonicClock};
use crate::criticality::{Criticality, TierThresholds};
use crate::error::ConfigError;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex};

use super::contention::Contention;
use super::partitions::Partitions;
use super::queue::{QueueConfig, QueueState};
use super::sampling::{RttSampling, Sampler};
use super::stats::Counters;
use super::waiters::WaitQueue;
use super::word::{MAX_LIMIT, ReadMostly};
use super::{Engine, Limiter, Shared};

impl Limiter<MonotonicClock> {
    /// A limiter driven by `algorithm`, on the monotonic clock, with no tiers, partitions or
    /// queue (it rejects at once when full).
    pub fn new(algorithm: impl LimitAlgorithm) -> Self {
        Self::builder()
            .algorithm(algorithm)
            .build()
            .expect("a limiter with no optional parts has nothing to validate")
    }

    /// A builder with safe defaults: the [`recommended`] algorithm (corrected Gradient2 in
    /// short windows, limit within 20..200), no tiers, no partitions, no queue (reject at
    /// once), a 1 s retry hint.
    pub fn builder() -> LimiterBuilder<MonotonicClock> {
        LimiterBuilder {
            clock: MonotonicClock::new(),
            algorithm: None,
            tiers: None,
            partitions: Vec::new(),
            queue: None,
            retry_after: Duration::from_secs(1),
            rtt_sampling: RttSampling::default(),
        }
    }
}

/// Builds a [`Limiter`]; every option is validated in [`build`](Self::build).
pub struct LimiterBuilder<C: Clock = MonotonicClock> {
    clock: C,
    algorithm: Option<Box<dyn LimitAlgorithm>>,
    tiers: Option<TierThresholds>,
    partitions: Vec<(String, f64)>,
    queue: Option<QueueConfig>,
    retry_after: Duration,
    rtt_sampling: RttSampling,
}

impl<C: Clock> fmt::Debug for LimiterBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("algorithm", &self.algorithm)
            .field("tiers", &self.tiers)
            .field("partitions", &self.partitions)
            .field("queue", &self.queue)
            .field("rtt_sampling", &self.rtt_sampling)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> LimiterBuilder<C> {
    /// The limit algorithm (default: [`recommended`]).
    pub fn algorithm(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Some(Box::new(algorithm));
        self
    }

    /// An algorithm chosen at run time (from configuration).
    pub fn boxed_algorithm(mut self, algorithm: Box<dyn LimitAlgorithm>) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// The clock (default: [`MonotonicClock`]). Tests and the simulator pass a
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn clock<C2: Clock>(self, clock: C2) -> LimiterBuilder<C2> {
        LimiterBuilder {
            clock,
            algorithm: self.algorithm,
            tiers: self.tiers,
            partitions: self.partitions,
            queue: self.queue,
            retry_after: self.retry_after,
            rtt_sampling: self.rtt_sampling,
        }
    }

    /// Enables criticality tiers with these thresholds.
    pub fn tiers(mut self, tiers: TierThresholds) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// Adds a named partition with a share of the limit in `(0, 1]`. Shares must sum to at
    /// most 1.
    pub fn partition(mut self, name: impl Into<String>, share: f64) -> Self {
        self.partitions.push((name.into(), share));
        self
    }

    /// Enables the bounded wait queue.
    pub fn queue(mut self, queue: QueueConfig) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The retry hint carried by rejections (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Which permits measure their RTT (default [`RttSampling::Adaptive`] at 2 000 samples
    /// per second; only algorithms that aggregate samples are ever fed a subset).
    pub fn rtt_sampling(mut self, rtt_sampling: RttSampling) -> Self {
        self.rtt_sampling = rtt_sampling;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Limiter<C>, ConfigError> {
        let algorithm = self.algorithm.unwrap_or_else(|| Box::new(recommended()));
        let partitions = Partitions::new(self.partitions)?;
        if let Some(queue) = &self.queue
            && queue.capacity() > MAX_LIMIT
        {
            return Err(ConfigError::new(
                "queue.capacity",
                format!("must be at most {MAX_LIMIT}, got {}", queue.capacity()),
            ));
        }
        let limit = algorithm.limit().clamp(1, MAX_LIMIT);
        let algorithm_name = algorithm.name();
        let sampler = Sampler::new(self.rtt_sampling, algorithm.aggregates_samples());
        Ok(Limiter {
            shared: Arc::new(Shared {
                clock: self.clock,
                word: CachePadded::new(AtomicU64::new(0)),
                read_mostly: CachePadded::new(ReadMostly {
                    limit: AtomicUsize::new(limit),
                    sample_mask: AtomicUsize::new(0),
                }),
                peak: AtomicUsize::new(0),
                engine: Mutex::new(Engine {
                    algorithm,
                    sampler,
                    last_rtt: Duration::ZERO,
                }),
                algorithm_name,
                carried_drops: AtomicUsize::new(0),
                tiers: self.tiers,
                contention: self.tiers.map(Contention::new),
                partitions,
                queue: self.queue.map(|config| WaitQueue {
                    config,
                    state: Mutex::new(QueueState::new()),
                    waiting_from: AtomicUsize::new(Criticality::ALL.len()),
                }),
                counters: Counters::default(),
                retry_after: self.retry_after,
            }),
        })
    }
}
