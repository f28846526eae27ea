//! The access log (`[access_log]`): one line per request, for both engines.
//!
//! # How a line is made
//!
//! - When a request's head is read, [`AccessLog::begin`] writes the client's fields
//!   (time, address, method, target, protocol, user agent) into the line, escaped and cut
//!   (`format`): the head's buffer is reused by the next request, so they are taken now.
//! - While the request runs, the admission steps leave [`Notes`] in a task-local slot
//!   ([`scope`]): route, decision and reason, tier, queue wait, the limit at the decision,
//!   the upstream's time to its response head; on the lean path the status and the bytes
//!   written to the client too. The hooks in the engines are one call each, and cost a
//!   failed task-local look-up when the log is off.
//! - At the end (the lean path: after the exchange; hyper's: when the response body is
//!   dropped, its bytes counted on the way) [`Pending::finish`] completes the line and
//!   hands it to the writer thread (`writer`) without waiting: a full queue drops the
//!   line and counts it (`tailwater_access_log_dropped_total`).
//!
//! Why a task-local rather than another argument: the admission steps are shared by both
//! engines and by other features; threading a log record through them would touch every
//! signature on the hot path for a feature that is off by default.

mod format;
mod writer;

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tailwater_core::Criticality;
use tokio::time::Instant;

use crate::metrics::Decision;
pub(crate) use writer::AccessLog;

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

/// What the request's handling learnt, for its line.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// The route's name.
    pub(crate) route: Option<Box<str>>,
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
pub(crate) async fn scope<F: Future>(fut: F) -> (F::Output, Notes) {
    NOTES
        .scope(RefCell::new(Notes::default()), async move {
            let out = fut.await;
            let notes = NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()));
            (out, notes)
        })
        .await
}

/// Applies `f` to the current request's notes, if it is being logged.
fn note(f: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|n| f(&mut n.borrow_mut()));
}

/// The request was routed to `name`.
pub(crate) fn note_route(name: &str) {
    note(|n| n.route = Some(name.into()));
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

/// A line begun at the request's head, finished at its end.
#[derive(Debug)]
pub(crate) struct Pending {
    log: Arc<AccessLog>,
    line: String,
    start: Instant,
}

impl AccessLog {
    /// Begins the line of a request whose head has just been read.
    pub(crate) fn begin(self: &Arc<Self>, req: &RequestFields<'_>) -> Pending {
        let mut line = String::with_capacity(320);
        format::begin(&mut line, self.format(), SystemTime::now(), req);
        Pending {
            log: Arc::clone(self),
            line,
            start: Instant::now(),
        }
    }
}

impl Pending {
    /// Completes the line with `notes` (and `status`, when the engine knows it apart) and
    /// queues it for the writer.
    pub(crate) fn finish(mut self, notes: &Notes, status: Option<u16>) {
        let status = status.unwrap_or(notes.status);
        format::finish(
            &mut self.line,
            self.log.format(),
            status,
            notes,
            self.start.elapsed(),
        );
        self.log.send(self.line);
    }
}

/// hyper's side: the line waits in the response body until the body is dropped (sent,
/// or the client went away), counting the body bytes on the way.
#[derive(Debug)]
pub(crate) struct Tail {
    pending: Option<Pending>,
    notes: Notes,
    status: u16,
}

impl Tail {
    /// The end of a request that hyper answered with `status`.
    pub(crate) fn new(pending: Pending, notes: Notes, status: u16) -> Box<Self> {
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
