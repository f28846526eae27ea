//! The lean HTTP/1.1 path against hyper's, over real sockets: every scenario runs with
//! `server.lean_http1` on and off and must give the client the same answer.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ENGINES: [bool; 2] = [true, false];

fn proxy_config(upstream: SocketAddr, lean: bool) -> tailwater_proxy::Config {
    config(&format!(
        "[server]\nlean_http1 = {lean}\n[[route]]\nupstream = \"http://{upstream}\"\n"
    ))
}

/// Echoes the request body, with the request's path, method and framing in headers.
async fn echo_backend() -> Backend {
    backend(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let method = req.method().to_string();
            let chunked = req.headers().contains_key("transfer-encoding");
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let mut resp = Response::new(Full::new(body.unwrap_or_default()));
            let h = resp.headers_mut();
            h.insert("x-path", path.parse().expect("value"));
            h.insert("x-method", method.parse().expect("value"));
            h.insert("x-chunked", chunked.to_string().parse().expect("value"));
            resp
        })
    }))
    .await
}

/// A request body of `chunks` pieces of `size` bytes without a known length (so hyper
/// sends it chunked).
struct Pieces {
    left: usize,
    size: usize,
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        let byte = b'a' + (self.left % 26) as u8;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte; self.size])))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_with_their_framing() {
    let backend = echo_backend().await;
    for lean in ENGINES {
        let running = start_proxy(proxy_config(backend.addr, lean)).await;
        let url = format!("http://{}/echo", running.addr);
        // A fixed-length body larger than any buffer on the way.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let c = client();
        let resp = c
            .request(
                Request::post(&url)
                    .body(Full::new(Bytes::from(big.clone())))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), 200, "lean={lean}");
        assert_eq!(resp.headers()["x-chunked"], "false");
        let got = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(got == big, "lean={lean}: fixed-length body echoed");

        // A chunked body, forwarded chunked.
        let chunked =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Pieces>();
        let resp = chunked
            .request(
                Request::put(&url)
                    .body(Pieces {
                        left: 40,
                        size: 5_000,
                    })
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), 200, "lean={lean}");
        assert_eq!(resp.headers()["x-chunked"], "true", "lean={lean}");
        assert_eq!(resp.headers()["x-method"], "PUT");
        let got = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(got.len(), 200_000, "lean={lean}");
        running.shutdown(Duration::from_secs(5)).await;
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` (or none for HEAD) from `s`,
/// keeping what follows in `buf`; returns the head and the body.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = if head_request {
                0
            } else {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0)
            };
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.expect("read");
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return (head, body);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_head_has_no_body() {
    let backend = echo_backend().await;
    for lean in ENGINES {
        let running = start_proxy(proxy_config(backend.addr, lean)).await;
        let mut s = TcpStream::connect(running.addr).await.expect("connect");
        s.write_all(
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz\
              HEAD /three HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /four HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .expect("write");
        let mut buf = Vec::new();
        for (path, head_request, body) in [
            ("/one", false, &b""[..]),
            ("/two", false, b"xyz"),
            ("/three", true, b""),
            ("/four", false, b""),
        ] {
            let (head, got) = read_response(&mut s, &mut buf, head_request).await;
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "lean={lean} {path}: {head}"
            );
            let seen = head
                .lines()
                .find_map(|l| l.strip_prefix("x-path: "))
                .unwrap_or_default();
            assert_eq!(seen, path, "lean={lean}: in order");
            assert_eq!(got, body, "lean={lean} {path}");
        }
        assert!(
            buf.is_empty(),
            "lean={lean}: nothing extra (HEAD sent no body)"
        );
        drop(s);
        running.shutdown(Duration::from_secs(5)).await;
    }
}

/// A raw upstream that answers each request head it reads with the bytes `script` gives
/// for its path, and closes the connection afterwards when told to.
async fn scripted_upstream(
    script: fn(&str) -> (&'static [u8], bool),
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (reply, close) = script(&path);
                    if s.write_all(reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn script(path: &str) -> (&'static [u8], bool) {
    match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            false,
        ),
        "/until-close" => (
            b"HTTP/1.1 200 OK\r\nX-Kind: close\r\n\r\nuntil the end",
            true,
        ),
        "/early-hints" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            false,
        ),
        "/closing" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast",
            true,
        ),
        "/both" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n\
              2\r\nok\r\n0\r\n\r\n",
            false,
        ),
        "/no-content" => (b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n", false),
        "/broken" => (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true),
        _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_framings_reach_the_client_intact() {
    let (upstream, _) = scripted_upstream(script).await;
    for lean in ENGINES {
        let running = start_proxy(proxy_config(upstream, lean)).await;
        let c = client();
        for (path, status, body) in [
            ("/chunked", 200, &b"hello, world"[..]),
            ("/until-close", 200, b"until the end"),
            ("/early-hints", 200, b"final"),
            ("/closing", 200, b"last"),
            ("/no-content", 204, b""),
            ("/both", 200, b"ok"),
            ("/plain", 200, b"ok"),
        ] {
            let (parts, got) = get(&c, running.addr, path)
                .await
                .unwrap_or_else(|e| panic!("lean={lean} {path}: {e}"));
            assert_eq!(parts.status, status, "lean={lean} {path}");
            assert_eq!(&got[..], body, "lean={lean} {path}");
            assert!(
                !(parts.headers.contains_key("content-length")
                    && parts.headers.contains_key("transfer-encoding")),
                "lean={lean} {path}: never both length and chunked"
            );
        }
        // A body cut short by the upstream is an error for the client, never a complete
        // response.
        let cut = get(&c, running.addr, "/broken").await;
        assert!(
            cut.is_err(),
            "lean={lean}: truncated body must not look complete"
        );
        running.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_requests_are_handed_to_hyper_mid_connection() {
    let backend = echo_backend().await;
    let running = start_proxy(proxy_config(backend.addr, true)).await;
    let mut s = TcpStream::connect(running.addr).await.expect("connect");
    let mut buf = Vec::new();
    // Lean first, then HTTP/1.0 on the same connection: hyper takes over with the bytes
    // already read.
    s.write_all(b"GET /lean HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut s, &mut buf, false).await;
    assert!(head.contains("x-path: /lean"), "{head}");
    s.write_all(b"GET /old HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut s, &mut buf, false).await;
    assert!(head.contains("x-path: /old"), "{head}");
    // hyper serves the rest: Expect: 100-continue.
    s.write_all(
        b"POST /expect HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .await
    .expect("write");
    let (head, _) = read_response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    s.write_all(b"hi").await.expect("write");
    let (head, body) = read_response(&mut s, &mut buf, false).await;
    assert!(head.contains("x-path: /expect"), "{head}");
    assert_eq!(body, b"hi");
    drop(s);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_reused_and_closed_ones_replaced() {
    let (upstream, accepted) = scripted_upstream(script).await;
    let running = start_proxy(proxy_config(upstream, true)).await;
    let c = client();
    for _ in 0..5 {
        let (parts, _) = get(&c, running.addr, "/plain").await.expect("plain");
        assert_eq!(parts.status, 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");
    // The upstream closes after this one: the next request needs a new connection.
    let (parts, _) = get(&c, running.addr, "/closing").await.expect("closing");
    assert_eq!(parts.status, 200);
    let (parts, body) = get(&c, running.addr, "/plain").await.expect("after close");
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    running.shutdown(Duration::from_secs(5)).await;
}

/// `tailwater_requests_total` of outcome `cancelled`, summed over tiers.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_the_upstream_works_is_cancelled() {
    let release = Arc::new(tokio::sync::Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    for lean in ENGINES {
        let running = start_proxy(proxy_config(backend.addr, lean)).await;
        let mut s = TcpStream::connect(running.addr).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let proxy = running.proxy.clone();
        eventually(Duration::from_secs(5), || proxy.status()[0].in_flight == 1).await;
        assert_eq!(cancelled(&proxy), 0);
        drop(s);
        // The permit comes back without the upstream answering, as a cancellation.
        eventually(Duration::from_secs(5), || proxy.status()[0].in_flight == 0).await;
        assert_eq!(cancelled(&proxy), 1, "lean={lean}");
        assert_eq!(proxy.status()[0].success + proxy.status()[0].dropped, 0);
        release.notify_waiters();
        running.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_its_permit_returned() {
    for lean in ENGINES {
        client_stops_reading(lean).await;
    }
}

async fn client_stops_reading(lean: bool) {
    // More than the socket buffers on the way hold, so the proxy's writes stall.
    let big = Bytes::from(vec![b'x'; 32 << 20]);
    let backend = backend(Arc::new(move |_req| {
        let big = big.clone();
        Box::pin(async move { Response::new(Full::new(big)) })
    }))
    .await;
    let running = start_proxy(config(&format!(
        "[server]\nsend_timeout = \"300ms\"\nlean_http1 = {lean}\n\
         [[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let mut s = TcpStream::connect(running.addr).await.expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let proxy = running.proxy.clone();
    eventually(Duration::from_secs(5), || proxy.status()[0].in_flight == 1).await;
    // Never read: the proxy gives up after the idle timeout, not never.
    eventually(Duration::from_secs(5), || proxy.status()[0].in_flight == 0).await;
    assert_eq!(cancelled(&proxy), 1, "lean={lean}");
    drop(s);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The lean path waits keep_alive_timeout (75 s, as nginx); hyper's header-read timer
    // also runs while a connection is idle, so hyper closes it at header_read_timeout.
    for (lean, after) in [(true, 75), (false, 10)] {
        idle_close(lean, Duration::from_secs(after)).await;
    }
}

async fn idle_close(lean: bool, after: Duration) {
    let backend = text_backend("hi").await;
    let running = start_proxy(proxy_config(backend.addr, lean)).await;
    let mut s = TcpStream::connect(running.addr).await.expect("connect");
    let mut buf = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let (head, body) = read_response(&mut s, &mut buf, false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"hi");
    }
    let idle_from = tokio::time::Instant::now();
    let mut probe = [0u8; 16];
    let n = s.read(&mut probe).await.unwrap_or(0);
    assert_eq!(n, 0, "lean={lean}: closed, nothing sent");
    let idle = idle_from.elapsed();
    assert!(
        (after..after + Duration::from_secs(1)).contains(&idle),
        "lean={lean}: closed after {idle:?}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}
