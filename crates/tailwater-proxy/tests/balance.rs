//! Routes with several upstreams (issue 12, item 6), on both engines: three real backends
//! on 127.0.0.1:0 behind the proxy, one slowed and one killed mid-run; every request is
//! answered once and reaches at most one backend once; the slow one and the dead one are
//! avoided. And the list form's configuration errors.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tailwater_proxy::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every backend saw: (backend index, request id), in arrival order.
type Log = Arc<Mutex<Vec<(usize, u64)>>>;

/// A backend that records the id of each request (its body), answers `b{index}:{id}`
/// after `delay_ms`, and can be killed: its listener and every connection closed at once.
struct Killable {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    kill: watch::Sender<bool>,
    /// The port, held for the test's whole run.
    _held: tailwater_test::port::RefusedPort,
}

async fn killable(index: usize, log: Log) -> Killable {
    // Once killed, its port stays held (not listening): connects are refused rather than
    // reaching whatever another test binds next.
    let (listener, held) = tailwater_test::port::listener_with_held_port().expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = TcpListener::from_std(listener).expect("listener");
    let addr = held.addr();
    let delay_ms = Arc::new(AtomicU64::new(1));
    let (kill, killed) = watch::channel(false);
    let delay = Arc::clone(&delay_ms);
    tokio::spawn(async move {
        let mut stop = killed.clone();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => return, // the listener is dropped: connects refused
            };
            let Ok((stream, _)) = accepted else { continue };
            let (log, delay, mut stop) = (Arc::clone(&log), Arc::clone(&delay), killed.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (log, delay) = (Arc::clone(&log), Arc::clone(&delay));
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let id: u64 = body
                            .ok()
                            .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
                            .unwrap_or(u64::MAX);
                        log.lock().expect("lock").push((index, id));
                        let ms = delay.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let text = format!("b{index}:{id}");
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop.changed() => {} // dropped: the socket closes mid-request
                }
            });
        }
    });
    Killable {
        addr,
        delay_ms,
        kill,
        _held: held,
    }
}

/// Sends requests `ids` (POST, the id as the body: never replayable) with `concurrency`
/// clients; returns each id's status and body. `each` runs after every response.
async fn send_all(
    proxy: SocketAddr,
    ids: std::ops::Range<u64>,
    concurrency: usize,
    each: Arc<dyn Fn() + Send + Sync>,
) -> HashMap<u64, (u16, String)> {
    let next = Arc::new(AtomicU64::new(ids.start));
    let out = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, out, each) = (Arc::clone(&next), Arc::clone(&out), Arc::clone(&each));
        let end = ids.end;
        tasks.push(tokio::spawn(async move {
            let client = client();
            loop {
                let id = next.fetch_add(1, Ordering::SeqCst);
                if id >= end {
                    return;
                }
                let req = Request::post(format!("http://{proxy}/work"))
                    .body(Full::new(Bytes::from(id.to_string())))
                    .expect("request");
                let answer = match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.into_body().collect().await.expect("body").to_bytes();
                        (status, String::from_utf8_lossy(&body).into_owned())
                    }
                    Err(e) => (0, e.to_string()),
                };
                let first = out.lock().expect("lock").insert(id, answer);
                assert!(first.is_none(), "request {id} answered twice");
                each();
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    out.lock().expect("lock").clone()
}

fn counts(log: &Log, ids: std::ops::Range<u64>) -> [usize; 3] {
    let mut c = [0; 3];
    for (b, id) in log.lock().expect("lock").iter() {
        if ids.contains(id) {
            c[*b] += 1;
        }
    }
    c
}

async fn three_backends_one_slowed_one_killed(lean: bool, protocol: &str) {
    let log: Log = Arc::default();
    let mut backends = Vec::new();
    for i in 0..3 {
        backends.push(killable(i, Arc::clone(&log)).await);
    }
    let running = start_proxy(config(&format!(
        r#"
[server]
lean_http1 = {lean}
[[route]]
name = "pool"
upstream = ["http://{}", "http://{}", "http://{}"]
protocol = "{protocol}"
[route.limit]
algorithm = "static"
limit = 64
"#,
        backends[0].addr, backends[1].addr, backends[2].addr
    )))
    .await;
    let proxy = running.addr;
    let nothing: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});

    // 1. All healthy: every endpoint takes a share.
    let healthy = send_all(proxy, 0..150, 6, Arc::clone(&nothing)).await;
    assert!(healthy.values().all(|(s, _)| *s == 200), "{healthy:?}");
    let c = counts(&log, 0..150);
    assert!(c.iter().all(|&n| n >= 15), "all three used: {c:?}");

    // 2. Backend 1 becomes 40x slower: P2C over PeakEWMA sends it little.
    backends[1].delay_ms.store(40, Ordering::SeqCst);
    let slowed = send_all(proxy, 1000..1150, 6, Arc::clone(&nothing)).await;
    assert!(slowed.values().all(|(s, _)| *s == 200));
    let c = counts(&log, 1000..1150);
    assert!(c[1] * 5 < 150, "the slow backend got {c:?} of 150");

    // 3. Backend 2 is killed while requests run (after 30 answers).
    let done = Arc::new(AtomicUsize::new(0));
    let kill = backends[2].kill.clone();
    let (d, k) = (Arc::clone(&done), kill.clone());
    let killer: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if d.fetch_add(1, Ordering::SeqCst) + 1 == 30 {
            let _ = k.send(true);
        }
    });
    let killed = send_all(proxy, 2000..2200, 6, killer).await;
    assert!(*kill.borrow(), "the kill happened mid-run");
    // Only requests in flight on the dead backend at the kill may fail (never resent: a
    // POST whose bytes may have reached it); every other is answered 200.
    let failed: Vec<_> = killed.iter().filter(|(_, (s, _))| *s != 200).collect();
    assert!(failed.len() <= 6, "{failed:?}");
    assert!(failed.iter().all(|(_, (s, _))| *s == 502), "{failed:?}");

    // 4. After the kill: all answered by the two live ones, the dead one ejected.
    let after = send_all(proxy, 3000..3100, 6, nothing).await;
    assert!(after.values().all(|(s, _)| *s == 200), "{after:?}");
    let c = counts(&log, 3000..3100);
    assert_eq!(c[2], 0);
    assert!(c[0] > c[1], "the fast one preferred: {c:?}");

    // Every request reached at most one backend, once; every 200 came from the backend
    // that logged it.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (b, id) in log.lock().expect("lock").iter() {
        assert!(
            seen.insert(*id, *b).is_none(),
            "request {id} reached a backend twice"
        );
    }
    for answers in [&healthy, &slowed, &killed, &after] {
        for (id, (status, body)) in answers {
            if *status == 200 {
                let b = seen.get(id).copied();
                assert_eq!(Some(body.clone()), b.map(|b| format!("b{b}:{id}")));
            }
        }
    }
    let metrics = running.proxy.metrics_text();
    let dead = backends[2].addr;
    let ejections =
        format!("tailwater_endpoint_ejections_total{{route=\"pool\",endpoint=\"{dead}\"}} 1");
    assert!(metrics.contains(&ejections), "{metrics}");
    let ejected = format!("tailwater_endpoint_ejected{{route=\"pool\",endpoint=\"{dead}\"}} 1");
    assert!(metrics.contains(&ejected), "{metrics}");
    assert!(metrics.contains("tailwater_endpoint_ewma_seconds{route=\"pool\""));
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_three_backends_one_slowed_one_killed() {
    three_backends_one_slowed_one_killed(true, "http1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_three_backends_one_slowed_one_killed() {
    three_backends_one_slowed_one_killed(false, "http1").await;
}

/// The same on an h2c route (hyper-util's legacy client, which consumes the request): a
/// connect refused by the killed backend moves the request (its small body at hand) to
/// another endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_three_backends_one_slowed_one_killed() {
    three_backends_one_slowed_one_killed(true, "h2c").await;
}

/// A connect refused before any byte is sent goes to another endpoint: with one of two
/// endpoints a closed port, every request is answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_goes_to_another_endpoint_on_both_engines() {
    let backend = text_backend("up").await;
    // Held, not listening: connects to it are refused for the whole test.
    let refused = tailwater_test::port::RefusedPort::new().expect("port");
    let closed = refused.addr();
    for lean in [true, false] {
        let running = start_proxy(config(&format!(
            "[server]\nlean_http1 = {lean}\n[[route]]\nupstream = [\"http://{closed}\", \"http://{}\"]\n",
            backend.addr
        )))
        .await;
        let client = client();
        for _ in 0..20 {
            let (parts, body) = get(&client, running.addr, "/").await.expect("answered");
            assert_eq!(parts.status, 200, "lean={lean}");
            assert_eq!(&body[..], b"up");
        }
        let m = running.proxy.metrics_text();
        assert!(
            m.contains(&format!(
                "tailwater_endpoint_ejections_total{{route=\"default\",endpoint=\"{closed}\"}} 1"
            )),
            "{m}"
        );
        running.shutdown(Duration::from_secs(5)).await;
    }
}

/// The same on an h2c route: bodiless GETs and small-bodied POSTs whose connect is refused
/// go to the live endpoint, each reaching it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_goes_to_another_endpoint_on_h2c() {
    let log: Log = Arc::default();
    let live = killable(0, Arc::clone(&log)).await;
    // Held, not listening: connects to it are refused for the whole test.
    let refused = tailwater_test::port::RefusedPort::new().expect("port");
    let closed = refused.addr();
    let running = start_proxy(config(&format!(
        "[[route]]\nupstream = [\"http://{closed}\", \"http://{}\"]\nprotocol = \"h2c\"\n",
        live.addr
    )))
    .await;
    let client = client();
    for _ in 0..20 {
        let (parts, body) = get(&client, running.addr, "/").await.expect("answered");
        assert_eq!(parts.status, 200);
        assert_eq!(
            &body[..],
            format!("b0:{}", u64::MAX).as_bytes(),
            "no body: no id"
        );
    }
    let nothing: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
    let posts = send_all(running.addr, 0..20, 1, nothing).await;
    for (id, (status, body)) in &posts {
        assert_eq!((*status, body.as_str()), (200, format!("b0:{id}").as_str()));
    }
    assert_eq!(
        log.lock().expect("lock").len(),
        40,
        "each request arrived once"
    );
    let m = running.proxy.metrics_text();
    assert!(
        m.contains(&format!(
            "tailwater_endpoint_ejections_total{{route=\"default\",endpoint=\"{closed}\"}} 1"
        )),
        "{m}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn the_list_form_and_its_errors() {
    let ok = Config::from_toml(
        "[[route]]\nupstream = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n[route.balance]\npolicy = \"least-request\"\n",
        None,
    )
    .expect("valid");
    assert_eq!(ok.routes[0].upstream.endpoints().len(), 2);
    let single = Config::from_toml("[[route]]\nupstream = \"http://127.0.0.1:1\"\n", None)
        .expect("the string form still works");
    assert_eq!(single.routes[0].upstream.endpoints().len(), 1);
    let cases: [(&str, usize, &str, &str); 6] = [
        (
            "[[route]]\nname = \"a\"\nupstream = [\"http://x:1\", \"https://y:2\"]\n",
            3,
            "route[0].upstream",
            "mixes http:// and https://",
        ),
        (
            "[[route]]\nupstream = [\"http://x:1\", \"http://x:1\"]\n",
            2,
            "route[0].upstream",
            "twice",
        ),
        (
            "[[route]]\nupstream = []\n",
            2,
            "route[0].upstream",
            "1 to 64",
        ),
        (
            "[[route]]\nupstream = [\"http://x:1\", \"http://y:1\"]\n[route.balance]\npolicy = \"p2c\"\n",
            4,
            "route[0].balance.policy",
            "peak-ewma",
        ),
        (
            "[[route]]\nupstream = [\"http://x:1\", \"http://y:1\"]\n[route.balance]\nmax_ejection_percent = 150\n",
            4,
            "route[0].balance.max_ejection_percent",
            "[0, 100]",
        ),
        (
            "[[route]]\nupstream = \"http://x:1\"\ndeadline_header = \"bad header\"\n",
            3,
            "route[0].deadline_header",
            "header name",
        ),
    ];
    for (src, line, field, text) in cases {
        let e = Config::from_toml(src, None).expect_err(src);
        assert_eq!(e.line(), Some(line), "{src}: {e}");
        assert_eq!(e.field(), field, "{src}: {e}");
        assert!(e.message().contains(text), "{src}: {e}");
    }
}
