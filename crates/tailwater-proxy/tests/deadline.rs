//! Client deadlines (issue 12, item 5) on both engines: `grpc-timeout` and a configured
//! header; refused when spent, the queue wait and the upstream wait cut to the budget,
//! the remaining budget forwarded, and a deadline that runs out never counted against the
//! upstream.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::raw::{echo_target, recorder};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tailwater_tower::edge::parse_grpc_timeout;
use tokio::sync::Notify;

/// Sends `GET /` with `headers`; returns the status, the response headers and the body.
async fn send(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, Bytes) {
    let mut req = Request::get(format!("http://{addr}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    let resp = client().request(req).await.expect("answered");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

fn route(lean: bool, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "[server]\nlean_http1 = {lean}\n[[route]]\nupstream = \"http://{upstream}\"\ndeadline_header = \"x-request-timeout\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_is_refused_without_reaching_the_upstream() {
    let rec = recorder(1, echo_target()).await;
    for lean in [true, false] {
        let running = start_proxy(config(&route(lean, rec.addrs[0], ""))).await;
        let grpc = [("content-type", "application/grpc"), ("grpc-timeout", "0m")];
        let (status, headers, _) = send(running.addr, &grpc).await;
        assert_eq!(
            status, 200,
            "lean={lean}: gRPC answers in trailers-only form"
        );
        assert_eq!(headers["grpc-status"], "4", "DEADLINE_EXCEEDED");
        let (status, _, body) = send(running.addr, &[("x-request-timeout", "0")]).await;
        assert_eq!(status, 504, "lean={lean}");
        assert_eq!(&body[..], b"deadline exceeded\n");
        // A malformed budget is no budget (as tailwater-tower reads it).
        let (status, _, _) = send(running.addr, &[("grpc-timeout", "soon")]).await;
        assert_eq!(status, 200);
        let m = running.proxy.metrics_text();
        assert!(
            m.contains("outcome=\"rejected\",reason=\"deadline_exceeded\",tier=\"critical\"} 2"),
            "{m}"
        );
        running.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(rec.seen().len(), 2, "only the requests with a budget left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remaining_budget_is_forwarded_in_place_of_the_received_one() {
    let rec = recorder(1, echo_target()).await;
    for lean in [true, false] {
        let running = start_proxy(config(&route(lean, rec.addrs[0], ""))).await;
        let (status, _, _) = send(
            running.addr,
            &[("grpc-timeout", "5S"), ("x-request-timeout", "3000")],
        )
        .await;
        assert_eq!(status, 200);
        let seen = rec.seen().pop().expect("forwarded");
        let grpc = seen.header("grpc-timeout").and_then(parse_grpc_timeout);
        let grpc = grpc.expect("grpc-timeout forwarded");
        // The request's deadline is the earlier of the two: both fields carry what is
        // left of it.
        assert!(
            grpc < Duration::from_secs(3) && grpc > Duration::from_secs(2),
            "lean={lean}: {grpc:?}"
        );
        let ms: u64 = seen
            .header("x-request-timeout")
            .and_then(|v| v.parse().ok())
            .expect("header forwarded");
        assert!(ms < 3000 && ms > 2000, "lean={lean}: {ms}");
        let n = seen
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("grpc-timeout"))
            .count();
        assert_eq!(n, 1, "replaced, not added");
        running.shutdown(Duration::from_secs(5)).await;
    }
    // Without `deadline_header` the header is the client's own business: passed as is.
    let running = start_proxy(config(&format!(
        "[[route]]\nupstream = \"http://{}\"\n",
        rec.addrs[0]
    )))
    .await;
    send(running.addr, &[("x-request-timeout", "3000")]).await;
    let seen = rec.seen().pop().expect("forwarded");
    assert_eq!(seen.header("x-request-timeout"), Some("3000"));
    running.shutdown(Duration::from_secs(5)).await;
}

/// An upstream slower than the client's budget: answered when the budget runs out (not
/// after `upstream.request_timeout`), as a deadline, never fed to the limit as a drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_runs_out_upstream_is_not_the_upstream_s_failure() {
    let release = Arc::new(Notify::new());
    let slow = gated_backend(Arc::clone(&release)).await;
    for lean in [true, false] {
        let running = start_proxy(config(&route(lean, slow.addr, ""))).await;
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            send(running.addr, &[("x-request-timeout", "150")]),
        )
        .await
        .expect("answered at the deadline, not after request_timeout (30 s)");
        assert_eq!(answered.0, 504, "lean={lean}");
        assert_eq!(&answered.2[..], b"deadline exceeded\n");
        let grpc = [
            ("content-type", "application/grpc"),
            ("grpc-timeout", "150m"),
        ];
        let (status, headers, _) = send(running.addr, &grpc).await;
        assert_eq!(
            (status, &headers["grpc-status"]),
            (200, &"4".parse().expect("value"))
        );
        let m = running.proxy.metrics_text();
        assert!(
            m.contains("tailwater_limiter_samples_total{route=\"default\",outcome=\"dropped\"} 0"),
            "lean={lean}: {m}"
        );
        assert!(m.contains("reason=\"deadline_exceeded\""), "{m}");
        running.shutdown(Duration::from_secs(5)).await;
    }
    release.notify_waiters();
}

/// The queue wait is cut to the budget: with `max_wait = 10s`, a request with 100 ms
/// left is answered (shed) within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_wait_is_cut_to_the_budget() {
    let release = Arc::new(Notify::new());
    let held = gated_backend(Arc::clone(&release)).await;
    let extra = "[route.limit]\nalgorithm = \"static\"\nlimit = 1\n[route.queue]\ndiscipline = \"fifo\"\nmax_wait = \"10s\"\n";
    for lean in [true, false] {
        let running = start_proxy(config(&route(lean, held.addr, extra))).await;
        let addr = running.addr;
        let first = tokio::spawn(async move { send(addr, &[]).await });
        eventually(Duration::from_secs(5), || {
            held.received.load(std::sync::atomic::Ordering::SeqCst) > 0
        })
        .await;
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            send(running.addr, &[("x-request-timeout", "100")]),
        )
        .await
        .expect("answered within the budget, not after the 10 s queue wait");
        assert_eq!(answered.0, 503, "lean={lean}");
        release.notify_waiters();
        assert_eq!(first.await.expect("first").0, 200);
        held.received.store(0, std::sync::atomic::Ordering::SeqCst);
        running.shutdown(Duration::from_secs(5)).await;
    }
}
