//! Events: the handle of a request slot, the kinds of event, and their order in the heap.

use std::cmp::Ordering as CmpOrdering;

pub(super) type Handle = u64;

pub(super) fn handle(idx: u32, generation: u32) -> Handle {
    (u64::from(generation) << 32) | u64::from(idx)
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Arrival,
    /// `start`: when the request's first attempt was sent (its deadline counts from it).
    Retry {
        req: u32,
        tier: u8,
        attempt: u8,
        start: u64,
    },
    Timeout(Handle),
    Check(Handle),
    Done(Handle),
    PsDone(u64),
    Tick,
    Capacity(usize),
}

#[derive(Debug)]
pub(super) struct Event {
    pub(super) t: u64,
    pub(super) seq: u64,
    pub(super) kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.seq == other.seq
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed, so that the max-heap pops the earliest (then the first scheduled).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.t.cmp(&self.t).then(other.seq.cmp(&self.seq))
    }
}

pub(super) fn ns(secs: f64) -> u64 {
    (secs * 1e9).round().max(0.0) as u64
}

pub(super) fn us(nanos: u64) -> u64 {
    nanos / 1000
}
