//! Thread-per-core serving (`Proxy::serve_threaded`) over real sockets: every worker
//! accepts, and drain and reload reach every worker.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tailwater_proxy::{Listeners, Proxy};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

struct Threaded {
    addr: SocketAddr,
    proxy: Proxy,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tailwater_proxy::Error>>,
}

/// A proxy serving `route_toml` on `workers` threads of its own.
async fn start_threaded(workers: usize, server_toml: &str, route_toml: &str) -> Threaded {
    start_sharded(workers, workers, server_toml, route_toml).await
}

/// As [`start_threaded`], with a proxy built for `shards` workers.
async fn start_sharded(
    shards: usize,
    workers: usize,
    server_toml: &str,
    route_toml: &str,
) -> Threaded {
    let config = config(&format!(
        "[server]\nworkers = {shards}\n{server_toml}\n{route_toml}"
    ));
    let proxy = Proxy::new(config).expect("valid config");
    let n = NonZeroUsize::new(workers).expect("workers > 0");
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), n)
        .await
        .expect("bind");
    assert_eq!(listeners.len(), workers);
    let addr = listeners.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let p = proxy.clone();
    let task = tokio::spawn(async move {
        p.serve_threaded(listeners, async move {
            let _ = rx.await;
        })
        .await
    });
    Threaded {
        addr,
        proxy,
        stop: Some(tx),
        task,
    }
}

/// Connections accepted by each worker, from `/metrics`.
fn accepted_by_worker(proxy: &Proxy) -> Vec<u64> {
    proxy
        .metrics_text()
        .lines()
        .filter_map(|l| l.strip_prefix("tailwater_worker_connections_total{worker=\""))
        .map(|rest| {
            let (_, value) = rest.split_once("} ").expect("sample line");
            value.parse().expect("counter value")
        })
        .collect()
}

/// A new client connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// GET `path` on `sender`: status and body.
async fn ask(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> (StatusCode, Bytes) {
    sender.ready().await.expect("connection usable");
    let req = Request::get(path)
        .header("host", "x")
        .body(Empty::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_accepts_connections() {
    let backend = text_backend("hi").await;
    let running = start_threaded(
        4,
        "",
        &format!("[[route]]\nupstream = \"http://{}\"\n", backend.addr),
    )
    .await;
    // SO_REUSEPORT spreads connections by their address hash: with 64 connections over 4
    // sockets, a worker without any has a probability of about 4 * (3/4)^64 < 1e-7.
    for _ in 0..64 {
        let mut sender = connect(running.addr).await;
        let (status, body) = ask(&mut sender, "/").await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"hi");
    }
    let accepted = accepted_by_worker(&running.proxy);
    assert_eq!(accepted.len(), 4, "one counter per worker: {accepted:?}");
    assert_eq!(accepted.iter().sum::<u64>(), 64);
    assert!(
        accepted.iter().all(|&n| n > 0),
        "every worker accepted: {accepted:?}"
    );
    assert_eq!(backend.received.load(Ordering::SeqCst), 64);
    stop(running).await;
}

async fn stop(mut running: Threaded) {
    if let Some(tx) = running.stop.take() {
        let _ = tx.send(());
    }
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("stopped within the deadline")
        .expect("serve task")
        .expect("serve returned Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_reaches_every_worker() {
    drain_with(2, 2).await;
}

/// Three workers sharing one pool shard: a request may use a connection another
/// worker's runtime drives, which must stay alive until every worker drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_with_more_workers_than_shards() {
    drain_with(1, 3).await;
}

/// Drains a proxy built for `shards` workers serving on `workers` threads, with requests
/// in flight on every worker.
async fn drain_with(shards: usize, workers: usize) {
    // Requests wait for a permit of `gate`: released all at once, no lost wake-up.
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let backend = backend(Arc::new(move |_req| {
        let g = Arc::clone(&g);
        Box::pin(async move {
            // One permit per request, used up.
            g.acquire().await.expect("gate open").forget();
            Response::new(Full::new(Bytes::from_static(b"done")))
        })
    }))
    .await;
    let mut running = start_sharded(
        shards,
        workers,
        "drain_timeout = \"5s\"",
        &format!(
            "[[route]]\nupstream = \"http://{}\"\n[route.limit]\nalgorithm = \"static\"\nlimit = 100\n",
            backend.addr
        ),
    )
    .await;

    // Warm-up: sequential requests on fresh connections (so on several workers) reuse the
    // pooled upstream connections, across workers when they share a shard.
    gate.add_permits(16);
    for _ in 0..16 {
        let mut sender = connect(running.addr).await;
        assert_eq!(ask(&mut sender, "/warm").await.0, 200);
    }
    let warm = backend.received.load(Ordering::SeqCst);

    // Hold one request per connection at the backend until every worker holds some (with
    // fewer shards than workers the per-worker counters are shared: then 48 connections,
    // which miss a worker with a probability below 1e-7).
    let enough = if shards < workers { 48 } else { 1 };
    let mut in_flight = Vec::new();
    while in_flight.len() < enough || accepted_by_worker(&running.proxy).contains(&0) {
        assert!(
            in_flight.len() < 200,
            "connections never reached every worker"
        );
        let mut sender = connect(running.addr).await;
        in_flight.push(tokio::spawn(async move { ask(&mut sender, "/slow").await }));
        let received = Arc::clone(&backend.received);
        let want = warm + in_flight.len() as u64;
        eventually(Duration::from_secs(5), || {
            received.load(Ordering::SeqCst) == want
        })
        .await;
    }

    let _ = running.stop.take().expect("stop sender").send(());
    eventually(Duration::from_secs(5), || running.proxy.is_draining()).await;
    // Every worker closes its listener: new connections are refused.
    let addr = running.addr;
    tokio::time::timeout(Duration::from_secs(5), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("all listeners closed");
    assert!(
        !running.task.is_finished(),
        "serve waits for the in-flight requests of every worker"
    );

    gate.add_permits(in_flight.len());
    for request in in_flight {
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), request)
            .await
            .expect("in-flight request finished")
            .expect("task");
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"done");
    }
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("every worker drained")
        .expect("serve task")
        .expect("serve returned Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reaches_every_worker() {
    let a = text_backend("a").await;
    let b = text_backend("b").await;
    let running = start_threaded(
        2,
        "",
        &format!(
            "[[route]]\nname = \"svc\"\nupstream = \"http://{}\"\n",
            a.addr
        ),
    )
    .await;

    // Keep-alive connections until both workers have at least one.
    let mut senders = Vec::new();
    while accepted_by_worker(&running.proxy).contains(&0) {
        assert!(
            senders.len() < 200,
            "connections never reached every worker"
        );
        let mut sender = connect(running.addr).await;
        assert_eq!(&ask(&mut sender, "/").await.1[..], b"a");
        senders.push(sender);
    }

    running
        .proxy
        .reload(config(&format!(
            "[[route]]\nname = \"svc\"\nupstream = \"http://{}\"\n",
            b.addr
        )))
        .expect("valid reload");
    for sender in &mut senders {
        assert_eq!(
            &ask(sender, "/").await.1[..],
            b"b",
            "same connection, new route, on every worker"
        );
    }
    stop(running).await;
}

#[tokio::test]
async fn listeners_share_one_port() {
    let two = NonZeroUsize::new(2).expect("2 > 0");
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), two)
        .await
        .expect("bind");
    assert_eq!(listeners.len(), 2);
    assert!(!listeners.is_empty());
    assert_ne!(listeners.local_addr().port(), 0, "the picked port");
}

/// A second proxy on an address a proxy already serves refuses to start (it would share
/// the traffic through `SO_REUSEPORT` and double the effective limit), unless it asks to
/// share; anything else listening on the address is refused too.
#[tokio::test]
async fn a_second_proxy_on_the_same_address_refuses_to_start() {
    let backend = text_backend("first").await;
    let first = start_threaded(
        2,
        "",
        &format!("[[route]]\nupstream = \"http://{}\"\n", backend.addr),
    )
    .await;
    let two = NonZeroUsize::new(2).expect("2");
    let second = Listeners::bind(first.addr, two).await;
    let err = second.expect_err("a second proxy bound the same address");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("reuse_port_shared"), "{err}");
    // Asked for: it shares.
    let shared = Listeners::bind_shared(first.addr, two)
        .await
        .expect("explicit sharing binds");
    assert_eq!(shared.local_addr(), first.addr);
    drop(shared);
    // The first proxy still serves.
    let (parts, body) = get(&client(), first.addr, "/").await.expect("first serves");
    assert_eq!((parts.status, &body[..]), (StatusCode::OK, &b"first"[..]));
    let mut first = first;
    if let Some(stop) = first.stop.take() {
        let _ = stop.send(());
    }
    let stopped = tokio::time::timeout(Duration::from_secs(5), first.task).await;
    stopped.expect("stopped").expect("task").expect("served");
    // The lock went with it: the address can be served again.
    drop(
        Listeners::bind(first.addr, two)
            .await
            .expect("rebind after stop"),
    );

    // Not a proxy: any listener on the address.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("plain listener");
    let addr = plain.local_addr().expect("addr");
    let err = Listeners::bind(addr, two)
        .await
        .expect_err("bound over another listener");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

/// With two workers and a cap of two connections, one busy connection must not stop a
/// second one from being served, whichever worker's socket the kernel gives it to: a
/// worker waiting in `accept` holds no slot (issue 11 item 5b).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_holds_no_connection_slot() {
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::clone(&release);
    let backend = backend(Arc::new(
        move |req: hyper::Request<hyper::body::Incoming>| {
            let gate = Arc::clone(&gate);
            Box::pin(async move {
                if req.uri().path() == "/slow" {
                    gate.notified().await;
                }
                Response::new(Full::new(Bytes::from_static(b"ok")))
            })
        },
    ))
    .await;
    let mut running = start_threaded(
        2,
        "max_connections = 2",
        &format!("[[route]]\nupstream = \"http://{}\"\n", backend.addr),
    )
    .await;
    let mut busy = connect(running.addr).await;
    let slow = tokio::spawn(async move { ask(&mut busy, "/slow").await });
    let received = Arc::clone(&backend.received);
    eventually(Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == 1
    })
    .await;
    // One connection after another, each on whichever worker the kernel picks.
    for i in 0..8 {
        let served = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = connect(running.addr).await;
            ask(&mut c, "/").await
        })
        .await;
        let (status, _) = served.unwrap_or_else(|_| panic!("connection {i} not served"));
        assert_eq!(status, StatusCode::OK);
    }
    release.notify_waiters();
    assert_eq!(slow.await.expect("task").0, StatusCode::OK);
    let _ = running.stop.take().expect("stop").send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), running.task).await;
}
