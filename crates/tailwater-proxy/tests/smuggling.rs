//! Framing, `Host` and path attacks (issue 11), each through both engines to a backend that
//! records every byte it receives: what reaches the backend is exactly the requests the
//! proxy admitted, framed as the proxy counted them. Every attack runs over plain TCP and
//! over TLS (where the lean path serves ALPN `http/1.1` connections too).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::raw::{self, ReadError, Recorder, Resp, Seen};
use common::tls::{Transport, connect};
use common::*;
use tokio::io::AsyncWriteExt;

/// Each engine (lean or hyper) over each transport.
const ENGINES: [(bool, Transport); 5] = [
    (true, Transport::Plain),
    (false, Transport::Plain),
    (true, Transport::Tls),
    (false, Transport::Tls),
    (true, Transport::TlsNoAlpn),
];

/// A proxy started for one engine and transport.
struct Proxied {
    running: Running,
    transport: Transport,
}

impl std::ops::Deref for Proxied {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

impl Proxied {
    async fn shutdown(self, deadline: Duration) {
        self.running.shutdown(deadline).await;
    }
}
const WAIT: Duration = Duration::from_secs(5);

/// A proxy with one catch-all route to `backend`'s first listener, and an `/admin` route
/// (one request per minute) to its second when it has one.
async fn proxy(backend: &Recorder, (lean, transport): (bool, Transport)) -> Proxied {
    let mut toml = format!(
        "[server]\nlean_http1 = {lean}\n{}[[route]]\nname = \"main\"\nupstream = \"http://{}\"\n",
        transport.server_toml(),
        backend.addrs[0]
    );
    if let Some(admin) = backend.addrs.get(1) {
        toml.push_str(&format!(
            "[[route]]\nname = \"admin\"\npath_prefix = \"/admin\"\nupstream = \"http://{admin}\"\n\
             [[route.rate_limit]]\nname = \"admin\"\nrate = 1\nperiod = \"1m\"\n"
        ));
    }
    Proxied {
        running: start_proxy(config(&toml)).await,
        transport,
    }
}

/// Sends `bytes` on a new connection and reads up to `n` responses (fewer when the
/// connection closes first).
async fn exchange(to: &Proxied, bytes: &[u8], n: usize) -> Vec<Result<Resp, ReadError>> {
    send(to, bytes, n, false).await
}

/// As [`exchange`]; `half_close` ends the client's side after the bytes (so a proxy
/// waiting for more of a body sees the end at once).
async fn send(
    to: &Proxied,
    bytes: &[u8],
    n: usize,
    half_close: bool,
) -> Vec<Result<Resp, ReadError>> {
    let mut s = connect(to.addr, to.transport).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    if half_close {
        s.shutdown().await.expect("shutdown");
    }
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = raw::read_response(&mut s, &mut buf, false, WAIT).await;
        let stop = r.is_err();
        out.push(r);
        if stop {
            break;
        }
    }
    out
}

fn status(r: &[Result<Resp, ReadError>], i: usize) -> Option<u16> {
    r.get(i)?.as_ref().ok().map(|r| r.status)
}

fn targets(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.target.as_str()).collect()
}

fn no_problems(backend: &Recorder, engine: (bool, Transport)) {
    assert!(
        backend.garbage().is_empty(),
        "{engine:?}: {:?}",
        backend.garbage()
    );
    for s in backend.seen() {
        assert!(
            s.problems.is_empty(),
            "{engine:?}: {} {:?}",
            s.target,
            s.problems
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_content_length_cannot_smuggle_a_request() {
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for engine in ENGINES {
        let backend = raw::recorder(1, raw::echo_target()).await;
        let running = proxy(&backend, engine).await;
        let mut attack = format!(
            "POST /p1 HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        )
        .into_bytes();
        attack.extend_from_slice(smuggled);
        let got = exchange(&running, &attack, 1).await;
        assert_eq!(status(&got, 0), Some(200), "{engine:?}: {got:?}");
        // A victim on another connection gets its own response.
        let victim = exchange(&running, b"GET /victim HTTP/1.1\r\nHost: a\r\n\r\n", 1).await;
        let victim = victim[0].as_ref().expect("victim answered");
        assert_eq!(victim.header("x-target"), Some("/victim"), "{engine:?}");
        let seen = backend.seen();
        assert_eq!(targets(&seen), ["/p1", "/victim"], "{engine:?}");
        assert_eq!(seen[0].body, smuggled, "{engine:?}: the body stays a body");
        assert_eq!(seen[0].header("content-length"), Some("35"), "{engine:?}");
        assert_eq!(running.proxy.status()[0].admitted, 2, "{engine:?}");
        no_problems(&backend, engine);
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_host_and_transfer_encoding_options_keep_those_fields() {
    for engine in ENGINES {
        let backend = raw::recorder(1, raw::echo_target()).await;
        let running = proxy(&backend, engine).await;
        let req = b"POST /c HTTP/1.1\r\nHost: front\r\nConnection: host, transfer-encoding\r\n\
                    Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                    GET /after HTTP/1.1\r\nHost: front\r\n\r\n";
        let got = exchange(&running, req, 2).await;
        assert_eq!(
            (status(&got, 0), status(&got, 1)),
            (Some(200), Some(200)),
            "{engine:?}: {got:?}"
        );
        let seen = backend.seen();
        assert_eq!(targets(&seen), ["/c", "/after"], "{engine:?}");
        assert_eq!(seen[0].body, b"abc", "{engine:?}");
        assert_eq!(seen[0].header("host"), Some("front"), "{engine:?}");
        no_problems(&backend, engine);
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_content_length_on_a_response_keeps_its_framing() {
    let script: raw::Script = Arc::new(|seen: &Seen| match seen.target.as_str() {
        "/resp" => (
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
            false,
        ),
        _ => (raw::echo_target())(seen),
    });
    for engine in ENGINES {
        let backend = raw::recorder(1, Arc::clone(&script)).await;
        let running = proxy(&backend, engine).await;
        let got = exchange(
            &running,
            b"GET /resp HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
            2,
        )
        .await;
        let first = got[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("{engine:?}: {e:?}"));
        assert_eq!(
            (first.status, &first.body[..]),
            (200, &b"hello"[..]),
            "{engine:?}"
        );
        let second = got[1]
            .as_ref()
            .unwrap_or_else(|e| panic!("{engine:?}: {e:?}"));
        assert_eq!(second.header("x-target"), Some("/next"), "{engine:?}");
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_duplicate_and_invalid_host_get_400() {
    for engine in ENGINES {
        let backend = raw::recorder(1, raw::echo_target()).await;
        let running = proxy(&backend, engine).await;
        for req in [
            &b"GET /none HTTP/1.1\r\n\r\n"[..],
            b"GET /two HTTP/1.1\r\nHost: public\r\nHost: internal\r\n\r\n",
            b"GET /same HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET /bad HTTP/1.1\r\nHost: a b/c\r\n\r\n",
            b"GET /empty HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET http://internal/abs HTTP/1.1\r\nHost: public\r\n\r\n",
        ] {
            let got = exchange(&running, req, 1).await;
            assert_eq!(
                status(&got, 0),
                Some(400),
                "{engine:?} {:?}",
                String::from_utf8_lossy(req)
            );
        }
        // Each counted as refused, none on the route or its limit.
        let metrics = running.proxy.metrics_text();
        assert!(
            metrics.contains("\ntailwater_refused_requests_total 6\n"),
            "{engine:?}: {metrics}"
        );
        assert_eq!(running.proxy.status()[0].admitted, 0, "{engine:?}");
        // Absolute form with the same authority is fine.
        let got = exchange(&running, b"GET http://a/abs HTTP/1.1\r\nHost: a\r\n\r\n", 1).await;
        assert_eq!(status(&got, 0), Some(200), "{engine:?}");
        assert_eq!(targets(&backend.seen()), ["/abs"], "{engine:?}");
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_route_on_their_normal_form_which_is_what_is_forwarded() {
    for engine in ENGINES {
        let backend = raw::recorder(2, raw::echo_target()).await;
        let running = proxy(&backend, engine).await;
        for path in [
            "/%61dmin/x",
            "/./admin/x",
            "/x/../admin/x",
            "//admin/x",
            "/%2e%2e/admin/x",
        ] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            let got = exchange(&running, req.as_bytes(), 1).await;
            // The admin route's rate limit (1 per minute) counts every spelling.
            assert!(
                matches!(status(&got, 0), Some(200 | 429)),
                "{engine:?} {path}: {got:?}"
            );
        }
        let seen = backend.seen();
        assert_eq!(
            targets(&seen),
            ["/admin/x"],
            "{engine:?}: one admitted, normalised"
        );
        assert_eq!(seen[0].listener, 1, "{engine:?}: on the admin route");
        for path in ["/x%2F..%2Fadmin", "/x/..;/admin/x", "/x%5c..%5cadmin"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            let got = exchange(&running, req.as_bytes(), 1).await;
            assert_eq!(status(&got, 0), Some(400), "{engine:?} {path}");
        }
        // Targets httparse admits but hyper's URI refuses: bytes beyond ASCII that are not
        // UTF-8 (an overlong `.`, `0xC0 0xAE`, which a lenient decoder upstream reads as
        // `.`, making `..` of two), `<`, `>` and `` ` `` in the path, `"` in the query.
        // Both engines refuse them alike, and none reaches the backend.
        for target in [
            &b"/x/\xC0\xAE\xC0\xAE/admin/x"[..],
            b"/\xFF",
            b"/a<b",
            b"/a`b",
            b"/x?q=\"",
        ] {
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(target);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            let got = exchange(&running, &req, 1).await;
            assert_eq!(status(&got, 0), Some(400), "{engine:?} {target:?}: {got:?}");
        }
        assert_eq!(
            backend.seen().len(),
            1,
            "{engine:?}: none of those reached it"
        );
        // UTF-8, which both accept, is forwarded as sent.
        let got = exchange(
            &running,
            "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(),
            1,
        )
        .await;
        assert_eq!(status(&got, 0), Some(200), "{engine:?}: {got:?}");
        assert_eq!(targets(&backend.seen())[1..], ["/caf\u{e9}"], "{engine:?}");
        let got = exchange(&running, b"GET /f?q=1#frag HTTP/1.1\r\nHost: a\r\n\r\n", 1).await;
        assert_eq!(status(&got, 0), Some(200), "{engine:?}");
        assert_eq!(
            targets(&backend.seen())[2..],
            ["/f?q=1"],
            "{engine:?}: fragment dropped"
        );
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_reencoded_and_bad_ones_refused() {
    for engine in ENGINES {
        let backend = raw::recorder(1, raw::echo_target()).await;
        let running = proxy(&backend, engine).await;
        let got = exchange(
            &running,
            b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;a=\"x\" ; b\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
            1,
        )
        .await;
        assert_eq!(status(&got, 0), Some(200), "{engine:?}: {got:?}");
        let seen = backend.seen();
        assert_eq!(seen[0].body, b"hello", "{engine:?}");
        for bad in [
            &b"POST /twice HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"[..],
            b"POST /both HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nx",
            b"POST /colon HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nno colon\r\n\r\n",
        ] {
            let got = send(&running, bad, 1, true).await;
            let what = String::from_utf8_lossy(&bad[..20]);
            // hyper reads a length next to `chunked` by the coding alone and closes the
            // connection after it (RFC 9112 §6.1 allows that); the lean path refuses it.
            if let Some(Ok(r)) = got.first()
                && !engine.0
                && what.contains("/both")
            {
                assert_eq!(r.header("connection"), Some("close"), "{r:?}");
                continue;
            }
            // Refused (400) before the body, or cut: never a success.
            assert_ne!(status(&got, 0), Some(200), "{engine:?} {what}: {got:?}");
        }
        if engine.0 {
            // The lean path refuses these before anything is forwarded.
            assert_eq!(backend.seen().len(), 1, "{:?}", targets(&backend.seen()));
        }
        no_problems(&backend, engine);
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_101_is_a_502() {
    let script: raw::Script = Arc::new(|_: &Seen| {
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nRAW"
                .to_vec(),
            true,
        )
    });
    for engine in ENGINES {
        let backend = raw::recorder(1, Arc::clone(&script)).await;
        let running = proxy(&backend, engine).await;
        let got = exchange(&running, b"GET /u HTTP/1.1\r\nHost: a\r\n\r\n", 1).await;
        assert_eq!(status(&got, 0), Some(502), "{engine:?}: {got:?}");
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_502_to_head_has_no_body() {
    // Found by the differential test: the lean path wrote the 502's body after a HEAD.
    let script: raw::Script = Arc::new(|_: &Seen| {
        (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n".to_vec(),
            true,
        )
    });
    for engine in ENGINES {
        let backend = raw::recorder(1, Arc::clone(&script)).await;
        let running = proxy(&backend, engine).await;
        let mut s = connect(running.addr, running.transport)
            .await
            .expect("connect");
        s.write_all(
            b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
        let mut buf = Vec::new();
        let resp = raw::read_response(&mut s, &mut buf, true, WAIT).await;
        assert_eq!(resp.map(|r| r.status), Ok(502), "{engine:?}");
        // Closed (lean) or the next response (hyper): never the first one's body.
        let next = raw::read_response(&mut s, &mut buf, false, WAIT).await;
        assert!(
            matches!(next, Err(ReadError::Closed)) || next.as_ref().is_ok_and(|r| r.status == 502),
            "{engine:?}: {next:?}"
        );
        running.shutdown(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_for_a_bodiless_request_keeps_the_connection_and_one_with_a_body_closes_it() {
    // nginx and Envoy keep a client's connection after answering 502 for an upstream that
    // refuses: closing it would turn an outage into a reconnect storm. Only a request read
    // whole may leave the connection open; bytes of a body that was never forwarded must
    // not be read as the next request.
    let refused = [
        tailwater_test::port::RefusedPort::new().expect("port"),
        tailwater_test::port::RefusedPort::new().expect("port"),
    ];
    let [a, b] = [refused[0].addr(), refused[1].addr()];
    let live = text_backend("up").await;
    for (lean, transport) in ENGINES {
        let toml = format!(
            "[server]\nlean_http1 = {lean}\n{}\
             [[route]]\nname = \"pair\"\npath_prefix = \"/pair\"\nupstream = [\"http://{a}\", \"http://{b}\"]\n\
             [[route]]\nname = \"live\"\npath_prefix = \"/live\"\nupstream = \"http://{}\"\n\
             [[route]]\nname = \"one\"\nupstream = \"http://{a}\"\n",
            transport.server_toml(),
            live.addr
        );
        let running = start_proxy(config(&toml)).await;
        let mut s = connect(running.addr, transport).await.expect("connect");
        let mut buf = Vec::new();
        // One endpoint (the pool's connect), two endpoints (the balancer's), and HEAD: each
        // answered 502 on the same connection, none announcing a close.
        for (request, head) in [
            &b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET /pair/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HEAD /one HTTP/1.1\r\nHost: a\r\n\r\n",
            b"DELETE /pair HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        ]
        .into_iter()
        .zip([false, false, true, false])
        {
            s.write_all(request).await.expect("write");
            let resp = raw::read_response(&mut s, &mut buf, head, WAIT).await;
            let resp = resp.unwrap_or_else(|e| panic!("lean={lean} {transport:?}: {e:?}"));
            assert_eq!(resp.status, 502, "lean={lean} {transport:?}");
            assert_eq!(
                resp.header("connection"),
                None,
                "lean={lean} {transport:?} {}: {resp:?}",
                String::from_utf8_lossy(request)
            );
        }
        // A body the proxy never forwarded, which reads as a request to a live route: the
        // request is answered 502, and its body is never parsed as the next request. The
        // lean path closes; hyper may read the body away and go on, so a last request
        // shows which: it must get its own 502, never the live route's 200.
        let smuggled = b"GET /live/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
        let post = format!(
            "POST /pair HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        );
        s.write_all(&[post.as_bytes(), smuggled].concat())
            .await
            .expect("write");
        let resp = raw::read_response(&mut s, &mut buf, false, WAIT).await;
        assert_eq!(resp.map(|r| r.status), Ok(502), "lean={lean} {transport:?}");
        let _ = s
            .write_all(b"GET /one HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await;
        let next = raw::read_response(&mut s, &mut buf, false, WAIT).await;
        if lean {
            assert_eq!(
                next.map(|r| r.status),
                Err(ReadError::Closed),
                "{transport:?}"
            );
        } else {
            assert!(
                matches!(next, Err(ReadError::Closed))
                    || next.as_ref().is_ok_and(|r| r.status == 502),
                "{transport:?}: {next:?}"
            );
        }
        let hits = live.received.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            hits, 0,
            "lean={lean} {transport:?}: the body went upstream as a request"
        );
        let m = running.proxy.metrics_text();
        assert!(m.contains("tailwater_endpoint_ejections_total"), "{m}");
        running.shutdown(WAIT).await;
    }
}
