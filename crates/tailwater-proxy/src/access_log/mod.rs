//! The access log (`[access_log]`): one line per request, for both engines.
//!
//! # How a line is made
//!
//! - When a request's head is read, [`AccessLog::begin`] formats the head of its line
//!   after the time (client address, request line, user agent: the client's values
//!   escaped at once, as the head's buffer is reused by the next request) into a cache:
//!   a lean-path connection's, which keeps it until the request ends and for the next
//!   request (a repeated head is one comparison and nothing written), or the thread's,
//!   copied into a [`Pending`]'s buffer (hyper's; the thread reuses the buffers). Times
//!   are read on the log's monotonic clock (the TSC where the kernel trusts it,
//!   `tailwater_core::clock`) and mapped to the wall clock by an offset the writer
//!   refreshes.
//! - While the request runs, the admission steps leave [`Notes`] in a slot of the thread
//!   that polls it ([`scope`]): route, decision and reason, tier, queue wait, the limit at
//!   the decision, the upstream's time to its response head; on the lean path the status,
//!   the length of the response head and the bytes written to the client too. The hooks
//!   in the engines are one call each, and cost a look at an empty slot when the log is
//!   off.
//! - Parts that repeat from line to line are formatted once and copied after, checked
//!   against the values they were made from (`cache`): the time stamp per millisecond
//!   (nginx caches its time strings the same way), the client's address and user agent
//!   per connection on the lean path (per thread, its last, on hyper's), and the fields
//!   from the route to the queue wait's name per thread. A lean-path connection keeps its
//!   notes' box too ([`ConnLog`]).
//! - At the end (the lean path: after the exchange; hyper's: when the response body is
//!   dropped, its bytes counted on the way) [`Pending::finish`] formats the whole line
//!   (the time, the head copied, the proxy's fields) in place at the end of this thread's
//!   buffer of lines (`sink`, bounded with the other threads' by lines and bytes), under
//!   a lock no other worker takes, without waiting: no room drops the line and counts it
//!   (`tailwater_access_log_dropped_total`). The writer thread (`writer`) takes every
//!   thread's buffer whole at its interval and writes it.
//!
//! Why format on the request's thread, in place: a line formatted where its values are
//! needs no record in between (its fields copied into a queue entry, and read back to be
//! formatted), and one formatted in the sink no line buffer copied into it; those copies
//! and the handoff cost as much as the formatting (issue 13).
//!
//! Why a slot rather than another argument: the admission steps are shared by both
//! engines and by other features; threading a log record through them would touch every
//! signature on the hot path for a feature that is off by default. The slot is a
//! thread-local `Cell` that the request's future ([`Scoped`]) fills with its notes' box
//! for each of its polls and empties after it (also when the poll panics), so another
//! task polled by the thread in between never sees them. That is what `tokio::task_local!`
//! does, without its `RefCell`, its `Option` of the future and its checks: moving one
//! pointer in and out of a `Cell` per poll (the task-local's swap cost about 200
//! instructions a request). Each thread keeps its finished boxes, and its head buffers,
//! for its next requests (no allocation per request; [`SPARES`]).

mod cache;
mod cursor;
mod format;
mod inline;
mod sink;
mod writer;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::LocalKey;
use std::time::Duration;

use tailwater_core::Criticality;
use tailwater_core::clock::{Clock, MonotonicClock};

use crate::decision::Decision;
use cache::{HeadCache, TailCache};
use cursor::Cursor;
use format::{Outcome, Stamp};
use inline::{Inline, ROUTE_INLINE};
use sink::Sink;
pub(crate) use writer::AccessLog;

thread_local! {
    /// The notes of the request whose future this thread is polling (see [`Scoped`]).
    static CURRENT: Cell<Option<Box<Notes>>> = const { Cell::new(None) };
    /// This thread's finished notes, reused by its next requests. Boxed on purpose: a
    /// request carries its notes as a `Box` (one pointer in `CURRENT` and in its future), so
    /// a spare is handed over without moving or allocating.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Notes>>> = const { RefCell::new(Vec::new()) };
    /// This thread's time stamp, caches and sink.
    static LOCAL: RefCell<Local> = const { RefCell::new(Local::new()) };
    /// Buffers of this thread's finished hyper requests' heads, reused by its next ones.
    static RESTS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// What a thread keeps for the lines it formats.
struct Local {
    /// The last millisecond it formatted.
    stamp: Stamp,
    /// The client address, user agent and head of its last line begun without a
    /// connection's cache (hyper's requests).
    head: HeadCache,
    /// The middle of its last line's tail.
    tail: TailCache,
    /// Its sink of the log it last wrote to, by the log's id.
    sink: Option<(u64, Arc<Sink>)>,
}

impl Local {
    const fn new() -> Self {
        Local {
            stamp: Stamp::new(),
            head: HeadCache::new(),
            tail: TailCache::new(),
            sink: None,
        }
    }
}

/// What a lean-path connection keeps for its requests' lines: its client's address and
/// user agent as formatted, and the box of notes its requests reuse one after another.
#[derive(Debug)]
pub(crate) struct ConnLog {
    head: HeadCache,
    notes: Option<Box<Notes>>,
}

impl Default for ConnLog {
    fn default() -> Self {
        ConnLog {
            head: HeadCache::for_conn(),
            notes: None,
        }
    }
}

/// The most spares of each kind a thread keeps: one per request it has in flight at once
/// (a worker serves many connections; a single spare would be taken by the first request
/// and the others would allocate), bounded so an idle thread holds little (a head is under
/// [`MAX_LINE`](format::MAX_LINE) bytes: 256 KiB at most).
const SPARES: usize = 64;

/// One of this thread's spares in `pool`, if it has one.
fn take_spare<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>) -> Option<T> {
    pool.try_with(|p| p.borrow_mut().pop()).ok().flatten()
}

/// Keeps `spare` in this thread's `pool`, unless it is full (or the thread is ending).
fn keep_spare<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>, spare: T) {
    let _ = pool.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < SPARES {
            p.push(spare);
        }
    });
}

/// The log's clock: request threads stamp records with it, and the writer maps its
/// readings to the wall clock once per batch.
fn now() -> u64 {
    static CLOCK: OnceLock<MonotonicClock> = OnceLock::new();
    CLOCK.get_or_init(MonotonicClock::new).now_nanos()
}

/// What the request's handling learnt, for its line.
#[derive(Debug, Default, Clone)]
pub(crate) struct Notes {
    /// The route's name.
    pub(crate) route: Option<Inline<ROUTE_INLINE>>,
    /// `admitted`, `shed`, `rate_limited`, `rejected`, `no_route` (`None`: refused
    /// before routing, or handed over).
    pub(crate) decision: Option<&'static str>,
    /// Why, if it was not a plain success (`Decision::reason`).
    pub(crate) reason: &'static str,
    /// The request's criticality tier.
    pub(crate) tier: Option<Criticality>,
    /// The concurrency limit when the limiter decided.
    pub(crate) limit: Option<usize>,
    /// Time spent in the admission queue, in nanoseconds.
    pub(crate) queue_wait: Option<u64>,
    /// When the request was admitted, on the log's clock (for the upstream time).
    admitted_at: Option<u64>,
    /// From admission to the upstream's response head, in nanoseconds (as the line
    /// writes it: no conversion back from a `Duration`).
    pub(crate) upstream: Option<u64>,
    /// The status written (lean path; hyper's is read from the response).
    pub(crate) status: u16,
    /// Bytes written to the client, the response head's included.
    pub(crate) bytes: u64,
    /// The length of the response head among `bytes` (lean path).
    head: u64,
}

impl Notes {
    /// A cleared box: this thread's spare, or a new one.
    fn fresh() -> Box<Self> {
        match take_spare(&SPARE) {
            Some(mut n) => {
                *n = Notes::default();
                n
            }
            None => Box::default(),
        }
    }

    /// Keeps `notes` for this thread's next request.
    fn recycle(notes: Box<Self>) {
        keep_spare(&SPARE, notes);
    }
}

/// Runs `fut` with an empty [`Notes`] slot, and returns what was noted in it.
pub(crate) fn scope<F: Future>(fut: F) -> Scoped<F> {
    Scoped {
        fut,
        notes: Some(Notes::fresh()),
    }
}

/// [`scope`] with `conn`'s box of notes (cleared), or a fresh one.
pub(crate) fn scope_on<F: Future>(conn: &mut ConnLog, fut: F) -> Scoped<F> {
    let notes = match conn.notes.take() {
        Some(mut n) => {
            *n = Notes::default();
            n
        }
        None => Notes::fresh(),
    };
    Scoped {
        fut,
        notes: Some(notes),
    }
}

pin_project_lite::pin_project! {
    /// A request's future with its notes: they are in this thread's slot while the future
    /// is polled, and here between polls (see the module docs).
    pub(crate) struct Scoped<F> {
        #[pin]
        fut: F,
        notes: Option<Box<Notes>>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = (F::Output, Box<Notes>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Whatever the slot held (nothing, unless a scope is polled inside another) is put
        // back after the poll, and the notes taken back, even when the poll panics.
        struct Restore<'a> {
            notes: &'a mut Option<Box<Notes>>,
            outer: Option<Box<Notes>>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                *self.notes = CURRENT.replace(self.outer.take());
            }
        }
        let outer = CURRENT.replace(this.notes.take());
        let restore = Restore {
            notes: &mut *this.notes,
            outer,
        };
        let polled = this.fut.poll(cx);
        drop(restore);
        match polled {
            Poll::Ready(out) => Poll::Ready((out, this.notes.take().unwrap_or_default())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Applies `f` to the current request's notes, if it is being logged.
fn note(f: impl FnOnce(&mut Notes)) {
    // Taken out of the slot and put back: `f` cannot reach the slot (the hooks do not
    // nest), so nothing is lost. `try_with`: a guard dropped while the thread ends (its
    // slot gone) notes nothing rather than panicking.
    let _ = CURRENT.try_with(|slot| {
        if let Some(mut notes) = slot.take() {
            f(&mut notes);
            slot.set(Some(notes));
        }
    });
}

/// `d` in nanoseconds, in u64 (saturating: no 128-bit arithmetic per request).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// The request was routed to `name`.
pub(crate) fn note_route(name: &str) {
    note(|n| n.route = Some(Inline::new(name.as_bytes())));
}

/// The request matched no route.
pub(crate) fn note_no_route() {
    note(|n| n.decision = Some("no_route"));
}

/// How the request was counted on its route (every routed request is counted once, by
/// `RouteCounters::record`): the decision, unless admission already noted one.
pub(crate) fn note_decision(decision: Decision, tier: Criticality) {
    note(|n| {
        n.tier = Some(tier);
        n.reason = decision.reason();
        n.decision.get_or_insert(match decision {
            Decision::Shed(_) => "shed",
            Decision::RateLimited => "rate_limited",
            Decision::Success
            | Decision::UpstreamStatus
            | Decision::UpstreamError
            | Decision::UpstreamTimeout
            | Decision::BodyError => "admitted",
            _ => "rejected",
        });
    });
}

/// The limiter admitted the request at `limit`, after `queue_wait` in the queue.
pub(crate) fn note_admitted(tier: Criticality, limit: usize, queue_wait: Option<Duration>) {
    note(|n| {
        n.decision = Some("admitted");
        n.tier = Some(tier);
        n.limit = Some(limit);
        n.queue_wait = queue_wait.map(nanos);
        n.admitted_at = Some(now());
    });
}

/// The limiter shed the request at `limit`, after `queue_wait` in the queue.
pub(crate) fn note_shed(limit: usize, queue_wait: Option<Duration>) {
    note(|n| {
        n.limit = Some(limit);
        n.queue_wait = queue_wait.map(nanos);
    });
}

/// The upstream's response head arrived.
pub(crate) fn note_upstream_head() {
    note(|n| {
        n.upstream = n.admitted_at.map(|t| now().saturating_sub(t));
    });
}

/// The lean path wrote a response head of `len` bytes with `status` to its buffer (it
/// goes out with the next write): the first head of a request sets its status, and its
/// bytes are not counted as body bytes.
pub(crate) fn note_head(status: u16, len: usize) {
    note(|n| {
        if n.status == 0 {
            n.status = status;
            n.head = len as u64;
        }
    });
}

/// The lean path wrote `len` bytes to the client (a head noted by [`note_head`] among
/// them).
pub(crate) fn note_written(len: usize) {
    note(|n| n.bytes += len as u64);
}

/// The client's side of a request, as either engine read it.
pub(crate) struct RequestFields<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) method: &'a [u8],
    pub(crate) target: &'a [u8],
    pub(crate) protocol: &'static str,
    pub(crate) user_agent: Option<&'a [u8]>,
}

/// A line begun at the request's head, finished at its end.
#[derive(Debug)]
pub(crate) struct Pending {
    /// When the request's head was read, on the log's clock and on the wall clock.
    start: u64,
    unix_nanos: u64,
    /// What the head left of the line's budget for client values.
    budget: usize,
    json: bool,
    /// The head after the time, when the request has no connection's cache that holds
    /// it (hyper's: a buffer of this thread's, reused).
    rest: Option<Vec<u8>>,
}

impl AccessLog {
    /// Begins the line of a request whose head has just been read.
    pub(crate) fn begin(&self, req: &RequestFields<'_>) -> Pending {
        let start = now();
        self.begin_at(req, None, b"", start, self.wall(start))
    }

    /// [`Self::begin`] for a request of a lean-path connection, with its cache (which
    /// holds the line's head until [`Pending::finish_on`]); `raw` is the request's whole
    /// head as read (the cache's key).
    pub(crate) fn begin_on(
        &self,
        conn: &mut ConnLog,
        req: &RequestFields<'_>,
        raw: &[u8],
    ) -> Pending {
        let start = now();
        self.begin_at(req, Some(&mut conn.head), raw, start, self.wall(start))
    }

    /// [`Self::begin`] at `start` on the log's clock, `unix_nanos` on the wall clock, with
    /// a connection's cache (else the thread's) and the whole head `raw` (or empty).
    #[inline]
    fn begin_at(
        &self,
        req: &RequestFields<'_>,
        conn: Option<&mut HeadCache>,
        raw: &[u8],
        start: u64,
        unix_nanos: u64,
    ) -> Pending {
        let json = self.json;
        let (budget, rest) = match conn {
            // The connection's cache holds the head until the request ends.
            Some(cache) => (cache.rest(json, req, raw), None),
            None => {
                let (budget, rest) = LOCAL
                    .try_with(|l| {
                        let l = &mut *l.borrow_mut();
                        let budget = l.head.rest(json, req, b"");
                        let mut rest = take_spare(&RESTS).unwrap_or_default();
                        rest.clear();
                        rest.extend_from_slice(l.head.rest_text());
                        (budget, rest)
                    })
                    .unwrap_or_else(|_| head_alone(json, req));
                (budget, Some(rest))
            }
        };
        Pending {
            start,
            unix_nanos,
            budget,
            json,
            rest,
        }
    }
}

/// The head after the time, on a thread that is ending (its locals gone): with a cache
/// of its own (out of line: the hot path stays small).
#[cold]
#[inline(never)]
fn head_alone(json: bool, req: &RequestFields<'_>) -> (usize, Vec<u8>) {
    let mut cache = HeadCache::new();
    let budget = cache.rest(json, req, b"");
    (budget, cache.rest_text().to_vec())
}

impl Pending {
    /// Completes the line with `notes` (and `status`, when the engine knows it apart)
    /// and formats it in this thread's sink of `log` (the log that began it); the notes'
    /// box and the head's buffer are kept for this thread's next request.
    pub(crate) fn finish(mut self, log: &AccessLog, notes: Box<Notes>, status: Option<u16>) {
        let rest = self.rest.take().unwrap_or_default();
        self.send(log, &notes, status, &rest);
        keep_spare(&RESTS, rest);
        Notes::recycle(notes);
    }

    /// [`Self::finish`] for a request begun by [`AccessLog::begin_on`] on `conn`, whose
    /// cache holds the line's head: the notes' box is kept for the connection's next
    /// request.
    pub(crate) fn finish_on(self, log: &AccessLog, conn: &mut ConnLog, notes: Box<Notes>) {
        self.send(log, &notes, None, conn.head.rest_text());
        conn.notes = Some(notes);
    }

    /// Formats the line, its head after the time being `rest`, in this thread's sink of
    /// `log`.
    fn send(&self, log: &AccessLog, notes: &Notes, status: Option<u16>, rest: &[u8]) {
        let outcome = Outcome {
            status: status.unwrap_or(notes.status),
            duration: now().saturating_sub(self.start),
            n: notes,
        };
        let sent = LOCAL.try_with(|l| {
            let Local {
                stamp, tail, sink, ..
            } = &mut *l.borrow_mut();
            let sink = match sink {
                Some((id, sink)) if *id == log.id => sink,
                _ => &sink.insert((log.id, log.sink())).1,
            };
            log.write(sink, |c| self.write(c, rest, &outcome, stamp, tail));
        });
        if sent.is_err() {
            self.send_alone(log, rest, &outcome);
        }
    }

    /// [`Self::send`] on a thread that is ending (its locals gone): its sink found afresh.
    #[cold]
    #[inline(never)]
    fn send_alone(&self, log: &AccessLog, rest: &[u8], outcome: &Outcome<'_>) {
        let (mut stamp, mut tail) = (Stamp::new(), TailCache::new());
        log.write(&log.sink(), |c| {
            self.write(c, rest, outcome, &mut stamp, &mut tail);
        });
    }

    /// Writes the whole line at `o` (which has [`MAX_LINE`](format::MAX_LINE) bytes of
    /// room): the time, the head after it (`rest`), the tail.
    #[inline]
    fn write(
        &self,
        o: &mut Cursor<'_>,
        rest: &[u8],
        outcome: &Outcome<'_>,
        stamp: &mut Stamp,
        tail: &mut TailCache,
    ) {
        format::time(o, stamp, self.json, self.unix_nanos);
        o.put(rest);
        format::tail(o, self.json, self.budget, outcome, tail);
    }

    /// The line, with `rest` (its own, or its connection's cache's), as [`Self::send`]
    /// would write it.
    #[cfg(test)]
    fn line(
        &self,
        rest: &[u8],
        n: &Notes,
        status: u16,
        duration: u64,
        tail: &mut TailCache,
    ) -> String {
        let mut buf = vec![0; format::MAX_LINE];
        let mut c = Cursor::new(&mut buf);
        let outcome = Outcome {
            status,
            duration,
            n,
        };
        let rest = self.rest.as_deref().unwrap_or(rest);
        self.write(&mut c, rest, &outcome, &mut Stamp::new(), tail);
        let len = c.len();
        String::from_utf8(buf[..len].to_vec()).expect("ASCII")
    }
}

/// hyper's side: the line waits in the response body until the body is dropped (sent,
/// or the client went away), counting the body bytes on the way.
#[derive(Debug)]
pub(crate) struct Tail {
    pending: Option<(Arc<AccessLog>, Pending, Box<Notes>)>,
    status: u16,
}

impl Tail {
    /// The end of a request that hyper answered with `status`, begun on `log`.
    pub(crate) fn new(
        log: Arc<AccessLog>,
        pending: Pending,
        notes: Box<Notes>,
        status: u16,
    ) -> Box<Self> {
        Box::new(Tail {
            pending: Some((log, pending, notes)),
            status,
        })
    }

    /// `n` more body bytes went to the client.
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some((_, _, notes)) = &mut self.pending {
            notes.bytes += n as u64;
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some((log, p, notes)) = self.pending.take() {
            p.finish(&log, notes, Some(self.status));
        }
    }
}

#[cfg(test)]
mod tests;
