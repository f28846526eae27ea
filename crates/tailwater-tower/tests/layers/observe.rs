//! Metrics names and labels, and the tracing fields, captured in process.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_tower::ConcurrencyLayer;
use tower::{Layer, Service, service_fn};

use crate::support::{full, poll_once, request};

/// Records the name and labels of every metric touched.
#[derive(Debug, Default, Clone)]
struct Keys(Arc<Mutex<BTreeSet<String>>>);

struct Noop;
impl CounterFn for Noop {
    fn increment(&self, _: u64) {}
    fn absolute(&self, _: u64) {}
}
impl GaugeFn for Noop {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}
impl HistogramFn for Noop {
    fn record(&self, _: f64) {}
}

impl Keys {
    fn note(&self, key: &Key) {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        self.0
            .lock()
            .unwrap()
            .insert(format!("{}{{{}}}", key.name(), labels.join(",")));
    }
}

impl Recorder for Keys {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.note(key);
        Counter::from_arc(Arc::new(Noop))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.note(key);
        Gauge::from_arc(Arc::new(Noop))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.note(key);
        Histogram::from_arc(Arc::new(Noop))
    }
}

/// A writer for the fmt subscriber that keeps everything.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn decisions_emit_tailwater_metrics_and_tracing_fields() {
    let keys = Keys::default();
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let buf = buf.clone();
            move || buf.clone()
        })
        .finish();

    let limiter = Limiter::new(Fixed::new(1).unwrap());
    let mut svc = ConcurrencyLayer::new(limiter.clone())
        .route("checkout")
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(full("ok")))
        }));

    metrics::with_local_recorder(&keys, || {
        tracing::subscriber::with_default(subscriber, || {
            // The service_fn future is ready at once: no runtime needed.
            let mut admitted = Box::pin(svc.call(request(&[])));
            let std::task::Poll::Ready(Ok(res)) = poll_once(&mut admitted) else {
                panic!("ready");
            };
            let mut shed = Box::pin(svc.call(request(&[])));
            let std::task::Poll::Ready(Ok(rej)) = poll_once(&mut shed) else {
                panic!("ready");
            };
            assert_eq!(rej.status(), 503);
            drop(res); // ends the first request (ignored: body dropped unread)
        });
    });

    let keys = keys.0.lock().unwrap().clone();
    for want in [
        "tailwater_decisions_total{mechanism=concurrency,decision=admitted,reason=none,tier=critical,route=checkout}",
        "tailwater_decisions_total{mechanism=concurrency,decision=rejected,reason=limit_reached,tier=critical,route=checkout}",
        // The vocabulary shared with the proxy (tailwater_core::vocabulary).
        "tailwater_requests_total{route=checkout,outcome=cancelled,reason=client_gone,tier=critical}",
        "tailwater_requests_total{route=checkout,outcome=shed,reason=limit_reached,tier=critical}",
        "tailwater_limiter_samples_total{route=checkout,outcome=ignored}",
        "tailwater_request_duration_seconds{route=checkout,outcome=cancelled}",
        "tailwater_limiter_limit{route=checkout,algorithm=static}",
        "tailwater_limiter_in_flight{route=checkout,algorithm=static}",
        "tailwater_limiter_queue_depth{route=checkout,algorithm=static}",
    ] {
        assert!(keys.contains(want), "missing {want}; got {keys:#?}");
    }

    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("decision=\"rejected\"") && log.contains("rejection_reason=\"limit_reached\""),
        "{log}"
    );
    assert!(log.contains("decision=\"admitted\""), "{log}");
}

#[test]
fn rate_limit_decisions_are_counted() {
    use tailwater_core::rate::{KeyedLimiter, MemoryStore, Quota};
    use tailwater_tower::RateLimitLayer;
    use tailwater_tower::rate_limit::PathKey;

    let keys = Keys::default();
    let quota = Quota::per_minute(1).unwrap();
    let store = MemoryStore::new(KeyedLimiter::<String>::builder(quota).build().unwrap());
    let mut svc = RateLimitLayer::new(store, quota, PathKey)
        .route("api")
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(full("ok")))
        }));
    metrics::with_local_recorder(&keys, || {
        for want in [200, 429] {
            let mut fut = Box::pin(svc.call(request(&[])));
            let std::task::Poll::Ready(Ok(res)) = poll_once(&mut fut) else {
                panic!("ready");
            };
            assert_eq!(res.status(), want);
        }
    });
    let keys = keys.0.lock().unwrap().clone();
    for want in [
        "tailwater_decisions_total{mechanism=rate_limit,decision=admitted,reason=none,tier=critical,route=api}",
        "tailwater_decisions_total{mechanism=rate_limit,decision=rejected,reason=rate_exceeded,tier=critical,route=api}",
        "tailwater_requests_total{route=api,outcome=rate_limited,reason=rate_exceeded,tier=critical}",
    ] {
        assert!(keys.contains(want), "missing {want}; got {keys:#?}");
    }
}

#[test]
fn burn_rates_count_drops_and_rejections_and_export_gauges() {
    use http_body_util::BodyExt as _;
    use tailwater_core::clock::ManualClock;
    use tailwater_tower::burn::BurnRates;

    let keys = Keys::default();
    let clock = ManualClock::new();
    clock.advance(std::time::Duration::from_secs(3600));
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(1).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let burn = Arc::new(BurnRates::new(99.0).unwrap());
    let mut svc = ConcurrencyLayer::new(limiter)
        .burn_rates(Arc::clone(&burn))
        .route("checkout")
        .layer(service_fn(|req: Request<()>| async move {
            let status = if req.uri().path() == "/fail" {
                500
            } else {
                200
            };
            let mut res = Response::new(full("ok"));
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        }));

    metrics::with_local_recorder(&keys, || {
        let mut call = |path: &str| {
            let mut req = request(&[]);
            *req.uri_mut() = path.parse().unwrap();
            let mut fut = Box::pin(svc.call(req));
            let std::task::Poll::Ready(Ok(res)) = poll_once(&mut fut) else {
                panic!("ready");
            };
            res
        };
        // A success and a 500, each read to the end (the outcome is known when the body ends).
        for path in ["/ok", "/fail"] {
            let res = call(path);
            let mut body = Box::pin(res.into_body().collect());
            assert!(poll_once(&mut body).is_ready());
        }
        // A rejection: the only permit is held by an unfinished response.
        let held = call("/ok");
        assert_eq!(call("/ok").status(), 503);
        drop(held); // body dropped unread: ignored, not counted
    });

    let snap = burn.snapshot(std::time::Duration::from_secs(3600));
    let five = snap.windows[0];
    assert_eq!(
        (five.total, five.bad),
        (3, 2),
        "success, 500 and 503; the dropped body is not counted"
    );
    assert!((five.burn_rate - (2.0 / 3.0) / 0.01).abs() < 1e-9);
    let keys = keys.0.lock().unwrap().clone();
    for want in [
        "tailwater_slo_burn_rate{route=checkout,window=5m}",
        "tailwater_slo_burn_rate{route=checkout,window=30d}",
        "tailwater_slo_error_budget_remaining{route=checkout}",
    ] {
        assert!(keys.contains(want), "missing {want}; got {keys:#?}");
    }
}
