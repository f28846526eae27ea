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

#[tokio::test]
async fn connection_cap_holds_extra_connections_in_the_backlog() {
    let backend = text_backend("hi").await;
    let proxy = start_proxy(config(&format!(
        "[server]\nmax_connections = 1\n[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let c1 = client();
    let (parts, _) = get(&c1, proxy.addr, "/")
        .await
        .expect("first connection served");
    assert_eq!(parts.status, 200);
    // The first client's keep-alive connection holds the only slot: a second client's
    // request waits (it is not refused) until the first connection closes.
    let c2 = client();
    let second =
        tokio::spawn(async move { get(&c2, proxy.addr, "/").await.map(|(p, _)| p.status) });
    tokio::time::sleep(Duration::from_millis(200)).await; // give it a chance to be wrongly served
    assert!(
        !second.is_finished(),
        "second connection served beyond the cap"
    );
    drop(c1); // closes the idle keep-alive connection
    let status = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("second served after the slot freed")
        .expect("task")
        .expect("request");
    assert_eq!(status, 200);
    proxy.shutdown(Duration::from_secs(5)).await;
}
