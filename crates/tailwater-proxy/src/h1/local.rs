//! Local answers on the lean path: a request refused or rejected before (or instead of)
//! forwarding is answered by the proxy itself, and the connection's closing (a lingering
//! close when the client may still be sending).

use bytes::Buf;
use http::Response;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::head::Framing;
use super::view::View;
use super::{Client, Io, Next, relay, write};
use crate::admit;
use crate::body::ProxyBody;
use crate::linger::{LINGER_IDLE, LINGER_TIME};
use crate::outcome::BodyFault;

impl<S: Io> Client<S> {
    /// Answers a request the client got wrong (400, 501) and closes the connection: its
    /// body, if any, cannot be delimited or is not wanted.
    pub(super) async fn refuse(
        &mut self,
        status: http::StatusCode,
        text: &'static str,
        head_request: bool,
        span: &tracing::Span,
    ) -> Next {
        span.record("status", status.as_u16());
        span.record("decision", "refused");
        self.conn
            .shared
            .metrics
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.linger = true;
        let _ = self
            .write_local(&crate::body::local(status, text), true, head_request)
            .await;
        Next::Close
    }

    /// Answers and counts a small body that failed before admission (no permit held).
    pub(super) async fn body_fault_before_admission(
        &mut self,
        route: &crate::route::Route,
        fault: BodyFault,
        start: Instant,
        span: &tracing::Span,
    ) -> Next {
        let view = View {
            head: &self.head,
            buf: &self.rbuf,
        };
        let tier = admit::tier(route, self.conn.peer, &view);
        let metrics = route.metrics.shard(self.conn.worker);
        metrics.record(fault.decision(), tier, start.elapsed());
        span.record("route", route.name.as_str());
        span.record("decision", "rejected");
        span.record("rejection_reason", fault.decision().reason());
        if fault == BodyFault::Aborted {
            return Next::Close;
        }
        let (status, text) = fault.response();
        self.reject(&crate::body::local(status, text), false, span)
            .await
    }

    /// Answers with a local response; a request with a body closes the connection.
    pub(super) async fn reject(
        &mut self,
        resp: &Response<ProxyBody>,
        head_request: bool,
        span: &tracing::Span,
    ) -> Next {
        span.record("status", resp.status().as_u16());
        // A body that may still be arriving (or one that cannot be delimited) closes the
        // connection, with a lingering close so the client reads this answer.
        let body = self.head.body().map_or(true, Framing::has_body);
        let close = body || self.head.fields.close;
        self.linger = body;
        self.rbuf.advance(self.head.len);
        if self.write_local(resp, close, head_request).await && !close {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// nginx's lingering close: after answering early (413, 400, 408, 502) a request whose
    /// body may still be arriving, stop writing (a FIN after the answer) and read and
    /// discard what the client still sends, until it closes, for at most
    /// [`LINGER_TIME`] in all and [`LINGER_IDLE`] between reads. Closing with unread
    /// bytes would make the kernel send a reset, which can destroy the answer before the
    /// client reads it.
    pub(super) async fn linger(&mut self) {
        use tokio::io::AsyncWriteExt;
        if self.io.shutdown().await.is_err() {
            return;
        }
        let end = Instant::now() + LINGER_TIME;
        let mut sink = [0u8; 4096];
        loop {
            let until = end.min(Instant::now() + LINGER_IDLE);
            match self.watchdog.within(until, self.io.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }

    /// Ends the connection's writing side: on TLS this sends `close_notify`, so the client
    /// can tell the end from a truncation (a response delimited by the close needs it).
    /// Bounded by [`LINGER_IDLE`]: a client that reads nothing cannot hold the slot.
    pub(super) async fn close(&mut self) {
        use tokio::io::AsyncWriteExt;
        let until = Instant::now() + LINGER_IDLE;
        let _ = self.watchdog.within(until, self.io.shutdown()).await;
    }

    /// Writes a local response (status, fields, `Content-Length`, body).
    pub(super) async fn write_local(
        &mut self,
        resp: &Response<ProxyBody>,
        close: bool,
        head_request: bool,
    ) -> bool {
        write::local_response(&mut self.wbuf, resp, close, head_request);
        let body = match resp.body().local_data() {
            Some(b) if !head_request => b.len(),
            _ => 0,
        };
        crate::access_log::note_head(resp.status().as_u16(), self.wbuf.len() - body);
        let timeout = self.server.send_timeout;
        relay::write_within(&mut self.watchdog, &mut self.io, timeout, &self.wbuf).await
    }
}
