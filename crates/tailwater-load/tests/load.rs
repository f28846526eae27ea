//! End-to-end tests over real sockets on 127.0.0.1: the load generator against the synthetic
//! backend. Each test is bounded (a few seconds of load at most).

use std::num::NonZeroUsize;
use std::time::Duration;

use tailwater_load::backend::{Backend, BackendConfig, Stall};
use tailwater_load::hgrm::parse_hgrm;
use tailwater_load::{Config, ErrorKind, HeaderMix, Percentiles, Schedule};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Running {
    url: String,
    backend: Backend,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<tailwater_load::backend::BackendStats>>,
}

impl Running {
    async fn stop(mut self) -> tailwater_load::backend::BackendStats {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("backend drains within its deadline")
            .expect("backend task")
            .expect("backend serve")
    }
}

async fn start(config: BackendConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let backend = Backend::new(config);
    let (tx, rx) = oneshot::channel::<()>();
    let b = backend.clone();
    let task = tokio::spawn(async move {
        b.serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        url,
        backend,
        stop: Some(tx),
        task,
    }
}

fn workers(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

async fn run(config: Config) -> tailwater_load::Report {
    tokio::time::timeout(
        Duration::from_secs(60),
        tailwater_load::run(config, std::future::pending()),
    )
    .await
    .expect("run ends within its bound")
    .expect("run succeeds")
}

/// wrk2's README demo in miniature: a target that stalls for 1 s under a fixed request rate.
/// The corrected p99.9 shows the stall; the uncorrected one (what a closed-loop tool reports)
/// does not, because only the two requests on the wire during the stall saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_shows_in_corrected_p99_9_not_in_uncorrected() {
    let mut bc = BackendConfig::new(workers(64), Duration::ZERO);
    bc.stalls = vec![Stall::parse("1s@1500ms").unwrap()];
    let backend = start(bc).await;
    let schedule = Schedule::constant(2000.0, Duration::from_secs(4)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.connections = NonZeroUsize::new(2).unwrap();
    let report = run(config).await;
    backend.stop().await;
    let c = Percentiles::of(&report.total.corrected);
    let u = Percentiles::of(&report.total.uncorrected);
    println!(
        "CO demo: {} requests, corrected p99={}us p99.9={}us max={}us; uncorrected p99={}us p99.9={}us max={}us",
        report.total.requests, c.p99, c.p99_9, c.max, u.p99, u.p99_9, u.max
    );
    assert_eq!(report.total.status_count(200), 8000);
    assert!(
        c.p99_9 >= 700_000,
        "corrected p99.9 {}us should show the 1 s stall",
        c.p99_9
    );
    assert!(
        c.p99 >= 500_000,
        "about a quarter of the requests were delayed: p99 {}",
        c.p99
    );
    assert!(
        u.p99_9 < 100_000,
        "uncorrected p99.9 {}us should not show the stall",
        u.p99_9
    );
    assert!(
        u.max >= 700_000,
        "the requests on the wire did see the stall: max {}",
        u.max
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_json_hgrm_html_and_hdr_log() {
    let backend = start(BackendConfig::new(workers(16), Duration::from_millis(2))).await;
    let schedule = Schedule::parse("200:1s,ramp:200..400:1s").unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.interval = Duration::from_millis(250);
    let dir = std::env::temp_dir().join(format!("tailwater-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("run.hlog");
    config.hdr_log = Some(log_path.clone());
    let report = run(config).await;
    let stats = backend.stop().await;
    assert_eq!(report.total.status_count(200), 500);
    assert_eq!(stats.completed, 500);
    assert_eq!(report.phases.len(), 2);
    assert_eq!(report.phases[0].stats.requests, 200);
    assert_eq!(report.phases[1].stats.requests, 300);
    assert!(report.intervals.len() >= 8, "{}", report.intervals.len());
    assert!((report.achieved_rate - report.target_rate).abs() / report.target_rate < 0.1);

    // JSON: the documented keys.
    let json = report.to_json();
    for key in [
        "target_rate",
        "achieved_rate",
        "requests",
        "status",
        "errors",
        "latency_us",
        "send_lag_us",
        "phases",
        "intervals",
        "tiers",
        "scheduled",
        "delayed_by_cap",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for kind in ["corrected", "uncorrected"] {
        for p in ["p50", "p90", "p99", "p99_9", "p99_99", "max"] {
            assert!(
                json["latency_us"][kind][p].is_u64(),
                "latency_us.{kind}.{p}"
            );
            assert!(json["send_lag_us"][p].is_u64(), "send_lag_us.{p}");
        }
    }
    assert_eq!(json["status"]["200"], 500);
    assert_eq!(json["requests"], 500);

    // .hgrm parses back and matches the histogram.
    let lines = parse_hgrm(&report.hgrm()).unwrap();
    let h = &report.total.corrected;
    assert_eq!(lines.last().unwrap().total_count, h.len());
    for l in &lines {
        let value_us = (l.value * 1000.0).round() as u64;
        let at = |q: f64| h.highest_equivalent(h.value_at_quantile(q.clamp(0.0, 1.0)));
        assert!(at(l.quantile - 1e-6) <= value_us && value_us <= at(l.quantile + 1e-6));
        assert_eq!(l.total_count, h.count_between(0, value_us));
    }

    // HTML: self-contained, with its three figures and their series.
    let html = tailwater_load::html::render(&report);
    for needle in [
        "id=\"latency-over-time\"",
        "id=\"throughput-over-time\"",
        "id=\"percentile-spectrum\"",
        "data-series=\"corrected p99\"",
        "data-series=\"corrected p99.9\"",
        "data-series=\"uncorrected p99\"",
        "data-series=\"achieved rate\"",
        "data-series=\"target rate\"",
        "data-series=\"status 200\"",
        "data-series=\"corrected\"",
        "data-series=\"uncorrected\"",
        "id=\"report-data\"",
        concat!("tailwater ", env!("CARGO_PKG_VERSION"), " · started 20"),
    ] {
        assert!(html.contains(needle), "HTML lacks {needle}");
    }
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    // Every series has points.
    assert!(!html.contains("points=\"\""));

    // The HdrHistogram interval log reads back with the crate's own reader.
    let log = std::fs::read(&log_path).unwrap();
    let mut total = 0;
    let mut deser = hdrhistogram::serialization::Deserializer::new();
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log) {
        if let hdrhistogram::serialization::interval_log::LogEntry::Interval(ilh) = entry.unwrap()
            && ilh.tag().is_none()
        {
            let bytes = base64_decode(ilh.encoded_histogram());
            let hist: hdrhistogram::Histogram<u64> =
                deser.deserialize(&mut bytes.as_slice()).unwrap();
            total += hist.len();
        }
    }
    assert_eq!(total, 500);
    let _ = std::fs::remove_dir_all(&dir);
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = T.iter().position(|t| *t == c).unwrap() as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mix_gives_a_report_per_tier() {
    let backend = start(BackendConfig::new(workers(8), Duration::ZERO)).await;
    let schedule = Schedule::parse("500:1s,1000:1s").unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.header_mix = Some(HeaderMix::parse("x-criticality: critical=3,sheddable=1").unwrap());
    let report = run(config).await;
    backend.stop().await;
    assert_eq!(report.tiers.len(), 2);
    assert_eq!(report.tiers[0].value, "critical");
    let sum: u64 = report.tiers.iter().map(|t| t.stats.requests).sum();
    assert_eq!(sum, 1500);
    let crit = report.tiers[0].stats.requests as f64 / 1500.0;
    assert!((crit - 0.75).abs() < 0.05, "{crit}");
    for p in &report.phases {
        assert_eq!(p.tiers.len(), 2);
        assert_eq!(
            p.tiers.iter().map(|t| t.stats.requests).sum::<u64>(),
            p.stats.requests
        );
    }
    assert_eq!(report.to_json()["tiers"][1]["value"], "sheddable");
}

/// Overload against a small backend: the bounded queue answers 503, client timeouts leave
/// wasted work behind, and the in-flight bound's lateness is counted, never hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_counted_not_hidden() {
    let mut bc = BackendConfig::new(workers(2), Duration::from_millis(20));
    bc.queue = 8;
    let backend = start(bc).await;
    // Capacity is 100/s; offer 400/s.
    let schedule = Schedule::constant(400.0, Duration::from_secs(1)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.timeout = Duration::from_millis(60);
    let report = run(config).await;
    let b = backend.backend.stats();
    let stats = backend.stop().await;
    assert_eq!(report.total.requests, 400);
    assert!(
        report.total.status_count(503) > 0,
        "{:?}",
        report.total.status
    );
    assert!(
        report.total.error_kind_count(ErrorKind::Timeout) > 0,
        "{:?}",
        report.total.errors
    );
    assert!(stats.rejected > 0 && stats.wasted > 0, "{stats:?}");
    assert!(stats.busy >= Duration::from_millis(20) * stats.completed as u32);
    assert!(b.received >= stats.completed);
    assert!(report.achieved_rate < report.target_rate);

    // The in-flight bound: 5 outstanding at most against a slow backend.
    let backend = start(BackendConfig::new(workers(1), Duration::from_millis(50))).await;
    let schedule = Schedule::constant(200.0, Duration::from_millis(500)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.max_in_flight = NonZeroUsize::new(5).unwrap();
    config.timeout = Duration::from_secs(5);
    let report = run(config).await;
    backend.stop().await;
    assert!(report.delayed_by_cap > 0, "{}", report.summary());
    assert!(
        report
            .summary()
            .contains("sent late because max in flight was reached")
    );
    assert_eq!(report.total.requests, 100);
    // Corrected latency includes the wait behind the cap.
    let c = Percentiles::of(&report.total.corrected);
    assert!(c.max > 1_000_000, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_connection_errors() {
    let backend = start(BackendConfig::new(workers(8), Duration::ZERO)).await;
    let schedule = Schedule::constant(300.0, Duration::from_millis(500)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.http2 = true;
    config.connections = NonZeroUsize::new(2).unwrap();
    config.method = http::Method::POST;
    config.body = bytes::Bytes::from_static(b"hello");
    let report = run(config).await;
    let stats = backend.stop().await;
    assert_eq!(report.total.status_count(200), 150, "{:?}", report.total);
    assert_eq!(stats.connections, 2);

    // Nothing listens here: every request is a connect error, reported by kind.
    let refused = tailwater_test::port::RefusedPort::new().expect("a loopback port");
    let url = format!("http://{}/", refused.addr());
    let schedule = Schedule::constant(100.0, Duration::from_millis(200)).unwrap();
    let config = Config::new(&url, schedule).unwrap();
    let report = run(config).await;
    assert_eq!(report.total.error_kind_count(ErrorKind::Connect), 20);
    assert_eq!(report.to_json()["errors"]["connect"], 20);
}

#[tokio::test]
async fn bad_config_names_the_field() {
    let schedule = Schedule::constant(1.0, Duration::from_secs(1)).unwrap();
    assert_eq!(
        Config::new("ftp://x/", schedule.clone())
            .unwrap_err()
            .field(),
        "url"
    );
    assert_eq!(
        Config::new("nope", schedule.clone()).unwrap_err().field(),
        "url"
    );
    let mut c = Config::new("http://127.0.0.1:1/", schedule).unwrap();
    c.timeout = Duration::ZERO;
    match tailwater_load::run(c, std::future::pending()).await {
        Err(tailwater_load::LoadError::Config(e)) => assert_eq!(e.field(), "timeout"),
        other => panic!("{other:?}"),
    }
}

/// A server that closes every connection after one response: the generator reconnects before
/// sending (a closed keep-alive connection is not a failed request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_the_server_closes_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    let schedule = Schedule::constant(100.0, Duration::from_millis(500)).unwrap();
    let mut config = Config::new(&url, schedule).unwrap();
    config.connections = NonZeroUsize::new(2).unwrap();
    let report = run(config).await;
    server.abort();
    assert_eq!(report.total.status_count(200), 50, "{:?}", report.total);
    assert_eq!(report.total.error_count(), 0, "{:?}", report.total.errors);
}

/// `max_requests` sends exactly that many, and the report says what produced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_sends_exactly_that_many_and_reports_its_provenance() {
    let backend = start(BackendConfig::new(workers(8), Duration::ZERO)).await;
    // 37 requests at 500/s: a schedule of 37.5 spacings, capped at 37.
    let schedule = Schedule::constant(500.0, Duration::from_secs_f64(37.5 / 500.0)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.max_requests = Some(37);
    let report = run(config).await;
    let stats = backend.stop().await;
    assert_eq!(report.scheduled, 37);
    assert_eq!(report.total.status_count(200), 37);
    assert_eq!(stats.completed, 37);
    let json = report.to_json();
    assert_eq!(json["tailwater"]["version"], tailwater_load::VERSION);
    let started = json["tailwater"]["started_at"].as_str().unwrap();
    assert!(
        started.len() == 20 && started.ends_with('Z') && started.starts_with("20"),
        "{started}"
    );
}

/// Overloaded, the phase rates count what completed during each phase: the backlog drained
/// after the schedule does not inflate them, so they agree with the run's achieved rate.
/// The latency headline is the successes'; 503 answers have their own row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_rates_are_honest_and_rejections_are_apart() {
    let mut bc = BackendConfig::new(workers(2), Duration::from_millis(10));
    bc.queue = 4;
    let backend = start(bc).await;
    // Capacity 200/s; offer 600/s for 1 s in one phase.
    let schedule = Schedule::constant(600.0, Duration::from_secs(1)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.connections = NonZeroUsize::new(50).unwrap();
    config.timeout = Duration::from_secs(2);
    let report = run(config).await;
    backend.stop().await;
    let phase = &report.phases[0];
    // Every request of the phase got an answer (200 or 503), some after the phase ended...
    assert_eq!(phase.stats.responses(), 600, "{:?}", phase.stats);
    // ...but the phase's rate is what completed during it, equal to the run's.
    assert!(phase.completed <= 600);
    assert!(
        (phase.achieved_rate() - report.achieved_rate).abs() < 1.0,
        "phase {} vs run {}",
        phase.achieved_rate(),
        report.achieved_rate
    );
    // The goodput cannot exceed the backend's capacity (2 workers x 10 ms) by much.
    assert!(phase.goodput() <= 230.0, "goodput {}", phase.goodput());
    let rejected = report.total.rejections();
    assert!(rejected > 0, "{:?}", report.total.status);
    assert_eq!(report.total.rejected.len(), rejected);
    assert_eq!(report.total.success.len(), report.total.successes());
    let summary = report.summary();
    assert!(summary.contains("success (2xx)"), "{summary}");
    assert!(summary.contains("rejected (429/503)"), "{summary}");
    assert!(summary.contains("Success latency histogram"), "{summary}");
    assert!(
        summary.contains(&format!("shed 503 {rejected} ")),
        "{summary}"
    );
}

/// `--drain` bounds the wait after the schedule; what is still outstanding is abandoned,
/// counted and said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_bounds_the_wait_after_the_schedule() {
    let backend = start(BackendConfig::new(workers(1), Duration::from_millis(400))).await;
    let schedule = Schedule::constant(20.0, Duration::from_millis(500)).unwrap();
    let mut config = Config::new(&backend.url, schedule).unwrap();
    config.timeout = Duration::from_secs(10);
    config.drain = Some(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let report = run(config).await;
    let took = started.elapsed();
    backend.stop().await;
    // 10 requests, one served per 400 ms: most are still outstanding 200 ms after the end.
    assert!(report.abandoned >= 5, "abandoned {}", report.abandoned);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        report.summary().contains("abandoned"),
        "{}",
        report.summary()
    );
}

/// Thresholds judge the successes' latency and the shares of outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_judge_a_real_run() {
    let backend = start(BackendConfig::new(workers(8), Duration::from_millis(5))).await;
    let schedule = Schedule::constant(200.0, Duration::from_millis(500)).unwrap();
    let config = Config::new(&backend.url, schedule).unwrap();
    let report = run(config).await;
    backend.stop().await;
    let verdicts =
        tailwater_load::Thresholds::parse("p50>=5ms,p99<5s,errors<1%,success>=99%,rate>10,p99<1ms")
            .unwrap()
            .check(&report);
    let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
    assert_eq!(
        passed,
        [true, true, true, true, true, false],
        "{verdicts:?}"
    );
}

/// A TLS server on 127.0.0.1:0 with the test certificate (`tailwater_test::tls_dir()`: a CA
/// and a leaf for `localhost` and 127.0.0.1), HTTP/1.1 and h2 by ALPN; counts requests per HTTP version.
async fn tls_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>,
) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tailwater_test::tls_dir();
    let dir = dir.display();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]> = std::sync::Arc::default();
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let i = usize::from(req.version() == http::Version::HTTP_2);
                        counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (addr, seen)
}

/// `https://`: HTTP/1.1 and h2 (by ALPN) against a server whose CA is given; refused (as
/// `tls` errors, not successes) when the CA is unknown; accepted with `insecure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_verifies_the_server_and_negotiates_h2() {
    let (addr, seen) = tls_server().await;
    let ca = tailwater_test::tls_dir().join("ca.pem");
    let schedule = || Schedule::constant(200.0, Duration::from_millis(250)).unwrap();
    let url = format!("https://localhost:{}/", addr.port());

    let mut config = Config::new(&url, schedule()).unwrap();
    config.tls.ca_file = Some(ca.clone());
    config.connections = NonZeroUsize::new(4).unwrap();
    let report = run(config).await;
    assert_eq!(report.total.status_count(200), 50, "{:?}", report.total);

    let mut config =
        Config::new(&format!("https://127.0.0.1:{}/", addr.port()), schedule()).unwrap();
    config.tls.ca_file = Some(ca.clone());
    config.http2 = true;
    config.connections = NonZeroUsize::new(2).unwrap();
    let report = run(config).await;
    assert_eq!(report.total.status_count(200), 50, "{:?}", report.total);
    assert_eq!(
        seen[1].load(std::sync::atomic::Ordering::Relaxed),
        50,
        "h2 requests"
    );
    assert_eq!(
        seen[0].load(std::sync::atomic::Ordering::Relaxed),
        50,
        "HTTP/1.1 requests"
    );

    // The system's roots do not know the test CA: every request is a TLS failure.
    let config = Config::new(&url, schedule()).unwrap();
    let report = run(config).await;
    assert_eq!(report.total.successes(), 0);
    assert_eq!(
        report.total.error_kind_count(ErrorKind::Tls),
        50,
        "{:?}",
        report.total.errors
    );

    let mut config = Config::new(&url, schedule()).unwrap();
    config.tls.insecure = true;
    let report = run(config).await;
    assert_eq!(report.total.status_count(200), 50);

    // A CA file that is not there names the field.
    let mut config = Config::new(&url, schedule()).unwrap();
    config.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let err = tailwater_load::run(config, std::future::pending())
        .await
        .expect_err("refused");
    match err {
        tailwater_load::LoadError::Config(e) => assert_eq!(e.field(), "cacert"),
        other => panic!("{other}"),
    }
}

/// A schedule whose peak needs more than one pacing thread (a 30 000/s burst: two threads on
/// a machine with two cores or more, one elsewhere) still sends every arrival exactly once,
/// and a count stays exact across the threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peak_split_over_pacing_threads_sends_every_arrival_once() {
    let backend = start(BackendConfig::new(workers(64), Duration::ZERO)).await;
    // 100 requests at 200/s, then 300 in a 10 ms burst at 30 000/s.
    let schedule = Schedule::parse("200:500ms,30000:10ms").expect("a valid schedule");
    let config = Config::new(&backend.url, schedule.clone()).expect("a valid config");
    let report = run(config).await;
    assert_eq!(report.scheduled, 400);
    assert_eq!(report.total.status_count(200), 400);
    let mut config = Config::new(&backend.url, schedule).expect("a valid config");
    config.max_requests = Some(333);
    let report = run(config).await;
    let stats = backend.stop().await;
    assert_eq!(report.scheduled, 333);
    assert_eq!(report.total.status_count(200), 333);
    assert_eq!(stats.completed, 733);
}
