//! Drain and reload over real sockets.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_accepting_and_finishes_in_flight_requests() {
    let release = Arc::new(Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    let running = start_proxy(config(&format!(
        "[server]\ndrain_timeout = \"5s\"\n[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let addr = running.addr;
    let proxy = running.proxy.clone();

    let c = client();
    let in_flight =
        tokio::spawn(async move { get(&c, addr, "/slow").await.map(|(p, b)| (p.status, b)) });
    let received = Arc::clone(&backend.received);
    eventually(Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == 1
    })
    .await;

    // Start the drain while the request is held by the backend.
    let mut running = running;
    let stop = running.stop.take().expect("stop sender");
    let _ = stop.send(());
    eventually(Duration::from_secs(5), || proxy.is_draining()).await;
    // No new connections once draining.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed during drain"
    );
    assert!(
        !running.task.is_finished(),
        "serve waits for the in-flight request"
    );

    release.notify_waiters();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("in-flight request finished")
        .expect("task")
        .expect("request");
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"done");
    running.shutdown(Duration::from_secs(5)).await;
}

/// On the lean path a drain reaches keep-alive connections through the idle registry
/// (issue 18): one idle when the drain starts is closed at once (long before the drain
/// deadline or its keep-alive timeout); one mid-request gets its response, told
/// `Connection: close`, and is closed after it; the drain ends as soon as both are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_keep_alive_connections_and_lets_busy_ones_finish() {
    use common::raw::{ReadError, read_response};
    use tokio::io::AsyncReadExt;
    let release = Arc::new(Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    let running = start_proxy(config(&format!(
        "[server]\ndrain_timeout = \"60s\"\n[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let addr = running.addr;
    let proxy = running.proxy.clone();
    let wait = Duration::from_secs(5);
    let request = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n";

    // One connection served a request and is now idle, kept alive.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(request).await.expect("write");
    release.notify_one();
    let mut idle_buf = Vec::new();
    let first = read_response(&mut idle, &mut idle_buf, false, wait)
        .await
        .expect("first response");
    assert_eq!((first.status, first.header("connection")), (200, None));
    // Another is mid-request: the backend holds it.
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    busy.write_all(request).await.expect("write");
    let received = Arc::clone(&backend.received);
    eventually(wait, || received.load(Ordering::SeqCst) == 2).await;

    let mut running = running;
    let stop = running.stop.take().expect("stop sender");
    let _ = stop.send(());
    eventually(wait, || proxy.is_draining()).await;
    // The idle connection is closed without a byte, well within the 60 s deadline.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(wait, idle.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the idle connection was closed at the drain: {closed:?}"
    );
    assert!(
        !running.task.is_finished(),
        "the drain waits for the request in flight"
    );
    // The busy one gets its whole response, with `Connection: close`, then the close
    // (`notify_one`: a permit, should the handler not wait yet).
    release.notify_one();
    let mut busy_buf = Vec::new();
    let resp = read_response(&mut busy, &mut busy_buf, false, wait)
        .await
        .expect("the request in flight is answered");
    assert_eq!(
        (resp.status, &resp.body[..], resp.header("connection")),
        (200, &b"done"[..], Some("close"))
    );
    assert_eq!(
        read_response(&mut busy, &mut busy_buf, false, wait)
            .await
            .map(|r| r.status),
        Err(ReadError::Closed)
    );
    running.shutdown(wait).await;
}

/// The gauges that count something a connection holds: each must read zero once every
/// connection is gone, however it ended.
const HELD_GAUGES: [&str; 6] = [
    "tailwater_connections_open",
    "tailwater_limiter_in_flight",
    "tailwater_limiter_queue_depth",
    "tailwater_tunnels_open",
    "tailwater_tunnel_buffer_bytes",
    "tailwater_endpoint_pending",
];

/// Every sample of the [`HELD_GAUGES`] in `metrics` that is not zero, and how many samples
/// of them there were.
fn held_gauges_not_zero(metrics: &str) -> (Vec<String>, usize) {
    let mut seen = 0;
    let mut bad = Vec::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if HELD_GAUGES.contains(&name) {
            seen += 1;
            if value.parse::<f64>() != Ok(0.0) {
                bad.push(line.to_owned());
            }
        }
    }
    (bad, seen)
}

/// Connections of every kind open at the drain deadline — requests holding a permit over
/// the lean HTTP/1.1 path and over hyper's h2c, a request waiting in the queue, a head sent
/// halfway, an idle connection — are aborted, and every gauge of what they held returns to
/// zero: open connections, the limiter's in-flight and queue depth, tunnels, endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_closes_stuck_connections() {
    let release = Arc::new(Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    let running = start_proxy(config(&format!(
        "[server]\ndrain_timeout = \"200ms\"\n[[route]]\nupstream = \"http://{}\"\n\
         queue = {{ discipline = \"fifo\", capacity = 8, max_wait = \"30s\" }}\n\
         [route.limit]\nalgorithm = \"static\"\nlimit = 2\n",
        backend.addr
    )))
    .await;
    let addr = running.addr;
    let proxy = running.proxy.clone();
    let open = |proxy: &tailwater_proxy::Proxy| {
        proxy
            .metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix("tailwater_connections_open "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the gauge is exported")
    };

    // Two requests hold the route's two permits at the backend: one over the lean HTTP/1.1
    // path, one over hyper's h2c (prior knowledge).
    let (h1, h2) = (client(), h2_client());
    let lean = tokio::spawn(async move { get(&h1, addr, "/lean").await.map(|(p, _)| p.status) });
    let hyper = tokio::spawn(async move { get(&h2, addr, "/h2").await.map(|(p, _)| p.status) });
    let received = Arc::clone(&backend.received);
    eventually(Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == 2
    })
    .await;
    // A third waits in the queue for a permit.
    let h1 = client();
    let queued =
        tokio::spawn(async move { get(&h1, addr, "/queued").await.map(|(p, _)| p.status) });
    eventually(Duration::from_secs(5), || {
        proxy.status().iter().any(|r| r.queue_depth == 1)
    })
    .await;
    // One client sends half a head, one sends nothing.
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /half HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let _silent = TcpStream::connect(addr).await.expect("connect");
    eventually(Duration::from_secs(5), || open(&proxy) == 5).await;
    let status = proxy.status();
    assert_eq!(status[0].in_flight, 2, "two permits held: {status:?}");
    let (held, _) = held_gauges_not_zero(&proxy.metrics_text());
    assert!(!held.is_empty(), "the gauges see what is held");

    let t0 = tokio::time::Instant::now();
    running.shutdown(Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain bounded by its deadline"
    );
    for (what, task) in [("lean", lean), ("h2c", hyper), ("queued", queued)] {
        let outcome = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("client answered")
            .expect("task");
        assert!(
            outcome.is_err(),
            "the {what} request's connection was closed: {outcome:?}"
        );
    }
    // Connections aborted at the deadline give back what they held.
    let (held, seen) = held_gauges_not_zero(&proxy.metrics_text());
    assert!(seen >= 3, "the gauges are exported ({seen} samples)");
    assert!(held.is_empty(), "held after the drain deadline: {held:?}");
    for route in proxy.status() {
        assert_eq!(
            (route.in_flight, route.queue_depth),
            (0, 0),
            "permits or queue places held after the drain: {route:?}"
        );
    }
    drop(backend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_routes_without_dropping_connections_and_rejects_bad_files() {
    let a = text_backend("a").await;
    let b = text_backend("b").await;
    let running = start_proxy(config(&format!(
        "[[route]]\nname = \"svc\"\nupstream = \"http://{}\"\n",
        a.addr
    )))
    .await;

    // One keep-alive connection used before and after the reload.
    let stream = TcpStream::connect(running.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .expect("handshake");
    let conn_task = tokio::spawn(conn);
    let ask = async |sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        sender.ready().await.expect("connection usable");
        let resp = sender
            .send_request(
                Request::get("/")
                    .header("host", "x")
                    .body(Empty::new())
                    .expect("request"),
            )
            .await
            .expect("response");
        resp.into_body().collect().await.expect("body").to_bytes()
    };
    assert_eq!(&ask(&mut sender).await[..], b"a");

    running
        .proxy
        .reload(config(&format!(
            "[[route]]\nname = \"svc\"\nupstream = \"http://{}\"\n",
            b.addr
        )))
        .expect("valid reload");
    assert_eq!(
        &ask(&mut sender).await[..],
        b"b",
        "same connection, new route"
    );

    // The SIGHUP path: an invalid file keeps the running configuration.
    let dir = std::env::temp_dir().join(format!("tailwater-proxy-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[[route]]\nupstream = \"http://{}\"\n[route.limit]\nalgorithm = \"aimd\"\nmin_limit = 50\nmax_limit = 10\n",
            a.addr
        ),
    )
    .expect("write");
    let err = running
        .proxy
        .reload_from_file(&path)
        .expect_err("invalid file refused");
    assert_eq!(err.line(), Some(5), "{err}");
    assert_eq!(err.field(), "route[0].limit.min_limit", "{err}");
    assert!(err.to_string().contains("bad.toml:5:"), "{err}");
    assert_eq!(&ask(&mut sender).await[..], b"b", "old configuration kept");

    // A valid file through the same path.
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[[route]]\nname = \"svc\"\nupstream = \"http://{}\"\n",
            a.addr
        ),
    )
    .expect("write");
    running.proxy.reload_from_file(&good).expect("valid file");
    assert_eq!(&ask(&mut sender).await[..], b"a");
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        !conn_task.is_finished(),
        "the client connection survived three reloads"
    );
    drop(sender);
    running.shutdown(Duration::from_secs(5)).await;
}
