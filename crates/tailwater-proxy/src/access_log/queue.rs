//! The queue from the request threads to the writer thread, bounded by lines and by
//! bytes, and double-buffered: a request appends its entry to the open batch under a
//! short lock; the writer swaps the whole batch for its empty one and formats it outside
//! the lock.
//!
//! Nothing is preallocated for the bound: the batches grow to what a period between two
//! writes holds (then stay, reused), and at most to the bound. Senders never wake the
//! writer (a wake-up per record would cost a system call on the request's thread); it
//! wakes at its interval, or at once when the log closes.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tailwater_core::Criticality;

use super::format::Line;

/// One request's fixed-size fields; its client's bytes (method, target, user agent,
/// route) follow one another in the batch's `bytes`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// When the request's head was read, on the log's clock (nanoseconds).
    pub(super) start: u64,
    /// From the head's arrival to the response's end (nanoseconds).
    pub(super) duration: u64,
    pub(super) upstream: Option<u64>,
    pub(super) queue_wait: Option<u64>,
    pub(super) limit: Option<u64>,
    pub(super) bytes: u64,
    pub(super) peer: std::net::SocketAddr,
    pub(super) protocol: &'static str,
    pub(super) decision: Option<&'static str>,
    pub(super) reason: &'static str,
    pub(super) tier: Option<Criticality>,
    pub(super) status: u16,
    pub(super) method_len: u16,
    pub(super) target_len: u16,
    /// `u16::MAX`: no user agent (a value is at most `MAX_FIELD` + 1 bytes).
    pub(super) user_agent_len: u16,
    /// `u16::MAX`: not routed.
    pub(super) route_len: u16,
}

/// `Entry::user_agent_len` and `Entry::route_len` when the field is absent.
pub(super) const ABSENT: u16 = u16::MAX;

impl Entry {
    /// The client's bytes this entry has in its batch.
    fn variable_len(&self) -> usize {
        let opt = |n: u16| if n == ABSENT { 0 } else { usize::from(n) };
        usize::from(self.method_len)
            + usize::from(self.target_len)
            + opt(self.user_agent_len)
            + opt(self.route_len)
    }
}

/// Entries and their bytes, in arrival order.
#[derive(Debug, Default)]
pub(super) struct Batch {
    entries: Vec<Entry>,
    bytes: Vec<u8>,
}

impl Batch {
    fn with_capacity(lines: usize) -> Self {
        Batch {
            entries: Vec::with_capacity(lines.min(1024)),
            bytes: Vec::with_capacity(lines.min(1024) * 64),
        }
    }

    /// The memory the batch holds against the bound.
    fn size(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>() + self.bytes.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The lines, with `time` mapping an entry's start to the wall clock.
    pub(super) fn lines(
        &self,
        time: impl Fn(u64) -> std::time::SystemTime,
    ) -> impl Iterator<Item = Line<'_>> {
        let mut at = 0;
        self.entries.iter().map(move |e| {
            let mut take = |n: u16| {
                let s = &self.bytes[at..at + usize::from(n)];
                at += usize::from(n);
                s
            };
            let method = take(e.method_len);
            let target = take(e.target_len);
            let user_agent = (e.user_agent_len != ABSENT).then(|| take(e.user_agent_len));
            let route = (e.route_len != ABSENT).then(|| take(e.route_len));
            Line {
                time: time(e.start),
                peer: e.peer,
                method,
                target,
                protocol: e.protocol,
                user_agent,
                status: e.status,
                bytes: e.bytes,
                duration: e.duration,
                upstream: e.upstream,
                route,
                decision: e.decision,
                reason: e.reason,
                tier: e.tier,
                queue_wait: e.queue_wait,
                limit: e.limit,
            }
        })
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
    }
}

#[derive(Debug)]
struct State {
    open: Batch,
    closed: bool,
}

/// The queue (see the module docs).
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// Signalled when the log closes.
    wake: Condvar,
    max_lines: usize,
    max_bytes: usize,
}

impl Queue {
    /// A queue of at most `max_lines` entries and `max_bytes` bytes (entries and their
    /// client's bytes).
    pub(super) fn new(max_lines: usize, max_bytes: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                open: Batch::with_capacity(max_lines),
                closed: false,
            }),
            wake: Condvar::new(),
            max_lines,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned batch is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `entry` and its client's bytes (`parts`, back to back: as long as the
    /// entry says) without waiting; `false` when the queue is full (or closed).
    pub(super) fn push(&self, entry: Entry, parts: [&[u8]; 2]) -> bool {
        let need = std::mem::size_of::<Entry>() + entry.variable_len();
        debug_assert_eq!(parts[0].len() + parts[1].len(), entry.variable_len());
        let mut s = self.lock();
        if s.closed
            || s.open.entries.len() >= self.max_lines
            || s.open.size() + need > self.max_bytes
        {
            return false;
        }
        s.open.entries.push(entry);
        s.open.bytes.extend_from_slice(parts[0]);
        s.open.bytes.extend_from_slice(parts[1]);
        true
    }

    /// Closes the queue: the writer takes what is left at once, and stops.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Waits `interval` (or until the queue closes), then swaps the open batch for
    /// `empty`; whether the queue is closed (then `empty` holds its last entries).
    pub(super) fn take(&self, empty: &mut Batch, interval: Duration) -> bool {
        let deadline = Instant::now() + interval;
        let mut s = self.lock();
        // A loop: a wait may end early without a cause.
        while !s.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .wake
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut s.open, empty);
        s.closed
    }
}
