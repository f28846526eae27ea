//! The upstream exchange of an admitted request: the request out (head and body, on a live
//! pooled connection when there is one, on a fresh one when a pooled one turns out
//! closed), the final response head back, and the response relayed to the client.

use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::chunked::Scanner;
use super::head::Framing;
use super::{Client, Io, MAX_RESPONSE_HEAD, Next, READ_CHUNK, write};
use crate::body::Guard;
use crate::deadline::Deadline;
use crate::decision::Decision;
use crate::outcome::BodyFault;
use crate::route::Route;
use crate::upstream::{RawConn, Shard};

/// The deadlines and limits of one exchange.
pub(super) struct Limits {
    /// From sending until the response head (`upstream.request_timeout`).
    pub(super) request_timeout: Duration,
    /// Longest silence of a body being relayed, either way (`upstream.body_idle_timeout`).
    pub(super) body_idle: Duration,
    /// `server.max_body_bytes`.
    pub(super) max_body: Option<u64>,
    /// When the whole request body must have arrived (`server.body_timeout` from the end
    /// of its head): a total deadline, so a trickling client cannot hold its permit.
    pub(super) body_deadline: Instant,
    /// When the admitted request goes upstream: `upstream.request_timeout` counts from it,
    /// and the pool's idle bookkeeping uses it (a pooled connection taken, or one given
    /// back with a response that came whole), so that a request reads the clock once for
    /// all three (issue 18).
    pub(super) sent: Instant,
}

/// What the admitted request's head decided.
pub(super) struct Request {
    /// The normalised path, when it differs from the one sent (`target`).
    pub(super) path: Option<Vec<u8>>,
    /// The request body's framing (`framing`).
    pub(super) framing: Framing,
    /// The client's deadline, if it stated one (`deadline`).
    pub(super) deadline: Option<Deadline>,
    /// A gRPC request (a spent deadline is answered `DEADLINE_EXCEEDED`).
    pub(super) grpc: bool,
}

/// Why a forwarded request ended without a response to relay.
#[derive(Clone, Copy)]
pub(super) enum Failed {
    /// The upstream failed (502) or timed out (504), counted as this decision.
    Upstream(Decision),
    /// The client's fault: its body was malformed (400), too large (413), too slow
    /// (408), or it went away (nothing to answer). Never counted against the upstream.
    Client(BodyFault),
    /// The client's own deadline ran out first (504, gRPC `DEADLINE_EXCEEDED`); never
    /// counted against the upstream.
    Deadline { grpc: bool },
}

/// What remains of a body after the bytes already at hand.
pub(super) enum BodyLeft {
    None,
    Length(u64),
    /// The scanner and the data bytes so far.
    Chunked(Scanner, u64),
    UntilClose,
}

/// Why reading the response head failed.
enum HeadError {
    /// The connection closed or failed before any response byte.
    ClosedEarly,
    Timeout,
    Invalid,
    /// The client closed its connection first.
    ClientGone,
}

impl<S: Io> Client<S> {
    /// Forwards the admitted request at the start of the read buffer and relays the
    /// response; `guard` settles the permit and the metrics.
    pub(super) async fn forward(
        &mut self,
        route: &Route,
        mut guard: Guard,
        request: Request,
        limits: Limits,
        span: &tracing::Span,
    ) -> Next {
        let method = &self.rbuf[self.head.method.clone()];
        let head_request = method == b"HEAD";
        let idempotent = matches!(
            method,
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        );
        let client_close = self.head.fields.close;
        let (timeout, cut) =
            crate::deadline::request_timeout(limits.request_timeout, request.deadline);
        let deadline = limits.sent + timeout;
        // The client's deadline ran out, not the upstream's time: its own answer.
        let deadline_or = |failed: Failed| match failed {
            Failed::Upstream(Decision::UpstreamTimeout) if cut => {
                Failed::Deadline { grpc: request.grpc }
            }
            other => other,
        };
        // On a balanced route a connection first (another endpoint if connecting fails),
        // then the head for it; boxed, so that the future of a single-endpoint route stays
        // as small as it was. A single endpoint connects in `send`, as before balancing.
        let (shard, first) = if route.balance.is_some() {
            let worker = self.conn.worker;
            let slot = &mut guard.attempt;
            let reached = Box::pin(crate::route::reach(route, worker, slot, |s| {
                acquire(s, limits.sent, deadline)
            }))
            .await;
            match reached {
                Ok((shard, c)) => (shard, Some(c)),
                Err(failed) => {
                    // Nothing was sent: a bodiless request is read whole, the connection
                    // can carry the next one once this one's head is consumed (a body of
                    // length 0 has no bytes to skip).
                    let whole = matches!(request.framing, Framing::Empty | Framing::Length(0));
                    if whole {
                        self.rbuf.advance(self.head.len);
                    }
                    return self
                        .settle(guard, span, deadline_or(failed), head_request, whole)
                        .await;
                }
            }
        } else {
            (route.h1_pool.shard(self.conn.worker), None)
        };
        let path = match &request.path {
            Some(p) => &p[..],
            None => self.head.path(&self.rbuf),
        };
        let budget = request.deadline.map(|d| write::Budget {
            remaining: d.remaining(),
            grpc: d.has_grpc_timeout(),
            header: route
                .admission
                .deadline_header()
                .filter(|_| d.has_header())
                .map(|h| h.as_str().as_bytes()),
        });
        write::request_head(
            &mut self.wbuf,
            &self.head,
            &self.rbuf,
            path,
            request.framing,
            route.preserve_host,
            shard.host().map(|h| h.as_bytes()),
            &self.conn.forwarding,
            budget.as_ref(),
        );
        let sent = match self.take_buffered_body(request.framing, limits.max_body) {
            // A request whose body is all at hand can be sent again on another connection.
            Ok(rest) => {
                let replayable = idempotent && rest.is_none();
                self.send(shard, first, rest, replayable, deadline, &limits)
                    .await
            }
            Err(failed) => Err(failed),
        };
        match sent {
            Ok(up) => {
                self.relay(shard, up, guard, head_request, client_close, &limits, span)
                    .await
            }
            Err(failed) => {
                // `take_buffered_body` consumed a bodiless request's head (and an empty
                // body): read whole.
                let whole = matches!(request.framing, Framing::Empty | Framing::Length(0));
                self.settle(guard, span, deadline_or(failed), head_request, whole)
                    .await
            }
        }
    }

    /// Moves the request body bytes already read into the outgoing buffer, behind the head;
    /// returns what the client has still to send, if anything.
    fn take_buffered_body(
        &mut self,
        framing: Framing,
        max_body: Option<u64>,
    ) -> Result<Option<BodyLeft>, Failed> {
        let after_head = self.head.len;
        let buffered = self.rbuf.len() - after_head;
        let rest = match framing {
            Framing::Empty | Framing::Close => {
                self.rbuf.advance(after_head);
                None
            }
            Framing::Length(n) => {
                let have = buffered.min(usize::try_from(n).unwrap_or(usize::MAX));
                self.wbuf
                    .extend_from_slice(&self.rbuf[after_head..after_head + have]);
                self.rbuf.advance(after_head + have);
                ((have as u64) < n).then(|| BodyLeft::Length(n - have as u64))
            }
            Framing::Chunked => {
                let mut scanner = Scanner::default();
                let p = scanner
                    .feed(&self.rbuf[after_head..], &mut self.wbuf)
                    .map_err(|_| Failed::Client(BodyFault::Malformed))?;
                if max_body.is_some_and(|m| p.data > m) {
                    return Err(Failed::Client(BodyFault::TooLarge));
                }
                self.rbuf.advance(after_head + p.consumed);
                (!p.done).then_some(BodyLeft::Chunked(scanner, p.data))
            }
        };
        Ok(rest)
    }

    /// Sends the request in the outgoing buffer (and the `rest` of its body) and reads the
    /// final response head into `self.resp`; returns the connection, positioned at it.
    async fn send(
        &mut self,
        shard: &Shard,
        mut first: Option<(RawConn, bool)>,
        mut rest: Option<BodyLeft>,
        replayable: bool,
        deadline: Instant,
        limits: &Limits,
    ) -> Result<RawConn, Failed> {
        use Decision::{UpstreamError, UpstreamTimeout};
        loop {
            // `acquire`'s steps, written out here: on the hot path of a single endpoint a
            // nested future costs measurably more (about 130 instructions a request).
            let (mut up, reused) = match first.take() {
                Some(c) => c,
                None => match take_live(shard, limits.sent).await {
                    Some(c) => (c, true),
                    None => match timeout_at(deadline, Box::pin(shard.connect_raw())).await {
                        Ok(Ok(c)) => (c, false),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "upstream connect failed");
                            return Err(Failed::Upstream(UpstreamError));
                        }
                        Err(_) => return Err(Failed::Upstream(UpstreamTimeout)),
                    },
                },
            };
            match self
                .watchdog
                .within(deadline, up.io.write_all(&self.wbuf))
                .await
            {
                Ok(Ok(())) => {}
                // The pooled connection was closing: another one.
                Ok(Err(_)) if reused && replayable => continue,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "upstream write failed");
                    return Err(Failed::Upstream(UpstreamError));
                }
                Err(_) => return Err(Failed::Upstream(UpstreamTimeout)),
            }
            if let Some(left) = rest.take() {
                self.send_body(&mut up, left, limits).await?;
            }
            match self.read_response_head(&mut up, deadline).await {
                Ok(()) => return Ok(up),
                Err(HeadError::ClosedEarly) if reused && replayable => continue,
                Err(HeadError::Timeout) => return Err(Failed::Upstream(UpstreamTimeout)),
                Err(HeadError::ClosedEarly | HeadError::Invalid) => {
                    return Err(Failed::Upstream(UpstreamError));
                }
                Err(HeadError::ClientGone) => return Err(Failed::Client(BodyFault::Aborted)),
            }
        }
    }

    /// Copies the rest of a streamed request body from the client to the upstream.
    async fn send_body(
        &mut self,
        up: &mut RawConn,
        mut left: BodyLeft,
        limits: &Limits,
    ) -> Result<(), Failed> {
        loop {
            if self.rbuf.is_empty() {
                self.rbuf.reserve(READ_CHUNK);
                let until = limits.body_deadline.min(Instant::now() + limits.body_idle);
                let read = self.io.read_buf(&mut self.rbuf);
                match self.watchdog.within(until, read).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => return Err(Failed::Client(BodyFault::Aborted)),
                    Err(_) => return Err(Failed::Client(BodyFault::Timeout)),
                }
            }
            // A length-delimited body goes out as read; a chunked one re-encoded.
            let (take, done, chunked) = match &mut left {
                BodyLeft::Length(rem) => {
                    let take = self
                        .rbuf
                        .len()
                        .min(usize::try_from(*rem).unwrap_or(usize::MAX));
                    *rem -= take as u64;
                    (take, *rem == 0, false)
                }
                BodyLeft::Chunked(scanner, data) => {
                    self.wbuf.clear();
                    let p = scanner
                        .feed(&self.rbuf, &mut self.wbuf)
                        .map_err(|_| Failed::Client(BodyFault::Malformed))?;
                    *data += p.data;
                    if limits.max_body.is_some_and(|m| *data > m) {
                        return Err(Failed::Client(BodyFault::TooLarge));
                    }
                    (p.consumed, p.done, true)
                }
                BodyLeft::None | BodyLeft::UntilClose => (0, true, false),
            };
            let progress = Instant::now() + limits.body_idle;
            let out = if chunked {
                &self.wbuf[..]
            } else {
                &self.rbuf[..take]
            };
            let write = up.io.write_all(out);
            if !matches!(self.watchdog.within(progress, write).await, Ok(Ok(()))) {
                return Err(Failed::Upstream(Decision::UpstreamError));
            }
            self.rbuf.advance(take);
            if done {
                return Ok(());
            }
        }
    }

    /// Reads the upstream's final response head into `self.resp` (1xx heads are skipped).
    async fn read_response_head(
        &mut self,
        up: &mut RawConn,
        deadline: Instant,
    ) -> Result<(), HeadError> {
        let mut got_any = !up.buf.is_empty();
        loop {
            if !up.buf.is_empty() {
                match self.resp.parse(&up.buf) {
                    Ok(true) if self.resp.status == 101 => return Err(HeadError::Invalid),
                    Ok(true) if self.resp.status < 200 => {
                        up.buf.advance(self.resp.len);
                        continue;
                    }
                    Ok(true) => return Ok(()),
                    Ok(false) if up.buf.len() >= MAX_RESPONSE_HEAD => {
                        return Err(HeadError::Invalid);
                    }
                    Ok(false) => {}
                    Err(_) => return Err(HeadError::Invalid),
                }
            }
            up.buf.reserve(READ_CHUNK);
            // While the upstream works, the client is watched too: bytes it pipelines are
            // kept for later (up to the head limit), and its going away cancels the
            // request. An idle client costs no system call here (its readiness is clear).
            let Client {
                io,
                rbuf,
                watchdog,
                server,
                ..
            } = &mut *self;
            let wait = async {
                loop {
                    rbuf.reserve(READ_CHUNK);
                    tokio::select! {
                        biased;
                        r = up.io.read_buf(&mut up.buf) => return Some(r),
                        r = io.read_buf(rbuf), if rbuf.len() < server.max_header_bytes => {
                            if matches!(r, Ok(0) | Err(_)) {
                                return None;
                            }
                        }
                    }
                }
            };
            match watchdog.within(deadline, wait).await {
                Err(_) => return Err(HeadError::Timeout),
                Ok(None) => return Err(HeadError::ClientGone),
                Ok(Some(Ok(0) | Err(_))) if !got_any => return Err(HeadError::ClosedEarly),
                Ok(Some(Ok(0) | Err(_))) => return Err(HeadError::Invalid),
                Ok(Some(Ok(_))) => got_any = true,
            }
        }
    }
}

/// A live pooled connection to `shard`'s endpoint (idle no longer than the pool allows at
/// `now`), or a new one by `deadline` (and whether it was pooled): no byte of the request
/// is written yet.
async fn acquire(
    shard: &Shard,
    now: Instant,
    deadline: Instant,
) -> Result<(RawConn, bool), Failed> {
    if let Some(c) = take_live(shard, now).await {
        return Ok((c, true));
    }
    match timeout_at(deadline, Box::pin(shard.connect_raw())).await {
        Ok(Ok(c)) => Ok((c, false)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upstream connect failed");
            Err(Failed::Upstream(Decision::UpstreamError))
        }
        Err(_) => Err(Failed::Upstream(Decision::UpstreamTimeout)),
    }
}

/// A pooled connection that is still open (and not idle past the pool's timeout at
/// `now`): one the upstream closed while it was idle (its socket became readable) is
/// dropped and the next one tried.
async fn take_live(shard: &Shard, now: Instant) -> Option<RawConn> {
    loop {
        let mut c = shard.take_raw(now)?;
        let readable =
            std::future::poll_fn(|cx| std::task::Poll::Ready(c.io.poll_read_ready(cx).is_ready()))
                .await;
        if !readable {
            return Some(c);
        }
        // Readable between messages: EOF, a reset, or bytes nobody asked for. Only a
        // spurious wake-up (nothing to read) leaves it usable.
        let mut probe = [0u8; 1];
        match c.io.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                c.buf.clear();
                return Some(c);
            }
            _ => continue,
        }
    }
}
