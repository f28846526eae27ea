//! Serving a client connection with hyper (h2c, HTTP/1.0, `server.lean_http1 = false`,
//! connections the lean path hands over), shut down gracefully when the worker drains or
//! when the proxy reclaims the connection while it is idle (`crate::idle`).
//!
//! Why: an idle keep-alive connection holds a `server.max_connections` slot, so idle
//! connections the proxy cannot reclaim lock every other client out (issue 11 item 5a:
//! idle h2c or HTTP/1.0 connections). hyper does not expose when a connection is idle, so
//! it is tracked here: the requests in flight are counted (one more when the service is
//! called, one less when the response body ends or is dropped, or the request is dropped
//! unanswered), and the connection is registered in `IdleConns` while none is, from the
//! start of the connection on (an h2c connection that never opens a stream has no other
//! bound on its life).
//!
//! A reclaimed connection is shut down with hyper's `graceful_shutdown`, as in a drain:
//! an HTTP/1 connection between requests closes at once (before its first request, it
//! answers that one and then closes), an HTTP/2 one sends GOAWAY and closes. A reclaim that
//! races with a request starting is dropped, and the request is served (as on the lean
//! path): the registry entry is the reclaim decision, and it is checked under the
//! connection's lock, where a starting request takes the entry out first.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{Notify, watch};

use crate::body::{BoxError, ProxyBody};
use crate::conn::Conn;
use crate::idle::Registered;

/// Serves `io` with hyper until the connection ends; shuts it down gracefully once
/// `drain` turns true or the connection is reclaimed while idle.
pub(crate) async fn serve<I>(
    conn: Arc<Conn>,
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    mut drain: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle = Idleness::new(Arc::clone(&conn));
    // Leaves the registry however the connection ends (also when its task is aborted).
    let _closing = Closing(Arc::clone(&idle));
    let svc_idle = Arc::clone(&idle);
    let svc_conn = Arc::clone(&conn);
    let svc = service_fn(move |req| {
        let busy = svc_idle.start();
        let conn = Arc::clone(&svc_conn);
        async move {
            let resp = crate::service::handle(conn, req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                inner: body,
                busy: Some(busy),
            }))
        }
    });
    let stop = async {
        tokio::select! {
            _ = drain.wait_for(|d| *d) => {}
            () = idle.reclaimed() => {
                tracing::debug!(peer = %conn.peer, "idle connection reclaimed");
            }
        }
    };
    let served = Graceful {
        conn: builder.serve_connection_with_upgrades(TokioIo::new(io), svc),
        stop,
        stopping: false,
    };
    if let Err(e) = served.await {
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
    }
    // Switched protocols: the tunnel runs on this task, keeping the connection's slot.
    if let Some(tunnel) = conn.tunnel.take() {
        idle.close();
        tunnel.await;
    }
}

/// The requests in flight on one connection and its registration in `IdleConns`.
#[derive(Debug)]
struct Idleness {
    conn: Arc<Conn>,
    /// Notified by `IdleConns::reclaim`; what it means is decided under `state`.
    wake: Arc<Notify>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Registered as idle (only while `in_flight` is 0).
    reg: Option<Registered>,
    /// Reclaimed or ended: never registers again.
    closing: bool,
}

impl Idleness {
    /// A connection with no request yet, registered as idle.
    fn new(conn: Arc<Conn>) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let reg = conn.shared.idle.enter(conn.worker, &wake);
        Arc::new(Self {
            conn,
            wake,
            state: Mutex::new(State {
                in_flight: 0,
                reg: Some(reg),
                closing: false,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request starts: the connection is busy until the returned guard drops.
    fn start(self: &Arc<Self>) -> Busy {
        let mut state = self.state();
        state.in_flight += 1;
        if let Some(reg) = state.reg.take() {
            // Reclaimed just now (`leave` is false): the request is served anyway, and
            // the wake-up finds no registration and is ignored.
            let _ = self.conn.shared.idle.leave(reg);
        }
        Busy(Arc::clone(self))
    }

    /// A request ended: idle again if it was the last one.
    fn end(&self) {
        let mut state = self.state();
        state.in_flight -= 1;
        if state.in_flight == 0 && !state.closing && state.reg.is_none() {
            state.reg = Some(self.conn.shared.idle.enter(self.conn.worker, &self.wake));
        }
    }

    /// Resolves once the connection was reclaimed while idle.
    async fn reclaimed(&self) {
        loop {
            self.wake.notified().await;
            let mut state = self.state();
            // Reclaimed: the current registration is gone from the registry. Otherwise
            // the wake-up is stale (a request started, and maybe ended, since).
            if state.in_flight == 0
                && let Some(reg) = &state.reg
                && !self.conn.shared.idle.holds(reg)
            {
                state.reg = None;
                state.closing = true;
                return;
            }
        }
    }

    /// The connection ended: out of the registry for good.
    fn close(&self) {
        let mut state = self.state();
        state.closing = true;
        if let Some(reg) = state.reg.take() {
            let _ = self.conn.shared.idle.leave(reg);
        }
    }
}

/// Unregisters the connection when serving it ends.
struct Closing(Arc<Idleness>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One request in flight.
#[derive(Debug)]
struct Busy(Arc<Idleness>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

pin_project_lite::pin_project! {
    /// The response body, holding its request's [`Busy`] until it ends or is dropped.
    #[derive(Debug)]
    struct Tracked {
        #[pin]
        inner: ProxyBody,
        busy: Option<Busy>,
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.busy.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A hyper connection that starts a graceful shutdown once `stop` resolves (what
    /// hyper-util's `GracefulShutdown` does for all connections at once, for one).
    struct Graceful<C, F> {
        #[pin]
        conn: C,
        #[pin]
        stop: F,
        stopping: bool,
    }
}

impl<C: GracefulConnection, F: Future<Output = ()>> Future for Graceful<C, F> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.stopping && this.stop.poll(cx).is_ready() {
            *this.stopping = true;
            this.conn.as_mut().graceful_shutdown();
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::headers::Forwarding;
    use std::time::Duration;

    fn conn() -> Arc<Conn> {
        let uri = "http://127.0.0.1:9".parse().expect("uri");
        let proxy = crate::Proxy::new(Config::simple(uri)).expect("config");
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().expect("peer");
        Arc::new(Conn {
            shared: proxy.shared,
            worker: 0,
            peer,
            forwarding: Forwarding::new(peer.ip()),
            linger: Arc::default(),
            tunnel: Default::default(),
        })
    }

    /// Whether `reclaimed` resolves (paused time: the timeout fires only once every task
    /// is idle, so a wake-up that would resolve it is seen first).
    async fn is_reclaimed(idle: &Idleness) -> bool {
        tokio::time::timeout(Duration::from_secs(1), idle.reclaimed())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn registered_only_while_no_request_is_in_flight() {
        let conn = conn();
        let registry = &conn.shared.idle;
        let idle = Idleness::new(Arc::clone(&conn));
        assert_eq!(registry.len(), 1, "idle from the start");
        let a = idle.start();
        let b = idle.start();
        assert_eq!(registry.len(), 0);
        assert_eq!(
            registry.reclaim(1),
            0,
            "a busy connection is never reclaimed"
        );
        drop(a);
        assert_eq!(registry.len(), 0, "one request still in flight");
        drop(b);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.reclaim(1), 1);
        assert!(is_reclaimed(&idle).await);
        // Reclaimed: closing, so a request that raced in does not register it again.
        drop(idle.start());
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reclaim_racing_with_a_request_start_is_dropped() {
        let conn = conn();
        let registry = &conn.shared.idle;
        let idle = Idleness::new(Arc::clone(&conn));
        // Reclaimed, and a request starts before the connection sees the wake-up: the
        // request is served and the connection stays.
        assert_eq!(registry.reclaim(1), 1);
        let busy = idle.start();
        assert!(!is_reclaimed(&idle).await);
        // Idle again after it: reclaimable again, under a new registration.
        drop(busy);
        assert_eq!(registry.len(), 1);
        // Same race, but the request also ended before the wake-up is seen: the stale
        // wake-up does not close the connection, and its new registration stands.
        assert_eq!(registry.reclaim(1), 1);
        drop(idle.start());
        assert!(!is_reclaimed(&idle).await);
        assert_eq!(registry.len(), 1);
        idle.close();
        assert_eq!(registry.len(), 0, "an ended connection leaves the registry");
    }
}
