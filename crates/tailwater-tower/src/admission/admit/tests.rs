use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_core::rate::{DirectLimiter, Quota};

use super::*;
use crate::admission::{OnStoreError, RateVerdict, TierPolicy, rate_verdict};

/// Records what admission told it, in order.
#[derive(Default)]
struct Log(Vec<String>);

impl AdmitObserver for Log {
    fn tier(&mut self, tier: Criticality) {
        self.0.push(format!("tier {}", tier.as_str()));
    }

    fn refused(&mut self, refusal: &Refusal, tier: Criticality, _: Option<Duration>) {
        self.0
            .push(format!("refused {} {}", refusal.reason(), tier.as_str()));
    }

    fn admitted(&mut self, info: &AdmittedInfo, _: Option<Duration>) {
        self.0
            .push(format!("admitted {} {}", info.tier.as_str(), info.limit));
    }
}

/// A rate limit of one request per minute, counting how often it is asked.
struct OnePerMinute {
    limiter: DirectLimiter,
    asked: AtomicUsize,
}

impl<V: ?Sized> RateLimits<V> for OnePerMinute {
    async fn check(&self, _: &V, _: Criticality, _: &Arrival) -> Option<Refusal> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        match rate_verdict(Ok(self.limiter.check()), OnStoreError::FailOpen, None) {
            RateVerdict::Reject(r) => Some(Refusal::rate_limited(r)),
            _ => None,
        }
    }
}

fn admission(limit: usize) -> Admission {
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(limit).expect("limit"))
        .build()
        .expect("limiter");
    Admission::new(limiter)
        .with_tier_policy(
            TierPolicy::new()
                .ceiling(Criticality::Critical)
                .trust(["10.0.0.0/8".parse().expect("net")]),
        )
        .with_max_body(Some(10))
}

fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request")
}

/// The steps run in order and stop at the first refusal: the body cap before the spent
/// deadline, the deadline before the rate limits, the rate limits before the limiter;
/// the tier is capped for an outside client and kept for a trusted one.
#[tokio::test]
async fn the_steps_run_in_order_and_stop_at_the_first_refusal() {
    let a = admission(1);
    let rates = OnePerMinute {
        limiter: DirectLimiter::new(Quota::per_minute(1).expect("quota")),
        asked: AtomicUsize::new(0),
    };
    let outside = Arrival::new(Some("192.0.2.1".parse().expect("ip")), Instant::now());
    let trusted = Arrival::new(Some("10.1.2.3".parse().expect("ip")), Instant::now());

    let mut log = Log::default();
    let big_and_late = request(&[
        ("content-length", "11"),
        ("grpc-timeout", "0m"),
        ("x-criticality", "critical_plus"),
    ]);
    let r = a.admit(&big_and_late, &outside, &rates, &mut log).await;
    assert!(matches!(r, Err(Refusal::BodyTooLarge)));
    assert_eq!(log.0, ["tier critical", "refused body_too_large critical"]);

    let mut log = Log::default();
    let late = request(&[("grpc-timeout", "0m"), ("x-criticality", "critical_plus")]);
    let r = a.admit(&late, &trusted, &rates, &mut log).await;
    assert!(matches!(r, Err(Refusal::DeadlineExceeded)));
    assert_eq!(
        log.0,
        [
            "tier critical_plus",
            "refused deadline_exceeded critical_plus"
        ]
    );
    assert_eq!(rates.asked.load(Ordering::Relaxed), 0, "refused before");

    let mut log = Log::default();
    let first = a
        .admit(&request(&[]), &outside, &rates, &mut log)
        .await
        .expect("admitted");
    assert_eq!(log.0, ["tier critical", "admitted critical 1"]);
    assert_eq!(a.limiter().in_flight(), 1);

    let mut log = Log::default();
    let r = a.admit(&request(&[]), &outside, &rates, &mut log).await;
    let Err(refusal @ Refusal::RateLimited { .. }) = r else {
        panic!("rate limited: {r:?}");
    };
    assert_eq!(refusal.response(false).status(), 429);
    assert_eq!(rates.asked.load(Ordering::Relaxed), 2);
    drop(first);
    assert_eq!(a.limiter().in_flight(), 0, "the ticket settles on drop");
}

/// A full limiter sheds (503 naming the reason); without rate limits the step is skipped.
#[tokio::test]
async fn a_full_limiter_sheds_with_its_reason() {
    let a = admission(1);
    let arrival = Arrival::new(None, Instant::now());
    let held = a
        .admit(&request(&[]), &arrival, &NoRateLimits, &mut ())
        .await
        .expect("admitted");
    let mut log = Log::default();
    let r = a
        .admit(&request(&[]), &arrival, &NoRateLimits, &mut log)
        .await;
    let Err(refusal @ Refusal::Shed(_)) = r else {
        panic!("shed: {r:?}");
    };
    assert_eq!(log.0, ["tier critical", "refused limit_reached critical"]);
    let resp = refusal.response(false);
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-tailwater-rejection"], "limit_reached");
    let grpc = refusal.response(true);
    assert_eq!(grpc.headers()["grpc-status"], "14");
    drop(held);
}
