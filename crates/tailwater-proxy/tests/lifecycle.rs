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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_closes_stuck_connections() {
    let release = Arc::new(Notify::new());
    let backend = gated_backend(Arc::clone(&release)).await;
    let running = start_proxy(config(&format!(
        "[server]\ndrain_timeout = \"200ms\"\n[[route]]\nupstream = \"http://{}\"\n",
        backend.addr
    )))
    .await;
    let addr = running.addr;
    let proxy = running.proxy.clone();
    let c = client();
    let stuck = tokio::spawn(async move { get(&c, addr, "/stuck").await.map(|(p, _)| p.status) });
    // A second client connects and sends nothing: its connection is open at the deadline too.
    let _silent = TcpStream::connect(addr).await.expect("connect");
    let received = Arc::clone(&backend.received);
    eventually(Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == 1
    })
    .await;
    let t0 = tokio::time::Instant::now();
    running.shutdown(Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain bounded by its deadline"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("client answered")
        .expect("task");
    assert!(
        outcome.is_err(),
        "the stuck request's connection was closed: {outcome:?}"
    );
    // Connections aborted at the deadline give back what they held: the open-connection
    // gauge and every route's permits return to zero.
    let metrics = proxy.metrics_text();
    let open = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tailwater_connections_open "))
        .expect("the gauge is exported");
    assert_eq!(
        open.trim(),
        "0",
        "connections_open after the drain deadline"
    );
    for route in proxy.status() {
        assert_eq!(
            route.in_flight, 0,
            "permits held after the drain: {route:?}"
        );
    }
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
