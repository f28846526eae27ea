//! Client faults never count against the upstream, and slow request bodies cannot hold
//! permits (issue 11, items 2 and 3), on both engines (`lean_http1` true and false).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A backend that reads the whole request body before answering `200` with its length.
async fn body_reading_backend() -> Backend {
    backend(Arc::new(|req: hyper::Request<hyper::body::Incoming>| {
        Box::pin(async move {
            let n = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().len(),
                Err(_) => 0,
            };
            Response::new(Full::new(Bytes::from(n.to_string())))
        })
    }))
    .await
}

/// Writes `req` (then `then`, if any, after the head) and reads until the proxy closes or
/// 5 s pass; returns the status code (0 when no response came).
async fn exchange(addr: SocketAddr, req: &[u8], abort: bool) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(req).await;
    if abort {
        // The client gives up mid-body.
        return 0;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn faults_config(backend: SocketAddr, lean: bool) -> tailwater_proxy::Config {
    config(&format!(
        r#"
[server]
lean_http1 = {lean}
max_body_bytes = 1000
body_timeout = "300ms"
body_buffer_bytes = 0
[[route]]
upstream = "http://{backend}"
queue = {{ discipline = "none" }}
[route.limit]
algorithm = "aimd"
initial_limit = 100
min_limit = 1
max_limit = 200
"#
    ))
}

async fn client_faults_leave_the_limit_alone(lean: bool) {
    let backend = body_reading_backend().await;
    let proxy = start_proxy(faults_config(backend.addr, lean)).await;
    let addr = proxy.addr;
    let big = format!(
        "3e8\r\n{}\r\n3e8\r\n{}\r\n0\r\n\r\n",
        "x".repeat(1000),
        "y".repeat(1000)
    );
    let cases: [(&str, Vec<u8>, bool, &[u16]); 5] = [
        // Malformed chunked body.
        (
            "malformed",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n"
                .to_vec(),
            false,
            &[400],
        ),
        // Aborted upload.
        (
            "aborted",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nonly a part".to_vec(),
            true,
            &[],
        ),
        // Streamed body over the cap.
        (
            "too large",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{big}")
                .into_bytes(),
            false,
            &[413],
        ),
        // Body deadline: 10 of 900 bytes, then silence.
        (
            "deadline",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n0123456789".to_vec(),
            false,
            &[408],
        ),
        // Half a chunked body, then silence.
        (
            "chunked deadline",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
            false,
            &[408],
        ),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let (name, req, abort, want) = cases[i % cases.len()].clone();
        tasks.spawn(async move { (name, want, exchange(addr, &req, abort).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (name, want, got) = done.expect("task");
        if !want.is_empty() {
            assert!(want.contains(&got), "lean={lean} {name}: got {got}");
        }
    }
    // Every permit is back, and none of it was fed to the algorithm as a drop.
    let c = client();
    eventually(Duration::from_secs(5), || {
        proxy.proxy.status()[0].in_flight == 0
    })
    .await;
    let route = &proxy.proxy.status()[0];
    assert_eq!(route.limit, 100, "lean={lean}: {route:?}");
    assert_eq!(route.dropped, 0, "lean={lean}: {route:?}");
    // Legitimate requests still pass.
    for _ in 0..5 {
        let (parts, _) = get(&c, addr, "/").await.expect("legitimate request");
        assert_eq!(parts.status, 200);
    }
    assert_eq!(proxy.proxy.status()[0].limit, 100);
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn client_faults_leave_the_limit_alone_on_the_lean_path() {
    client_faults_leave_the_limit_alone(true).await;
}

#[tokio::test]
async fn client_faults_leave_the_limit_alone_on_hyper() {
    client_faults_leave_the_limit_alone(false).await;
}

/// 32 clients trickle a body (a byte every 50 ms) against a route whose limit is 32.
/// With `buffer` = 0 their bodies stream after admission and hold every permit until
/// `body_timeout` (300 ms) cuts them with 408; with the default buffer their small bodies
/// are read before admission and hold no permit at all. Either way legitimate requests
/// get through while the tricklers still trickle.
async fn trickling_bodies_do_not_lock_out(lean: bool, buffer: usize) {
    let backend = body_reading_backend().await;
    let proxy = start_proxy(config(&format!(
        r#"
[server]
lean_http1 = {lean}
body_timeout = "300ms"
body_buffer_bytes = {buffer}
[[route]]
upstream = "http://{}"
queue = {{ discipline = "none" }}
[route.limit]
algorithm = "static"
limit = 32
"#,
        backend.addr
    )))
    .await;
    let addr = proxy.addr;
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        tricklers.spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
                .await
                .expect("write head");
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut resp = [0u8; 64];
            for _ in 0..200 {
                tokio::select! {
                    r = s.read(&mut resp) => return match r {
                        Ok(n) if n > 0 => String::from_utf8_lossy(&resp[..n]).into_owned(),
                        _ => String::new(),
                    },
                    _ = tick.tick() => {
                        if s.write_all(b"x").await.is_err() {
                            return String::new();
                        }
                    }
                }
            }
            "still trickling after 10 s".to_owned()
        });
    }
    // Legitimate requests: every one must succeed within the body deadline plus a margin
    // (the tricklers keep going for up to 10 s).
    let c = client();
    let start = tokio::time::Instant::now();
    let mut ok = 0;
    while ok < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "lean={lean} buffer={buffer}: legitimate requests locked out ({ok} of 20 got through)"
        );
        if let Ok((parts, _)) = get(&c, addr, "/").await
            && parts.status == 200
        {
            ok += 1;
        }
        tokio::task::yield_now().await;
    }
    if buffer == 0 {
        // The tricklers were cut by the deadline with 408.
        while let Some(t) = tricklers.join_next().await {
            let got = t.expect("trickler");
            assert!(
                got.starts_with("HTTP/1.1 408"),
                "lean={lean}: trickler got {got:?}"
            );
        }
    }
    tricklers.abort_all();
    assert_eq!(proxy.proxy.status()[0].dropped, 0);
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn streamed_trickling_bodies_are_cut_at_the_body_deadline_lean() {
    trickling_bodies_do_not_lock_out(true, 0).await;
}

#[tokio::test]
async fn streamed_trickling_bodies_are_cut_at_the_body_deadline_hyper() {
    trickling_bodies_do_not_lock_out(false, 0).await;
}

#[tokio::test]
async fn small_trickling_bodies_hold_no_permit_lean() {
    trickling_bodies_do_not_lock_out(true, 16 * 1024).await;
}

#[tokio::test]
async fn small_trickling_bodies_hold_no_permit_hyper() {
    trickling_bodies_do_not_lock_out(false, 16 * 1024).await;
}
