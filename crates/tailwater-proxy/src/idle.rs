//! Idle keep-alive connections, oldest first, so that a proxy at `server.max_connections`
//! can close some to make room for a new client (nginx does the same with its "reusable"
//! connections when `worker_connections` runs out).
//!
//! Why: idle keep-alive connections otherwise hold their slots for `keep_alive_timeout`
//! (75 s), so a client opening more idle connections than the cap locks everyone else
//! out (issue 11: 210 idle connections against a cap of 200).
//!
//! A lean-path connection registers here while it waits for its next request (not
//! before its first: that wait is bounded by `header_read_timeout`) and leaves when a
//! byte arrives or it closes. A connection served by hyper (h2c, HTTP/1.0,
//! `lean_http1 = false`, handed off) registers while it has no request in flight
//! (`crate::hyper_conn` counts them, as hyper does not expose idleness). [`IdleConns::reclaim`]
//! wakes the oldest, which then closes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Registry key: since when, and which connection (its waker's address, unique while
/// registered).
type Key = (Instant, usize);

/// One worker's idle connections, oldest first.
type Shard = Mutex<BTreeMap<Key, Arc<Notify>>>;

/// The idle keep-alive connections of every worker: one shard per worker, so that a
/// connection only ever locks its own worker's shard on the request path.
#[derive(Debug)]
pub(crate) struct IdleConns {
    shards: Box<[Shard]>,
}

/// A registered idle connection; give it back with [`IdleConns::leave`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Registered {
    worker: usize,
    key: Key,
}

impl IdleConns {
    /// Shards for `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            shards: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, worker: usize) -> std::sync::MutexGuard<'_, BTreeMap<Key, Arc<Notify>>> {
        self.shards[worker % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection of `worker` idle from now; `wake` is notified if it is to
    /// close.
    pub(crate) fn enter(&self, worker: usize, wake: &Arc<Notify>) -> Registered {
        self.enter_at(worker, wake, Instant::now())
    }

    /// [`IdleConns::enter`] for a connection idle since `since` (a clock read the caller
    /// already made: the lean path reads the clock once per idle period).
    pub(crate) fn enter_at(&self, worker: usize, wake: &Arc<Notify>, since: Instant) -> Registered {
        let key = (since, Arc::as_ptr(wake) as usize);
        self.shard(worker).insert(key, Arc::clone(wake));
        Registered { worker, key }
    }

    /// Unregisters; false if the connection was reclaimed meanwhile (its `wake` holds a
    /// notification it may not have seen).
    pub(crate) fn leave(&self, reg: Registered) -> bool {
        self.shard(reg.worker).remove(&reg.key).is_some()
    }

    /// Whether `reg` is still registered: false once it was reclaimed.
    pub(crate) fn holds(&self, reg: &Registered) -> bool {
        self.shard(reg.worker).contains_key(&reg.key)
    }

    /// Wakes up to `n` of the oldest idle connections of all workers so that they close;
    /// returns how many.
    pub(crate) fn reclaim(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n {
            let oldest = (0..self.shards.len())
                .filter_map(|w| self.shard(w).first_key_value().map(|(k, _)| (*k, w)))
                .min();
            let Some((key, worker)) = oldest else { break };
            // Gone meanwhile (it woke up, or another worker reclaimed it): look again.
            if let Some(wake) = self.shard(worker).remove(&key) {
                wake.notify_one();
                woken += 1;
            }
        }
        woken
    }

    /// Idle connections registered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..self.shards.len()).map(|w| self.shard(w).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reclaims_the_oldest_of_all_workers_first() {
        let idle = IdleConns::new(2);
        let wakes: Vec<Arc<Notify>> = (0..3).map(|_| Arc::new(Notify::new())).collect();
        let a = idle.enter(1, &wakes[0]);
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let b = idle.enter(0, &wakes[1]);
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let c = idle.enter(1, &wakes[2]);
        assert_eq!(idle.reclaim(1), 1);
        // The oldest (worker 1's first) was woken; the others are still registered.
        wakes[0].notified().await;
        assert!(!idle.holds(&a) && idle.holds(&b));
        assert!(!idle.leave(a));
        assert!(idle.leave(b));
        assert_eq!(idle.reclaim(5), 1);
        assert!(!idle.leave(c));
        assert_eq!(idle.len(), 0);
    }
}
