//! 5× overload through the proxy in front of a backend of fixed capacity, with a tuned AIMD
//! limit and with the proxy's default limit.
//!
//! Backend: 4 workers × 20 ms = 200 requests/s. Offered: 1500 requests at 1000/s (5×) over
//! 1.5 s, open loop (a request is sent every millisecond whatever happened to the others).
//! The backend's capacity is also measured directly first (closed loop, 8 callers), since a
//! 20 ms timer sleep lasts a little longer than 20 ms; goodput is held to 90 % of that.
//! Checked by counting, with margins for a shared 2-core machine:
//! - every request sent gets exactly one answer (no client errors);
//! - goodput (200s per second of the run) is at least 90 % of the backend's capacity;
//! - every other answer is 503 with `Retry-After`, and none of them reached the backend
//!   (backend requests == 200s).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::time::{Instant, MissedTickBehavior};

const WORKERS: usize = 4;
const SERVICE: Duration = Duration::from_millis(20);
const SENT: usize = 1500;
const INTERVAL: Duration = Duration::from_millis(1); // 1000/s = 5 × 200/s

/// AIMD bounded around the backend's concurrency, backing off on RTTs above 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_x_overload_keeps_goodput_and_sheds_the_excess_fast() {
    five_x_overload(
        r#"[route.limit]
algorithm = "aimd"
initial_limit = 8
min_limit = 8
max_limit = 32
timeout = "50ms""#,
    )
    .await;
}

/// The proxy's default limit (no `[route.limit]`: the recommended algorithm, untuned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_x_overload_with_the_default_limit() {
    five_x_overload("").await;
}

async fn five_x_overload(limit: &str) {
    let backend = capacity_backend(WORKERS, SERVICE).await;
    let proxy = start_proxy(config(&format!(
        r#"
[[route]]
name = "svc"
upstream = "http://{}"
queue = {{ discipline = "codel", capacity = 8, max_wait = "10ms", target = "5ms", interval = "10ms" }}
{limit}
"#,
        backend.addr
    )))
    .await;
    let client = Arc::new(client());
    let addr = proxy.addr;

    // The backend's real capacity on this machine now (timer granularity and scheduling
    // make a 20 ms sleep a little longer): closed loop, 2 × WORKERS callers, direct.
    let calibration = 200usize;
    let t0 = Instant::now();
    let callers: Vec<_> = (0..2 * WORKERS)
        .map(|_| {
            let client = Arc::clone(&client);
            let backend_addr = backend.addr;
            tokio::spawn(async move {
                for _ in 0..calibration / (2 * WORKERS) {
                    let (parts, _) = get(&client, backend_addr, "/calibrate")
                        .await
                        .expect("direct request");
                    assert_eq!(parts.status, 200);
                }
            })
        })
        .collect();
    for c in callers {
        c.await.expect("calibration caller");
    }
    let measured_capacity = calibration as f64 / t0.elapsed().as_secs_f64();
    let calibrated = backend.received.load(std::sync::atomic::Ordering::SeqCst);

    let start = Instant::now();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(SENT);
    for _ in 0..SENT {
        tick.tick().await;
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = get(&client, addr, "/work").await;
            (r, t0.elapsed())
        }));
    }
    let mut ok = 0usize;
    let mut shed = 0usize;
    let mut shed_without_retry_after = 0usize;
    let mut other = 0usize;
    let mut errors = 0usize;
    let mut shed_latency = Vec::new();
    let mut ok_latency = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(Ok((Ok((parts, _)), took))) => match parts.status.as_u16() {
                200 => {
                    ok += 1;
                    ok_latency.push(took);
                }
                503 => {
                    shed += 1;
                    shed_latency.push(took);
                    if !parts.headers.contains_key("retry-after") {
                        shed_without_retry_after += 1;
                    }
                }
                _ => other += 1,
            },
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    let answered = ok + shed + other;
    let capacity = WORKERS as f64 / SERVICE.as_secs_f64();
    let goodput = ok as f64 / elapsed.as_secs_f64();
    shed_latency.sort();
    ok_latency.sort();
    let ok_at = |q: f64| {
        ok_latency
            .get(((ok_latency.len() as f64 * q) as usize).min(ok_latency.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let p50_shed = shed_latency
        .get(shed_latency.len() / 2)
        .copied()
        .unwrap_or_default();
    let backend_received = backend.received.load(std::sync::atomic::Ordering::SeqCst) - calibrated;
    let status = proxy.proxy.status();
    eprintln!(
        "overload: sent={SENT} answered={answered} ok={ok} shed={shed} other={other} errors={errors} \
         elapsed={elapsed:?} goodput={goodput:.1}/s nominal capacity={capacity:.0}/s ({:.1} %) \
         measured capacity={measured_capacity:.1}/s ({:.1} %) \
         shed p50={p50_shed:?} ok p50={:?} ok p99={:?} backend_received={backend_received} \
         limit_now={} peak_in_flight={}",
        100.0 * goodput / capacity,
        100.0 * goodput / measured_capacity,
        ok_at(0.5),
        ok_at(0.99),
        status[0].limit,
        status[0].peak_in_flight,
    );
    assert_eq!(errors, 0, "every request gets an answer");
    assert_eq!(answered, SENT, "sent = answered");
    assert_eq!(other, 0, "only 200 and 503");
    assert_eq!(shed_without_retry_after, 0, "every 503 carries Retry-After");
    assert!(
        goodput >= 0.9 * measured_capacity,
        "goodput {goodput:.1}/s < 90 % of the measured capacity {measured_capacity:.1}/s"
    );
    assert_eq!(
        backend_received, ok as u64,
        "shed requests never reach the backend"
    );
    assert!(shed > SENT / 2, "the excess is shed ({shed})");
    assert!(
        p50_shed < SERVICE,
        "a 503 does not wait on the backend (p50 {p50_shed:?})"
    );
    let metrics = proxy.proxy.metrics_text();
    assert!(metrics.contains("tailwater_requests_total{route=\"svc\",outcome=\"success\""));
    assert!(metrics.contains("outcome=\"shed\""));
    proxy.shutdown(Duration::from_secs(10)).await;
}
