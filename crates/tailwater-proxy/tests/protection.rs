//! The proxy's own protection, over raw sockets: 431, 413, slowloris, connection cap.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn protected(upstream: std::net::SocketAddr) -> tailwater_proxy::Config {
    config(&format!(
        r#"
[server]
max_header_bytes = 8192
max_body_bytes = 1000
header_read_timeout = "300ms"
[[route]]
upstream = "http://{upstream}"
"#
    ))
}

/// Reads until EOF, a reset, or `deadline`; returns what was read and whether the peer
/// closed (EOF or reset) in time.
async fn read_until_closed(s: &mut TcpStream, deadline: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn status_line(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).trim().to_owned()
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let backend = text_backend("hi").await;
    let proxy = start_proxy(protected(backend.addr)).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let big = "a".repeat(20 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The proxy may answer and close before reading all of it.
    let _ = s.write_all(req.as_bytes()).await;
    let line = status_line(&mut s).await;
    assert!(line.starts_with("HTTP/1.1 431"), "got {line:?}");
    assert_eq!(
        backend.received.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn declared_and_streamed_bodies_over_the_limit_get_413() {
    let backend = text_backend("hi").await;
    let proxy = start_proxy(protected(backend.addr)).await;

    // Declared by Content-Length: refused before anything is read or forwarded.
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        .await
        .expect("write");
    let line = status_line(&mut s).await;
    assert!(line.starts_with("HTTP/1.1 413"), "got {line:?}");

    // Chunked, no length: cut off once the limit is crossed.
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let chunk = "x".repeat(600);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let _ = s.write_all(req.as_bytes()).await;
    let line = status_line(&mut s).await;
    assert!(line.starts_with("HTTP/1.1 413"), "got {line:?}");

    // Within the limit: forwarded.
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .expect("write");
    let line = status_line(&mut s).await;
    assert!(line.starts_with("HTTP/1.1 200"), "got {line:?}");
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slowloris_client_is_cut_off_after_the_header_read_timeout() {
    let backend = text_backend("hi").await;
    let proxy = start_proxy(protected(backend.addr)).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let start = tokio::time::Instant::now();
    // Trickle one header byte at a time, never finishing the head; the proxy must close
    // the connection (header_read_timeout = 300 ms) well before 3 s.
    let trickle = async {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
            .take(600)
        {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(5), s.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    let cut = tokio::time::timeout(Duration::from_secs(3), trickle)
        .await
        .is_ok();
    let (_, closed) = read_until_closed(&mut s, Duration::from_millis(500)).await;
    let took = start.elapsed();
    assert!(cut || closed, "slow client not cut off (after {took:?})");
    assert!(
        took >= Duration::from_millis(250),
        "cut off too early: {took:?}"
    );
    assert_eq!(
        backend.received.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A backend answering `/slow` only once `release` is notified, anything else at once.
async fn slow_path_backend(release: std::sync::Arc<tokio::sync::Notify>) -> Backend {
    use bytes::Bytes;
    use http_body_util::Full;
    backend(std::sync::Arc::new(move |req: hyper::Request<_>| {
        let release = std::sync::Arc::clone(&release);
        Box::pin(async move {
            if req.uri().path() == "/slow" {
                release.notified().await;
            }
            hyper::Response::new(Full::new(Bytes::from_static(b"ok")))
        })
    }))
    .await
}

/// One request on a raw keep-alive connection: the status line.
async fn request(s: &mut TcpStream, path: &str) -> String {
    request_as(s, path, "HTTP/1.1\r\nHost: x").await
}

/// One request with request line ending `version_and_fields` (the version, then header
/// lines without the last CRLF): the status line.
async fn request_as(s: &mut TcpStream, path: &str, version_and_fields: &str) -> String {
    let req = format!("GET {path} {version_and_fields}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let line = status_line(s).await;
    // The rest of the head and the 2-byte body.
    let mut rest = Vec::new();
    let mut byte = [0u8; 1];
    while !rest.ends_with(b"\r\n\r\nok") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await {
            Ok(Ok(1)) => rest.push(byte[0]),
            _ => break,
        }
    }
    line
}

#[tokio::test]
async fn connection_cap_holds_extra_connections_in_the_backlog() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let backend = slow_path_backend(std::sync::Arc::clone(&release)).await;
    let proxy = start_proxy(config(&format!(
        "[server]\nmax_connections = 1\n[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    // The first client's connection is busy: it holds the only slot, and a second
    // client's request waits (it is not refused) until the first is done.
    let mut first = TcpStream::connect(proxy.addr).await.expect("connect");
    first
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let received = std::sync::Arc::clone(&backend.received);
    eventually(Duration::from_secs(5), || {
        received.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let addr = proxy.addr;
    let second = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        request(&mut s, "/").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // give it a chance to be wrongly served
    assert!(
        !second.is_finished(),
        "second connection served beyond the cap"
    );
    // The first finishes and goes idle: it is reclaimed for the waiting one.
    release.notify_waiters();
    assert!(status_line(&mut first).await.starts_with("HTTP/1.1 200"));
    let status = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("second served once the first was done")
        .expect("task");
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// At the cap, the oldest idle keep-alive connection is closed to make room for a new
/// client, instead of the new client waiting for `keep_alive_timeout` (issue 11 item 5a).
#[tokio::test]
async fn idle_keep_alive_connections_are_reclaimed_at_the_cap() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let backend = slow_path_backend(release).await;
    let proxy = start_proxy(config(&format!(
        "[server]\nmax_connections = 2\n[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let mut oldest = TcpStream::connect(proxy.addr).await.expect("connect");
    assert!(request(&mut oldest, "/").await.starts_with("HTTP/1.1 200"));
    let mut newer = TcpStream::connect(proxy.addr).await.expect("connect");
    assert!(request(&mut newer, "/").await.starts_with("HTTP/1.1 200"));
    // Both idle on keep-alive, the cap reached: a third client is served at once.
    let mut third = TcpStream::connect(proxy.addr).await.expect("connect");
    let got = tokio::time::timeout(Duration::from_secs(3), request(&mut third, "/"))
        .await
        .expect("third client locked out by idle connections");
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    // The oldest idle one made room; the newer one still serves.
    let (_, closed) = read_until_closed(&mut oldest, Duration::from_secs(3)).await;
    assert!(closed, "the oldest idle connection was not the one closed");
    assert!(request(&mut newer, "/").await.starts_with("HTTP/1.1 200"));
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// The ways a client gets a connection that hyper serves rather than the lean engine.
#[derive(Debug, Clone, Copy)]
enum HyperServed {
    /// HTTP/1.0 with `Connection: keep-alive`: the lean engine hands it to hyper.
    Http10,
    /// HTTP/1.1 with `server.lean_http1 = false`.
    Http11,
    /// h2c with prior knowledge.
    H2c,
}

const HYPER_SERVED: [HyperServed; 3] = [HyperServed::Http10, HyperServed::Http11, HyperServed::H2c];

/// A keep-alive client connection of one [`HyperServed`] kind.
enum KeepAlive {
    Raw(TcpStream, &'static str),
    H2 {
        send: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
        conn: tokio::task::JoinHandle<()>,
    },
}

impl KeepAlive {
    async fn open(addr: std::net::SocketAddr, kind: HyperServed) -> Self {
        let s = TcpStream::connect(addr).await.expect("connect");
        match kind {
            HyperServed::Http10 => Self::Raw(s, "HTTP/1.0\r\nHost: x\r\nConnection: keep-alive"),
            HyperServed::Http11 => Self::Raw(s, "HTTP/1.1\r\nHost: x"),
            HyperServed::H2c => {
                let io = hyper_util::rt::TokioIo::new(s);
                let (send, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await
                        .expect("h2c handshake");
                let conn = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Self::H2 { send, conn }
            }
        }
    }

    /// GET `path`: whether it was answered 200 (with its whole body) within 5 s.
    async fn ok(&mut self, path: &str) -> bool {
        match self {
            Self::Raw(s, version) => request_as(s, path, version).await.contains(" 200 "),
            Self::H2 { send, .. } => {
                use http_body_util::BodyExt;
                let req = hyper::Request::get(format!("http://x{path}"))
                    .body(http_body_util::Empty::new())
                    .expect("request");
                let exchange = async {
                    send.ready().await.ok()?;
                    let resp = send.send_request(req).await.ok()?;
                    let ok = resp.status() == 200;
                    let body = resp.into_body().collect().await.ok()?;
                    Some(ok && &body.to_bytes()[..] == b"ok")
                };
                matches!(
                    tokio::time::timeout(Duration::from_secs(5), exchange).await,
                    Ok(Some(true))
                )
            }
        }
    }

    /// Whether the proxy closed the connection within `deadline` (for h2c: the client
    /// connection ended, as it does after the proxy's GOAWAY and close).
    async fn closed(&mut self, deadline: Duration) -> bool {
        match self {
            Self::Raw(s, _) => read_until_closed(s, deadline).await.1,
            Self::H2 { conn, .. } => tokio::time::timeout(deadline, conn).await.is_ok(),
        }
    }
}

/// The proxy at the cap, every kind of hyper-served connection.
fn hyper_cap_config(kind: HyperServed, backend: std::net::SocketAddr) -> tailwater_proxy::Config {
    let lean = !matches!(kind, HyperServed::Http11);
    config(&format!(
        "[server]\nmax_connections = 2\nlean_http1 = {lean}\n[[route]]\nupstream = \"http://{backend}\"\n"
    ))
}

/// Connections served by hyper take part in reclamation too (issue 11 item 5a): at the
/// cap, the oldest idle one is closed for a new client.
#[tokio::test]
async fn idle_hyper_served_connections_are_reclaimed_at_the_cap() {
    let backend = slow_path_backend(std::sync::Arc::default()).await;
    for kind in HYPER_SERVED {
        let proxy = start_proxy(hyper_cap_config(kind, backend.addr)).await;
        let mut oldest = KeepAlive::open(proxy.addr, kind).await;
        assert!(oldest.ok("/").await, "{kind:?}: oldest");
        let mut newer = KeepAlive::open(proxy.addr, kind).await;
        assert!(newer.ok("/").await, "{kind:?}: newer");
        // Both idle, the cap reached: a third client is served at once.
        let mut third = KeepAlive::open(proxy.addr, kind).await;
        assert!(
            third.ok("/").await,
            "{kind:?}: third client locked out by idle connections"
        );
        assert!(
            oldest.closed(Duration::from_secs(3)).await,
            "{kind:?}: the oldest idle connection was not the one closed"
        );
        assert!(
            newer.ok("/").await,
            "{kind:?}: the newer one no longer serves"
        );
        proxy.shutdown(Duration::from_secs(5)).await;
    }
}

/// A hyper-served connection with a request in flight is never reclaimed, even when it
/// is the oldest: the idle one is closed instead, and the busy one keeps serving.
#[tokio::test]
async fn a_hyper_served_connection_with_a_request_in_flight_is_not_reclaimed() {
    for kind in HYPER_SERVED {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let backend = slow_path_backend(std::sync::Arc::clone(&release)).await;
        let proxy = start_proxy(hyper_cap_config(kind, backend.addr)).await;
        let mut busy = KeepAlive::open(proxy.addr, kind).await;
        let in_flight = tokio::spawn(async move {
            let ok = busy.ok("/slow").await;
            (busy, ok)
        });
        let received = std::sync::Arc::clone(&backend.received);
        eventually(Duration::from_secs(5), || {
            received.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await;
        let mut idle = KeepAlive::open(proxy.addr, kind).await;
        assert!(idle.ok("/").await, "{kind:?}: idle");
        let mut third = KeepAlive::open(proxy.addr, kind).await;
        assert!(third.ok("/").await, "{kind:?}: third client locked out");
        assert!(
            idle.closed(Duration::from_secs(3)).await,
            "{kind:?}: the idle connection was not the one closed"
        );
        // Stored if the backend's handler is not waiting yet.
        release.notify_one();
        let (mut busy, ok) = in_flight.await.expect("busy client");
        assert!(ok, "{kind:?}: the request in flight failed");
        assert!(
            busy.ok("/").await,
            "{kind:?}: the busy connection was closed"
        );
        proxy.shutdown(Duration::from_secs(5)).await;
    }
}

/// A client that sends its whole (too large) body before reading still gets its 413: the
/// proxy half-closes and drains instead of resetting the connection (nginx's lingering
/// close; issue 11 item 7).
#[tokio::test]
async fn an_early_413_reaches_a_client_still_writing_its_body() {
    early_413_reaches_a_client_still_writing(true).await;
}

#[tokio::test]
async fn an_early_413_reaches_a_client_still_writing_its_body_hyper() {
    early_413_reaches_a_client_still_writing(false).await;
}

async fn early_413_reaches_a_client_still_writing(lean: bool) {
    let backend = text_backend("hi").await;
    let mut cfg = protected(backend.addr);
    cfg.server.lean_http1 = lean;
    let proxy = start_proxy(cfg).await;
    for _ in 0..3 {
        let s = TcpStream::connect(proxy.addr).await.expect("connect");
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            let body = vec![b'x'; 4 * 1024 * 1024];
            w.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
                .await?;
            w.write_all(&body).await?;
            Ok::<_, std::io::Error>(w)
        });
        // Only read once everything was written, as a naive client does: the proxy must
        // not reset the connection under it (a reset fails the client's write and can
        // destroy the answer before it is read).
        let w = writer
            .await
            .expect("writer")
            .expect("the client could send its whole body");
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            matches!(read, Ok(Ok(_))) && text.starts_with("HTTP/1.1 413"),
            "got {read:?}: {:?}",
            &text[..text.len().min(100)]
        );
        drop(w);
    }
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A client that connects and never sends a byte is closed after `header_read_timeout` on
/// both engines (hyper-util's protocol detection has no deadline of its own).
#[tokio::test]
async fn a_silent_connection_is_closed_on_both_engines() {
    let backend = text_backend("hi").await;
    for lean in [true, false] {
        let mut cfg = protected(backend.addr);
        cfg.server.lean_http1 = lean;
        let proxy = start_proxy(cfg).await;
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "lean={lean}: silent connection held");
        proxy.shutdown(Duration::from_secs(5)).await;
    }
}
