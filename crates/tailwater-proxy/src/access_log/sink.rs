//! The handoff from the request threads to the writer thread: each thread appends its
//! finished lines to a buffer of its own (a [`Sink`], locked only by that thread and, at
//! each of its wake-ups, by the writer, which swaps the whole buffer for an empty one).
//!
//! The bound (`buffer_lines`, `buffer_bytes`) is shared by all the sinks of a log through
//! leases: a sink takes a slice of the bound from the log's pool when it needs room (a
//! sixteenth, or what a line needs, once every few hundred lines), and the writer gives
//! the whole lease back when it takes the sink's buffer. What the sinks hold together
//! never passes the bound; a line that finds no room is dropped (and counted by the
//! caller). Senders never wake the writer (a wake-up per record would cost a system call
//! on the request's thread); it wakes at its interval, or at once when the log closes.
//!
//! Why per thread rather than one queue: a shared queue costs every request a lock that
//! the other workers take too (its cache line moving between cores) and a copy of the
//! record into it; a thread's own sink is an uncontended lock, and the line is formatted
//! in place at the end of its bytes ([`Sinks::write`]: no line buffer, no copy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::cursor::Cursor;
use super::format::MAX_LINE;

/// Locks `m`: nothing panics while these locks are held, so a poisoned value is whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Grows `bytes` (zeroed: a cursor writes over initialised bytes) to at least `need`, by
/// doubling, so that a sink's room is zeroed a logarithmic number of times, not per line.
#[cold]
#[inline(never)]
fn grow(bytes: &mut Vec<u8>, need: usize) {
    let len = need.max(bytes.len() * 2).max(16 * MAX_LINE);
    bytes.resize(len, 0);
}

/// One thread's finished lines, waiting for the writer.
#[derive(Debug, Default)]
pub(super) struct Sink {
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Whole lines, back to back, in its first `used` bytes; the rest is room, written
    /// before (its length is kept, so that room is zeroed once, when it grows).
    bytes: Vec<u8>,
    used: usize,
    lines: usize,
    /// The part of the log's bound this sink holds (lines, bytes).
    lease_lines: usize,
    lease_bytes: usize,
}

/// What the sinks of one log hold at most, not yet leased.
#[derive(Debug)]
struct Pool {
    lines: usize,
    bytes: usize,
}

/// The registry of a log's sinks, their bound, and the writer's wake-up.
#[derive(Debug)]
pub(super) struct Sinks {
    /// Every thread's sink, by thread (a thread finds its own once per log, then keeps it).
    all: Mutex<Vec<(ThreadId, Arc<Sink>)>>,
    pool: Mutex<Pool>,
    /// How much of the bound a sink leases at a time.
    chunk_lines: usize,
    chunk_bytes: usize,
    closed: AtomicBool,
    /// Signalled when the log closes (with `sleep`, which it guards).
    wake: Condvar,
    sleep: Mutex<()>,
}

impl Sinks {
    /// Sinks that hold at most `max_lines` lines and `max_bytes` bytes together.
    pub(super) fn new(max_lines: usize, max_bytes: usize) -> Self {
        Sinks {
            all: Mutex::default(),
            pool: Mutex::new(Pool {
                lines: max_lines,
                bytes: max_bytes,
            }),
            chunk_lines: (max_lines / 16).max(1),
            chunk_bytes: max_bytes / 16,
            closed: AtomicBool::new(false),
            wake: Condvar::new(),
            sleep: Mutex::default(),
        }
    }

    /// The calling thread's sink (registered on its first call).
    pub(super) fn for_this_thread(&self) -> Arc<Sink> {
        let me = std::thread::current().id();
        let mut all = lock(&self.all);
        if let Some((_, s)) = all.iter().find(|(t, _)| *t == me) {
            return Arc::clone(s);
        }
        let s = Arc::new(Sink::default());
        all.push((me, Arc::clone(&s)));
        s
    }

    /// Formats a line with `f` in place at the end of `sink`'s lines, without waiting
    /// (`f` writes a whole line, with its newline, of at most [`MAX_LINE`] bytes); `false`
    /// when the bound leaves no room for it (or the log is closed): it is then not kept.
    pub(super) fn write(&self, sink: &Sink, f: impl FnOnce(&mut Cursor<'_>)) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let mut h = lock(&sink.held);
        let at = h.used;
        if h.bytes.len() < at + MAX_LINE {
            grow(&mut h.bytes, at + MAX_LINE);
        }
        let mut c = Cursor::new(&mut h.bytes[at..at + MAX_LINE]);
        f(&mut c);
        let len = c.len();
        if (h.lines >= h.lease_lines || at + len > h.lease_bytes) && !self.lease(&mut h, len) {
            return false;
        }
        h.used = at + len;
        h.lines += 1;
        true
    }

    /// Appends `line` (whole, with its newline) to `sink` (see [`Self::write`]).
    #[cfg(test)]
    pub(super) fn push(&self, sink: &Sink, line: &[u8]) -> bool {
        self.write(sink, |c| c.put(line))
    }

    /// Leases `h` room for one more line of `len` bytes from the pool, in chunks; whether
    /// it has that room now (what it got is kept either way, until the writer takes it).
    fn lease(&self, h: &mut Held, len: usize) -> bool {
        let mut p = lock(&self.pool);
        if h.lines >= h.lease_lines {
            let n = self.chunk_lines.min(p.lines);
            p.lines -= n;
            h.lease_lines += n;
        }
        let need = (h.used + len).saturating_sub(h.lease_bytes);
        if need > 0 {
            let n = self.chunk_bytes.max(need).min(p.bytes);
            p.bytes -= n;
            h.lease_bytes += n;
        }
        h.lines < h.lease_lines && h.used + len <= h.lease_bytes
    }

    /// Swaps `sink`'s lines into `into` (whatever it held becomes the sink's room, or is
    /// freed if `last`) and gives the sink's lease back; how many lines, in how many of
    /// `into`'s first bytes.
    pub(super) fn take(&self, sink: &Sink, into: &mut Vec<u8>, last: bool) -> (usize, usize) {
        let (lines, used, lease_lines, lease_bytes) = {
            let mut h = lock(&sink.held);
            std::mem::swap(&mut h.bytes, into);
            if last {
                h.bytes = Vec::new();
            }
            let taken = (h.lines, h.used, h.lease_lines, h.lease_bytes);
            h.lines = 0;
            h.used = 0;
            h.lease_lines = 0;
            h.lease_bytes = 0;
            taken
        };
        let mut p = lock(&self.pool);
        p.lines += lease_lines;
        p.bytes += lease_bytes;
        (lines, used)
    }

    /// Copies the registered sinks into `out`.
    pub(super) fn list(&self, out: &mut Vec<Arc<Sink>>) {
        out.extend(lock(&self.all).iter().map(|(_, s)| Arc::clone(s)));
    }

    /// Closes the log: pushes fail, and the writer wakes at once, takes what is left and
    /// stops.
    pub(super) fn close(&self) {
        let _g = lock(&self.sleep);
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }

    /// Waits `interval`, or until the log closes; whether it is closed.
    pub(super) fn wait(&self, interval: Duration) -> bool {
        let deadline = Instant::now() + interval;
        let mut g = lock(&self.sleep);
        // A loop: a wait may end early without a cause.
        while !self.closed.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self
                .wake
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.closed.load(Ordering::Relaxed)
    }
}
