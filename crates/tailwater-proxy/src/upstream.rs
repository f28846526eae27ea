//! The HTTP/1.1 upstream connection pool.
//!
//! hyper-util's legacy client does, per request, a clone of the whole client, a lazy
//! connect future, a checkout from a map keyed by (scheme, authority) and a spawned task
//! that puts the connection back once it is ready again. This pool is one per upstream
//! authority and keeps the behaviour that matters: `Host` set from the URI when absent,
//! origin-form request targets, a request that a reused connection could not start is
//! retried on another one, at most `pool_max_idle_per_host` idle connections, idle ones
//! closed after `pool_idle_timeout`. The connection goes back to the pool when the
//! response body has ended (see `Guard`), not through a spawned task.
//!
//! The pool is sharded by worker thread: a worker only takes connections it opened, so a
//! connection's task, its reads and its wake-ups stay on the thread that uses it (nginx
//! keeps upstream connections per worker process for the same reason).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::config::UpstreamConfig;

type Body = crate::request_body::RequestBody;
type Sender = http1::SendRequest<Body>;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// Connecting failed or timed out.
    #[error("connect to {authority}: {source}")]
    Connect {
        authority: Authority,
        #[source]
        source: std::io::Error,
    },
    /// Sending the request or reading the response head failed.
    #[error("upstream request: {0}")]
    Request(#[source] hyper::Error),
    /// From the legacy client (h2c, CONNECT).
    #[error(transparent)]
    Legacy(#[from] hyper_util::client::legacy::Error),
}

/// The idle HTTP/1.1 connections to one upstream authority: one independent [`Shard`]
/// per worker.
#[derive(Debug)]
pub(crate) struct H1Pool {
    authority: Authority,
    shards: Box<[Arc<Shard>]>,
}

/// One worker's connections to the pool's authority. Aligned to its own cache lines and
/// allocated apart from the other shards, so that workers share neither its lock, nor its
/// reference count, nor the `Host` value it hands out.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Shard {
    authority: Authority,
    /// `Host` for requests without one: the authority without a default port.
    host: Option<HeaderValue>,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    conns: VecDeque<(Sender, Instant)>,
    /// Idle connections of the lean HTTP/1.1 path, most recently used last, with when
    /// each expires (idle since + `pool_idle_timeout`: a comparison, not a subtraction, on
    /// the request path).
    raw: Vec<(RawConn, Instant)>,
    reaper: bool,
}

/// An upstream connection of the lean HTTP/1.1 path: the socket and its read buffer.
/// It goes back to the pool only between messages (nothing unread in `buf`).
#[derive(Debug)]
pub(crate) struct RawConn {
    pub(crate) io: tokio::net::TcpStream,
    pub(crate) buf: bytes::BytesMut,
}

/// A connection taken for one request by [`Shard::acquire`], not yet used.
#[derive(Debug)]
pub(crate) struct Acquired {
    sender: Sender,
    /// It served requests before (it may turn out closing).
    reused: bool,
}

/// A connection lent to one request; [`put_back`](Self::put_back) it when the response
/// ends.
#[derive(Debug)]
pub(crate) struct Lease {
    sender: Sender,
    shard: Arc<Shard>,
}

impl Lease {
    /// Returns the connection to its pool (the response body ended cleanly).
    pub(crate) fn put_back(self) {
        let Lease { sender, shard } = self;
        Shard::put_back(&shard, sender);
    }
}

impl H1Pool {
    /// A pool with `shards` independent sets of connections (one per worker), each
    /// holding at most `pool_max_idle_per_host` idle ones.
    pub(crate) fn new(authority: Authority, u: &UpstreamConfig, shards: usize) -> Self {
        let host = host_value(&authority);
        let shards = (0..shards.max(1))
            .map(|_| {
                Arc::new(Shard {
                    authority: authority.clone(),
                    // A copy per shard: cloning it per request touches only this worker's
                    // reference count.
                    host: host
                        .as_ref()
                        .and_then(|h| HeaderValue::from_bytes(h.as_bytes()).ok()),
                    connect_timeout: u.connect_timeout,
                    max_idle: u.pool_max_idle_per_host,
                    idle_timeout: u.pool_idle_timeout,
                    idle: Mutex::default(),
                })
            })
            .collect();
        Self { authority, shards }
    }

    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The connections of `worker`.
    pub(crate) fn shard(&self, worker: usize) -> &Arc<Shard> {
        &self.shards[worker % self.shards.len()]
    }
}

impl Shard {
    /// An idle connection, or a new one (within `upstream.connect_timeout`): the step
    /// before any byte of a request is written, so a request whose `acquire` failed may be
    /// sent to another endpoint.
    pub(crate) async fn acquire(&self) -> Result<Acquired, UpstreamError> {
        match self.take_idle() {
            Some(s) => Ok(Acquired {
                sender: s,
                reused: true,
            }),
            // Boxed: the connect future is large and rare; the request future stays small.
            None => Ok(Acquired {
                sender: Box::pin(self.connect()).await?,
                reused: false,
            }),
        }
    }

    /// Sends `req` (origin-form, or an absolute URI to this pool's authority) on `first`
    /// (from [`acquire`](Self::acquire)) and returns the response head and the connection
    /// to give back once the body ended.
    pub(crate) async fn send(
        self: &Arc<Self>,
        first: Acquired,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Option<Lease>), UpstreamError> {
        if !req.headers().contains_key(header::HOST)
            && let Some(host) = &self.host
        {
            req.headers_mut().insert(header::HOST, host.clone());
        }
        if req.uri().authority().is_some() {
            origin_form(req.uri_mut());
        }
        let mut first = Some(first);
        loop {
            let Acquired { mut sender, reused } = match first.take() {
                Some(a) => a,
                None => self.acquire().await?,
            };
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Request(e));
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        sender,
                        shard: Arc::clone(self),
                    };
                    return Ok((resp, Some(lease)));
                }
                Err(mut e) => match e.take_message() {
                    // Never started on a reused connection (it was closing): try another.
                    Some(r) if reused => req = r,
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }

    /// `Host` for requests that carry none (the authority, without a default port).
    pub(crate) fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// The most recently used idle connection of the lean path that has not timed out by
    /// `now` (a warm one, unlike hyper's senders there is no connection task to wait for).
    /// `now` is the caller's clock read (the request's), not one more.
    pub(crate) fn take_raw(&self, now: Instant) -> Option<RawConn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (conn, expires) = idle.raw.pop()?;
        if now >= expires {
            // The others are older still.
            idle.raw.clear();
            return None;
        }
        Some(conn)
    }

    /// Returns a lean-path connection between messages, idle since `since` (a clock read
    /// the caller made: no later than the true start of its idleness, so that it expires
    /// early rather than late); beyond `pool_max_idle_per_host` it is closed.
    pub(crate) fn put_back_raw(this: &Arc<Self>, conn: RawConn, since: Instant) {
        if !conn.buf.is_empty() {
            return;
        }
        Self::keep_idle(this, |idle| {
            if idle.raw.len() >= this.max_idle {
                return false;
            }
            idle.raw.push((conn, since + this.idle_timeout));
            true
        });
    }

    /// Puts an idle connection away with `store`, which says whether there was room under
    /// `pool_max_idle_per_host` (a connection it does not keep is closed), and starts the
    /// shard's reaper the first time, on the current runtime: the shard's own worker, like
    /// its connections.
    fn keep_idle(this: &Arc<Self>, store: impl FnOnce(&mut Idle) -> bool) {
        if this.max_idle == 0 || this.idle_timeout.is_zero() {
            return;
        }
        let spawn_reaper = {
            let mut idle = this.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if !store(&mut idle) {
                return;
            }
            !std::mem::replace(&mut idle.reaper, true)
        };
        if spawn_reaper && let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(reap(Arc::downgrade(this), this.idle_timeout));
        }
    }

    /// Opens a lean-path connection (within `upstream.connect_timeout`).
    pub(crate) async fn connect_raw(&self) -> Result<RawConn, UpstreamError> {
        let io = self.connect_tcp().await?;
        Ok(RawConn {
            io,
            buf: bytes::BytesMut::with_capacity(8 * 1024),
        })
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.conns.is_empty() {
            return None;
        }
        let now = Instant::now();
        // The oldest first: the most recently returned one may still be finishing its
        // previous response in its connection task (not ready yet).
        while let Some((sender, since)) = idle.conns.pop_front() {
            if sender.is_closed() || now.saturating_duration_since(since) >= self.idle_timeout {
                continue;
            }
            return Some(sender);
        }
        None
    }

    fn put_back(this: &Arc<Self>, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        Self::keep_idle(this, |idle| {
            if idle.conns.len() >= this.max_idle {
                return false;
            }
            idle.conns.push_back((sender, Instant::now()));
            true
        });
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let stream = self.connect_tcp().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn connect_tcp(&self) -> Result<tokio::net::TcpStream, UpstreamError> {
        let err = |source| UpstreamError::Connect {
            authority: self.authority.clone(),
            source,
        };
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = self.authority.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(err(e)),
            Err(_) => {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timeout",
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Closes connections of `shard` idle for longer than `timeout` until the shard is gone.
async fn reap(shard: Weak<Shard>, timeout: Duration) {
    let mut tick = tokio::time::interval(timeout.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shard) = shard.upgrade() else { return };
        let now = Instant::now();
        let expired = {
            let mut idle = shard.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut idle.conns)
                .into_iter()
                .partition(|(s, since)| {
                    !s.is_closed() && now.saturating_duration_since(*since) < timeout
                });
            idle.conns = keep.into();
            let (keep_raw, gone_raw): (Vec<_>, Vec<_>) = std::mem::take(&mut idle.raw)
                .into_iter()
                .partition(|(_, expires)| now < *expires);
            idle.raw = keep_raw;
            (gone, gone_raw)
        };
        // Closed outside the lock.
        drop(expired);
    }
}

/// The `Host` value for `authority` (the legacy client's `set_host`: no port 80).
fn host_value(authority: &Authority) -> Option<HeaderValue> {
    let host = authority.host();
    match authority.port_u16() {
        Some(80) | None => HeaderValue::from_str(host).ok(),
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
    }
}

/// The request target in origin-form (`/path?query`), as the legacy client sends it.
fn origin_form(uri: &mut Uri) {
    let path = match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
    *uri = path;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A raw HTTP/1.1 server: answers each request with `200 ok` and echoes the `Host` it
    /// saw and the request line; closes the connection `close_after` after each response.
    async fn backend(close_after: Option<Duration>) -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 1024];
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or("").to_owned();
                        let host = head
                            .lines()
                            .find_map(|l| l.strip_prefix("host: "))
                            .unwrap_or("")
                            .to_owned();
                        let body = format!("{line}|{host}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        if let Some(d) = close_after {
                            tokio::time::sleep(d).await;
                            return;
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    /// Sends `GET path` through a proxy on `proxy` over a fresh client connection.
    async fn get(proxy: std::net::SocketAddr, path: &str) -> (http::StatusCode, String) {
        let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
        let (mut tx, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "front.example")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn proxy_to(authority: &Authority, preserve_host: bool) -> std::net::SocketAddr {
        let mut config = crate::Config::simple(format!("http://{authority}").parse().unwrap());
        config.routes[0].preserve_host = preserve_host;
        let proxy = crate::Proxy::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { proxy.serve(listener, std::future::pending()).await });
        addr
    }

    #[tokio::test]
    async fn reuses_one_connection_in_origin_form_with_the_upstream_host() {
        let (authority, accepted) = backend(None).await;
        let proxy = proxy_to(&authority, false).await;
        for path in ["/a?x=1", "/", "/b"] {
            let (status, body) = get(proxy, path).await;
            assert_eq!(status, http::StatusCode::OK);
            assert_eq!(body, format!("GET {path} HTTP/1.1|{authority}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");
        let proxy = proxy_to(&authority, true).await;
        let (_, body) = get(proxy, "/c").await;
        assert_eq!(body, "GET /c HTTP/1.1|front.example");
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() {
        let (authority, accepted) = backend(Some(Duration::from_millis(20))).await;
        let proxy = proxy_to(&authority, false).await;
        for i in 1..=3 {
            let (status, body) = get(proxy, "/").await;
            assert_eq!(status, http::StatusCode::OK, "request {i}: {body}");
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}
