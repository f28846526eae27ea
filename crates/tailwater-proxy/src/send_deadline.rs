//! A write deadline for client connections served by hyper, which has none of its own.
//!
//! Why: a client that stops reading would otherwise keep its connection, and the admission
//! permit its response holds, for as long as it likes. nginx's `send_timeout` bounds the time
//! between two successful writes; this wrapper does the same for any socket: while a write
//! is pending (the client's window is full) a timer runs, and when it fires before the
//! write progresses the write fails with `TimedOut`, which makes hyper close the connection
//! (the response's permit is then released as cancelled). A client that keeps up never
//! arms the timer.
//!
//! It also does the lingering close of hyper's connections (`crate::linger`): when the
//! connection was marked, its shutdown half-closes and then drains the client's input.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::linger::{LINGER_IDLE, LINGER_TIME};

pin_project_lite::pin_project! {
    /// `io` whose writes fail once one has made no progress for `timeout`.
    #[derive(Debug)]
    pub(crate) struct SendDeadline<T> {
        #[pin]
        io: T,
        timeout: Duration,
        stalled: Option<Pin<Box<Sleep>>>,
        // Set by the request handler: shut down with a lingering close.
        linger: Option<Arc<AtomicBool>>,
        // The lingering close in progress: its total and idle deadlines.
        draining: Option<(Instant, Pin<Box<Sleep>>)>,
    }
}

impl<T> SendDeadline<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
            linger: None,
            draining: None,
        }
    }

    /// Shuts down with a lingering close once `flag` is set.
    pub(crate) fn lingering(mut self, flag: Arc<AtomicBool>) -> Self {
        self.linger = Some(flag);
        self
    }
}

impl<T: AsyncRead + AsyncWrite> SendDeadline<T> {
    /// The lingering close: the write side shut down (under the send deadline), then the
    /// client's input discarded until it closes, errs, is silent for [`LINGER_IDLE`] or
    /// [`LINGER_TIME`] passed. Always ends `Ok`: the answer is already out.
    fn poll_linger(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.draining.is_none() {
            ready!(self.as_mut().guard(cx, |io, cx| io.poll_shutdown(cx)))?;
            let end = Instant::now() + LINGER_TIME;
            *self.as_mut().project().draining =
                Some((end, Box::pin(tokio::time::sleep(LINGER_IDLE))));
        }
        let mut this = self.project();
        let Some((end, idle)) = this.draining.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut sink = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut sink);
            match this.io.as_mut().poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    let now = Instant::now();
                    if now >= *end {
                        return Poll::Ready(Ok(()));
                    }
                    idle.as_mut().reset((now + LINGER_IDLE).min(*end));
                }
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match idle.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl<T: AsyncWrite> SendDeadline<T> {
    /// Runs one write attempt under the deadline.
    fn guard<R>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        attempt: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let this = self.project();
        match attempt(this.io, cx) {
            Poll::Ready(r) => {
                *this.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = *this.timeout;
                let timer = this
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("client accepted nothing for {timeout:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead> AsyncRead for SendDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncWrite for SendDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let linger = self.draining.is_some()
            || self
                .linger
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed));
        if linger {
            self.poll_linger(cx)
        } else {
            self.guard(cx, |io, cx| io.poll_shutdown(cx))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_fails_after_the_timeout_and_progress_resets_it() {
        // A pipe whose reader takes 64 bytes and then stops.
        let (mut reader, writer) = tokio::io::duplex(64);
        let mut w = SendDeadline::new(writer, Duration::from_secs(1));
        w.write_all(&[1; 64]).await.expect("fits the pipe");
        let start = tokio::time::Instant::now();
        let drain = tokio::spawn(async move {
            // Reads half a second later: the stalled write resumes before its deadline.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut buf = [0u8; 64];
            tokio::io::AsyncReadExt::read_exact(&mut reader, &mut buf)
                .await
                .expect("read");
            reader
        });
        w.write_all(&[2; 64]).await.expect("progress in time");
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        let _reader = drain.await.expect("reader");
        // Now nobody reads: the next write fails one second after it stalled.
        let err = w.write_all(&[3; 64]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_millis(1_500));
    }
}
