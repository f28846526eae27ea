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
//!
//! The registry is also how a drain reaches the lean path's idle keep-alive connections
//! ([`IdleConns::drain_worker`]): it marks the worker's shard draining and wakes every
//! connection registered there, and [`IdleConns::enter_unless_draining`] refuses to
//! register a connection once the mark is set, both under the shard's lock, so a
//! connection either registers before the drain (and is woken by it) or sees the drain
//! (and closes), on any runtime. A keep-alive connection's request loop then watches no
//! drain channel (issue 18: polling one cost every request a lock and a waiter).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// End of a list, or no node.
const NIL: u32 = u32::MAX;

/// One idle connection in its worker's list.
#[derive(Debug)]
struct Node {
    since: Instant,
    /// `None` while the slot is free.
    wake: Option<Arc<Notify>>,
    prev: u32,
    next: u32,
    /// Bumped each time the slot is freed, so a stale [`Registered`] cannot remove the
    /// slot's next occupant.
    generation: u32,
}

/// One worker's idle connections, oldest first: a doubly linked list in a slab, so that
/// entering and leaving (twice per keep-alive request) are O(1) and allocate nothing once
/// the slab has grown to the worker's peak of idle connections (a `BTreeMap` did both
/// with a search, and allocated nodes). A connection enters with the time it became idle,
/// read just before on its worker's thread, so it nearly always goes at the tail; an
/// earlier time is walked back to its place.
#[derive(Debug)]
struct List {
    nodes: Vec<Node>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Default for List {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl List {
    fn node(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }

    /// Links a connection idle since `since`; its slot and generation.
    fn insert(&mut self, since: Instant, wake: Arc<Notify>) -> (u32, u32) {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                // More than u32::MAX - 1 idle connections on one worker cannot happen
                // (each holds a socket); the slot then aliases NIL and is never found.
                let i = u32::try_from(self.nodes.len()).unwrap_or(NIL);
                self.nodes.push(Node {
                    since,
                    wake: None,
                    prev: NIL,
                    next: NIL,
                    generation: 0,
                });
                i
            }
        };
        // The node after which it goes: the last one idle since no later than `since`.
        let mut after = self.tail;
        while after != NIL && self.nodes[after as usize].since > since {
            after = self.nodes[after as usize].prev;
        }
        let before = if after == NIL {
            self.head
        } else {
            self.nodes[after as usize].next
        };
        let node = self.node(slot);
        node.since = since;
        node.wake = Some(wake);
        node.prev = after;
        node.next = before;
        let generation = node.generation;
        match after {
            NIL => self.head = slot,
            a => self.node(a).next = slot,
        }
        match before {
            NIL => self.tail = slot,
            b => self.node(b).prev = slot,
        }
        (slot, generation)
    }

    /// Whether `slot` still holds the registration of `generation`.
    fn holds(&self, slot: u32, generation: u32) -> bool {
        self.nodes
            .get(slot as usize)
            .is_some_and(|n| n.generation == generation && n.wake.is_some())
    }

    /// Unlinks the registration `(slot, generation)`; its waker, if it was still there.
    fn remove(&mut self, slot: u32, generation: u32) -> Option<Arc<Notify>> {
        if !self.holds(slot, generation) {
            return None;
        }
        let node = self.node(slot);
        let (prev, next) = (node.prev, node.next);
        let wake = node.wake.take();
        node.generation = node.generation.wrapping_add(1);
        match prev {
            NIL => self.head = next,
            p => self.node(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.node(n).prev = prev,
        }
        self.free.push(slot);
        wake
    }

    /// The oldest registration: since when, its slot and generation.
    fn first(&self) -> Option<(Instant, u32, u32)> {
        let n = self.nodes.get(self.head as usize)?;
        Some((n.since, self.head, n.generation))
    }
}

/// One worker's idle connections, and whether the worker drains.
#[derive(Debug, Default)]
struct Shard {
    list: Mutex<List>,
    /// Set by [`IdleConns::drain_worker`], under `list`'s lock; never cleared.
    draining: AtomicBool,
}

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
    slot: u32,
    generation: u32,
}

impl IdleConns {
    /// Shards for `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            shards: (0..workers.max(1)).map(|_| Shard::default()).collect(),
        }
    }

    fn shard_of(&self, worker: usize) -> &Shard {
        &self.shards[worker % self.shards.len()]
    }

    fn shard(&self, worker: usize) -> std::sync::MutexGuard<'_, List> {
        self.shard_of(worker)
            .list
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
        let (slot, generation) = self.shard(worker).insert(since, Arc::clone(wake));
        Registered {
            worker,
            slot,
            generation,
        }
    }

    /// [`IdleConns::enter_at`], unless `worker` drains: then `None`, and the connection
    /// is to close. The check and the registration are one step under the shard's lock,
    /// so no drain can fall between them (see the module docs).
    pub(crate) fn enter_unless_draining(
        &self,
        worker: usize,
        wake: &Arc<Notify>,
        since: Instant,
    ) -> Option<Registered> {
        let shard = self.shard_of(worker);
        let mut list = shard.list.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.draining.load(Ordering::Relaxed) {
            return None;
        }
        let (slot, generation) = list.insert(since, Arc::clone(wake));
        Some(Registered {
            worker,
            slot,
            generation,
        })
    }

    /// Whether `worker` drains: a connection then closes after its response (one atomic
    /// load, for the request path).
    pub(crate) fn draining(&self, worker: usize) -> bool {
        self.shard_of(worker).draining.load(Ordering::Acquire)
    }

    /// Starts `worker`'s drain: from now on its connections register as idle no more
    /// ([`IdleConns::enter_unless_draining`]), and every connection registered now is
    /// woken (as by [`IdleConns::reclaim`]) so that it closes. Returns how many were.
    pub(crate) fn drain_worker(&self, worker: usize) -> usize {
        let shard = self.shard_of(worker);
        let woken: Vec<Arc<Notify>> = {
            let mut list = shard.list.lock().unwrap_or_else(PoisonError::into_inner);
            shard.draining.store(true, Ordering::Release);
            let mut woken = Vec::new();
            while let Some((_, slot, generation)) = list.first() {
                woken.extend(list.remove(slot, generation));
            }
            woken
        };
        for wake in &woken {
            wake.notify_one();
        }
        woken.len()
    }

    /// Unregisters; false if the connection was reclaimed meanwhile (its `wake` holds a
    /// notification it may not have seen).
    pub(crate) fn leave(&self, reg: Registered) -> bool {
        self.shard(reg.worker)
            .remove(reg.slot, reg.generation)
            .is_some()
    }

    /// Whether `reg` is still registered: false once it was reclaimed.
    pub(crate) fn holds(&self, reg: &Registered) -> bool {
        self.shard(reg.worker).holds(reg.slot, reg.generation)
    }

    /// Wakes up to `n` of the oldest idle connections of all workers so that they close;
    /// returns how many.
    pub(crate) fn reclaim(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n {
            let oldest = (0..self.shards.len())
                .filter_map(|w| self.shard(w).first().map(|(since, s, g)| (since, w, s, g)))
                .min();
            let Some((_, worker, slot, generation)) = oldest else {
                break;
            };
            // Gone meanwhile (it woke up, or another worker reclaimed it): look again.
            if let Some(wake) = self.shard(worker).remove(slot, generation) {
                wake.notify_one();
                woken += 1;
            }
        }
        woken
    }

    /// Idle connections registered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|w| {
                self.shard(w)
                    .nodes
                    .iter()
                    .filter(|n| n.wake.is_some())
                    .count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_earlier_time_takes_its_place_and_a_stale_registration_frees_nothing() {
        let idle = IdleConns::new(1);
        let wakes: Vec<Arc<Notify>> = (0..4).map(|_| Arc::new(Notify::new())).collect();
        let t0 = Instant::now();
        let ms = std::time::Duration::from_millis;
        let b = idle.enter_at(0, &wakes[1], t0 + ms(2));
        let d = idle.enter_at(0, &wakes[3], t0 + ms(4));
        // Out of order: before both, then between them.
        let a = idle.enter_at(0, &wakes[0], t0);
        let c = idle.enter_at(0, &wakes[2], t0 + ms(3));
        assert_eq!(idle.len(), 4);
        // Reclaimed oldest first: a, b, c, d.
        for (i, wake) in wakes.iter().enumerate() {
            assert_eq!(idle.reclaim(1), 1, "{i}");
            wake.notified().await;
        }
        assert_eq!(idle.reclaim(1), 0);
        // Every slot was freed; new registrations reuse them, and the old ones, now
        // stale, neither hold nor remove the new occupants.
        let fresh: Vec<Registered> = wakes.iter().map(|w| idle.enter(0, w)).collect();
        for stale in [a, b, c, d] {
            assert!(!idle.holds(&stale));
            assert!(!idle.leave(stale));
        }
        assert_eq!(idle.len(), 4);
        for reg in fresh {
            assert!(idle.holds(&reg));
            assert!(idle.leave(reg));
        }
        assert_eq!(idle.len(), 0);
        assert_eq!(idle.reclaim(3), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_from_the_middle_keeps_the_order() {
        let idle = IdleConns::new(1);
        let wakes: Vec<Arc<Notify>> = (0..5).map(|_| Arc::new(Notify::new())).collect();
        let mut regs: Vec<Option<Registered>> = Vec::new();
        for w in &wakes {
            regs.push(Some(idle.enter(0, w)));
            tokio::time::advance(std::time::Duration::from_millis(1)).await;
        }
        // Leave the middle one, then the newest, then re-enter the middle: it is now the
        // newest.
        assert!(idle.leave(regs[2].take().unwrap()));
        assert!(idle.leave(regs[4].take().unwrap()));
        regs[2] = Some(idle.enter(0, &wakes[2]));
        for i in [0, 1, 3, 2] {
            assert_eq!(idle.reclaim(1), 1);
            assert!(
                !idle.holds(regs[i].as_ref().unwrap()),
                "{i} reclaimed in order"
            );
            wakes[i].notified().await;
        }
        assert_eq!(idle.len(), 0);
    }

    /// A drain wakes every connection registered on its worker (and no other worker's),
    /// and from then on refuses to register that worker's connections.
    #[tokio::test(start_paused = true)]
    async fn a_drain_wakes_its_workers_idle_connections_and_refuses_new_ones() {
        let idle = IdleConns::new(2);
        let wakes: Vec<Arc<Notify>> = (0..4).map(|_| Arc::new(Notify::new())).collect();
        let now = Instant::now();
        let a = idle
            .enter_unless_draining(0, &wakes[0], now)
            .expect("not draining");
        let b = idle
            .enter_unless_draining(0, &wakes[1], now)
            .expect("not draining");
        let other = idle
            .enter_unless_draining(1, &wakes[2], now)
            .expect("not draining");
        assert!(!idle.draining(0) && !idle.draining(1));
        assert_eq!(idle.drain_worker(0), 2);
        assert!(idle.draining(0) && !idle.draining(1));
        // Both were woken (the permit waits for a connection not polling yet) and are
        // gone from the registry; the other worker's stays.
        wakes[0].notified().await;
        wakes[1].notified().await;
        assert!(!idle.holds(&a) && !idle.holds(&b) && idle.holds(&other));
        assert!(!idle.leave(a) && !idle.leave(b));
        // No connection of the draining worker registers any more; another worker's does.
        assert!(idle.enter_unless_draining(0, &wakes[3], now).is_none());
        let late = idle
            .enter_unless_draining(1, &wakes[3], now)
            .expect("worker 1 serves");
        assert_eq!(idle.len(), 2);
        assert_eq!(idle.drain_worker(0), 0);
        assert!(idle.leave(other) && idle.leave(late));
    }

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
