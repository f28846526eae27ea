//! The response side of a forwarded request: the upstream's response relayed to the client
//! (head rewritten, body streamed), or the local answer when the exchange failed, and the
//! deadline-bounded client write both use.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::chunked::Scanner;
use super::forward::{BodyLeft, Failed, Limits};
use super::head::Framing;
use super::watchdog::Watchdog;
use super::{Client, Io, Next, READ_CHUNK, write};
use crate::body::Guard;
use crate::decision::Decision;
use crate::outcome::BodyFault;
use crate::upstream::{RawConn, Shard};

impl<S: Io> Client<S> {
    /// Relays the response whose head is in `self.resp` (read from `up`): the rewritten
    /// head with the body bytes at hand in one write, then the rest as it comes. Settles
    /// `guard` and gives `up` back to the pool when it can carry another request.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay(
        &mut self,
        shard: &Arc<Shard>,
        mut up: RawConn,
        mut guard: Guard,
        head_request: bool,
        client_close: bool,
        limits: &Limits,
        span: &tracing::Span,
    ) -> Next {
        let status = self.resp.status;
        span.record("status", status);
        guard.upstream_status(status);
        if let Some(o) = self.resp.grpc_outcome(&up.buf) {
            guard.grpc_status(o);
        }
        let Ok(framing) = self.resp.body(head_request) else {
            return self.unreadable_response(guard, span, head_request).await;
        };
        let close = client_close || framing == Framing::Close || self.draining();
        // RFC 9112 §6.3: a response framed by its coding despite a length is forwarded
        // without the length, and its connection not trusted with another request.
        let reusable = !self.resp.fields.close
            && framing != Framing::Close
            && !self.resp.fields.framing.length_and_coding();
        write::response_head(&mut self.wbuf, &self.resp, &up.buf, framing, close);
        crate::access_log::note_head(status, self.wbuf.len());
        up.buf.advance(self.resp.len);

        // The body bytes already read go out with the head.
        let mut left = match framing {
            Framing::Empty => BodyLeft::None,
            Framing::Length(n) => {
                let have = up.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                self.wbuf.extend_from_slice(&up.buf[..have]);
                up.buf.advance(have);
                if have as u64 == n {
                    BodyLeft::None
                } else {
                    BodyLeft::Length(n - have as u64)
                }
            }
            Framing::Chunked => {
                let mut scanner = Scanner::default();
                let Ok(p) = scanner.feed(&up.buf, &mut self.wbuf) else {
                    return self.unreadable_response(guard, span, head_request).await;
                };
                up.buf.advance(p.consumed);
                if p.done {
                    if let Some(o) = scanner.grpc_outcome() {
                        guard.grpc_status(o);
                    }
                    BodyLeft::None
                } else {
                    BodyLeft::Chunked(scanner, 0)
                }
            }
            Framing::Close => {
                self.wbuf.extend_from_slice(&up.buf);
                up.buf.clear();
                BodyLeft::UntilClose
            }
        };
        let send_timeout = self.server.send_timeout;
        if matches!(left, BodyLeft::None) {
            // The whole response is at hand: the upstream connection goes back to the pool
            // before the client has the response, so the request the client sends next
            // (on this or another of its connections, perhaps on another thread) finds it
            // there instead of opening one more.
            if reusable && up.buf.is_empty() {
                // Idle since the request went out, at the latest: the pool's timeout then
                // errs on the early side, by the upstream's response time.
                Shard::put_back_raw(shard, up, limits.sent);
            }
            if !write_within(&mut self.watchdog, &mut self.io, send_timeout, &self.wbuf).await {
                return Next::Close; // the guard settles as cancelled
            }
            guard.finish(Decision::Success);
            return if close { Next::Close } else { Next::KeepAlive };
        }
        if !write_within(&mut self.watchdog, &mut self.io, send_timeout, &self.wbuf).await {
            return Next::Close; // the guard settles as cancelled
        }
        while !matches!(left, BodyLeft::None) {
            up.buf.clear();
            up.buf.reserve(READ_CHUNK);
            let progress = Instant::now() + limits.body_idle;
            let read = up.io.read_buf(&mut up.buf);
            let n = match self.watchdog.within(progress, read).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) | Err(_) => {
                    guard.finish(Decision::BodyError);
                    return Next::Close;
                }
            };
            if n == 0 {
                if matches!(left, BodyLeft::UntilClose) {
                    break;
                }
                guard.finish(Decision::BodyError);
                return Next::Close;
            }
            let mut chunked = false;
            let take = match &mut left {
                BodyLeft::Length(rem) => {
                    let take = up
                        .buf
                        .len()
                        .min(usize::try_from(*rem).unwrap_or(usize::MAX));
                    *rem -= take as u64;
                    if *rem == 0 {
                        left = BodyLeft::None;
                    }
                    take
                }
                BodyLeft::Chunked(scanner, _) => {
                    self.wbuf.clear();
                    chunked = true;
                    match scanner.feed(&up.buf, &mut self.wbuf) {
                        Ok(p) => {
                            if p.done {
                                if let Some(o) = scanner.grpc_outcome() {
                                    guard.grpc_status(o);
                                }
                                left = BodyLeft::None;
                            }
                            p.consumed
                        }
                        Err(_) => {
                            guard.finish(Decision::BodyError);
                            return Next::Close;
                        }
                    }
                }
                BodyLeft::UntilClose => up.buf.len(),
                BodyLeft::None => 0,
            };
            let chunk = if chunked {
                &self.wbuf[..]
            } else {
                &up.buf[..take]
            };
            if !write_within(&mut self.watchdog, &mut self.io, send_timeout, chunk).await {
                return Next::Close; // the guard settles as cancelled
            }
            up.buf.advance(take);
        }
        guard.finish(Decision::Success);
        if reusable && up.buf.is_empty() {
            Shard::put_back_raw(shard, up, Instant::now());
        }
        if close { Next::Close } else { Next::KeepAlive }
    }

    /// The upstream's response cannot be framed or decoded: [`Self::settle`] it as an
    /// upstream error (a local 502, then the client connection closes: what the upstream
    /// read of the request is unknown).
    async fn unreadable_response(
        &mut self,
        guard: Guard,
        span: &tracing::Span,
        head_request: bool,
    ) -> Next {
        let failed = Failed::Upstream(Decision::UpstreamError);
        self.settle(guard, span, failed, head_request, false).await
    }

    /// Settles a request that ended without a response to relay and answers the client
    /// when there is one to answer. A HEAD request (`head_request`) gets the status and
    /// fields without the body.
    ///
    /// `whole`: the request was read to its end and its bytes are gone from the read
    /// buffer (a bodiless one), so that the connection may carry the next request after
    /// an upstream failure or timeout, as nginx and Envoy keep it and as the hyper engine
    /// does. Otherwise, and after a client fault, the answer closes the connection.
    pub(super) async fn settle(
        &mut self,
        guard: Guard,
        span: &tracing::Span,
        failed: Failed,
        head_request: bool,
        whole: bool,
    ) -> Next {
        use http::StatusCode;
        let (status, text) = match failed {
            Failed::Upstream(decision) => {
                span.record("rejection_reason", decision.reason());
                guard.finish(decision);
                match decision {
                    Decision::UpstreamTimeout => {
                        (StatusCode::GATEWAY_TIMEOUT, "upstream timeout\n")
                    }
                    _ => (StatusCode::BAD_GATEWAY, "upstream unavailable\n"),
                }
            }
            Failed::Client(fault) => {
                // Not the upstream's fault: no sample for the limit. Dropping the upstream
                // connection stops the upstream's work where it can notice.
                span.record("rejection_reason", fault.decision().reason());
                let answer = guard.client_fault(fault);
                if fault == BodyFault::Aborted {
                    return Next::Close;
                }
                answer
            }
            Failed::Deadline { .. } => {
                span.record("rejection_reason", Decision::DeadlineExceeded.reason());
                guard.finish(Decision::DeadlineExceeded);
                (StatusCode::GATEWAY_TIMEOUT, "")
            }
        };
        let resp = match failed {
            Failed::Deadline { grpc } => crate::deadline::exceeded(grpc),
            _ => crate::body::local(status, text),
        };
        span.record("status", resp.status().as_u16());
        // Only the upstream failed and the request is read whole: the client may go on.
        let keep = whole
            && !matches!(failed, Failed::Client(_))
            && !self.head.fields.close
            && !self.draining();
        // Otherwise the request may be half read: drain what the client still sends, then
        // close.
        self.linger = !keep;
        if self.write_local(&resp, !keep, head_request).await && keep {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

/// Writes `buf` to the client unless it accepts nothing for `timeout` (a reader that
/// stalls would hold its permit for as long as it liked); whether it was written. The
/// write is flushed within the same deadline: a TLS session may keep encrypted bytes it
/// could not send yet (on a plain socket the flush is immediate).
pub(super) async fn write_within<S: Io>(
    watchdog: &mut Watchdog,
    io: &mut S,
    timeout: Duration,
    buf: &[u8],
) -> bool {
    crate::access_log::note_written(buf.len());
    // Most writes are taken at once (the socket has room): one attempt first, without a
    // clock read or the timer; only a write that must wait gets its deadline.
    let mut buf = buf;
    let attempt = std::future::poll_fn(|cx| {
        let written = if buf.is_empty() {
            std::task::Poll::Ready(Ok(0))
        } else {
            std::pin::Pin::new(&mut *io).poll_write(cx, buf)
        };
        let step = match written {
            std::task::Poll::Ready(Ok(n)) if n > 0 || buf.is_empty() => {
                buf = &buf[n..];
                if !buf.is_empty() {
                    return std::task::Poll::Ready(Some(true));
                }
                std::pin::Pin::new(&mut *io).poll_flush(cx)
            }
            std::task::Poll::Ready(_) => return std::task::Poll::Ready(Some(false)),
            std::task::Poll::Pending => return std::task::Poll::Ready(Some(true)),
        };
        std::task::Poll::Ready(match step {
            std::task::Poll::Ready(Ok(())) => None,
            std::task::Poll::Ready(Err(_)) => Some(false),
            std::task::Poll::Pending => Some(true),
        })
    })
    .await;
    match attempt {
        // Written and flushed.
        None => return true,
        // Failed (or a zero-length write: the peer is gone).
        Some(false) => return false,
        // Must wait: the rest (possibly nothing left but the flush) within the deadline.
        Some(true) => {}
    }
    let accepted = Instant::now() + timeout;
    let write = async {
        io.write_all(buf).await?;
        io.flush().await
    };
    matches!(watchdog.within(accepted, write).await, Ok(Ok(())))
}
