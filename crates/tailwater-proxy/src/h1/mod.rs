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
//! tracing are the hyper path's own (`admit::admit`), so both paths decide alike.
//!
//! # What takes this path, and what does not
//!
//! A request takes it when it is HTTP/1.1 in origin form, without `Upgrade` or `Expect`,
//! and its route's upstream speaks HTTP/1.1. On anything else (an h2c preface, HTTP/1.0,
//! CONNECT, absolute-form targets, a route to an h2c upstream) the connection is handed to
//! hyper, with the bytes already read put back in front (`Rewind`), before any of that
//! request was admitted or forwarded; hyper then serves the rest of the connection. A
//! request whose framing (`framing`), `Host` or path (`target`) is refused gets its 400
//! (501 for an unknown coding) here, by the rules the hyper path applies too, and the
//! connection is closed.
//!
//! # Behaviour, compared with the hyper path
//!
//! - Bodies stream both ways; every forwarded head states the framing the proxy decided
//!   (never the one received), chunked bodies are re-encoded (`chunked::Scanner`: no
//!   extensions, no trailers); a response delimited by the upstream closing is passed on
//!   and then the client connection is closed.
//! - A rejected request that has a body is answered and the connection closed (its body
//!   is never read, so the connection cannot be reused), after a lingering close: the
//!   proxy stops writing and discards what the client still sends for a few seconds, so
//!   that a reset cannot destroy the answer.
//! - An upstream that refuses, fails or times out before a response head is answered 502
//!   or 504; a request read whole (no body, or an empty one) keeps its connection for the
//!   next one, as in nginx, Envoy and the hyper path, so an outage does not turn into a
//!   reconnect storm. After a request with a body the connection closes (above).
//! - A request body must arrive whole within `server.body_timeout` of its head (408);
//!   one declared up to `server.body_buffer_bytes` is read before admission.
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
mod forward;
mod head;
mod local;
mod relay;
mod rewind;
mod view;
mod watchdog;
mod write;

use std::sync::Arc;

use bytes::BytesMut;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{Instrument, field};

use crate::admit::{self, RequestView};
use crate::config::{ServerConfig, UpstreamProtocol};
use crate::conn::{Conn, State};
use crate::outcome::BodyFault;
use crate::send_deadline::SendDeadline;

use head::{Framing, Parsed, RequestHead, ResponseHead};
use rewind::Rewind;
use view::View;
use watchdog::Watchdog;

/// Largest upstream response head read before the response is refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

/// What hyper needs to take a connection over.
pub(crate) struct Handoff {
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
}

/// A client stream the lean path can serve: a plain socket, or a TLS session over one
/// (after its handshake, when ALPN chose `http/1.1` or nothing). The path is generic over
/// it, so each kind gets its own compiled copy and the plain socket pays nothing for TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Serves client connection `io` until it closes, the worker drains (`drain` turns true),
/// or it is handed to hyper. `accepted` is when the connection was accepted: the first
/// request head must arrive within `server.header_read_timeout` of it (a TLS handshake
/// spends part of that time).
pub(crate) async fn serve<S: Io>(
    conn: Arc<Conn>,
    io: S,
    handoff: Handoff,
    drain: watch::Receiver<bool>,
    accepted: Instant,
) {
    let server = conn.shared.state.load().config.server.clone();
    let mut client = Client {
        conn,
        wake: Arc::new(Notify::new()),
        io,
        accepted,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: Vec::with_capacity(READ_CHUNK),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        drain,
        watchdog: Watchdog::new(accepted + server.header_read_timeout),
        server,
        served: 0,
        linger: false,
        log: None,
    };
    let end = client.run().await;
    if end == End::Closed {
        if client.linger {
            client.linger().await;
        } else {
            client.close().await;
        }
    }
    if end == End::Handoff {
        let Client {
            conn,
            io,
            rbuf,
            server,
            drain,
            ..
        } = client;
        let io = Rewind::new(rbuf.freeze(), io);
        let io = SendDeadline::new(io, server.send_timeout).lingering(Arc::clone(&conn.linger));
        crate::hyper_conn::serve(conn, io, &handoff.builder, drain).await;
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

/// One client connection on the lean path, with the buffers and the timer it reuses for
/// every request.
struct Client<S> {
    conn: Arc<Conn>,
    /// Notified when the proxy reclaims this connection while it is idle (`crate::idle`).
    wake: Arc<Notify>,
    io: S,
    /// When the connection was accepted (the first head's deadline counts from it).
    accepted: Instant,
    /// Bytes read from the client and not yet forwarded.
    rbuf: BytesMut,
    /// The head (and the first body bytes) being written, either way.
    wbuf: Vec<u8>,
    head: RequestHead,
    resp: ResponseHead,
    drain: watch::Receiver<bool>,
    /// Every deadline of the connection (head, upstream response, body progress).
    watchdog: Watchdog,
    /// `[server]` as it was when the connection was accepted.
    server: ServerConfig,
    /// Requests taken so far (the first head's timer starts at the accept).
    served: u64,
    /// The connection closes after an answer while the client may still be sending a
    /// body: drain before closing ([`Client::linger`]).
    linger: bool,
    /// What the access log keeps for this connection's lines (made at its first logged
    /// request).
    log: Option<Box<crate::access_log::ConnLog>>,
}

impl<S: Io> Client<S> {
    async fn run(&mut self) -> End {
        loop {
            match self.read_head().await {
                HeadRead::Ready => {}
                HeadRead::Closed => return End::Closed,
                HeadRead::Handoff => return End::Handoff,
                HeadRead::TooLarge => {
                    let resp = crate::body::local(
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
            // One load of the configuration per request, for the log and the exchange.
            let state = self.conn.shared.state.load();
            let pending = self.access_log_begin(&state);
            let (next, conn_log) = {
                // Pinned where it is built: the access log's scope then wraps a pointer to
                // it, not a copy of the whole exchange's state (hundreds of bytes, moved twice).
                let exchange = std::pin::pin!(async {
                    if span.is_disabled() {
                        self.exchange(&state, &span).await
                    } else {
                        self.exchange(&state, &span).instrument(span.clone()).await
                    }
                });
                match pending {
                    None => (exchange.await, None),
                    Some((log, pending, mut conn_log)) => {
                        let scoped = crate::access_log::scope_on(&mut conn_log, exchange);
                        let (next, notes) = scoped.await;
                        if next != Next::Handoff {
                            pending.finish_on(log, &mut conn_log, notes);
                        }
                        (next, Some(conn_log))
                    }
                }
            };
            if conn_log.is_some() {
                self.log = conn_log;
            }
            match next {
                Next::KeepAlive if !self.draining() => {}
                Next::KeepAlive | Next::Close => return End::Closed,
                Next::Handoff => return End::Handoff,
            }
        }
    }

    /// Whether the connection's worker drains: the connection closes after its response.
    fn draining(&self) -> bool {
        self.conn.shared.idle.draining(self.conn.worker)
    }

    /// Reads until the buffer starts with a complete request head.
    async fn read_head(&mut self) -> HeadRead {
        // The first head must arrive within the timeout from the accept; later ones from
        // their first byte, after at most `keep_alive_timeout` of idleness.
        let mut deadline =
            (self.served == 0).then(|| self.accepted + self.server.header_read_timeout);
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
            // Between requests: reclaimable when the proxy runs out of connection slots.
            let keep_alive_idle = idle && deadline.is_none();
            // One clock read per idle period: the deadline and the idle registry's key.
            let (until, since) = match deadline {
                Some(d) => (d, None),
                None if idle => {
                    let now = Instant::now();
                    (now + self.server.keep_alive_timeout, Some(now))
                }
                None => (
                    *deadline.insert(Instant::now() + self.server.header_read_timeout),
                    None,
                ),
            };
            // Between requests the drain is seen through the idle registry: a connection
            // registers unless its worker drains, and a drain wakes the registered ones
            // (`crate::idle`). Before the first request (not registered) the drain channel
            // is checked and watched, once per connection.
            if idle && !keep_alive_idle && *self.drain.borrow() {
                return HeadRead::Closed;
            }
            self.rbuf.reserve(READ_CHUNK);
            let registry = &self.conn.shared.idle;
            let registered = match since {
                Some(now) => {
                    match registry.enter_unless_draining(self.conn.worker, &self.wake, now) {
                        Some(reg) => Some(reg),
                        None => return HeadRead::Closed,
                    }
                }
                None => None,
            };
            let Client {
                io,
                rbuf,
                drain,
                watchdog,
                wake,
                ..
            } = self;
            let read = watchdog.within(until, async {
                tokio::select! {
                    biased;
                    r = io.read_buf(rbuf) => Some(r),
                    _ = drain.changed(), if idle && !keep_alive_idle => None,
                    () = wake.notified(), if keep_alive_idle => None,
                }
            });
            let read = read.await;
            if let Some(reg) = registered
                && !registry.leave(reg)
                && matches!(read, Ok(Some(Ok(n))) if n > 0)
            {
                // Reclaimed just as the next request arrived: serve it, and drop the
                // notification meant for this idle period.
                let stale = self.wake.notified();
                tokio::pin!(stale);
                std::future::poll_fn(|cx| {
                    let _ = stale.as_mut().poll(cx);
                    std::task::Poll::Ready(())
                })
                .await;
            }
            match read {
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
            path = %String::from_utf8_lossy(self.head.path(&self.rbuf)),
            route = field::Empty,
            tier = field::Empty,
            decision = field::Empty,
            rejection_reason = field::Empty,
            status = field::Empty,
        )
    }

    /// The access log line of the request whose head is at the start of the buffer, its
    /// log, and what the log keeps for this connection (taken out for the request), when
    /// the log is on.
    fn access_log_begin<'s>(
        &mut self,
        state: &'s State,
    ) -> Option<(
        &'s crate::access_log::AccessLog,
        crate::access_log::Pending,
        Box<crate::access_log::ConnLog>,
    )> {
        let log = state.access_log.as_deref()?;
        let mut conn_log = self.log.take().unwrap_or_default();
        let pending = log.begin_on(
            &mut conn_log,
            &crate::access_log::RequestFields {
                peer: self.conn.peer,
                method: &self.rbuf[self.head.method.clone()],
                target: &self.rbuf[self.head.target.clone()],
                protocol: "HTTP/1.1",
                // Found by the parser as it collected the fields: no second search.
                user_agent: self.head.fields.user_agent(&self.rbuf),
            },
            // The whole head: a repeat of the connection's last is one comparison.
            &self.rbuf[..self.head.len],
        );
        Some((log, pending, conn_log))
    }

    /// One request whose head is at the start of the buffer.
    async fn exchange(&mut self, state: &State, span: &tracing::Span) -> Next {
        let start = Instant::now();
        let head_request = &self.rbuf[self.head.method.clone()] == b"HEAD";
        // The client's faults, before anything is routed or admitted: framing (decided
        // once, here), `Host` and the path (RFC 9112 §3.2, §6).
        let framing = match self.head.body() {
            Ok(f) => f,
            Err(e) => return self.refuse(e.status(), e.text(), head_request, span).await,
        };
        // `Host` found once, by the parser, and checked on its bytes; the path routed on
        // and forwarded as bytes (issue 18).
        let host = match self.head.checked_host(&self.rbuf) {
            Ok(h) => h,
            Err(e) => return self.refuse(e.status(), e.text(), head_request, span).await,
        };
        // What hyper refuses as a URI, refused here too (both engines agree).
        if !crate::target::origin_form_accepted(&self.rbuf[self.head.target.clone()]) {
            let e = crate::target::TargetError::BadPath;
            return self.refuse(e.status(), e.text(), head_request, span).await;
        }
        let path = match crate::target::normalise_path_bytes(self.head.path(&self.rbuf)) {
            Ok(p) => p,
            Err(e) => return self.refuse(e.status(), e.text(), head_request, span).await,
        };
        let Some(route) = state.table.find(Some(host), &path) else {
            let resp = admit::no_route(&self.conn.shared, span);
            return self.reject(&resp, head_request, span).await;
        };
        let view = View {
            head: &self.head,
            buf: &self.rbuf,
        };
        let route = state.table.cells.pick(route, &view, &path, self.conn.peer);
        if route.protocol != UpstreamProtocol::Http1 || route.tls.is_some() {
            return Next::Handoff;
        }
        // Only a path that normalisation changed is copied (the common one is not).
        let path = match path {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(p) => Some(p),
        };
        let server = &state.config.server;
        let max_body = server.max_body_bytes;
        let body_deadline = start + server.body_timeout;
        if let Err(fault) = self.read_small_body(server, framing, body_deadline).await {
            return self
                .body_fault_before_admission(route, fault, start, span)
                .await;
        }
        let view = View {
            head: &self.head,
            buf: &self.rbuf,
        };
        let admitted = admit::admit(&self.conn, route, &view, start, span).await;
        let (permit, tier, metrics, deadline) = match admitted {
            Ok(a) => a,
            Err(resp) => return self.reject(&resp, head_request, span).await,
        };
        let grpc = deadline.is_some()
            && View {
                head: &self.head,
                buf: &self.rbuf,
            }
            .is_grpc();
        let guard = admit::guard(permit, metrics, tier, start);
        let upstream = &state.config.upstream;
        let limits = forward::Limits {
            request_timeout: upstream.request_timeout,
            body_idle: upstream.body_idle_timeout,
            max_body,
            body_deadline,
            sent: Instant::now(),
        };
        let request = forward::Request {
            path,
            framing,
            deadline,
            grpc,
        };
        self.forward(route, guard, request, limits, span).await
    }

    /// Reads a small declared body (up to `server.body_buffer_bytes`, within the size cap)
    /// whole into the read buffer before admission, by `deadline`: a client trickling it
    /// holds its connection but no permit. Larger and chunked bodies stream after
    /// admission, bounded by the same deadline.
    async fn read_small_body(
        &mut self,
        server: &ServerConfig,
        framing: Framing,
        deadline: Instant,
    ) -> Result<(), BodyFault> {
        let Framing::Length(n) = framing else {
            return Ok(());
        };
        let cap = server.max_body_bytes.unwrap_or(u64::MAX);
        if n > cap || n > server.body_buffer_bytes as u64 {
            return Ok(());
        }
        // `n` is at most `body_buffer_bytes`, a usize.
        let want = self.head.len + usize::try_from(n).unwrap_or(usize::MAX);
        while self.rbuf.len() < want {
            self.rbuf.reserve(want - self.rbuf.len());
            let read = self.io.read_buf(&mut self.rbuf);
            match self.watchdog.within(deadline, read).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(BodyFault::Aborted),
                Err(_) => return Err(BodyFault::Timeout),
            }
        }
        Ok(())
    }
}
