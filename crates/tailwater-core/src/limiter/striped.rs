//! Per-thread counter stripes: counting an event on the hot path without a shared
//! read-modify-write.
//!
//! A shared `fetch_add` costs a locked instruction (~5 ns on this project's reference machine)
//! and, when several cores count at once, a cache-line transfer per event. Instead each thread
//! that counts is given one stripe of its own (a slot number taken from a process-wide pool,
//! returned when the thread exits), and only that thread ever writes it. A write is then a
//! plain relaxed load and store, which no other writer can interleave with; readers add up all
//! stripes. Threads beyond [`STRIPES`] (or counting from a thread-local destructor, after the
//! slot is gone) fall back to a shared stripe updated with `fetch_add`, so every event is
//! counted either way.
//!
//! A slot number is handed to a new thread only after the previous owner exited, through a
//! mutex, so the new owner's first load sees the old owner's last store.

use std::array;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering};

/// Owned stripes per counter set (threads counting at the same time that get a stripe of
/// their own); more threads share one stripe with `fetch_add`.
/// (None under loom, whose models track every atomic.)
pub(crate) const STRIPES: usize = if cfg!(loom) { 0 } else { 32 };

/// `N` event counters, striped by thread.
pub(crate) struct Striped<const N: usize> {
    owned: Box<[CachePadded<[AtomicU64; N]>; STRIPES]>,
    shared: CachePadded<[AtomicU64; N]>,
}

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Self {
            owned: Box::new(array::from_fn(|_| {
                CachePadded::new(array::from_fn(|_| AtomicU64::new(0)))
            })),
            shared: CachePadded::new(array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl<const N: usize> std::fmt::Debug for Striped<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries((0..N).map(|i| self.sum(i))).finish()
    }
}

impl<const N: usize> Striped<N> {
    /// Counts one event in counter `i`.
    #[inline]
    pub(crate) fn add(&self, i: usize) {
        match self.owned.get(slot::current()) {
            Some(stripe) => {
                // Only this thread writes this stripe (see the module docs).
                let c = &stripe[i];
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            None => {
                self.shared[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The total of counter `i` over all stripes (not atomic across stripes: events being
    /// counted while it sums may or may not be included).
    pub(crate) fn sum(&self, i: usize) -> u64 {
        self.owned
            .iter()
            .map(|s| s[i].load(Ordering::Relaxed))
            .sum::<u64>()
            + self.shared[i].load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
mod slot {
    use std::cell::Cell;
    use std::sync::{Mutex, PoisonError};

    use super::STRIPES;

    /// Slot numbers of threads that exited, ready for reuse, and the next never-used one.
    static POOL: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

    /// This thread has not asked for a slot yet.
    const UNCLAIMED: usize = usize::MAX;
    /// This thread asked and got none (all taken), or its slot was already given back.
    const NONE: usize = usize::MAX - 1;

    thread_local! {
        /// This thread's slot, read on every count: a plain `Cell`, no lazy initialisation.
        static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
        /// Gives the slot back when the thread exits.
        static RETURN: Return = const { Return };
    }

    struct Return;

    impl Drop for Return {
        fn drop(&mut self) {
            let slot = SLOT.try_with(|s| s.replace(NONE)).unwrap_or(NONE);
            if slot < STRIPES {
                POOL.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
                    .push(slot);
            }
        }
    }

    /// This thread's stripe; `STRIPES` or more if it has none.
    #[inline]
    pub(super) fn current() -> usize {
        match SLOT.try_with(Cell::get) {
            Ok(UNCLAIMED) => claim(),
            Ok(slot) => slot,
            Err(_) => NONE,
        }
    }

    #[cold]
    fn claim() -> usize {
        // Register the return first: if this thread is already tearing down its
        // thread-locals, it gets no slot (and counts on the shared stripe).
        if RETURN.try_with(|_| ()).is_err() {
            return NONE;
        }
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        let (free, next) = &mut *pool;
        let slot = free.pop().or_else(|| {
            (*next < STRIPES).then(|| {
                *next += 1;
                *next - 1
            })
        });
        drop(pool);
        let slot = slot.unwrap_or(NONE);
        let _ = SLOT.try_with(|s| s.set(slot));
        slot
    }
}

#[cfg(loom)]
mod slot {
    /// Under loom every count takes the shared, `fetch_add` path.
    pub(super) fn current() -> usize {
        usize::MAX
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads_add_up_exactly() {
        // More threads than stripes, so both the owned and the shared path are exercised.
        let counters = Arc::new(Striped::<3>::default());
        let threads: Vec<_> = (0..STRIPES + 8)
            .map(|t| {
                let c = Arc::clone(&counters);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(t % 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let total: u64 = (0..3).map(|i| counters.sum(i)).sum();
        assert_eq!(total, (STRIPES as u64 + 8) * 1000);
        assert_eq!(counters.sum(0), 14 * 1000);
    }

    #[test]
    fn a_reused_slot_continues_from_the_previous_owners_count() {
        let counters = Arc::new(Striped::<1>::default());
        for _ in 0..3 * STRIPES {
            let c = Arc::clone(&counters);
            std::thread::spawn(move || c.add(0)).join().expect("thread");
        }
        assert_eq!(counters.sum(0), 3 * STRIPES as u64);
    }
}
