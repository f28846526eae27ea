//! The client's request body on hyper's engine, as it is forwarded upstream: bounded in
//! size (`server.max_body_bytes`) and in total time (`server.body_timeout`), with its
//! faults recorded apart ([`BodyWatch`]) so that a failed upstream exchange caused by the
//! client is settled as the client's fault, never as the upstream's (issue 11).
//!
//! A small body (declared `Content-Length` up to `server.body_buffer_bytes`) is read
//! whole before admission ([`RequestBody::buffered`]), so a client trickling it holds no
//! permit; a larger or chunked one streams after admission, and the total deadline bounds
//! how long it can hold the permit.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use tokio::time::{Instant, Sleep};

use crate::outcome::BodyFault;

/// A request body failed because of the client.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("client request body: {0:?}")]
pub(crate) struct ClientBodyError(pub(crate) BodyFault);

const STREAMING: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;
const FAULT_BASE: u8 = 3;
const FAULTS: [BodyFault; 4] = [
    BodyFault::Malformed,
    BodyFault::TooLarge,
    BodyFault::Timeout,
    BodyFault::Aborted,
];

/// What the service can still see of a body it gave to the upstream client: whether it
/// ended, failed by the client's fault, or is waiting for the client right now.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyWatch(Arc<AtomicU8>);

impl BodyWatch {
    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Release);
    }

    fn fail(&self, fault: BodyFault) {
        let i = FAULTS.iter().position(|f| *f == fault).unwrap_or(0);
        self.set(FAULT_BASE + i as u8);
    }

    /// The client's fault, if the body failed by one.
    pub(crate) fn fault(&self) -> Option<BodyFault> {
        let s = self.0.load(Ordering::Acquire);
        s.checked_sub(FAULT_BASE)
            .and_then(|i| FAULTS.get(usize::from(i)).copied())
    }

    /// The fault to blame when the upstream exchange stopped before a response: the
    /// body's own, or [`BodyFault::Timeout`] if the body was still waiting for the client
    /// (an upstream cannot be blamed for not answering a request it has not received).
    pub(crate) fn blame(&self) -> Option<BodyFault> {
        match self.0.load(Ordering::Acquire) {
            WAITING => Some(BodyFault::Timeout),
            _ => self.fault(),
        }
    }
}

/// The body forwarded upstream: bytes read before admission, or the client's body
/// streamed through with a size cap and a total deadline.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Inner,
    watch: BodyWatch,
}

#[derive(Debug)]
enum Inner {
    Buffered(Option<Bytes>),
    Streaming {
        body: Incoming,
        /// Bytes still allowed.
        left: u64,
        deadline: Pin<Box<Sleep>>,
        timeout: Duration,
    },
}

impl RequestBody {
    /// A body read whole before admission.
    pub(crate) fn buffered(data: Bytes) -> Self {
        let watch = BodyWatch::default();
        watch.set(DONE);
        Self {
            inner: Inner::Buffered((!data.is_empty()).then_some(data)),
            watch,
        }
    }

    /// `body` streamed: at most `max` bytes, complete within `timeout` from now.
    pub(crate) fn streaming(body: Incoming, max: Option<u64>, timeout: Duration) -> Self {
        let watch = BodyWatch::default();
        if body.is_end_stream() {
            watch.set(DONE);
            return Self {
                inner: Inner::Buffered(None),
                watch,
            };
        }
        Self {
            inner: Inner::Streaming {
                body,
                left: max.unwrap_or(u64::MAX),
                deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
                timeout,
            },
            watch,
        }
    }

    /// A second copy of a body that is entirely at hand (none, or read whole before
    /// admission), for sending the request to another endpoint; `None` for a streamed body,
    /// which can be read once only.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.inner {
            Inner::Buffered(data) => Some(Self::buffered(data.clone().unwrap_or_default())),
            Inner::Streaming { .. } => None,
        }
    }

    /// The handle that tells, after the body was handed over, how it ended.
    pub(crate) fn watch(&self) -> BodyWatch {
        self.watch.clone()
    }

    /// Reads the client's body whole (up to `max` bytes, within `timeout`), for a small
    /// body taken before admission.
    pub(crate) async fn read_whole(
        body: Incoming,
        max: u64,
        timeout: Duration,
    ) -> Result<Self, BodyFault> {
        use http_body_util::BodyExt;
        let mut streamed = Self::streaming(body, Some(max), timeout);
        let watch = streamed.watch();
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = streamed.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(d) = f.into_data() {
                        out.extend_from_slice(&d);
                    }
                }
                Err(e) => return Err(watch.fault().unwrap_or(e.0)),
            }
        }
        Ok(Self::buffered(out.freeze()))
    }
}

/// How hyper's body error maps to a client fault.
fn fault_of(e: &hyper::Error) -> BodyFault {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        BodyFault::Aborted
    } else {
        BodyFault::Malformed
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        let watch = &this.watch;
        match &mut this.inner {
            Inner::Buffered(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Streaming {
                body,
                left,
                deadline,
                timeout,
            } => {
                let fail = |fault| {
                    watch.fail(fault);
                    Poll::Ready(Some(Err(ClientBodyError(fault))))
                };
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => {
                        if deadline.as_mut().poll(cx).is_ready() {
                            tracing::debug!(?timeout, "request body deadline passed");
                            return fail(BodyFault::Timeout);
                        }
                        watch.set(WAITING);
                        Poll::Pending
                    }
                    Poll::Ready(None) => {
                        watch.set(DONE);
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => fail(fault_of(&e)),
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            let n = d.len() as u64;
                            if n > *left {
                                return fail(BodyFault::TooLarge);
                            }
                            *left -= n;
                        }
                        watch.set(if body.is_end_stream() {
                            DONE
                        } else {
                            STREAMING
                        });
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Buffered(d) => d.is_none(),
            Inner::Streaming { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Buffered(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Streaming { body, .. } => body.size_hint(),
        }
    }
}
