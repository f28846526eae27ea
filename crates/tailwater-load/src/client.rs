//! Client connections over hyper 1's low-level API.
//!
//! HTTP/1.1 ([`H1Conn`]): one keep-alive connection per worker task, driven by that task; a
//! due request waits (FIFO) for a free worker, and that wait is part of its corrected latency.
//! HTTP/2 ([`Pool`]): `connections` multiplexed connections used round-robin, opened before
//! the run and replaced when they close; one task per request. Either runs in the clear or
//! over TLS ([`crate::tls`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::grpc::GrpcOutcome;
use crate::stats::ErrorKind;
use crate::tls::{Connector, Stream};

type Body = Full<Bytes>;

/// TLS for `https://` targets, shared by every connection of a run (`None`: cleartext).
pub(crate) type Tls = Option<Arc<Connector>>;

/// The HTTP/2 connections of a run (h2c, or h2 over TLS).
pub(crate) struct Pool {
    addr: SocketAddr,
    tls: Tls,
    h2: Vec<tokio::sync::Mutex<Option<http2::SendRequest<Body>>>>,
    next: AtomicUsize,
}

/// An h2c stream slot on one of the pool's connections.
pub(crate) struct Lease {
    sender: http2::SendRequest<Body>,
}

impl Pool {
    /// A pool of `connections` HTTP/2 connections (0 for an HTTP/1.1 run).
    pub(crate) fn new(addr: SocketAddr, connections: usize, tls: Tls) -> Self {
        Self {
            addr,
            tls,
            h2: (0..connections)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Opens the connections ahead of the run; failures are left to the run to report.
    pub(crate) async fn warm_up(&self) {
        for slot in &self.h2 {
            let mut guard = slot.lock().await;
            if guard.is_none() {
                *guard = connect_h2(self.addr, &self.tls).await.ok();
            }
        }
    }

    pub(crate) async fn acquire(&self) -> Result<Lease, ErrorKind> {
        if self.h2.is_empty() {
            return Err(ErrorKind::Other);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.h2.len();
        let mut slot = self.h2[i].lock().await;
        let mut sender = match slot.as_ref() {
            Some(s) if !s.is_closed() => s.clone(),
            _ => {
                let s = connect_h2(self.addr, &self.tls).await?;
                *slot = Some(s.clone());
                s
            }
        };
        drop(slot);
        if sender.ready().await.is_err() {
            return Err(ErrorKind::Closed);
        }
        Ok(Lease { sender })
    }

    /// The run's TLS connector (also used by the HTTP/1.1 workers).
    pub(crate) fn tls(&self) -> &Tls {
        &self.tls
    }
}

impl Lease {
    /// Sends `req` and reads the whole response body; returns the status code.
    pub(crate) async fn send(&mut self, req: http::Request<Body>) -> Result<u16, ErrorKind> {
        let resp = self.exchange(req).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| body_error(&e))?;
        }
        Ok(status)
    }

    /// Sends `req` and waits for the response head (a failure is classified).
    async fn exchange(
        &mut self,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, ErrorKind> {
        self.sender
            .send_request(req)
            .await
            .map_err(|e| classify(&e))
    }
}

/// A failure while reading a response body: unclassified errors count as `body` errors.
fn body_error(e: &hyper::Error) -> ErrorKind {
    match classify(e) {
        ErrorKind::Other => ErrorKind::Body,
        k => k,
    }
}

impl Lease {
    /// Sends a unary gRPC request and reads the answer: the HTTP status and the
    /// [`GrpcOutcome`] (`grpc-status` from the trailers, or from the headers of a
    /// trailers-only answer; `over_limit` looks at the first message of an `OK` answer).
    pub(crate) async fn send_grpc(
        &mut self,
        req: http::Request<Body>,
        over_limit: Option<&crate::grpc::OverLimitFn>,
    ) -> Result<(u16, GrpcOutcome), ErrorKind> {
        let resp = self.exchange(req).await?;
        let status = resp.status().as_u16();
        let mut outcome = resp
            .headers()
            .get("grpc-status")
            .map(|v| GrpcOutcome::of(v.as_bytes()));
        let mut body = resp.into_body();
        let mut message = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| body_error(&e))?;
            match frame.into_data() {
                Ok(data) => {
                    // Only the first message matters, and only to a decoder.
                    if over_limit.is_some() && message.len() < 64 * 1024 {
                        message.extend_from_slice(&data);
                    }
                }
                Err(frame) => {
                    if let Some(v) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                        outcome = Some(GrpcOutcome::of(v.as_bytes()));
                    }
                }
            }
        }
        let outcome = match outcome {
            Some(GrpcOutcome::Status(0))
                if over_limit
                    .zip(crate::grpc::first_message(&message))
                    .is_some_and(|(f, m)| f(m)) =>
            {
                GrpcOutcome::OverLimit
            }
            Some(o) => o,
            None => GrpcOutcome::Missing,
        };
        Ok((status, outcome))
    }
}

/// Connects, and runs the TLS handshake for `https://` (a failed handshake is a `tls` error).
async fn open(addr: SocketAddr, tls: &Tls) -> Result<TokioIo<Stream>, ErrorKind> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let _ = stream.set_nodelay(true);
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(c) => Stream::Tls(Box::new(
            c.connect(stream).await.map_err(|_| ErrorKind::Tls)?,
        )),
    };
    Ok(TokioIo::new(stream))
}

async fn connect_h2(addr: SocketAddr, tls: &Tls) -> Result<http2::SendRequest<Body>, ErrorKind> {
    let io = open(addr, tls).await?;
    let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn classify(e: &hyper::Error) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    ErrorKind::Reset
                }
                io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
                _ => ErrorKind::Other,
            };
        }
        source = err.source();
    }
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        ErrorKind::Protocol
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ErrorKind::Closed
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_body_write_aborted() {
        ErrorKind::Body
    } else {
        ErrorKind::Other
    }
}

/// An HTTP/1.1 connection driven by the task that uses it: the request, the response and the
/// connection's I/O are all polled by one worker task, so a request costs no cross-task
/// wake-ups (hyper's usual split into a sender and a spawned connection task costs two).
pub(crate) struct H1Conn {
    sender: http1::SendRequest<Body>,
    conn: H1Connection,
    /// The connection future has completed and must not be polled again.
    done: bool,
}

type H1Connection = std::pin::Pin<Box<http1::Connection<TokioIo<Stream>, Body>>>;

impl H1Conn {
    pub(crate) async fn connect(addr: SocketAddr, tls: &Tls) -> Result<Self, ErrorKind> {
        let io = open(addr, tls).await?;
        let (sender, conn) = http1::handshake(io).await.map_err(|_| ErrorKind::Connect)?;
        Ok(Self {
            sender,
            conn: Box::pin(conn),
            done: false,
        })
    }

    /// Polls `fut` while driving the connection. A connection that finishes (e.g. after a
    /// `connection: close` response) may have completed `fut` on its way out, so `fut` is
    /// polled once more before that counts as a failure.
    async fn drive<T>(
        conn: &mut H1Connection,
        done: &mut bool,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, ErrorKind> {
        use std::future::Future as _;
        use std::task::Poll;
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if *done {
                return Poll::Ready(Err(ErrorKind::Closed));
            }
            if let Poll::Ready(end) = conn.as_mut().poll(cx) {
                *done = true;
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                return Poll::Ready(Err(match end {
                    Ok(()) => ErrorKind::Closed,
                    Err(e) => classify(&e),
                }));
            }
            Poll::Pending
        })
        .await
    }

    /// Waits until the connection can take a request.
    pub(crate) async fn ready(&mut self) -> Result<(), ErrorKind> {
        let Self { sender, conn, done } = self;
        Self::drive(conn, done, sender.ready())
            .await?
            .map_err(|e| classify(&e))
    }

    /// Sends `req` and reads the whole response; returns the status code. After an error the
    /// connection must be dropped.
    pub(crate) async fn send(&mut self, req: http::Request<Body>) -> Result<u16, ErrorKind> {
        let Self { sender, conn, done } = self;
        let resp = Self::drive(conn, done, sender.send_request(req))
            .await?
            .map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        loop {
            match Self::drive(conn, done, body.frame()).await? {
                None => return Ok(status),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(body_error(&e)),
            }
        }
    }
}
