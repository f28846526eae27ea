//! Per-request overhead of the layers, side by side with tower's own `ConcurrencyLimit`
//! (which frees its permit when the response future resolves, before the body).
//!
//! Every service here answers at once, so a call is polled to completion with a no-op
//! waker: what is measured is the layer's own work (admission, response wrapping, release
//! at end of body, metrics handles with no recorder installed).
//!
//! `cargo bench -p tailwater-tower --bench layers`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_core::rate::{KeyedLimiter, MemoryStore, Quota};
use tailwater_tower::rate_limit::PathKey;
use tailwater_tower::{ConcurrencyLayer, CriticalityLayer, RateLimitLayer};
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service};

fn main() {
    divan::main();
}

fn ok(_req: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

/// One request through `svc`, body drained, everything ready at once.
fn one<S, B>(svc: &mut S)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(Request::new(())));
    let Poll::Ready(Ok(res)) = fut.poll(&mut cx) else {
        panic!("not ready");
    };
    let mut body = pin!(res.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        divan::black_box(frame.unwrap());
    }
}

#[divan::bench]
fn baseline_service_fn(b: divan::Bencher<'_, '_>) {
    let mut svc = tower::service_fn(ok);
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tower_concurrency_limit(b: divan::Bencher<'_, '_>) {
    let mut svc = ConcurrencyLimitLayer::new(1000).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_concurrency(b: divan::Bencher<'_, '_>) {
    let limiter = Limiter::new(Fixed::new(1000).unwrap());
    let mut svc = ConcurrencyLayer::new(limiter).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_criticality_and_concurrency(b: divan::Bencher<'_, '_>) {
    let limiter = Limiter::new(Fixed::new(1000).unwrap());
    let mut svc =
        CriticalityLayer::new().layer(ConcurrencyLayer::new(limiter).layer(tower::service_fn(ok)));
    b.bench_local(|| one(&mut svc));
}

#[divan::bench]
fn tailwater_rate_limit_memory_store(b: divan::Bencher<'_, '_>) {
    let quota = Quota::per_second(1_000_000_000).unwrap();
    let store = MemoryStore::new(KeyedLimiter::<String>::builder(quota).build().unwrap());
    let mut svc = RateLimitLayer::new(store, quota, PathKey).layer(tower::service_fn(ok));
    b.bench_local(|| one(&mut svc));
}

/// The core limiter alone (acquire + success), for reference: what the layer adds is the
/// difference.
#[divan::bench]
fn core_limiter_acquire_success(b: divan::Bencher<'_, '_>) {
    let limiter = Limiter::new(Fixed::new(1000).unwrap());
    b.bench_local(|| limiter.try_acquire().unwrap().success());
}
