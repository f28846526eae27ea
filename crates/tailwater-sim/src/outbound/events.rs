//! A minimal time-ordered event queue for the client-side scenarios (the server-side
//! [`engine`](crate::engine) has its own, tuned for limiters and queues).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Events of type `E` by time (nanoseconds), first scheduled first on ties.
#[derive(Debug)]
pub(crate) struct Events<E> {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    items: Vec<Option<E>>,
    seq: u64,
}

impl<E> Events<E> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            items: Vec::new(),
            seq: 0,
        }
    }

    pub(crate) fn push(&mut self, t: u64, e: E) {
        self.seq += 1;
        self.items.push(Some(e));
        self.heap.push(Reverse((t, self.seq, self.items.len() - 1)));
    }

    pub(crate) fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((t, _, i)) = self.heap.pop()?;
        let e = self.items[i].take()?;
        if self.heap.is_empty() {
            self.items.clear();
        }
        Some((t, e))
    }
}

/// Seconds to nanoseconds.
pub(crate) fn ns(secs: f64) -> u64 {
    (secs * 1e9).max(0.0) as u64
}
