//! A keyed dispatcher: per-key order over a shared pool of workers.
//!
//! The seed's Kafka appendix ends in a `KeyedDispatcher`: records of one key must be
//! handled in order, records of different keys may run in parallel, and the pool and its
//! queues are bounded. Giving each worker a FIFO queue and pinning keys to workers (by
//! `hash(key) % workers`, Kafka's partition assignment, or even only while the key has
//! items queued) lets one slow key stall every key queued behind it on its worker: in this
//! crate's test, a key that once shared a worker with a 100× slower key kept 5 % of its
//! throughput. So, as Confluent's parallel consumer does in key order mode, each key here
//! has **its own bounded lane** (FIFO), and the workers take turns over the keys that have
//! items and are not already running: a key runs on at most one worker at a time (per-key
//! order), a slow or hot key occupies at most one worker, and the other keys flow around
//! it. Keys with work are served round-robin, so a hot key cannot starve the others.
//!
//! Bounds: at most `queue` items wait per key and at most `max_queued` in all; an idle key
//! holds no memory. When either bound is reached the [`FullPolicy`] decides, explicitly:
//! wait up to a deadline, reject at once, or spill to a handler (a retry or dead-letter
//! topic). Rejected and timed-out items are handed back in the error: nothing is dropped
//! silently.
//!
//! Hot keys (by handler time, so a slow key and a frequent key both show) are tracked per
//! worker in bounded memory ([Space-Saving]) and reported by [`KeyedDispatcher::stats`].
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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use hot::HotKeys;

/// A spill handler: takes an item there was no room for.
pub type SpillFn<K, T> = Arc<dyn Fn(K, T) + Send + Sync>;

/// What [`KeyedDispatcher::dispatch`] does when the key's lane (or the whole dispatcher)
/// is full.
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
///
/// ```
/// use std::num::NonZeroUsize;
/// use tailwater_stream::{FullPolicy, KeyedConfig};
/// let config: KeyedConfig<u64, String> =
///     KeyedConfig::new(NonZeroUsize::new(16).unwrap(), NonZeroUsize::new(4).unwrap())
///         .max_queued(NonZeroUsize::new(256).unwrap())
///         .policy(FullPolicy::Reject);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct KeyedConfig<K, T> {
    workers: NonZeroUsize,
    queue: NonZeroUsize,
    max_queued: NonZeroUsize,
    policy: FullPolicy<K, T>,
    tracked_keys: NonZeroUsize,
}

/// The default [`FullPolicy::Wait`] deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

impl<K, T> KeyedConfig<K, T> {
    /// `workers` workers; at most `queue` items waiting per key and `workers × queue` in
    /// all; when full, wait up to [`DEFAULT_WAIT`]; 8 tracked keys per worker.
    pub fn new(workers: NonZeroUsize, queue: NonZeroUsize) -> Self {
        Self {
            workers,
            queue,
            max_queued: workers.saturating_mul(queue),
            policy: FullPolicy::Wait(DEFAULT_WAIT),
            tracked_keys: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// The most items waiting in all lanes together.
    pub fn max_queued(mut self, n: NonZeroUsize) -> Self {
        self.max_queued = n;
        self
    }

    /// The policy when a lane or the dispatcher is full.
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
    /// Queued in its key's lane, behind the key's earlier items.
    Queued,
    /// There was no room and the item went to the spill handler.
    Spilled,
}

/// Why an item was not taken; the item is handed back.
#[derive(thiserror::Error)]
pub enum DispatchError<K, T> {
    /// No room ([`FullPolicy::Reject`]).
    #[error("the key's lane or the dispatcher is full")]
    Full {
        /// The key.
        key: K,
        /// The item.
        item: T,
    },
    /// No room for the whole wait ([`FullPolicy::Wait`]).
    #[error("no room in the key's lane for the whole wait")]
    Timeout {
        /// The key.
        key: K,
        /// The item.
        item: T,
    },
    /// The dispatcher is shutting down.
    #[error("the dispatcher is shutting down")]
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

/// One key's lane: its waiting items, and whether a worker is running one of them.
#[derive(Debug)]
struct Lane<T> {
    items: VecDeque<T>,
    running: bool,
}

#[derive(Debug)]
struct State<K, T> {
    lanes: HashMap<K, Lane<T>>,
    /// Keys with waiting items and no worker, in turn order.
    ready: VecDeque<K>,
    queued: usize,
    closed: bool,
}

struct Worker<K> {
    handled: AtomicU64,
    busy_ns: AtomicU64,
    hot: Mutex<HotKeys<K>>,
}

struct Inner<K, T> {
    state: Mutex<State<K, T>>,
    /// Wakes workers when a key becomes ready (or on close).
    work: Notify,
    /// Wakes waiting dispatchers when an item leaves a lane.
    room: Notify,
    workers: Vec<Worker<K>>,
    queue: usize,
    max_queued: usize,
    policy: FullPolicy<K, T>,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    spilled: AtomicU64,
    handles: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Hash + Eq + Clone, T> Inner<K, T> {
    /// Queues `item` if there is room; gives it back otherwise.
    fn try_push(&self, key: K, item: T) -> Result<(), (K, T, bool)> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err((key, item, true));
        }
        if state.queued >= self.max_queued {
            return Err((key, item, false));
        }
        let queue = self.queue;
        let lane = state.lanes.entry(key.clone()).or_insert_with(|| Lane {
            items: VecDeque::new(),
            running: false,
        });
        if lane.items.len() >= queue {
            return Err((key, item, false));
        }
        let became_ready = lane.items.is_empty() && !lane.running;
        lane.items.push_back(item);
        state.queued += 1;
        if became_ready {
            state.ready.push_back(key);
            drop(state);
            self.work.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.work.notify_waiters();
        self.room.notify_waiters();
    }
}

/// The dispatcher. Cheap to clone (clones share the workers). The workers end once every
/// clone is dropped (or [`shutdown`](KeyedDispatcher::shutdown)) and every queued item has
/// been handled.
pub struct KeyedDispatcher<K: Hash + Eq + Clone, T> {
    inner: Arc<Inner<K, T>>,
}

impl<K: Hash + Eq + Clone, T> Clone for KeyedDispatcher<K, T> {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq + Clone, T> Drop for KeyedDispatcher<K, T> {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.close();
        }
    }
}

impl<K: Hash + Eq + Clone, T> fmt::Debug for KeyedDispatcher<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedDispatcher")
            .field("workers", &self.inner.workers.len())
            .finish_non_exhaustive()
    }
}

/// One worker in [`KeyedStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Items handled.
    pub handled: u64,
    /// Time spent in the handler.
    pub busy: Duration,
}

/// A key that took much of the pool's handler time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey<K> {
    /// The key.
    pub key: K,
    /// The worker whose summary tracked it (a key may run on several workers in turn).
    pub worker: usize,
    /// Its handler time (a Space-Saving over-estimate by at most the least tracked key's).
    pub busy: Duration,
    /// Its items.
    pub items: u64,
}

/// A key is reported hot when its handler time is at least this many times the mean of
/// the tracked keys'.
pub const HOT_FACTOR: u32 = 4;

/// A snapshot of a [`KeyedDispatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedStats<K> {
    /// Per worker.
    pub workers: Vec<WorkerStats>,
    /// Items handled, in all.
    pub handled: u64,
    /// Items waiting now (at most `max_queued`).
    pub queued: usize,
    /// Keys with items waiting or running now.
    pub active_keys: usize,
    /// Items refused with [`DispatchError::Full`].
    pub rejected: u64,
    /// Items refused with [`DispatchError::Timeout`].
    pub timed_out: u64,
    /// Items handed to the spill handler.
    pub spilled: u64,
    /// Hot keys, hottest first: handler time at least [`HOT_FACTOR`] × the tracked keys'
    /// mean, since the dispatcher started.
    pub hot_keys: Vec<HotKey<K>>,
}

impl<K, T> KeyedDispatcher<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + 'static,
{
    /// Spawns `config`'s workers on the current tokio runtime; each runs `handler` on one
    /// item at a time.
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
            state: Mutex::new(State {
                lanes: HashMap::new(),
                ready: VecDeque::new(),
                queued: 0,
                closed: false,
            }),
            work: Notify::new(),
            room: Notify::new(),
            workers: (0..n)
                .map(|_| Worker {
                    handled: AtomicU64::new(0),
                    busy_ns: AtomicU64::new(0),
                    hot: Mutex::new(HotKeys::new(config.tracked_keys.get())),
                })
                .collect(),
            queue: config.queue.get(),
            max_queued: config.max_queued.get(),
            policy: config.policy,
            rejected: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            handles: AtomicUsize::new(1),
            tasks: Mutex::new(Vec::new()),
        });
        let handler = Arc::new(handler);
        let tasks = (0..n)
            .map(|index| tokio::spawn(run_worker(index, Arc::clone(&inner), Arc::clone(&handler))))
            .collect();
        *lock(&inner.tasks) = tasks;
        Self { inner }
    }

    /// Queues `item` behind `key`'s earlier items.
    ///
    /// Items of one key are handled one at a time, in the order their `dispatch` calls
    /// returned `Ok(Dispatched::Queued)`.
    ///
    /// # Errors
    /// When the key's lane holds `queue` items or the dispatcher `max_queued`:
    /// [`DispatchError::Full`] under [`FullPolicy::Reject`], [`DispatchError::Timeout`]
    /// after the wait under [`FullPolicy::Wait`]. [`DispatchError::Closed`] once shutting
    /// down. The item comes back in the error.
    pub async fn dispatch(&self, key: K, item: T) -> Result<Dispatched, DispatchError<K, T>> {
        let inner = &self.inner;
        let (key, item) = match inner.try_push(key, item) {
            Ok(()) => return Ok(Dispatched::Queued),
            Err((key, item, true)) => return Err(DispatchError::Closed { key, item }),
            Err((key, item, false)) => (key, item),
        };
        match &inner.policy {
            FullPolicy::Reject => {
                inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(DispatchError::Full { key, item })
            }
            FullPolicy::Spill(spill) => {
                inner.spilled.fetch_add(1, Ordering::Relaxed);
                spill(key, item);
                Ok(Dispatched::Spilled)
            }
            FullPolicy::Wait(wait) => {
                let deadline = Instant::now() + *wait;
                let (mut key, mut item) = (key, item);
                loop {
                    let room = inner.room.notified();
                    let mut room = std::pin::pin!(room);
                    room.as_mut().enable();
                    match inner.try_push(key, item) {
                        Ok(()) => return Ok(Dispatched::Queued),
                        Err((k, i, true)) => return Err(DispatchError::Closed { key: k, item: i }),
                        Err((k, i, false)) => (key, item) = (k, i),
                    }
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        inner.timed_out.fetch_add(1, Ordering::Relaxed);
                        return Err(DispatchError::Timeout { key, item });
                    }
                }
            }
        }
    }

    /// A snapshot: per-worker handled items and busy time, queued items, refusals, and the
    /// hot keys.
    pub fn stats(&self) -> KeyedStats<K> {
        let inner = &self.inner;
        let workers: Vec<WorkerStats> = inner
            .workers
            .iter()
            .map(|w| WorkerStats {
                handled: w.handled.load(Ordering::Relaxed),
                busy: Duration::from_nanos(w.busy_ns.load(Ordering::Relaxed)),
            })
            .collect();
        let mut tracked: Vec<HotKey<K>> = Vec::new();
        for (index, worker) in inner.workers.iter().enumerate() {
            tracked.extend(lock(&worker.hot).entries.iter().map(|e| HotKey {
                key: e.key.clone(),
                worker: index,
                busy: e.busy,
                items: e.items,
            }));
        }
        // A key that ran on several workers appears once per summary: merge them.
        let mut merged: Vec<HotKey<K>> = Vec::with_capacity(tracked.len());
        for key in tracked {
            match merged.iter_mut().find(|m| m.key == key.key) {
                Some(m) => {
                    m.busy += key.busy;
                    m.items += key.items;
                }
                None => merged.push(key),
            }
        }
        let mean = if merged.is_empty() {
            Duration::ZERO
        } else {
            merged.iter().map(|k| k.busy).sum::<Duration>() / merged.len() as u32
        };
        merged.retain(|k| !k.busy.is_zero() && k.busy >= mean * HOT_FACTOR);
        merged.sort_by_key(|k| std::cmp::Reverse(k.busy));
        let (queued, active_keys) = {
            let state = lock(&inner.state);
            (state.queued, state.lanes.len())
        };
        KeyedStats {
            handled: workers.iter().map(|w| w.handled).sum(),
            workers,
            queued,
            active_keys,
            rejected: inner.rejected.load(Ordering::Relaxed),
            timed_out: inner.timed_out.load(Ordering::Relaxed),
            spilled: inner.spilled.load(Ordering::Relaxed),
            hot_keys: merged,
        }
    }

    /// Stops taking items (later `dispatch` calls, on any clone, fail with
    /// [`DispatchError::Closed`]), waits until every queued item has been handled and the
    /// workers have ended, and returns the final stats.
    pub async fn shutdown(self) -> KeyedStats<K> {
        self.inner.close();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
        self.stats()
    }
}

async fn run_worker<K, T, F, Fut>(index: usize, inner: Arc<Inner<K, T>>, handler: Arc<F>)
where
    K: Hash + Eq + Clone,
    F: Fn(K, T) -> Fut,
    Fut: Future<Output = ()>,
{
    let worker = &inner.workers[index];
    loop {
        let work = inner.work.notified();
        let mut work = std::pin::pin!(work);
        work.as_mut().enable();
        let next = {
            let mut state = lock(&inner.state);
            let next = state.ready.pop_front().and_then(|key| {
                let lane = state.lanes.get_mut(&key)?;
                let item = lane.items.pop_front()?;
                lane.running = true;
                Some((key, item))
            });
            if next.is_some() {
                state.queued -= 1;
            } else if state.closed && state.queued == 0 {
                drop(state);
                // Let the other idle workers see it too.
                inner.work.notify_waiters();
                return;
            }
            next
        };
        let Some((key, item)) = next else {
            work.await;
            continue;
        };
        inner.room.notify_waiters();
        let started = Instant::now();
        handler(key.clone(), item).await;
        let took = started.elapsed();
        worker.busy_ns.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        worker.handled.fetch_add(1, Ordering::Relaxed);
        lock(&worker.hot).record(&key, took);
        let mut state = lock(&inner.state);
        let more = match state.lanes.get_mut(&key) {
            Some(lane) => {
                lane.running = false;
                !lane.items.is_empty()
            }
            None => false,
        };
        if more {
            // Back of the turn order: a hot key cannot starve the others.
            state.ready.push_back(key);
            drop(state);
            inner.work.notify_one();
        } else {
            state.lanes.remove(&key);
        }
    }
}
