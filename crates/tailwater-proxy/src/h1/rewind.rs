//! The client socket with the bytes the lean path already read put back in front, for
//! handing a connection to hyper (h2c, `Upgrade`, HTTP/1.0, …) without losing anything.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// Reads `pre` first, then the socket; writes go to the socket.
    #[derive(Debug)]
    pub(crate) struct Rewind<S> {
        pre: Bytes,
        #[pin]
        io: S,
    }
}

impl<S> Rewind<S> {
    pub(crate) fn new(pre: Bytes, io: S) -> Self {
        Self { pre, io }
    }
}

impl<S: AsyncRead> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn reads_the_prefix_then_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b" world").await.unwrap();
            let mut echo = Vec::new();
            s.read_to_end(&mut echo).await.unwrap();
            echo
        });
        let (io, _) = listener.accept().await.unwrap();
        let mut r = Rewind::new(Bytes::from_static(b"hello"), io);
        let mut got = vec![0u8; 11];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        r.write_all(b"ok").await.unwrap();
        r.shutdown().await.unwrap();
        drop(r);
        assert_eq!(client.await.unwrap(), b"ok");
    }
}
