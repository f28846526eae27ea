//! The lean HTTP/1.1 path over TLS: connections whose ALPN chose `http/1.1` (or that
//! offered none) are served by it like plain ones, with the same protections: pipelining
//! and HEAD, hand-over to hyper mid-connection, the head size limit and timeout (counted
//! from the accept, so the handshake spends part of it), the body limit, a client that
//! leaves or stops reading. Each scenario runs on both engines, which must agree.
//! (`smuggling.rs` and `differential.rs` run their framing attacks over TLS too.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::raw::{self, ReadError};
use common::tls::{Stream, Transport, connect};
use common::*;
use http_body_util::Full;
use hyper::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENGINES: [bool; 2] = [true, false];
const WAIT: Duration = Duration::from_secs(5);

async fn tls_proxy(upstream: SocketAddr, lean: bool, server: &str) -> Running {
    start_proxy(config(&format!(
        "[server]\nlean_http1 = {lean}\n{server}\n{}[[route]]\nupstream = \"http://{upstream}\"\n",
        Transport::Tls.server_toml()
    )))
    .await
}

fn cancelled(proxy: &tailwater_proxy::Proxy) -> u64 {
    proxy
        .metrics_text()
        .lines()
        .filter(|l| {
            l.starts_with("tailwater_requests_total{") && l.contains("outcome=\"cancelled\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Reads until the proxy closes (EOF or an error) or `deadline`; whether it closed.
async fn closed_within(s: &mut Stream, deadline: Duration) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Echoes the request path in `x-target` (and as the body).
async fn echo() -> raw::Recorder {
    raw::recorder(1, raw::echo_target()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_head_over_tls_with_and_without_alpn() {
    let backend = echo().await;
    for lean in ENGINES {
        let running = tls_proxy(backend.addrs[0], lean, "").await;
        for transport in [Transport::Tls, Transport::TlsNoAlpn] {
            let mut s = connect(running.addr, transport).await.expect("connect");
            s.write_all(
                b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
                  POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz\
                  HEAD /three HTTP/1.1\r\nHost: a\r\n\r\n\
                  GET /four HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .await
            .expect("write");
            let mut buf = Vec::new();
            for (path, head) in [
                ("/one", false),
                ("/two", false),
                ("/three", true),
                ("/four", false),
            ] {
                let r = raw::read_response(&mut s, &mut buf, head, WAIT).await;
                let r = r.unwrap_or_else(|e| panic!("lean={lean} {transport:?} {path}: {e:?}"));
                assert_eq!(r.status, 200, "lean={lean} {transport:?} {path}");
                assert_eq!(r.header("x-target"), Some(path), "lean={lean}: in order");
                assert_eq!(
                    r.body.is_empty(),
                    head,
                    "lean={lean} {path}: HEAD has no body"
                );
            }
            // `Connection: close`: the proxy ends the session (with close_notify, an EOF).
            let end = raw::read_response(&mut s, &mut buf, false, WAIT).await;
            assert_eq!(end.map(|r| r.status), Err(ReadError::Closed), "lean={lean}");
        }
        let seen = backend.seen();
        assert_eq!(seen.len(), 8, "lean={lean}");
        assert_eq!(seen[1].body, b"xyz");
        let forwarded = seen[0].header("forwarded").unwrap_or_default();
        assert!(
            forwarded.contains("proto=https"),
            "lean={lean}: {forwarded}"
        );
        backend.seen.lock().expect("lock").clear();
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_is_handed_to_hyper_mid_connection() {
    let backend = echo().await;
    let running = tls_proxy(backend.addrs[0], true, "").await;
    let mut s = connect(running.addr, Transport::Tls)
        .await
        .expect("connect");
    let mut buf = Vec::new();
    // Lean first, then HTTP/1.0 on the same session: hyper takes over with the bytes the
    // lean path already decrypted put back in front.
    s.write_all(b"GET /lean HTTP/1.1\r\nHost: a\r\n\r\nGET /old HTTP/1.0\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let first = raw::read_response(&mut s, &mut buf, false, WAIT).await;
    assert_eq!(
        first.expect("lean answer").header("x-target"),
        Some("/lean")
    );
    // hyper answers HTTP/1.0 in kind (and closes): read it raw, to the end.
    let mut rest = buf;
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.0 200"), "{rest}");
    assert!(rest.contains("x-target: /old"), "{rest}");
    assert_eq!(running.proxy.status()[0].admitted, 2);
    running.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_bodies_413_over_tls() {
    let backend = echo().await;
    for lean in ENGINES {
        let server = "max_header_bytes = 8192\nmax_body_bytes = 1000";
        let running = tls_proxy(backend.addrs[0], lean, server).await;
        let mut s = connect(running.addr, Transport::Tls)
            .await
            .expect("connect");
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "a".repeat(16 * 1024)
        );
        let _ = s.write_all(big.as_bytes()).await;
        let r = raw::read_response(&mut s, &mut Vec::new(), false, WAIT).await;
        assert_eq!(r.map(|r| r.status), Ok(431), "lean={lean}");
        let mut s = connect(running.addr, Transport::Tls)
            .await
            .expect("connect");
        let _ = s
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
            .await;
        let r = raw::read_response(&mut s, &mut Vec::new(), false, WAIT).await;
        assert_eq!(r.map(|r| r.status), Ok(413), "lean={lean}");
        assert!(backend.seen().is_empty(), "lean={lean}: nothing forwarded");
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_slowloris_is_cut_at_the_header_read_timeout_from_the_accept() {
    let backend = echo().await;
    for lean in ENGINES {
        let running = tls_proxy(backend.addrs[0], lean, "header_read_timeout = \"400ms\"").await;
        let start = tokio::time::Instant::now();
        let mut s = connect(running.addr, Transport::Tls)
            .await
            .expect("connect");
        // Trickle a head that never ends, a byte at a time.
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
        let trickle = async {
            for _ in 0..400 {
                if s.write_all(b"X").await.is_err() || s.flush().await.is_err() {
                    return;
                }
                let mut probe = [0u8; 256];
                let read = tokio::time::timeout(Duration::from_millis(5), s.read(&mut probe));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    return;
                }
            }
        };
        let cut = tokio::time::timeout(Duration::from_secs(3), trickle)
            .await
            .is_ok();
        let took = start.elapsed();
        assert!(
            cut || closed_within(&mut s, Duration::from_millis(500)).await,
            "lean={lean}: a slow TLS client was not cut (after {took:?})"
        );
        assert!(
            took >= Duration::from_millis(350),
            "lean={lean}: cut early: {took:?}"
        );
        assert!(backend.seen().is_empty(), "lean={lean}");
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_leaves_while_the_upstream_works_is_cancelled() {
    let release = Arc::new(tokio::sync::Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    for lean in ENGINES {
        let running = tls_proxy(backend.addr, lean, "").await;
        let mut s = connect(running.addr, Transport::Tls)
            .await
            .expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let proxy = running.proxy.clone();
        eventually(WAIT, || proxy.status()[0].in_flight == 1).await;
        assert_eq!(cancelled(&proxy), 0);
        drop(s);
        eventually(WAIT, || proxy.status()[0].in_flight == 0).await;
        assert_eq!(cancelled(&proxy), 1, "lean={lean}");
        assert_eq!(proxy.status()[0].success + proxy.status()[0].dropped, 0);
        release.notify_waiters();
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_stops_reading_is_cut_and_its_permit_returned() {
    // More than the socket buffers on the way hold, so the proxy's writes stall.
    let big = Bytes::from(vec![b'x'; 32 << 20]);
    let backend = backend(Arc::new(move |_req| {
        let big = big.clone();
        Box::pin(async move { Response::new(Full::new(big)) })
    }))
    .await;
    for lean in ENGINES {
        let running = tls_proxy(backend.addr, lean, "send_timeout = \"300ms\"").await;
        let mut s = connect(running.addr, Transport::Tls)
            .await
            .expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let proxy = running.proxy.clone();
        eventually(WAIT, || proxy.status()[0].in_flight == 1).await;
        // Never read: the proxy gives up after the send timeout, not never.
        eventually(WAIT, || proxy.status()[0].in_flight == 0).await;
        assert_eq!(cancelled(&proxy), 1, "lean={lean}");
        drop(s);
        running.shutdown(WAIT).await;
    }
}
