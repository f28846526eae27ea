//! `Upgrade` (WebSocket) tunnels through both engines, against a backend that records every
//! request head and every tunnel byte it receives: what the two ends could be made to
//! disagree about (a body on an upgrade, half an upgrade, `CONNECT`, an unsolicited or
//! wrong `101`, pipelined bytes), the tunnel cap, the permit policy, and 1,000 tunnels with
//! one client that stops reading.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ENGINES: [bool; 2] = [true, false];
const WAIT: Duration = Duration::from_secs(10);

/// One request head as the backend read it, and the tunnel bytes that followed it.
#[derive(Debug, Clone, Default)]
struct Head {
    target: String,
    /// Lowercased names.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A backend that answers by path: `/ws*` with `Upgrade` switches to WebSocket and echoes, `/flood`
/// switches and writes without end, `/refuse` answers 403, `/h2c` switches to another
/// protocol, `/force101` answers 101 to anything; any other path 200 `ok`.
struct WsBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<Head>>>,
    /// Bytes received after a 101, in order.
    tunnel: Arc<Mutex<Vec<u8>>>,
    /// Floods whose writes failed (the proxy closed the tunnel).
    floods_cut: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsBackend {
    fn heads(&self) -> Vec<Head> {
        self.heads.lock().expect("lock").clone()
    }

    fn targets(&self) -> Vec<String> {
        self.heads().into_iter().map(|h| h.target).collect()
    }
}

async fn ws_backend() -> WsBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let tunnel = Arc::new(Mutex::new(Vec::new()));
    let floods_cut = Arc::new(AtomicUsize::new(0));
    let (h, t, f) = (
        Arc::clone(&heads),
        Arc::clone(&tunnel),
        Arc::clone(&floods_cut),
    );
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(serve_ws(s, Arc::clone(&h), Arc::clone(&t), Arc::clone(&f)));
        }
    });
    WsBackend {
        addr,
        heads,
        tunnel,
        floods_cut,
        task,
    }
}

/// Reads one head from `s` (with `buf` holding what was read before); the bytes after it
/// stay in `buf`.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<String>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = text.split("\r\n").map(str::to_owned);
            let first = lines.next()?;
            return Some((first, lines.collect()));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn serve_ws(
    mut s: TcpStream,
    heads: Arc<Mutex<Vec<Head>>>,
    tunnel: Arc<Mutex<Vec<u8>>>,
    floods_cut: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    while let Some((first, lines)) = read_head(&mut s, &mut buf).await {
        let mut parts = first.split(' ');
        let _method = parts.next();
        let head = Head {
            target: parts.next().unwrap_or_default().to_owned(),
            headers: lines
                .iter()
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect(),
        };
        heads.lock().expect("lock").push(head.clone());
        let switch = |proto: &str| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: accepted\r\n\r\n"
            )
        };
        let t = head.target.as_str();
        let asked = head.header("upgrade").is_some();
        if (asked && t.starts_with("/ws")) || t == "/force101" {
            if s.write_all(switch("websocket").as_bytes()).await.is_err() {
                return;
            }
            // Echo, recording what arrives (the bytes read with the head first).
            let mut pending = std::mem::take(&mut buf);
            loop {
                if !pending.is_empty() {
                    tunnel.lock().expect("lock").extend_from_slice(&pending);
                    if s.write_all(&pending).await.is_err() {
                        return;
                    }
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending = chunk[..n].to_vec(),
                }
            }
        } else if t == "/flood" {
            if s.write_all(switch("websocket").as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).await.is_ok() {}
            floods_cut.fetch_add(1, Ordering::SeqCst);
            return;
        } else if t == "/h2c" {
            let _ = s.write_all(switch("h2c").as_bytes()).await;
            let _ = s.read(&mut [0u8; 64]).await;
            return;
        } else if t == "/refuse" {
            let _ = s
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno")
                .await;
        } else {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    }
}

/// A proxy with a WebSocket route `/ws` (settings `extra` under `[route.upgrade]`,
/// `[server]` lines `server`) and a catch-all route without `[route.upgrade]`.
async fn proxy(backend: &WsBackend, lean: bool, server: &str, route: &str, extra: &str) -> Running {
    let toml = format!(
        "[server]\nlean_http1 = {lean}\n{server}\n\
         [[route]]\nname = \"plain\"\nupstream = \"http://{a}\"\n\
         [[route]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"http://{a}\"\n{route}\n\
         [route.upgrade]\n{extra}\n\
         [[route]]\nname = \"ws-other\"\npath_prefix = \"/refuse\"\nupstream = \"http://{a}\"\n[route.upgrade]\n\
         [[route]]\nname = \"ws-flood\"\npath_prefix = \"/flood\"\nupstream = \"http://{a}\"\n[route.limit]\nalgorithm = \"static\"\nlimit = 4096\n[route.upgrade]\n\
         [[route]]\nname = \"ws-h2c\"\npath_prefix = \"/h2c\"\nupstream = \"http://{a}\"\n[route.upgrade]\n",
        a = backend.addr
    );
    start_proxy(config(&toml)).await
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade, x-secret\r\nx-secret: 1\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A client connection and what it read past the last head.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.expect("connect");
        let _ = s.set_nodelay(true);
        Self { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// The status and fields of the next response head (the body stays in `buf`).
    async fn head(&mut self) -> Option<(u16, Vec<String>)> {
        let (first, lines) = tokio::time::timeout(WAIT, read_head(&mut self.s, &mut self.buf))
            .await
            .expect("a response head in time")?;
        let status = first.split(' ').nth(1)?.parse().ok()?;
        Some((status, lines))
    }

    /// The next response's status, its body read by `Content-Length`.
    async fn response(&mut self) -> Option<(u16, Vec<String>, Vec<u8>)> {
        let (status, lines) = self.head().await?;
        let len: usize = lines
            .iter()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < len {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("body in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf.drain(..len).collect();
        Some((status, lines, body))
    }

    /// Reads exactly `n` tunnel bytes.
    async fn tunnel_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            let got = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("tunnel bytes in time")
                .expect("read");
            assert!(got > 0, "tunnel closed early");
            self.buf.extend_from_slice(&chunk[..got]);
        }
        self.buf.drain(..n).collect()
    }

    /// Whether the connection ends (EOF or reset) within `WAIT`.
    async fn closes(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(WAIT, self.s.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn has(lines: &[String], field: &str, value: &str) -> bool {
    lines.iter().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case(field) && v.trim().eq_ignore_ascii_case(value)
        })
    })
}

fn metric(running: &Running, line_start: &str) -> Option<f64> {
    running
        .proxy
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_echoes_both_ways_and_forwards_only_the_upgrade() {
    for lean in ENGINES {
        let backend = ws_backend().await;
        let running = proxy(&backend, lean, "", "", "").await;
        let mut c = Client::connect(running.addr).await;
        c.send(upgrade_request("/ws/chat").as_bytes()).await;
        let (status, lines) = c.head().await.expect("101");
        assert_eq!(status, 101, "lean={lean}: {lines:?}");
        assert!(
            has(&lines, "upgrade", "websocket"),
            "lean={lean}: {lines:?}"
        );
        assert!(
            has(&lines, "connection", "upgrade"),
            "lean={lean}: {lines:?}"
        );
        assert!(
            has(&lines, "sec-websocket-accept", "accepted"),
            "lean={lean}"
        );
        c.send(b"hello through").await;
        assert_eq!(c.tunnel_bytes(13).await, b"hello through", "lean={lean}");
        let heads = backend.heads();
        assert_eq!(heads.len(), 1, "lean={lean}");
        let h = &heads[0];
        assert_eq!(h.header("upgrade"), Some("websocket"), "lean={lean}");
        assert_eq!(h.header("connection"), Some("upgrade"), "lean={lean}");
        assert_eq!(
            h.header("x-secret"),
            None,
            "lean={lean}: a Connection option"
        );
        assert_eq!(
            h.header("x-forwarded-for"),
            Some("127.0.0.1"),
            "lean={lean}"
        );
        assert!(h.header("sec-websocket-key").is_some(), "lean={lean}");
        assert_eq!(metric(&running, "tailwater_tunnels_open "), Some(1.0));
        assert_eq!(
            metric(&running, "tailwater_tunnel_buffer_bytes "),
            Some(2.0 * 8192.0)
        );
        drop(c);
        eventually(WAIT, || {
            metric(
                &running,
                "tailwater_tunnels_closed_total{reason=\"closed\"} ",
            ) == Some(1.0)
        })
        .await;
        assert_eq!(metric(&running, "tailwater_tunnels_open "), Some(0.0));
        let ws = running.proxy.status().into_iter().find(|r| r.name == "ws");
        assert_eq!(ws.map(|r| r.admitted), Some(1), "lean={lean}");
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_two_ends_could_disagree_about_is_refused_or_made_plain() {
    for lean in ENGINES {
        let backend = ws_backend().await;
        let running = proxy(&backend, lean, "", "", "").await;
        let addr = running.addr;
        let ask = |req: String| async move {
            let mut c = Client::connect(addr).await;
            c.send(req.as_bytes()).await;
            c.response().await.map(|(s, _, _)| s)
        };
        // An upgrade with a body: refused, never forwarded.
        let with_body =
            upgrade_request("/ws/body").replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(ask(with_body).await, Some(400), "lean={lean}");
        let chunked = upgrade_request("/ws/chunked").replace(
            "\r\n\r\n",
            "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        assert_eq!(ask(chunked).await, Some(400), "lean={lean}");
        // Half an upgrade: a plain request, neither field forwarded.
        let no_upgrade = "GET /ws/half1 HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(ask(no_upgrade.into()).await, Some(200), "lean={lean}");
        let no_connection = "GET /ws/half2 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(ask(no_connection.into()).await, Some(200), "lean={lean}");
        // A protocol the route does not list: plain.
        let other = upgrade_request("/ws/proto").replace("Upgrade: websocket", "Upgrade: h2c");
        assert_eq!(ask(other).await, Some(200), "lean={lean}");
        // A route without [route.upgrade]: plain, and its upstream's 101 is refused.
        assert_eq!(
            ask(upgrade_request("/plain")).await,
            Some(200),
            "lean={lean}"
        );
        assert_eq!(
            ask(upgrade_request("/force101")).await,
            Some(502),
            "lean={lean}"
        );
        // A 101 to another protocol than asked: refused.
        assert_eq!(ask(upgrade_request("/h2c")).await, Some(502), "lean={lean}");
        // CONNECT: refused on every route.
        let connect = "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n";
        assert_eq!(ask(connect.into()).await, Some(405), "lean={lean}");

        let heads = backend.heads();
        assert_eq!(
            backend.targets(),
            [
                "/ws/half1",
                "/ws/half2",
                "/ws/proto",
                "/plain",
                "/force101",
                "/h2c"
            ],
            "lean={lean}: the body-carrying upgrades and CONNECT never reach the backend"
        );
        for h in &heads[..5] {
            assert_eq!(h.header("upgrade"), None, "lean={lean}: {h:?}");
            assert_eq!(h.header("connection"), None, "lean={lean}: {h:?}");
        }
        assert_eq!(heads[5].header("upgrade"), Some("websocket"), "lean={lean}");
        assert!(
            backend.tunnel.lock().expect("lock").is_empty(),
            "lean={lean}"
        );
        assert_eq!(metric(&running, "tailwater_tunnels_total "), Some(0.0));
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connect_is_refused() {
    let backend = ws_backend().await;
    let running = proxy(&backend, true, "", "", "").await;
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{}", running.addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let resp = h2_client().request(req).await.expect("answered");
    assert_eq!(resp.status(), 405);
    assert!(backend.heads().is_empty());
    running.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pipelined_after_an_upgrade_follow_the_upstreams_answer() {
    for lean in ENGINES {
        let backend = ws_backend().await;
        let running = proxy(&backend, lean, "", "", "").await;
        // Declined: the pipelined bytes are the next request, routed on their own.
        let mut c = Client::connect(running.addr).await;
        let mut bytes = upgrade_request("/refuse").into_bytes();
        bytes.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        c.send(&bytes).await;
        assert_eq!(c.response().await.map(|r| r.0), Some(403), "lean={lean}");
        assert_eq!(c.response().await.map(|r| r.0), Some(200), "lean={lean}");
        let heads = backend.heads();
        assert_eq!(backend.targets(), ["/refuse", "/next"], "lean={lean}");
        assert_eq!(
            heads[1].header("x-forwarded-for"),
            Some("127.0.0.1"),
            "lean={lean}: the proxy parsed and forwarded it as a request"
        );
        assert_eq!(metric(&running, "tailwater_tunnels_total "), Some(0.0));
        // Accepted: they are the first tunnel bytes, never parsed as a request.
        let mut c = Client::connect(running.addr).await;
        let mut bytes = upgrade_request("/ws/pipelined").into_bytes();
        bytes.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
        c.send(&bytes).await;
        assert_eq!(c.head().await.map(|h| h.0), Some(101), "lean={lean}");
        let echoed = c.tunnel_bytes(35).await;
        assert_eq!(
            echoed, b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            "lean={lean}"
        );
        assert_eq!(
            backend.targets(),
            ["/refuse", "/next", "/ws/pipelined"],
            "lean={lean}"
        );
        drop(c);
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_cap_answers_503_without_reaching_the_upstream() {
    let backend = ws_backend().await;
    let running = proxy(&backend, true, "max_tunnels = 1", "", "").await;
    let mut first = Client::connect(running.addr).await;
    first.send(upgrade_request("/ws/1").as_bytes()).await;
    assert_eq!(first.head().await.map(|h| h.0), Some(101));
    let mut second = Client::connect(running.addr).await;
    second.send(upgrade_request("/ws/2").as_bytes()).await;
    let (status, lines, _) = second.response().await.expect("answer");
    assert_eq!(status, 503);
    assert!(
        has(&lines, "x-tailwater-rejection", "tunnel_limit"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with("retry-after"))
    );
    assert_eq!(backend.targets(), ["/ws/1"]);
    assert_eq!(
        metric(&running, "tailwater_tunnels_refused_total "),
        Some(1.0)
    );
    drop(first);
    eventually(WAIT, || {
        metric(&running, "tailwater_tunnels_open ") == Some(0.0)
    })
    .await;
    let mut third = Client::connect(running.addr).await;
    third.send(upgrade_request("/ws/3").as_bytes()).await;
    assert_eq!(
        third.head().await.map(|h| h.0),
        Some(101),
        "a place is free again"
    );
    drop(third);
    running.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permit_policy_decides_whether_a_tunnel_holds_the_routes_limit() {
    let limit =
        "[route.limit]\nalgorithm = \"static\"\nlimit = 1\n[route.queue]\ndiscipline = \"none\"";
    for (policy, plain_status) in [("setup", 200), ("tunnel", 503)] {
        let backend = ws_backend().await;
        let extra = format!("permit = \"{policy}\"");
        let running = proxy(&backend, true, "", limit, &extra).await;
        let mut tunnel = Client::connect(running.addr).await;
        tunnel.send(upgrade_request("/ws/t").as_bytes()).await;
        assert_eq!(tunnel.head().await.map(|h| h.0), Some(101), "{policy}");
        let mut plain = Client::connect(running.addr).await;
        plain
            .send(b"GET /ws/plain HTTP/1.1\r\nHost: a\r\n\r\n")
            .await;
        assert_eq!(
            plain.response().await.map(|r| r.0),
            Some(plain_status),
            "{policy}"
        );
        drop(tunnel);
        eventually(WAIT, || {
            metric(&running, "tailwater_tunnels_open ") == Some(0.0)
        })
        .await;
        // The permit is back either way.
        let mut after = Client::connect(running.addr).await;
        after
            .send(b"GET /ws/after HTTP/1.1\r\nHost: a\r\n\r\n")
            .await;
        assert_eq!(after.response().await.map(|r| r.0), Some(200), "{policy}");
        running.shutdown(WAIT).await;
    }
}

/// This process's resident set, bytes (Linux).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tunnels_and_one_client_that_stops_reading() {
    const TUNNELS: usize = 1000;
    const BUFFER: f64 = 8192.0;
    let backend = ws_backend().await;
    // Every write to a client is bounded by send_timeout (1 s here); the tunnels' idle
    // timeout (60 s) does not come into it.
    let running = proxy(
        &backend,
        true,
        "send_timeout = \"1s\"",
        "[route.limit]\nalgorithm = \"static\"\nlimit = 4096",
        "",
    )
    .await;
    let before = rss();
    // 999 echo tunnels, opened 50 at a time.
    let mut clients = Vec::with_capacity(TUNNELS);
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..TUNNELS - 1 {
        let addr = running.addr;
        opening.spawn(async move {
            let mut c = Client::connect(addr).await;
            c.send(upgrade_request(&format!("/ws/{i}")).as_bytes())
                .await;
            assert_eq!(c.head().await.map(|h| h.0), Some(101), "tunnel {i}");
            c
        });
        if opening.len() >= 50 {
            clients.push(opening.join_next().await.expect("task").expect("opened"));
        }
    }
    while let Some(c) = opening.join_next().await {
        clients.push(c.expect("opened"));
    }
    // The one that stops reading: the backend floods it.
    let mut slow = Client::connect(running.addr).await;
    slow.send(upgrade_request("/flood").as_bytes()).await;
    assert_eq!(slow.head().await.map(|h| h.0), Some(101));
    let stalled_from = tokio::time::Instant::now();
    assert_eq!(
        metric(&running, "tailwater_tunnels_open "),
        Some(TUNNELS as f64)
    );
    let buffers = metric(&running, "tailwater_tunnel_buffer_bytes ").expect("gauge");
    assert_eq!(
        buffers,
        TUNNELS as f64 * 2.0 * BUFFER,
        "bounded by construction"
    );
    let during = rss();
    // Cut by the send timeout: the proxy closes both ends, so the flood's write fails.
    eventually(WAIT, || {
        metric(
            &running,
            "tailwater_tunnels_closed_total{reason=\"client_stalled\"} ",
        ) == Some(1.0)
    })
    .await;
    let cut_after = stalled_from.elapsed();
    assert!(
        cut_after >= Duration::from_millis(900),
        "cut after {cut_after:?}"
    );
    eventually(WAIT, || backend.floods_cut.load(Ordering::SeqCst) == 1).await;
    // The others are unaffected: open, and each echoes.
    assert_eq!(
        metric(&running, "tailwater_tunnels_open "),
        Some((TUNNELS - 1) as f64)
    );
    let mut echoing = tokio::task::JoinSet::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        echoing.spawn(async move {
            let msg = format!("still here {i:04}");
            c.send(msg.as_bytes()).await;
            assert_eq!(c.tunnel_bytes(msg.len()).await, msg.as_bytes());
            c
        });
    }
    let mut clients = Vec::with_capacity(TUNNELS);
    while let Some(r) = echoing.join_next().await {
        clients.push(r.expect("echo"));
    }
    let text = running.proxy.metrics_text();
    for reason in [
        "closed",
        "idle",
        "upstream_stalled",
        "max_duration",
        "error",
    ] {
        assert!(
            text.contains(&format!(
                "tailwater_tunnels_closed_total{{reason=\"{reason}\"}} 0"
            )),
            "{reason}: {text}"
        );
    }
    if let (Some(b), Some(d)) = (before, during) {
        let delta = d.saturating_sub(b);
        eprintln!(
            "{TUNNELS} tunnels: copy buffers {buffers} B ({} KiB per tunnel); process RSS grew \
             {:.1} MiB ({:.1} KiB per tunnel, the test's own clients and backend included); \
             slow client cut {cut_after:?} after its 101",
            2.0 * BUFFER / 1024.0,
            delta as f64 / 1048576.0,
            delta as f64 / 1024.0 / TUNNELS as f64
        );
        assert!(delta < 256 * 1024 * 1024, "RSS grew {delta} B");
    }
    assert!(
        slow.closes().await,
        "the slow client's connection is closed"
    );
    drop(clients);
    running.shutdown(WAIT).await;
}
