//! Bounded pipelines: source → stages → sink with backpressure end to end.
//!
//! Each stage has a bounded input queue (a tokio `mpsc` channel of the stage's
//! [`capacity`](StageConfig::capacity)) and one or more workers. A worker that cannot hand
//! its output on waits, so a slow stage fills its input queue, then its upstream's, and at
//! last the source stops being pulled: memory is bounded by the sum of the capacities (plus
//! one item per worker) whatever the rates, and throughput settles at the slowest stage's.
//!
//! **Which stage is the bottleneck** is read, not guessed, from where time goes. As in
//! Apache Flink's backpressure monitoring (`busyTimeMsPerSecond`,
//! `backPressuredTimeMsPerSecond`, `idleTimeMsPerSecond`), each worker's time is *busy*,
//! *backpressured* (blocked on the next stage's full queue) or *idle* (waiting for input),
//! plus *limited* (waiting for the stage limiter's permit). Upstream of the bottleneck
//! stages are backpressured, downstream of it they are idle, and the bottleneck is busy (or
//! limited): [`PipelineStats::bottleneck`] names it. Waits are timed only when they wait,
//! so an unblocked pipeline reads no clock per item.
//!
//! **Draining loses nothing admitted**: an item is admitted when the source stream yields
//! it. [`PipelineHandle::drain`] stops pulling the source; every admitted item then flows
//! to the sink and the tasks end as their inputs close. Dropping the [`PipelineHandle`]
//! instead aborts the tasks (the queued items are lost, and counted as
//! `admitted - completed` in the last stats).
//!
//! ```
//! use std::num::NonZeroUsize;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//! use tailwater_stream::{Concurrency, Pipeline, StageConfig};
//! use tailwater_stream::pipeline::BatchConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tailwater_stream::pipeline::PipelineError> {
//! let total = Arc::new(AtomicU64::new(0));
//! let sum = Arc::clone(&total);
//! let four = NonZeroUsize::new(4).unwrap();
//! let handle = Pipeline::from_stream(futures_util::stream::iter(1..=1000u64))
//!     .stage("double", StageConfig::new().concurrency(Concurrency::fixed(four)), |x| async move { x * 2 })
//!     .batch("batch", BatchConfig::new(NonZeroUsize::new(100).unwrap(), Duration::from_millis(5)))
//!     .sink("sum", StageConfig::new(), move |batch: Vec<u64>| {
//!         let sum = Arc::clone(&sum);
//!         async move { sum.fetch_add(batch.iter().sum::<u64>(), Ordering::Relaxed); }
//!     });
//! let stats = handle.join().await?;
//! assert_eq!(total.load(Ordering::Relaxed), 1000 * 1001);
//! assert_eq!(stats.admitted(), 1000);
//! # Ok(())
//! # }
//! ```

mod account;
mod config;
mod io;
pub mod metrics;
mod worker;

pub use account::StageStats;
pub use config::{BatchConfig, Concurrency, DEFAULT_CAPACITY, StageConfig};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use account::StageAccount;
use worker::DrainSignal;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;
type Tail<T> = Box<dyn FnOnce(mpsc::Sender<T>) -> Vec<(usize, Task)> + Send>;

/// A pipeline being built; its last stage yields `T`. Nothing runs until
/// [`sink`](Pipeline::sink) spawns the tasks (which needs a tokio runtime).
pub struct Pipeline<T> {
    accounts: Vec<Arc<StageAccount>>,
    tasks: Vec<(usize, Task)>,
    tail: Tail<T>,
    drain: Arc<DrainSignal>,
}

impl<T> fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        f.debug_struct("Pipeline").field("stages", &names).finish()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// A pipeline that pulls `source`; the source is the stage named `source` in the stats.
    /// The source is pulled only when the first stage's queue has room.
    pub fn from_stream<S>(source: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        let drain = Arc::new(DrainSignal::default());
        let account = Arc::new(StageAccount::new("source".to_owned(), 1, 0));
        let tail_account = Arc::clone(&account);
        let tail_drain = Arc::clone(&drain);
        Self {
            accounts: vec![account],
            tasks: Vec::new(),
            tail: Box::new(move |out| {
                let task: Task =
                    Box::pin(worker::run_source(source, out, tail_account, tail_drain));
                vec![(0, task)]
            }),
            drain,
        }
    }

    fn then<U>(
        mut self,
        name: &str,
        capacity: usize,
        workers: usize,
        make: impl FnOnce(mpsc::Receiver<T>, Arc<StageAccount>, mpsc::Sender<U>) -> Vec<Task>
        + Send
        + 'static,
    ) -> Pipeline<U> {
        let (tx, rx) = mpsc::channel(capacity);
        self.tasks.extend((self.tail)(tx));
        let index = self.accounts.len();
        let account = Arc::new(StageAccount::new(name.to_owned(), workers, capacity));
        self.accounts.push(Arc::clone(&account));
        Pipeline {
            accounts: self.accounts,
            tasks: self.tasks,
            tail: Box::new(move |out| {
                make(rx, account, out)
                    .into_iter()
                    .map(|task| (index, task))
                    .collect()
            }),
            drain: self.drain,
        }
    }

    /// Adds a stage named `name` that maps each item with `work`, with `config`'s input
    /// queue and concurrency. With more than one worker, items may leave in a different
    /// order than they came (use [`keyed`](crate::keyed) where order per key matters).
    pub fn stage<U, F, Fut>(self, name: &str, config: StageConfig, work: F) -> Pipeline<U>
    where
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = U> + Send + 'static,
    {
        let workers = config.concurrency.workers.get();
        let limiter = config.concurrency.limiter.clone();
        self.then(
            name,
            config.capacity.get(),
            workers,
            move |rx, account, out| {
                let work = Arc::new(work);
                io::Input::split(rx, workers)
                    .into_iter()
                    .map(|input| {
                        let task: Task = Box::pin(worker::run_worker(
                            input,
                            Arc::clone(&work),
                            Some(out.clone()),
                            limiter.clone(),
                            Arc::clone(&account),
                        ));
                        task
                    })
                    .collect()
            },
        )
    }

    /// Adds a batching stage named `name` (one worker): see [`BatchConfig`].
    pub fn batch(self, name: &str, config: BatchConfig) -> Pipeline<Vec<T>> {
        self.then(name, config.capacity.get(), 1, move |rx, account, out| {
            let task: Task = Box::pin(worker::run_batch(rx, config, out, account));
            vec![task]
        })
    }

    /// Ends the pipeline with a sink named `name` that finishes each item with `work`, and
    /// spawns every task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn sink<F, Fut>(self, name: &str, config: StageConfig, work: F) -> PipelineHandle
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let workers = config.concurrency.workers.get();
        let limiter = config.concurrency.limiter.clone();
        let end: Pipeline<()> = self.then(
            name,
            config.capacity.get(),
            workers,
            move |rx, account, _| {
                let work = Arc::new(work);
                io::Input::split(rx, workers)
                    .into_iter()
                    .map(|input| {
                        let task: Task = Box::pin(worker::run_worker::<T, (), _, _>(
                            input,
                            Arc::clone(&work),
                            None,
                            limiter.clone(),
                            Arc::clone(&account),
                        ));
                        task
                    })
                    .collect()
            },
        );
        let Pipeline {
            accounts,
            mut tasks,
            tail,
            drain,
        } = end;
        // The sink's tasks ignore the sender: give them a closed one.
        let (closed, _) = mpsc::channel(1);
        tasks.extend(tail(closed));
        let tasks = tasks
            .into_iter()
            .map(|(stage, task)| (stage, tokio::spawn(task)))
            .collect();
        PipelineHandle {
            accounts,
            tasks,
            drain,
        }
    }
}

/// A running pipeline. Dropping it aborts the tasks (queued items are lost); call
/// [`drain`](PipelineHandle::drain) and [`join`](PipelineHandle::join) to stop cleanly.
pub struct PipelineHandle {
    accounts: Vec<Arc<StageAccount>>,
    tasks: Vec<(usize, JoinHandle<()>)>,
    drain: Arc<DrainSignal>,
}

impl fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A pipeline task ended abnormally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// A stage's work (or the source stream) panicked; items in flight in it and upstream
    /// of it are lost, and the stats count them.
    #[error("pipeline stage `{stage}` panicked")]
    StagePanicked {
        /// The stage's name.
        stage: String,
        /// The stats when the pipeline ended.
        stats: Box<PipelineStats>,
    },
}

impl PipelineHandle {
    /// A snapshot of every stage, the source first.
    pub fn stats(&self) -> PipelineStats {
        let mut upstream_sent = None;
        let stages = self
            .accounts
            .iter()
            .map(|account| {
                let stats = account.snapshot(upstream_sent);
                upstream_sent = Some(stats.processed);
                stats
            })
            .collect();
        PipelineStats { stages }
    }

    /// Stops pulling the source. Items already admitted keep flowing to the sink; the
    /// pipeline ends when they have (await [`join`](PipelineHandle::join)). Idempotent.
    pub fn drain(&self) {
        self.drain.request();
    }

    /// Waits until every task has ended (the source ended or was drained, and every
    /// admitted item reached the sink) and returns the final stats.
    ///
    /// # Errors
    /// [`PipelineError::StagePanicked`] if a stage's work or the source panicked; the other
    /// tasks then end as their queues close.
    pub async fn join(mut self) -> Result<PipelineStats, PipelineError> {
        let mut panicked = None;
        for (stage, task) in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await
                && e.is_panic()
                && panicked.is_none()
            {
                panicked = Some(stage);
            }
        }
        let stats = self.stats();
        match panicked {
            None => Ok(stats),
            Some(stage) => Err(PipelineError::StagePanicked {
                stage: self.accounts[stage].name.clone(),
                stats: Box::new(stats),
            }),
        }
    }

    /// [`drain`](PipelineHandle::drain) then [`join`](PipelineHandle::join).
    ///
    /// # Errors
    /// As [`join`](PipelineHandle::join).
    pub async fn shutdown(self) -> Result<PipelineStats, PipelineError> {
        self.drain();
        self.join().await
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

/// A snapshot of a whole pipeline: one [`StageStats`] per stage, the source first and the
/// sink last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStats {
    /// The stages in order.
    pub stages: Vec<StageStats>,
}

/// A stage is called the bottleneck only if it is busy or limited at least this fraction of
/// its time; below it the pipeline is keeping up with its input.
pub const BOTTLENECK_RATIO: f64 = 0.5;

impl PipelineStats {
    /// Items taken from the source.
    pub fn admitted(&self) -> u64 {
        self.stages.first().map_or(0, |s| s.received)
    }

    /// Items the sink has finished, in the sink's input unit (after a batching stage, a
    /// batch counts once).
    pub fn completed(&self) -> u64 {
        self.stages.last().map_or(0, |s| s.processed)
    }

    /// Items admitted and not yet finished (in queues or being worked on); meaningful when
    /// no batching stage changes the unit (see [`completed`](Self::completed)).
    pub fn in_flight(&self) -> u64 {
        self.admitted().saturating_sub(self.completed())
    }

    /// Items waiting in all the queues now.
    pub fn queued(&self) -> u64 {
        self.stages.iter().map(|s| s.queue_depth).sum()
    }

    /// The stage that limits throughput: the one busiest (busy plus limited, as a fraction
    /// of its workers' time), if that fraction is at least [`BOTTLENECK_RATIO`]. Stages
    /// upstream of it are backpressured and stages downstream idle, as in Flink's view.
    /// `None` while the pipeline keeps up with its source. Use [`since`](Self::since) to
    /// judge a recent interval rather than the whole run.
    pub fn bottleneck(&self) -> Option<&StageStats> {
        self.stages
            .iter()
            .map(|s| (s, s.busy_ratio() + s.limited_ratio()))
            .filter(|(_, r)| *r >= BOTTLENECK_RATIO)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    }

    /// This snapshot minus an `earlier` one of the same pipeline: the interval between them.
    pub fn since(&self, earlier: &PipelineStats) -> PipelineStats {
        PipelineStats {
            stages: self
                .stages
                .iter()
                .zip(&earlier.stages)
                .map(|(now, then)| now.since(then))
                .collect(),
        }
    }
}
