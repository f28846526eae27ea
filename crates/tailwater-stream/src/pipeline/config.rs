//! Stage configuration: input queue capacity, concurrency, batching.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tailwater_core::clock::Clock;
use tailwater_core::limiter::Request;
use tailwater_core::{Limiter, OwnedPermit};

/// The default input queue capacity of a stage: small, as the architecture's defaults are.
pub const DEFAULT_CAPACITY: usize = 16;

/// How many items a stage works on at once.
///
/// `Fixed(n)` runs `n` workers. [`Concurrency::limited`] runs up to `max` workers, each
/// holding a permit of a tailwater [`Limiter`] while it works, so the limit algorithm (say
/// Gradient2 or AIMD on the stage's latency) decides the effective concurrency below `max`.
///
/// ```
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use tailwater_core::Limiter;
/// use tailwater_core::algorithm::Aimd;
/// use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
/// use tailwater_stream::{Concurrency, StageConfig};
///
/// let limiter = Limiter::builder()
///     .algorithm(Aimd::default())
///     .queue(QueueConfig::new(64, QueueDiscipline::Fifo, Duration::from_secs(1))?)
///     .build()?;
/// let max = NonZeroUsize::new(32).unwrap();
/// let config = StageConfig::new().concurrency(Concurrency::limited(max, limiter));
/// # let _ = config;
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Concurrency {
    pub(crate) workers: NonZeroUsize,
    pub(crate) limiter: Option<Arc<dyn StageLimiter>>,
}

impl fmt::Debug for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Concurrency")
            .field("workers", &self.workers)
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

impl Concurrency {
    /// `n` workers, always.
    pub fn fixed(n: NonZeroUsize) -> Self {
        Self {
            workers: n,
            limiter: None,
        }
    }

    /// Up to `max` workers, each working only while it holds a permit of `limiter`; the
    /// permit reports success when the work ends, so the work's latency drives the limit.
    ///
    /// A worker that is refused a permit waits for the rejection's retry hint (at least
    /// 1 ms) and asks again; give the limiter a queue
    /// ([`QueueConfig`](tailwater_core::limiter::QueueConfig)) to be woken promptly instead.
    /// Time spent so counts as the stage's *limited* time. Use
    /// [`TokioClock`](tailwater_core::clock::TokioClock) as the limiter's clock in tests that
    /// pause tokio's time.
    pub fn limited<C: Clock + Send + Sync + 'static>(
        max: NonZeroUsize,
        limiter: Limiter<C>,
    ) -> Self {
        Self {
            workers: max,
            limiter: Some(Arc::new(limiter)),
        }
    }
}

impl Default for Concurrency {
    /// One worker.
    fn default() -> Self {
        Self::fixed(NonZeroUsize::MIN)
    }
}

/// A permit held while a worker works; dropping it reports nothing, `done` reports success.
pub(crate) trait Held: Send {
    fn done(self: Box<Self>);
}

impl<C: Clock + Send + Sync + 'static> Held for OwnedPermit<C> {
    fn done(self: Box<Self>) {
        (*self).success();
    }
}

pub(crate) type PermitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Held>, Duration>> + Send + 'a>>;

/// A limiter seen without its clock type.
pub(crate) trait StageLimiter: Send + Sync {
    /// A permit, or the time to wait before asking again.
    fn permit(&self) -> PermitFuture<'_>;
}

/// How long one wait in the limiter's queue may last before the worker asks again.
const PERMIT_WAIT: Duration = Duration::from_secs(1);

impl<C: Clock + Send + Sync + 'static> StageLimiter for Limiter<C> {
    fn permit(&self) -> PermitFuture<'_> {
        Box::pin(async move {
            match self.acquire(Request::new(), PERMIT_WAIT).await {
                Ok(permit) => Ok(Box::new(permit) as Box<dyn Held>),
                Err(rejection) => Err(rejection.retry_after.max(Duration::from_millis(1))),
            }
        })
    }
}

/// One stage's settings: its input queue and its concurrency.
///
/// ```
/// use std::num::NonZeroUsize;
/// use tailwater_stream::{Concurrency, StageConfig};
/// let config = StageConfig::new()
///     .capacity(NonZeroUsize::new(64).unwrap())
///     .concurrency(Concurrency::fixed(NonZeroUsize::new(4).unwrap()));
/// assert_eq!(config.queue_capacity(), 64);
/// ```
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub(crate) capacity: NonZeroUsize,
    pub(crate) concurrency: Concurrency,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl StageConfig {
    /// An input queue of [`DEFAULT_CAPACITY`] items and one worker.
    pub fn new() -> Self {
        Self {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            concurrency: Concurrency::default(),
        }
    }

    /// The capacity of the stage's input queue: the most items waiting for this stage.
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The stage's concurrency.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The input queue capacity.
    pub fn queue_capacity(&self) -> usize {
        self.capacity.get()
    }
}

/// A batching stage's settings: a batch is handed on when it holds `size` items or when
/// `linger` has passed since its first item, whichever comes first (Kafka's `batch.size`
/// and `linger.ms`). A partial batch is handed on when the input ends.
///
/// ```
/// use std::{num::NonZeroUsize, time::Duration};
/// use tailwater_stream::pipeline::BatchConfig;
/// let batch = BatchConfig::new(NonZeroUsize::new(100).unwrap(), Duration::from_millis(5));
/// assert_eq!(batch.size(), 100);
/// ```
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub(crate) size: NonZeroUsize,
    pub(crate) linger: Duration,
    pub(crate) capacity: NonZeroUsize,
}

impl BatchConfig {
    /// Batches of at most `size` items, waiting at most `linger` for a batch to fill; an
    /// input queue of [`DEFAULT_CAPACITY`] items.
    pub fn new(size: NonZeroUsize, linger: Duration) -> Self {
        Self {
            size,
            linger,
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// The capacity of the stage's input queue.
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The largest batch.
    pub fn size(&self) -> usize {
        self.size.get()
    }

    /// The longest wait for a batch to fill.
    pub fn linger(&self) -> Duration {
        self.linger
    }
}
