//! A keyed dispatcher: per-key order over a shared pool of workers.
//!
//! The seed's Kafka appendix ends in a `KeyedDispatcher`: records of one key must be
//! handled in order, records of different keys may run in parallel, and the pool and its
//! queues are bounded. Pinning keys to workers by `hash(key) % workers` (Kafka's partition
//! assignment) lets one slow key stall every key that hashes with it. Here a key is bound
//! to a worker **only while it has items queued or running** (as Confluent's parallel
//! consumer does): an idle key is bound afresh to the least loaded worker, so a slow or hot
//! key keeps its own worker busy while the other keys flow around it, and per-key order
//! still holds because a key's items only ever wait in one worker's FIFO queue at a time.
//!
//! When the chosen worker's queue is full the [`FullPolicy`] decides, explicitly: wait up
//! to a deadline, reject at once, or spill to a handler (a retry or dead-letter topic).
//! Rejected and timed-out items are handed back in the error: nothing is dropped silently.
//!
//! Hot keys (by busy time, so a slow key and a frequent key both show) are tracked per
//! worker in bounded memory ([Space-Saving]) and reported by
//! [`KeyedDispatcher::stats`].
//!
//! [Space-Saving]: https://doi.org/10.1007/978-3-540-30570-5_27
//!
//! ```
//! use std::num::NonZeroUsize;
//! use std::time::Duration;
//! use tailwater_stream::{FullPolicy, KeyedConfig, KeyedDispatcher};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = KeyedConfig::new(NonZeroUsize::new(4).unwrap(), NonZeroUsize::new(8).unwrap())
//!     .policy(FullPolicy::Wait(Duration::from_secs(1)));
//! let dispatcher = KeyedDispatcher::spawn(config, |key: String, n: u64| async move {
//!     // records of one key arrive here in the order they were dispatched
//!     let _ = (key, n);
//! });
//! for n in 0..10 {
//!     dispatcher.dispatch("account-7".to_owned(), n).await.unwrap();
//! }
//! let stats = dispatcher.shutdown().await;
//! assert_eq!(stats.handled, 10);
//! # }
//! ```

mod hot;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use hot::HotKeys;

/// A spill handler: takes an item its worker had no room for.
pub type SpillFn<K, T> = Arc<dyn Fn(K, T) + Send + Sync>;

/// What [`KeyedDispatcher::dispatch`] does when the key's worker queue is full.
pub enum FullPolicy<K, T> {
    /// Wait for room at most this long, then fail with [`DispatchError::Timeout`].
    Wait(Duration),
    /// Fail at once with [`DispatchError::Full`].
    Reject,
    /// Hand the item to this handler at once (a retry or dead-letter topic) and return
    /// [`Dispatched::Spilled`]. A spilled item leaves the ordered path: later items of the
    /// same key may be handled before it is.
    Spill(SpillFn<K, T>),
}

impl<K, T> Clone for FullPolicy<K, T> {
    fn clone(&self) -> Self {
        match self {
            Self::Wait(d) => Self::Wait(*d),
            Self::Reject => Self::Reject,
            Self::Spill(f) => Self::Spill(Arc::clone(f)),
        }
    }
}

impl<K, T> fmt::Debug for FullPolicy<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wait(d) => f.debug_tuple("Wait").field(d).finish(),
            Self::Reject => f.write_str("Reject"),
            Self::Spill(_) => f.write_str("Spill(..)"),
        }
    }
}

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct KeyedConfig<K, T> {
    workers: NonZeroUsize,
    queue: NonZeroUsize,
    policy: FullPolicy<K, T>,
    tracked_keys: NonZeroUsize,
}

/// The default [`FullPolicy::Wait`] deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

impl<K, T> KeyedConfig<K, T> {
    /// `workers` workers, each with a queue of `queue` items; when a queue is full, wait up
    /// to [`DEFAULT_WAIT`]; 8 tracked keys per worker.
    pub fn new(workers: NonZeroUsize, queue: NonZeroUsize) -> Self {
        Self {
            workers,
            queue,
            policy: FullPolicy::Wait(DEFAULT_WAIT),
            tracked_keys: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// The policy when a worker's queue is full.
    pub fn policy(mut self, policy: FullPolicy<K, T>) -> Self {
        self.policy = policy;
        self
    }

    /// Keys tracked per worker for the hot-key report.
    pub fn tracked_keys(mut self, n: NonZeroUsize) -> Self {
        self.tracked_keys = n;
        self
    }
}

/// How a dispatched item was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    /// Queued on this worker, behind the key's earlier items.
    Queued {
        /// The worker's index.
        worker: usize,
    },
    /// The worker's queue was full and the item went to the spill handler.
    Spilled,
}

/// Why an item was not taken; the item is handed back.
#[derive(thiserror::Error)]
pub enum DispatchError<K, T> {
    /// The key's worker queue was full ([`FullPolicy::Reject`]).
    #[error("the key's worker queue is full")]
    Full {
        /// The key.
        key: K,
        /// The item.
        item: T,
    },
    /// The key's worker queue stayed full for the whole wait ([`FullPolicy::Wait`]).
    #[error("the key's worker queue stayed full for the whole wait")]
    Timeout {
        /// The key.
        key: K,
        /// The item.
        item: T,
    },
    /// The dispatcher's workers are gone (a handler panicked).
    #[error("the dispatcher's worker is gone")]
    Closed {
        /// The key.
        key: K,
        /// The item.
        item: T,
    },
}

impl<K, T> fmt::Debug for DispatchError<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Full { .. } => "Full",
            Self::Timeout { .. } => "Timeout",
            Self::Closed { .. } => "Closed",
        };
        f.debug_struct(name).finish_non_exhaustive()
    }
}

/// A key's binding to a worker while it has items queued or running.
#[derive(Debug)]
struct Binding {
    worker: usize,
    pending: usize,
}

struct Worker<K> {
    busy: AtomicBool,
    handled: AtomicU64,
    busy_ns: AtomicU64,
    hot: Mutex<HotKeys<K>>,
}

struct Inner<K, T> {
    bindings: Mutex<HashMap<K, Binding>>,
    workers: Vec<Worker<K>>,
    policy: FullPolicy<K, T>,
    hasher: RandomState,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    spilled: AtomicU64,
}

impl<K: Hash + Eq, T> Inner<K, T> {
    fn bindings(&self) -> std::sync::MutexGuard<'_, HashMap<K, Binding>> {
        self.bindings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One item of `key` has left its worker's queue (handled, or never queued).
    fn unbind(&self, key: &K) {
        let mut bindings = self.bindings();
        if let Some(binding) = bindings.get_mut(key) {
            binding.pending -= 1;
            if binding.pending == 0 {
                bindings.remove(key);
            }
        }
    }
}

/// The dispatcher. Cheap to clone (clones share the workers); the workers end once every
/// clone is dropped (or [`shutdown`](KeyedDispatcher::shutdown)) and their queues are
/// empty.
pub struct KeyedDispatcher<K, T> {
    inner: Arc<Inner<K, T>>,
    senders: Arc<[mpsc::Sender<(K, T)>]>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl<K, T> Clone for KeyedDispatcher<K, T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            senders: Arc::clone(&self.senders),
            tasks: Arc::clone(&self.tasks),
        }
    }
}

impl<K, T> fmt::Debug for KeyedDispatcher<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedDispatcher")
            .field("workers", &self.senders.len())
            .finish_non_exhaustive()
    }
}

/// One worker in [`KeyedStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Items waiting in the worker's queue (at most the configured queue size).
    pub queue_depth: usize,
    /// Items handled.
    pub handled: u64,
    /// Time spent in the handler.
    pub busy: Duration,
}

/// A key that took much of its worker's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey<K> {
    /// The key.
    pub key: K,
    /// The worker it was last tracked on.
    pub worker: usize,
    /// Its handler time (a Space-Saving over-estimate by at most the least tracked key's).
    pub busy: Duration,
    /// Its items.
    pub items: u64,
}

/// A key is reported hot when its busy time is at least this many times the mean of the
/// tracked keys'.
pub const HOT_FACTOR: u32 = 4;

/// A snapshot of a [`KeyedDispatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedStats<K> {
    /// Per worker.
    pub workers: Vec<WorkerStats>,
    /// Items handled, in all.
    pub handled: u64,
    /// Items refused with [`DispatchError::Full`].
    pub rejected: u64,
    /// Items refused with [`DispatchError::Timeout`].
    pub timed_out: u64,
    /// Items handed to the spill handler.
    pub spilled: u64,
    /// Keys bound to a worker now (with items queued or running).
    pub bound_keys: usize,
    /// Hot keys, hottest first: busy at least [`HOT_FACTOR`] × the tracked keys' mean.
    pub hot_keys: Vec<HotKey<K>>,
}

impl<K, T> KeyedDispatcher<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + 'static,
{
    /// Spawns `config`'s workers on the current tokio runtime; each runs `handler` on its
    /// items one at a time, in queue order.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn<F, Fut>(config: KeyedConfig<K, T>, handler: F) -> Self
    where
        F: Fn(K, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let n = config.workers.get();
        let inner = Arc::new(Inner {
            bindings: Mutex::new(HashMap::new()),
            workers: (0..n)
                .map(|_| Worker {
                    busy: AtomicBool::new(false),
                    handled: AtomicU64::new(0),
                    busy_ns: AtomicU64::new(0),
                    hot: Mutex::new(HotKeys::new(config.tracked_keys.get())),
                })
                .collect(),
            policy: config.policy,
            hasher: RandomState::new(),
            rejected: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
        });
        let handler = Arc::new(handler);
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = mpsc::channel(config.queue.get());
            senders.push(tx);
            tasks.push(tokio::spawn(run_worker(
                index,
                rx,
                Arc::clone(&inner),
                Arc::clone(&handler),
            )));
        }
        Self {
            inner,
            senders: senders.into(),
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// The worker for `key`: its current one if bound, else the least loaded (queued plus
    /// running), ties broken by the key's hash so idle keys spread.
    fn bind(&self, key: &K) -> usize {
        let mut bindings = self.inner.bindings();
        if let Some(binding) = bindings.get_mut(key) {
            binding.pending += 1;
            return binding.worker;
        }
        let n = self.senders.len();
        let start = (self.inner.hasher.hash_one(key) % n as u64) as usize;
        let worker = (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&w| {
                let sender = &self.senders[w];
                let queued = sender.max_capacity() - sender.capacity();
                queued + usize::from(self.inner.workers[w].busy.load(Ordering::Relaxed))
            })
            .unwrap_or(start);
        bindings.insert(key.clone(), Binding { worker, pending: 1 });
        worker
    }

    /// Queues `item` behind `key`'s earlier items.
    ///
    /// Items of one key are handled in the order their `dispatch` calls returned `Ok`.
    ///
    /// # Errors
    /// When the key's worker queue is full: [`DispatchError::Full`] under
    /// [`FullPolicy::Reject`], [`DispatchError::Timeout`] after the wait under
    /// [`FullPolicy::Wait`]; [`DispatchError::Closed`] if the worker is gone (its handler
    /// panicked). The item comes back in the error.
    pub async fn dispatch(&self, key: K, item: T) -> Result<Dispatched, DispatchError<K, T>> {
        let worker = self.bind(&key);
        let sender = &self.senders[worker];
        let full = match sender.try_reserve() {
            Ok(permit) => {
                permit.send((key, item));
                return Ok(Dispatched::Queued { worker });
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                self.inner.unbind(&key);
                return Err(DispatchError::Closed { key, item });
            }
            Err(mpsc::error::TrySendError::Full(())) => (key, item),
        };
        let (key, item) = full;
        match &self.inner.policy {
            FullPolicy::Wait(deadline) => match tokio::time::timeout(*deadline, sender.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send((key, item));
                    Ok(Dispatched::Queued { worker })
                }
                Ok(Err(_)) => {
                    self.inner.unbind(&key);
                    Err(DispatchError::Closed { key, item })
                }
                Err(_) => {
                    self.inner.unbind(&key);
                    self.inner.timed_out.fetch_add(1, Ordering::Relaxed);
                    Err(DispatchError::Timeout { key, item })
                }
            },
            FullPolicy::Reject => {
                self.inner.unbind(&key);
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(DispatchError::Full { key, item })
            }
            FullPolicy::Spill(spill) => {
                self.inner.unbind(&key);
                self.inner.spilled.fetch_add(1, Ordering::Relaxed);
                spill(key, item);
                Ok(Dispatched::Spilled)
            }
        }
    }

    /// A snapshot: per-worker queues and busy time, refusals, and the hot keys.
    pub fn stats(&self) -> KeyedStats<K> {
        snapshot(&self.inner, &self.senders)
    }

    /// Drops this handle and waits until every worker has handled its queue and ended,
    /// which happens once every clone of the dispatcher is dropped too; returns the final
    /// stats.
    pub async fn shutdown(self) -> KeyedStats<K> {
        let Self {
            inner,
            senders,
            tasks,
        } = self;
        drop(senders);
        let handles = std::mem::take(&mut *tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for handle in handles {
            let _ = handle.await;
        }
        snapshot(&inner, &[])
    }
}

/// The stats of `inner`; queue depths from `senders` (none after shutdown: all empty).
fn snapshot<K: Hash + Eq + Clone, T>(
    inner: &Inner<K, T>,
    senders: &[mpsc::Sender<(K, T)>],
) -> KeyedStats<K> {
    let workers: Vec<WorkerStats> = inner
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| WorkerStats {
            queue_depth: senders.get(i).map_or(0, |s| s.max_capacity() - s.capacity()),
            handled: w.handled.load(Ordering::Relaxed),
            busy: Duration::from_nanos(w.busy_ns.load(Ordering::Relaxed)),
        })
        .collect();
    let mut tracked: Vec<HotKey<K>> = Vec::new();
    for (index, worker) in inner.workers.iter().enumerate() {
        let hot = worker.hot.lock().unwrap_or_else(PoisonError::into_inner);
        tracked.extend(hot.entries.iter().map(|e| HotKey {
            key: e.key.clone(),
            worker: index,
            busy: e.busy,
            items: e.items,
        }));
    }
    let mean = if tracked.is_empty() {
        Duration::ZERO
    } else {
        tracked.iter().map(|k| k.busy).sum::<Duration>() / tracked.len() as u32
    };
    tracked.retain(|k| !k.busy.is_zero() && k.busy >= mean * HOT_FACTOR);
    tracked.sort_by(|a, b| b.busy.cmp(&a.busy));
    KeyedStats {
        handled: workers.iter().map(|w| w.handled).sum(),
        workers,
        rejected: inner.rejected.load(Ordering::Relaxed),
        timed_out: inner.timed_out.load(Ordering::Relaxed),
        spilled: inner.spilled.load(Ordering::Relaxed),
        bound_keys: inner.bindings().len(),
        hot_keys: tracked,
    }
}

async fn run_worker<K, T, F, Fut>(
    index: usize,
    mut rx: mpsc::Receiver<(K, T)>,
    inner: Arc<Inner<K, T>>,
    handler: Arc<F>,
) where
    K: Hash + Eq + Clone,
    F: Fn(K, T) -> Fut,
    Fut: Future<Output = ()>,
{
    let worker = &inner.workers[index];
    while let Some((key, item)) = rx.recv().await {
        worker.busy.store(true, Ordering::Relaxed);
        let started = Instant::now();
        handler(key.clone(), item).await;
        let took = started.elapsed();
        worker.busy.store(false, Ordering::Relaxed);
        worker
            .busy_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        worker
            .hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&key, took);
        worker.handled.fetch_add(1, Ordering::Relaxed);
        inner.unbind(&key);
    }
}
