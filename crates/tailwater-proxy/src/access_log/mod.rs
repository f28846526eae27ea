//! The access log (`[access_log]`): one line per request, for both engines.
//!
//! # How a line is made
//!
//! - When a request's head is read, [`AccessLog::begin`] copies the client's raw values
//!   (method, target, user agent; the head's buffer is reused by the next request) into a
//!   [`Record`], inline when they are short, with the time and the client's address.
//!   Nothing is formatted on the request's thread.
//! - While the request runs, the admission steps leave [`Notes`] in a task-local slot
//!   ([`scope`]): route, decision and reason, tier, queue wait, the limit at the decision,
//!   the upstream's time to its response head; on the lean path the status and the bytes
//!   written to the client too. The hooks in the engines are one call each, and cost a
//!   failed task-local look-up when the log is off.
//! - At the end (the lean path: after the exchange; hyper's: when the response body is
//!   dropped, its bytes counted on the way) [`Pending::finish`] completes the record and
//!   hands it to the writer thread (`writer`) without waiting: a full queue drops the
//!   record and counts it (`tailwater_access_log_dropped_total`). The writer formats the
//!   records into one reused buffer (`format`) and writes it in batches.
//!
//! Why a task-local rather than another argument: the admission steps are shared by both
//! engines and by other features; threading a log record through them would touch every
//! signature on the hot path for a feature that is off by default. The slot holds a box,
//! so that the task-local's swap in and out at every poll moves a pointer, not the notes.

mod format;
mod writer;

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tailwater_core::Criticality;
use tokio::time::Instant;

use crate::decision::Decision;
pub(crate) use writer::AccessLog;

tokio::task_local! {
    static NOTES: RefCell<Option<Box<Notes>>>;
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
    /// Time spent in the admission queue.
    pub(crate) queue_wait: Option<Duration>,
    /// When the request was admitted (for the upstream time).
    admitted_at: Option<Instant>,
    /// From admission to the upstream's response head.
    pub(crate) upstream: Option<Duration>,
    /// The status written (lean path; hyper's is read from the response).
    pub(crate) status: u16,
    /// Body bytes written to the client.
    pub(crate) bytes: u64,
}

/// Runs `fut` with an empty [`Notes`] slot, and returns what was noted in it.
pub(crate) async fn scope<F: Future>(fut: F) -> (F::Output, Box<Notes>) {
    NOTES
        .scope(RefCell::new(Some(Box::default())), async move {
            let out = fut.await;
            let notes = NOTES.with(|n| n.borrow_mut().take()).unwrap_or_default();
            (out, notes)
        })
        .await
}

/// Applies `f` to the current request's notes, if it is being logged.
fn note(f: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|n| {
        if let Some(notes) = n.borrow_mut().as_deref_mut() {
            f(notes);
        }
    });
}

/// The request was routed to `name`.
pub(crate) fn note_route(name: &str) {
    note(|n| n.route = Some(Inline::new(&[name.as_bytes()])));
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
        n.queue_wait = queue_wait;
        n.admitted_at = Some(Instant::now());
    });
}

/// The limiter shed the request at `limit`, after `queue_wait` in the queue.
pub(crate) fn note_shed(limit: usize, queue_wait: Option<Duration>) {
    note(|n| {
        n.limit = Some(limit);
        n.queue_wait = queue_wait;
    });
}

/// The upstream's response head arrived.
pub(crate) fn note_upstream_head() {
    note(|n| n.upstream = n.admitted_at.map(|t| t.elapsed()));
}

/// The lean path wrote `buf` to the client: the first write of a response starts with
/// its head (status line to the blank line), which is not counted as body bytes.
pub(crate) fn note_written(buf: &[u8]) {
    note(|n| {
        if n.status == 0 {
            n.status = format::status_of(buf).unwrap_or(0);
            let head = format::head_len(buf).unwrap_or(0);
            n.bytes += (buf.len() - head) as u64;
        } else {
            n.bytes += buf.len() as u64;
        }
    });
}

/// The client's side of a request, as either engine read it.
pub(crate) struct RequestFields<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) method: &'a [u8],
    pub(crate) target: &'a [u8],
    pub(crate) protocol: &'static str,
    pub(crate) user_agent: Option<&'a [u8]>,
}

/// Bytes of a record, kept inline when they fit in `N` (no allocation on the request's
/// thread: the common case), on the heap when they do not.
#[derive(Clone)]
pub(crate) struct Inline<const N: usize> {
    len: u16,
    inline: [u8; N],
    heap: Option<Box<[u8]>>,
}

impl<const N: usize> Inline<N> {
    /// `parts`, back to back; each part is cut at [`format::MAX_FIELD`] + 1 bytes (one more
    /// than a line shows, so that the formatter knows it was cut).
    fn new(parts: &[&[u8]]) -> Self {
        let total: usize = parts.iter().map(|p| capped(p).len()).sum();
        let mut s = Inline {
            len: 0,
            inline: [0; N],
            heap: None,
        };
        if total <= N {
            let mut at = 0;
            for p in parts.iter().map(|p| capped(p)) {
                s.inline[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            s.len = at as u16;
        } else {
            let mut heap = Vec::with_capacity(total);
            for p in parts {
                heap.extend_from_slice(capped(p));
            }
            s.heap = Some(heap.into_boxed_slice());
        }
        s
    }

    /// The bytes.
    fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(h) => h,
            None => &self.inline[..usize::from(self.len)],
        }
    }
}

impl<const N: usize> std::fmt::Debug for Inline<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// `raw`, cut at [`format::MAX_FIELD`] + 1 bytes: more than a line shows of it.
fn capped(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().min(format::MAX_FIELD + 1)]
}

/// Route names up to this many bytes are kept inline.
const ROUTE_INLINE: usize = 32;
/// Method, target and user agent up to this many bytes together are kept inline.
const CLIENT_INLINE: usize = 128;

/// One request's raw fields: what the writer thread formats into a line.
#[derive(Debug)]
pub(crate) struct Record {
    /// When the request's head was read.
    time: SystemTime,
    peer: SocketAddr,
    protocol: &'static str,
    /// Method, target and user agent, back to back.
    client: Inline<CLIENT_INLINE>,
    method_end: u16,
    target_end: u16,
    has_user_agent: bool,
    status: u16,
    /// From the head's arrival to the response's end.
    duration: Duration,
    notes: Notes,
}

impl Record {
    /// The client's side of a request whose head arrived at `time`.
    fn new(time: SystemTime, req: &RequestFields<'_>) -> Self {
        let ua = req.user_agent.unwrap_or_default();
        let client = Inline::new(&[req.method, req.target, ua]);
        let method_end = capped(req.method).len();
        let target_end = method_end + capped(req.target).len();
        Record {
            time,
            peer: req.peer,
            protocol: req.protocol,
            client,
            method_end: method_end as u16,
            target_end: target_end as u16,
            has_user_agent: req.user_agent.is_some(),
            status: 0,
            duration: Duration::ZERO,
            notes: Notes::default(),
        }
    }

    fn method(&self) -> &[u8] {
        &self.client.as_bytes()[..usize::from(self.method_end)]
    }

    fn target(&self) -> &[u8] {
        &self.client.as_bytes()[usize::from(self.method_end)..usize::from(self.target_end)]
    }

    fn user_agent(&self) -> Option<&[u8]> {
        self.has_user_agent
            .then(|| &self.client.as_bytes()[usize::from(self.target_end)..])
    }
}

/// A record begun at the request's head, finished at its end.
#[derive(Debug)]
pub(crate) struct Pending {
    log: Arc<AccessLog>,
    start: Instant,
    record: Record,
}

impl AccessLog {
    /// Begins the record of a request whose head has just been read.
    pub(crate) fn begin(self: &Arc<Self>, req: &RequestFields<'_>) -> Pending {
        Pending {
            log: Arc::clone(self),
            start: Instant::now(),
            record: Record::new(SystemTime::now(), req),
        }
    }
}

impl Pending {
    /// Completes the record with `notes` (and `status`, when the engine knows it apart)
    /// and queues it for the writer.
    pub(crate) fn finish(mut self, notes: &Notes, status: Option<u16>) {
        self.record.status = status.unwrap_or(notes.status);
        self.record.duration = self.start.elapsed();
        self.record.notes = notes.clone();
        self.log.send(self.record);
    }
}

/// hyper's side: the record waits in the response body until the body is dropped (sent,
/// or the client went away), counting the body bytes on the way.
#[derive(Debug)]
pub(crate) struct Tail {
    pending: Option<Pending>,
    notes: Box<Notes>,
    status: u16,
}

impl Tail {
    /// The end of a request that hyper answered with `status`.
    pub(crate) fn new(pending: Pending, notes: Box<Notes>, status: u16) -> Box<Self> {
        Box::new(Tail {
            pending: Some(pending),
            notes,
            status,
        })
    }

    /// `n` more body bytes went to the client.
    pub(crate) fn sent(&mut self, n: usize) {
        self.notes.bytes += n as u64;
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.finish(&self.notes, Some(self.status));
        }
    }
}

#[cfg(test)]
mod tests;
