//! The lean HTTP/1.1 path: plain HTTP/1.1 requests to HTTP/1.1 upstreams, forwarded by
//! one task per client connection that also drives the upstream socket.
//!
//! # Why
//!
//! Through hyper, one proxied request crosses two HTTP state machines, builds two
//! `HeaderMap`s, and hops between three tasks: the client connection's, the upstream
//! connection's (hyper's client dispatches every request over a channel to it) and back.
//! nginx does a request in about half the user CPU of that on this machine. Here the head is
//! parsed with `httparse` into byte ranges of the read buffer, rewritten once into the
//! outgoing buffer (hop-by-hop fields dropped, `Host`, `X-Forwarded-For` and `Forwarded`
//! set), and written to a pooled upstream socket by the same task, which then reads the
//! response head, rewrites it and streams the body. Admission, rejections, metrics and
//! tracing are the hyper path's own (`service::admit`), so both paths decide alike.
//!
//! # What takes this path, and what does not
//!
//! A request takes it when it is HTTP/1.1 in origin form, without `Upgrade` or `Expect`,
//! framed by nothing, one `Content-Length` or `Transfer-Encoding: chunked` alone, and its
//! route's upstream speaks HTTP/1.1. On anything else (an h2c preface, HTTP/1.0, CONNECT,
//! absolute-form targets, a route to an h2c upstream, ambiguous framing) the connection is
//! handed to hyper, with the bytes already read put back in front (`Rewind`), before any
//! of that request was admitted or forwarded; hyper then serves the rest of the connection.
//!
//! # Behaviour, compared with the hyper path
//!
//! - Bodies stream both ways; chunked bodies are forwarded as sent (`chunked::Scanner`
//!   finds their end); a response delimited by the upstream closing is passed on and then
//!   the client connection is closed.
//! - A rejected request that has a body is answered and the connection closed (its body
//!   is never read, so the connection cannot be reused).
//! - The request body is sent whole before the response is read (as nginx does).
//! - A pooled connection that fails before any response byte is replaced and an idempotent
//!   request without a streamed body is sent again (RFC 9110 §9.2.2).
//! - While the upstream prepares the response head, the client's socket is watched: a
//!   client that goes away cancels the request (counted as cancelled, the upstream
//!   connection closed). While a response body streams, a client that goes away is seen at
//!   the next write.
//! - A client that accepts no byte of the response for `server.send_timeout` is cut
//!   (counted as cancelled), so a reader that stalls cannot hold its permit indefinitely
//!   (hyper's connections get the same deadline from `SendDeadline`).
//! - Slowloris: a head must arrive within `server.header_read_timeout` from its first byte
//!   (from the accept for the first request); an idle keep-alive connection is closed after
//!   `server.keep_alive_timeout`.

mod chunked;
mod head;
mod rewind;
mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, field};

use crate::body::{Guard, ProxyBody};
use crate::config::{ServerConfig, UpstreamProtocol};
use crate::metrics::Decision;
use crate::route::Route;
use crate::send_deadline::SendDeadline;
use crate::server::Conn;
use crate::service::{self, RequestView};
use crate::upstream::{RawConn, Shard};

use chunked::Scanner;
use head::{Field, Framing, Kind, Parsed, RequestHead, ResponseHead};
use rewind::Rewind;
use watchdog::Watchdog;

/// Largest upstream response head read before the response is refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

/// What hyper needs to take a connection over.
pub(crate) struct Handoff {
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) watcher: Watcher,
}

/// Serves client connection `io` until it closes, the worker drains (`drain` turns true),
/// or it is handed to hyper.
pub(crate) async fn serve(
    conn: Arc<Conn>,
    io: TcpStream,
    handoff: Handoff,
    drain: watch::Receiver<bool>,
) {
    let server = conn.shared.state.load().config.server.clone();
    let mut client = Client {
        conn,
        io,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: Vec::with_capacity(READ_CHUNK),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        drain,
        watchdog: Watchdog::new(Instant::now() + server.header_read_timeout),
        server,
        served: 0,
    };
    if client.run().await == End::Handoff {
        let Client {
            conn,
            io,
            rbuf,
            server,
            ..
        } = client;
        let svc_conn = Arc::clone(&conn);
        let svc = service_fn(move |req| service::handle(Arc::clone(&svc_conn), req));
        let io = Rewind::new(rbuf.freeze(), io);
        let io = TokioIo::new(SendDeadline::new(io, server.send_timeout));
        let served = handoff
            .watcher
            .watch(handoff.builder.serve_connection(io, svc).into_owned());
        if let Err(e) = served.await {
            tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
        }
    }
}

/// How a connection's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Handoff,
}

/// What follows a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    Handoff,
}

/// Why reading a head stopped.
enum HeadRead {
    Ready,
    Closed,
    TooLarge,
    Handoff,
}

struct Client {
    conn: Arc<Conn>,
    io: TcpStream,
    /// Bytes read from the client and not yet forwarded.
    rbuf: BytesMut,
    /// The head (and the first body bytes) being written, either way.
    wbuf: Vec<u8>,
    head: RequestHead,
    resp: ResponseHead,
    drain: watch::Receiver<bool>,
    /// Every deadline of the connection (head, upstream response, body progress).
    watchdog: Watchdog,
    server: ServerConfig,
    served: u64,
}

impl Client {
    async fn run(&mut self) -> End {
        loop {
            match self.read_head().await {
                HeadRead::Ready => {}
                HeadRead::Closed => return End::Closed,
                HeadRead::Handoff => return End::Handoff,
                HeadRead::TooLarge => {
                    let resp = service::local(
                        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "request header fields too large\n",
                    );
                    let _ = self.write_local(&resp, true, false).await;
                    return End::Closed;
                }
            }
            if self.head.unusual(&self.rbuf).is_some() {
                return End::Handoff;
            }
            self.served += 1;
            let span = self.request_span();
            let next = if span.is_disabled() {
                self.exchange(&span).await
            } else {
                self.exchange(&span).instrument(span.clone()).await
            };
            match next {
                Next::KeepAlive if !*self.drain.borrow() => {}
                Next::KeepAlive | Next::Close => return End::Closed,
                Next::Handoff => return End::Handoff,
            }
        }
    }

    /// Reads until the buffer starts with a complete request head.
    async fn read_head(&mut self) -> HeadRead {
        // The first head must arrive within the timeout from the accept; later ones from
        // their first byte, after at most `keep_alive_timeout` of idleness.
        let mut deadline =
            (self.served == 0).then(|| Instant::now() + self.server.header_read_timeout);
        loop {
            if !self.rbuf.is_empty() {
                match self.head.parse(&self.rbuf, self.server.max_headers) {
                    Parsed::Complete => return HeadRead::Ready,
                    Parsed::Partial => {}
                    // hyper enforces a configured limit above this path's.
                    Parsed::TooManyFields if self.server.max_headers > head::MAX_HEADERS => {
                        return HeadRead::Handoff;
                    }
                    Parsed::TooManyFields => return HeadRead::TooLarge,
                    // Not HTTP/1.1: the h2c preface, or garbage hyper answers with 400.
                    Parsed::Invalid => return HeadRead::Handoff,
                }
                if self.rbuf.len() >= self.server.max_header_bytes {
                    return HeadRead::TooLarge;
                }
            }
            let idle = self.rbuf.is_empty();
            let until = match deadline {
                Some(d) => d,
                None if idle => Instant::now() + self.server.keep_alive_timeout,
                None => *deadline.insert(Instant::now() + self.server.header_read_timeout),
            };
            if idle && *self.drain.borrow() {
                return HeadRead::Closed;
            }
            self.rbuf.reserve(READ_CHUNK);
            let Client {
                io,
                rbuf,
                drain,
                watchdog,
                ..
            } = self;
            let read = watchdog.within(until, async {
                tokio::select! {
                    biased;
                    r = io.read_buf(rbuf) => Some(r),
                    _ = drain.changed(), if idle => None,
                }
            });
            match read.await {
                Err(_) => {
                    tracing::debug!(peer = %self.conn.peer, "request head timed out");
                    return HeadRead::Closed;
                }
                Ok(None | Some(Ok(0) | Err(_))) => return HeadRead::Closed,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The span of the request whose head is at the start of the buffer (the hyper
    /// path's fields).
    fn request_span(&self) -> tracing::Span {
        tracing::debug_span!(
            "request",
            method = %String::from_utf8_lossy(&self.rbuf[self.head.method.clone()]),
            path = %self.head.path(&self.rbuf),
            route = field::Empty,
            tier = field::Empty,
            decision = field::Empty,
            rejection_reason = field::Empty,
            status = field::Empty,
        )
    }

    /// One request whose head is at the start of the buffer.
    async fn exchange(&mut self, span: &tracing::Span) -> Next {
        let start = Instant::now();
        let conn = Arc::clone(&self.conn);
        let state = conn.shared.state.load();
        let view = View {
            head: &self.head,
            buf: &self.rbuf,
        };
        let head_request = &self.rbuf[self.head.method.clone()] == b"HEAD";
        let host = view.head.host(view.buf);
        let Some(route) = state.table.find(host, view.head.path(view.buf)) else {
            let resp = service::no_route(&conn.shared, span);
            return self.reject(&resp, head_request, span).await;
        };
        if route.protocol != UpstreamProtocol::Http1 {
            return Next::Handoff;
        }
        let max_body = state.config.server.max_body_bytes;
        let admitted = service::admit(&conn, route, max_body, &view, start, span).await;
        let (permit, tier, metrics) = match admitted {
            Ok(a) => a,
            Err(resp) => return self.reject(&resp, head_request, span).await,
        };
        let guard = service::guard(permit, metrics, tier, start);
        let upstream = &state.config.upstream;
        self.forward(
            route,
            guard,
            upstream.request_timeout,
            upstream.body_idle_timeout,
            max_body,
            span,
        )
        .await
    }

    /// Answers with a local response; a request with a body closes the connection.
    async fn reject(
        &mut self,
        resp: &Response<ProxyBody>,
        head_request: bool,
        span: &tracing::Span,
    ) -> Next {
        span.record("status", resp.status().as_u16());
        let close = self.head.body() != Framing::Empty || self.head.fields.close;
        self.rbuf.advance(self.head.len);
        match self.write_local(resp, close, head_request).await {
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        }
    }

    /// Writes a local response (status, fields, `Content-Length`, body).
    async fn write_local(
        &mut self,
        resp: &Response<ProxyBody>,
        close: bool,
        head_request: bool,
    ) -> std::io::Result<()> {
        let body = resp.body().local_data().map_or(&[][..], |b| &b[..]);
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(b"HTTP/1.1 ");
        w.extend_from_slice(resp.status().as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(resp.status().canonical_reason().unwrap_or("").as_bytes());
        w.extend_from_slice(b"\r\n");
        for (name, value) in resp.headers() {
            field_line(w, name.as_str().as_bytes(), value.as_bytes());
        }
        field_line(w, b"content-length", body.len().to_string().as_bytes());
        if close {
            field_line(w, b"connection", b"close");
        }
        w.extend_from_slice(b"\r\n");
        if !head_request {
            w.extend_from_slice(body);
        }
        let accepted = Instant::now() + self.server.send_timeout;
        match self
            .watchdog
            .within(accepted, self.io.write_all(&self.wbuf))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Forwards the admitted request at the start of the buffer and streams the response.
    async fn forward(
        &mut self,
        route: &Route,
        mut guard: Guard,
        request_timeout: Duration,
        body_idle: Duration,
        max_body: Option<u64>,
        span: &tracing::Span,
    ) -> Next {
        let shard = route.h1_pool.shard(self.conn.worker);
        let method = &self.rbuf[self.head.method.clone()];
        let head_request = method == b"HEAD";
        let idempotent = matches!(
            method,
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        );
        let client_close = self.head.fields.close;
        self.write_request_head(route.preserve_host, shard);

        // The body bytes already read go out with the head.
        let after_head = self.head.len;
        let buffered = self.rbuf.len() - after_head;
        let mut rest = match self.head.body() {
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
                let Ok(p) = scanner.feed(&self.rbuf[after_head..]) else {
                    return self
                        .fail_request(
                            guard,
                            span,
                            Decision::Cancelled,
                            http::StatusCode::BAD_REQUEST,
                            "malformed chunked body\n",
                        )
                        .await;
                };
                if max_body.is_some_and(|m| p.data > m) {
                    return self.body_too_large(guard, span).await;
                }
                self.wbuf
                    .extend_from_slice(&self.rbuf[after_head..after_head + p.consumed]);
                self.rbuf.advance(after_head + p.consumed);
                (!p.done).then_some(BodyLeft::Chunked(scanner, p.data))
            }
        };
        let replayable = idempotent && rest.is_none();

        // Send, on a pooled connection if there is a live one.
        let deadline = Instant::now() + request_timeout;
        let mut up = loop {
            let (mut up, reused) = match take_live(shard).await {
                Some(c) => (c, true),
                None => match timeout_at(deadline, Box::pin(shard.connect_raw())).await {
                    Ok(Ok(c)) => (c, false),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "upstream connect failed");
                        return self.fail(guard, span, Decision::UpstreamError).await;
                    }
                    Err(_) => return self.fail(guard, span, Decision::UpstreamTimeout).await,
                },
            };
            match self
                .watchdog
                .within(deadline, up.io.write_all(&self.wbuf))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(_)) if reused && replayable => continue,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "upstream write failed");
                    return self.fail(guard, span, Decision::UpstreamError).await;
                }
                Err(_) => return self.fail(guard, span, Decision::UpstreamTimeout).await,
            }
            if let Some(left) = rest.take() {
                match self.send_body(&mut up, left, body_idle, max_body).await {
                    Ok(()) => {}
                    Err(SendError::Client) => return Next::Close, // guard: cancelled
                    Err(SendError::Upstream) => {
                        return self.fail(guard, span, Decision::UpstreamError).await;
                    }
                    Err(SendError::TooLarge) => return self.body_too_large(guard, span).await,
                    Err(SendError::Malformed) => {
                        return self
                            .fail_request(
                                guard,
                                span,
                                Decision::Cancelled,
                                http::StatusCode::BAD_REQUEST,
                                "malformed chunked body\n",
                            )
                            .await;
                    }
                }
            }
            match self.read_response_head(&mut up, deadline).await {
                Ok(()) => break up,
                Err(HeadError::ClosedEarly) if reused && replayable => continue,
                Err(HeadError::Timeout) => {
                    return self.fail(guard, span, Decision::UpstreamTimeout).await;
                }
                Err(HeadError::ClosedEarly | HeadError::Invalid) => {
                    return self.fail(guard, span, Decision::UpstreamError).await;
                }
                Err(HeadError::ClientGone) => {
                    // The guard settles as cancelled; dropping the upstream connection
                    // stops the upstream's work where it can notice.
                    span.record("rejection_reason", Decision::Cancelled.reason());
                    return Next::Close;
                }
            }
        };

        // The response head, rewritten.
        let status = self.resp.status;
        span.record("status", status);
        guard.status_dropped = status >= 500 || status == 429;
        let Some(framing) = self.resp.body(head_request) else {
            return self.fail(guard, span, Decision::UpstreamError).await;
        };
        let close = client_close || framing == Framing::Close || *self.drain.borrow();
        let reusable = !self.resp.fields.close && framing != Framing::Close;
        self.write_response_head(&up.buf, framing, close);
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
                let Ok(p) = scanner.feed(&up.buf) else {
                    return self.fail(guard, span, Decision::UpstreamError).await;
                };
                self.wbuf.extend_from_slice(&up.buf[..p.consumed]);
                up.buf.advance(p.consumed);
                if p.done {
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
        // A client that accepts nothing for `server.send_timeout` is cut: it would hold its
        // permit for as long as it liked otherwise.
        let accepted = Instant::now() + self.server.send_timeout;
        let write = self.io.write_all(&self.wbuf);
        if !matches!(self.watchdog.within(accepted, write).await, Ok(Ok(()))) {
            return Next::Close; // guard: cancelled
        }
        while !matches!(left, BodyLeft::None) {
            up.buf.clear();
            up.buf.reserve(READ_CHUNK);
            let progress = Instant::now() + body_idle;
            let n = match self
                .watchdog
                .within(progress, up.io.read_buf(&mut up.buf))
                .await
            {
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
                BodyLeft::Chunked(scanner, _) => match scanner.feed(&up.buf) {
                    Ok(p) => {
                        if p.done {
                            left = BodyLeft::None;
                        }
                        p.consumed
                    }
                    Err(_) => {
                        guard.finish(Decision::BodyError);
                        return Next::Close;
                    }
                },
                BodyLeft::UntilClose => up.buf.len(),
                BodyLeft::None => 0,
            };
            let accepted = Instant::now() + self.server.send_timeout;
            let write = self.io.write_all(&up.buf[..take]);
            if !matches!(self.watchdog.within(accepted, write).await, Ok(Ok(()))) {
                return Next::Close; // guard: cancelled
            }
            up.buf.advance(take);
        }
        guard.finish(Decision::Success);
        if reusable && up.buf.is_empty() {
            Shard::put_back_raw(shard, up);
        }
        if close { Next::Close } else { Next::KeepAlive }
    }

    /// The upstream request head: request line, the client's fields without hop-by-hop
    /// ones, `Host`, framing, `X-Forwarded-For` and `Forwarded`.
    fn write_request_head(&mut self, preserve_host: bool, shard: &Shard) {
        let buf = &self.rbuf[..];
        let head = &self.head;
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(&buf[head.method.clone()]);
        w.push(b' ');
        w.extend_from_slice(&buf[head.target.clone()]);
        w.extend_from_slice(b" HTTP/1.1\r\n");
        let mut prev_xff = None;
        let mut prev_forwarded = None;
        let mut has_host = false;
        for f in &head.fields.list {
            match f.kind {
                Kind::XForwardedFor => {
                    prev_xff = prev_xff.or_else(|| std::str::from_utf8(&buf[f.value.clone()]).ok());
                    continue;
                }
                Kind::Forwarded => {
                    prev_forwarded =
                        prev_forwarded.or_else(|| std::str::from_utf8(&buf[f.value.clone()]).ok());
                    continue;
                }
                Kind::Host if preserve_host => has_host = true,
                Kind::Host => continue,
                _ => {}
            }
            if forwardable(head, buf, f) {
                field_line(w, &buf[f.name.clone()], &buf[f.value.clone()]);
            }
        }
        if !has_host && let Some(h) = shard.host() {
            field_line(w, b"host", h.as_bytes());
        }
        if head.body() == Framing::Chunked {
            field_line(w, b"transfer-encoding", b"chunked");
        }
        let host = head.host(buf);
        let (xff, forwarded) = self
            .conn
            .forwarding
            .values_after(prev_xff, prev_forwarded, host);
        if let Some(v) = xff {
            field_line(w, b"x-forwarded-for", v.as_bytes());
        }
        if let Some(v) = forwarded {
            field_line(w, b"forwarded", v.as_bytes());
        }
        w.extend_from_slice(b"\r\n");
    }

    /// The client response head from the upstream's (at the start of `buf`).
    fn write_response_head(&mut self, buf: &[u8], framing: Framing, close: bool) {
        let resp = &self.resp;
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(b"HTTP/1.1 ");
        w.extend_from_slice(itoa3(resp.status).as_slice());
        w.push(b' ');
        w.extend_from_slice(&buf[resp.reason.clone()]);
        w.extend_from_slice(b"\r\n");
        for f in &resp.fields.list {
            let skip = match f.kind {
                Kind::HopByHop | Kind::Connection | Kind::Upgrade => true,
                // Chunked is written below; a coding without chunked ends at the close and
                // is passed on as sent.
                Kind::TransferEncoding => framing != Framing::Close,
                // Never next to chunked (RFC 9112 §6.3: the coding wins).
                Kind::ContentLength => matches!(framing, Framing::Chunked | Framing::Close),
                _ => false,
            };
            if skip || resp.fields.named_in_connection(buf, f) {
                continue;
            }
            field_line(w, &buf[f.name.clone()], &buf[f.value.clone()]);
        }
        if framing == Framing::Chunked {
            field_line(w, b"transfer-encoding", b"chunked");
        }
        if close {
            field_line(w, b"connection", b"close");
        }
        w.extend_from_slice(b"\r\n");
    }

    /// Sends the rest of a streamed request body.
    async fn send_body(
        &mut self,
        up: &mut RawConn,
        mut left: BodyLeft,
        idle: Duration,
        max_body: Option<u64>,
    ) -> Result<(), SendError> {
        loop {
            if self.rbuf.is_empty() {
                self.rbuf.reserve(READ_CHUNK);
                let progress = Instant::now() + idle;
                match self
                    .watchdog
                    .within(progress, self.io.read_buf(&mut self.rbuf))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Err(SendError::Client),
                }
            }
            let (take, done) = match &mut left {
                BodyLeft::Length(rem) => {
                    let take = self
                        .rbuf
                        .len()
                        .min(usize::try_from(*rem).unwrap_or(usize::MAX));
                    *rem -= take as u64;
                    (take, *rem == 0)
                }
                BodyLeft::Chunked(scanner, data) => {
                    let p = scanner.feed(&self.rbuf).map_err(|_| SendError::Malformed)?;
                    *data += p.data;
                    if max_body.is_some_and(|m| *data > m) {
                        return Err(SendError::TooLarge);
                    }
                    (p.consumed, p.done)
                }
                _ => (0, true),
            };
            let accepted = Instant::now() + idle;
            let write = up.io.write_all(&self.rbuf[..take]);
            if !matches!(self.watchdog.within(accepted, write).await, Ok(Ok(()))) {
                return Err(SendError::Upstream);
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

    /// Answers a forwarded request that failed upstream (502 or 504) and settles it.
    async fn fail(&mut self, guard: Guard, span: &tracing::Span, decision: Decision) -> Next {
        let (status, text, reason) = match decision {
            Decision::UpstreamTimeout => (
                http::StatusCode::GATEWAY_TIMEOUT,
                "upstream timeout\n",
                "upstream_timeout",
            ),
            _ => (
                http::StatusCode::BAD_GATEWAY,
                "upstream unavailable\n",
                "upstream_error",
            ),
        };
        span.record("rejection_reason", reason);
        guard.finish(decision);
        self.fail_request_inner(span, status, text).await
    }

    /// 413: the streamed body went over `server.max_body_bytes` (not the upstream's fault).
    async fn body_too_large(&mut self, mut guard: Guard, span: &tracing::Span) -> Next {
        if let Some(p) = guard.permit.take() {
            p.ignore();
        }
        guard
            .metrics
            .record(Decision::BodyTooLarge, guard.tier, guard.start.elapsed());
        span.record("rejection_reason", "body_too_large");
        self.fail_request_inner(
            span,
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        )
        .await
    }

    async fn fail_request(
        &mut self,
        guard: Guard,
        span: &tracing::Span,
        decision: Decision,
        status: http::StatusCode,
        text: &'static str,
    ) -> Next {
        guard.finish(decision);
        self.fail_request_inner(span, status, text).await
    }

    /// Writes a local error and closes: the request may be half read or half sent.
    async fn fail_request_inner(
        &mut self,
        span: &tracing::Span,
        status: http::StatusCode,
        text: &'static str,
    ) -> Next {
        span.record("status", status.as_u16());
        let resp = service::local(status, text);
        let _ = self.write_local(&resp, true, false).await;
        Next::Close
    }
}

/// A pooled connection that is still open: one the upstream closed while it was idle
/// (its socket became readable) is dropped and the next one tried.
async fn take_live(shard: &Shard) -> Option<RawConn> {
    loop {
        let mut c = shard.take_raw()?;
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

/// What remains of a body after the bytes already at hand.
enum BodyLeft {
    None,
    Length(u64),
    /// The scanner and the data bytes so far.
    Chunked(Scanner, u64),
    UntilClose,
}

enum SendError {
    Client,
    Upstream,
    TooLarge,
    Malformed,
}

enum HeadError {
    /// The connection closed or failed before any response byte.
    ClosedEarly,
    Timeout,
    Invalid,
    /// The client closed its connection first.
    ClientGone,
}

/// Whether a request field is forwarded: not hop-by-hop, not named in `Connection`, not
/// one the proxy rewrites.
fn forwardable(head: &RequestHead, buf: &[u8], f: &Field) -> bool {
    !matches!(
        f.kind,
        Kind::HopByHop | Kind::Connection | Kind::TransferEncoding | Kind::Upgrade | Kind::Expect
    ) && !head.fields.named_in_connection(buf, f)
}

fn field_line(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    w.extend_from_slice(name);
    w.extend_from_slice(b": ");
    w.extend_from_slice(value);
    w.extend_from_slice(b"\r\n");
}

/// A status code's three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// A lean-path request as the admission steps see it.
struct View<'a> {
    head: &'a RequestHead,
    buf: &'a [u8],
}

impl RequestView for View<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .fields
            .list
            .iter()
            .find(|f| self.buf[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|f| std::str::from_utf8(&self.buf[f.value.clone()]).ok())
    }

    fn content_length(&self) -> Option<u64> {
        self.head.fields.content_length
    }
}
