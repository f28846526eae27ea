//! Limiter hot path, side by side with what a user would pick instead.
//!
//! `cargo bench -p tailwater-core --bench limiter`
//!
//! Each iteration admits one request and releases it with a success report:
//! - `tailwater_*`: `Limiter::try_acquire` + `Permit::success` on a real adaptive algorithm
//!   (with the default adaptive RTT sampling: at these rates one permit in 64 reads the
//!   clock twice and feeds its RTT; every outcome is counted; bare `Aimd` is a per-sample
//!   algorithm and is fed every permit);
//! - `tokio_semaphore`: `Semaphore::try_acquire` + drop (a fixed limit, no feedback at all);
//! - `congestion_limiter_aimd`: the `congestion-limiter` crate's `DefaultLimiter<Aimd>`
//!   `try_acquire` + `release(Success)` (its futures complete at once; polled without a
//!   runtime's scheduling overhead).
//!
//! Run with 1 thread (uncontended) and 2 threads (contended, one shared limiter).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use congestion_limiter::limiter::{DefaultLimiter, Limiter as _, Outcome as ClOutcome};
use congestion_limiter::limits::Aimd as ClAimd;
use tailwater_core::algorithm::{Aimd, Windowed};
use tailwater_core::limiter::Request;
use tailwater_core::{Criticality, Limiter, TierThresholds};

fn main() {
    divan::main();
}

/// Polls a future that is known to complete without waiting.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future did not complete at once"),
    }
}

const LIMIT: usize = 1000;

/// Runs a limiter at full speed for a moment first, as a busy service would have: its RTT
/// sampler sets its rate after about a thousand samples.
fn warm<C: tailwater_core::clock::Clock>(limiter: &Limiter<C>) {
    for _ in 0..100_000 {
        limiter.try_acquire().expect("below the limit").success();
    }
}

fn aimd() -> Aimd {
    Aimd::builder()
        .initial_limit(LIMIT)
        .min_limit(20)
        .max_limit(LIMIT)
        .build()
        .expect("valid")
}

#[divan::bench(threads = [1, 2])]
fn tailwater_aimd(bencher: divan::Bencher<'_, '_>) {
    let limiter = Limiter::new(aimd());
    warm(&limiter);
    bencher.bench(|| {
        let permit = limiter.try_acquire().expect("below the limit");
        permit.success();
    });
}

/// The limiter as `Limiter::builder().build()` gives it: the recommended algorithm
/// (corrected Gradient2 in 20–100 ms windows) and adaptive RTT sampling.
#[divan::bench(threads = [1, 2])]
fn tailwater_default(bencher: divan::Bencher<'_, '_>) {
    let limiter = Limiter::builder().build().expect("defaults are valid");
    warm(&limiter);
    bencher.bench(|| {
        let permit = limiter.try_acquire().expect("below the limit");
        permit.success();
    });
}

/// The default limiter with criticality tiers on, admitting a `Sheddable` request (the tier
/// with the lowest threshold, so the one whose admission consults the tier check most).
#[divan::bench(threads = [1, 2])]
fn tailwater_default_tiers(bencher: divan::Bencher<'_, '_>) {
    let limiter = Limiter::builder()
        .tiers(TierThresholds::default())
        .build()
        .expect("defaults are valid");
    warm(&limiter);
    let request = Request::new().tier(Criticality::Sheddable);
    bencher.bench(|| {
        let permit = limiter.try_acquire_with(request).expect("below the limit");
        permit.success();
    });
}

/// The same with an owned permit (what a tower layer or a proxy holds across `.await`s).
#[divan::bench(threads = [1, 2])]
fn tailwater_default_owned(bencher: divan::Bencher<'_, '_>) {
    let limiter = Limiter::builder().build().expect("defaults are valid");
    warm(&limiter);
    bencher.bench(|| {
        let permit = limiter.try_acquire_owned().expect("below the limit");
        permit.success();
    });
}

#[divan::bench(threads = [1, 2])]
fn tailwater_windowed_aimd(bencher: divan::Bencher<'_, '_>) {
    let limiter = Limiter::new(Windowed::new(aimd()));
    warm(&limiter);
    bencher.bench(|| {
        let permit = limiter.try_acquire().expect("below the limit");
        permit.success();
    });
}

/// The same as `tailwater_aimd` on a manual clock that never moves: what the limiter costs
/// without its two clock reads (an RTT-driven limiter cannot skip them; this isolates them).
#[divan::bench(threads = [1, 2])]
fn tailwater_aimd_no_clock(bencher: divan::Bencher<'_, '_>) {
    let limiter = Limiter::builder()
        .algorithm(aimd())
        .clock(tailwater_core::clock::ManualClock::new())
        .build()
        .expect("valid");
    warm(&limiter);
    bencher.bench(|| {
        let permit = limiter.try_acquire().expect("below the limit");
        permit.success();
    });
}

#[divan::bench(threads = [1, 2])]
fn tokio_semaphore(bencher: divan::Bencher<'_, '_>) {
    let semaphore = tokio::sync::Semaphore::new(LIMIT);
    bencher.bench(|| {
        let permit = semaphore.try_acquire().expect("below the limit");
        drop(permit);
    });
}

#[divan::bench(threads = [1, 2])]
fn congestion_limiter_aimd(bencher: divan::Bencher<'_, '_>) {
    // Its limiter spawns a tokio task when the limit shrinks: give it a runtime context.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let limiter = DefaultLimiter::new(ClAimd::new(LIMIT, 20..=LIMIT));
    bencher.bench(|| {
        let token = ready(limiter.try_acquire()).expect("below the limit");
        ready(limiter.release(token, Some(ClOutcome::Success)));
    });
}

/// A deep queue: 10 000 waiters wait behind a limit of 1 while one more request joins and
/// leaves the queue (enqueue, then its waiter is dropped). Every enqueue expires overdue
/// waiters first, so this is what queue upkeep costs per operation at that depth.
#[divan::bench(args = [10, 10_000])]
fn queue_join_and_leave(bencher: divan::Bencher<'_, '_>, depth: usize) {
    use std::time::Duration;
    use tailwater_core::algorithm::Fixed;
    use tailwater_core::limiter::{Acquire, QueueConfig, QueueDiscipline, Request};
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(1).expect("valid"))
        .queue(
            QueueConfig::new(depth + 1, QueueDiscipline::Fifo, Duration::from_secs(3600))
                .expect("valid"),
        )
        .build()
        .expect("valid");
    let _held = limiter.try_acquire_owned().expect("the one permit");
    let waiters: Vec<_> = (0..depth)
        .map(
            |_| match limiter.enqueue(Request::new(), Duration::from_secs(3600)) {
                Ok(Acquire::Queued(w)) => w,
                _ => panic!("queued"),
            },
        )
        .collect();
    bencher.bench_local(|| {
        let w = limiter.enqueue(Request::new(), Duration::from_secs(3600));
        assert!(matches!(w, Ok(Acquire::Queued(_))));
        drop(w);
    });
    drop(waiters);
}
