//! The bidirectional copy of a tunnel: one fixed buffer per direction, an idle timer, a
//! stall timer per direction and a total deadline.
//!
//! Why not `tokio::io::copy_bidirectional`: it has no timers, so a tunnel whose client
//! stops reading while the upstream writes would sit for ever with its buffer full. Here a
//! direction whose buffer holds bytes its reader has not accepted for long enough
//! (`client_stall` towards the client, `idle` towards the upstream) ends the tunnel,
//! whatever the other direction does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) use crate::tunnel_stats::End;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A tunnel's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes buffered per direction.
    pub(crate) buffer: usize,
    /// No byte moved either way, or the upstream accepting none, for this long: closed.
    pub(crate) idle: Duration,
    /// The client accepting no byte for this long while bytes wait for it: closed
    /// (`server.send_timeout`, the bound of every write to a client).
    pub(crate) client_stall: Duration,
    /// Longest life.
    pub(crate) max: Duration,
}

/// One direction: bytes read from one end, not yet written to the other.
struct Half {
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// The reader sent its end: shut the writer once the buffer is written.
    eof: bool,
    shut: bool,
    /// Since when bytes wait in the buffer without the writer taking any.
    waiting: Option<Instant>,
}

impl Half {
    fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            shut: false,
            waiting: None,
        }
    }

    /// Moves what it can from `r` to `w`. `Ready(Ok(()))` once the direction is done
    /// (end read, everything written, writer shut); `moved` is set on any progress.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.pos == self.len && !self.eof {
                let mut rb = ReadBuf::new(&mut self.buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            self.pos = 0;
                            self.len = n;
                            self.waiting = Some(Instant::now());
                            *moved = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if self.pos < self.len {
                match w.as_mut().poll_write(cx, &self.buf[self.pos..self.len]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        self.pos += n;
                        *moved = true;
                        self.waiting = (self.pos < self.len).then(Instant::now);
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.eof && !self.shut {
                match w.as_mut().poll_shutdown(cx) {
                    Poll::Ready(_) => self.shut = true,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.shut {
                return Poll::Ready(Ok(()));
            }
            // Nothing buffered and the read is pending.
            return Poll::Pending;
        }
    }
}

/// Copies between `client` and `upstream` until both directions end or a bound of
/// `limits` is hit; says why it stopped. Dropping the streams afterwards closes them.
pub(crate) async fn run<C, U>(client: C, upstream: U, limits: Limits) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    Copy {
        client,
        upstream,
        up: Half::new(limits.buffer),
        down: Half::new(limits.buffer),
        limits,
        end_of_life: start + limits.max,
        last_moved: start,
        timer: Box::pin(tokio::time::sleep_until(start + limits.idle)),
    }
    .await
}

struct Copy<C, U> {
    client: C,
    upstream: U,
    /// Client to upstream.
    up: Half,
    /// Upstream to client.
    down: Half,
    limits: Limits,
    end_of_life: Instant,
    last_moved: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<C, U> Future for Copy<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        let mut moved = false;
        let up = if this.up.shut {
            Poll::Ready(Ok(()))
        } else {
            this.up.poll(
                cx,
                Pin::new(&mut this.client),
                Pin::new(&mut this.upstream),
                &mut moved,
            )
        };
        let down = if this.down.shut {
            Poll::Ready(Ok(()))
        } else {
            this.down.poll(
                cx,
                Pin::new(&mut this.upstream),
                Pin::new(&mut this.client),
                &mut moved,
            )
        };
        match (&up, &down) {
            (Poll::Ready(Err(_)), _) | (_, Poll::Ready(Err(_))) => {
                // A reset by either end is how many tunnels end: not the proxy's error.
                // The client's send deadline (`SendDeadline`) fired first.
                if matches!(&down, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut) {
                    return Poll::Ready(End::ClientStalled);
                }
                let reset = [&up, &down].iter().any(|p| {
                    matches!(p, Poll::Ready(Err(e)) if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionAborted
                    ))
                });
                return Poll::Ready(if reset { End::Closed } else { End::Error });
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(End::Closed),
            _ => {}
        }
        let now = Instant::now();
        if moved {
            this.last_moved = now;
        }
        // The earliest bound; whichever passed first ends the tunnel.
        let limit = this.limits.idle;
        let candidates = [
            (this.end_of_life, End::MaxDuration),
            (this.last_moved + limit, End::Idle),
            (
                this.down
                    .waiting
                    .map_or(this.end_of_life, |t| t + this.limits.client_stall),
                End::ClientStalled,
            ),
            (
                this.up.waiting.map_or(this.end_of_life, |t| t + limit),
                End::UpstreamStalled,
            ),
        ];
        let (deadline, why) = candidates
            .into_iter()
            .min_by_key(|(t, _)| *t)
            .unwrap_or((this.end_of_life, End::MaxDuration));
        if deadline <= now {
            return Poll::Ready(why);
        }
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            // Woken at the deadline: the next poll sees it passed.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const LIMITS: Limits = Limits {
        buffer: 1024,
        idle: Duration::from_secs(10),
        client_stall: Duration::from_secs(5),
        max: Duration::from_secs(100),
    };

    #[tokio::test(start_paused = true)]
    async fn copies_both_ways_and_ends_when_both_sides_close() {
        let (mut client, proxy_client) = duplex(64);
        let (proxy_up, mut upstream) = duplex(64);
        let task = tokio::spawn(run(proxy_client, proxy_up, LIMITS));
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        upstream.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        upstream.write_all(b"pong").await.expect("write");
        client.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"pong");
        client.shutdown().await.expect("shutdown");
        assert_eq!(upstream.read(&mut buf).await.expect("eof"), 0);
        upstream.shutdown().await.expect("shutdown");
        assert_eq!(task.await.expect("task"), End::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_closes_after_the_idle_timeout() {
        let (_client, proxy_client) = duplex(64);
        let (proxy_up, _upstream) = duplex(64);
        let start = Instant::now();
        assert_eq!(run(proxy_client, proxy_up, LIMITS).await, End::Idle);
        assert_eq!(start.elapsed(), LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_though_it_keeps_sending() {
        let (mut client, proxy_client) = duplex(64);
        let (proxy_up, upstream) = duplex(64);
        let start = Instant::now();
        let task = tokio::spawn(run(proxy_client, proxy_up, LIMITS));
        // The upstream writes more than the duplex and the buffer hold; the client never
        // reads but sends a byte every second (which the upstream reads).
        let (mut up_read, mut up_write) = tokio::io::split(upstream);
        let writer = tokio::spawn(async move {
            let chunk = [7u8; 512];
            while up_write.write_all(&chunk).await.is_ok() {}
        });
        let reader = tokio::spawn(async move {
            let mut sink = [0u8; 64];
            while matches!(up_read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let pinger = tokio::spawn(async move {
            loop {
                if client.write_all(b"!").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert_eq!(task.await.expect("task"), End::ClientStalled);
        assert_eq!(start.elapsed(), LIMITS.client_stall);
        writer.abort();
        reader.abort();
        pinger.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_tunnel_ends_at_its_max_duration() {
        let (mut client, proxy_client) = duplex(64);
        let (proxy_up, mut upstream) = duplex(64);
        let limits = Limits {
            max: Duration::from_secs(25),
            ..LIMITS
        };
        let start = Instant::now();
        let task = tokio::spawn(run(proxy_client, proxy_up, limits));
        let echo = tokio::spawn(async move {
            let mut b = [0u8; 1];
            while upstream.read_exact(&mut b).await.is_ok() {}
        });
        let pinger = tokio::spawn(async move {
            while client.write_all(b"!").await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert_eq!(task.await.expect("task"), End::MaxDuration);
        assert_eq!(start.elapsed(), limits.max);
        echo.abort();
        pinger.abort();
    }
}
