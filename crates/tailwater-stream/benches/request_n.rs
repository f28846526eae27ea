//! Throughput of a request-N server stream over gRPC against the same stream without
//! credits (bounded only by HTTP/2 flow control), with a consumer that keeps up, in the
//! same run, on one loopback connection (127.0.0.1).
//!
//! Each iteration opens one bidi call and reads 200 000 messages of 64 bytes (the hard case:
//! the per-message costs and the credit round trips weigh most), or 50 000 of 1 KiB: a long
//! stream, so that the request-N call's one extra round trip before its first message (the
//! first grant) is not what is measured. `window` is the subscriber's N. The unbounded
//! stream is the same bidi call, same framing, message count and size, with the server
//! ignoring the grants.
//!
//! After each benchmark it prints how often and how long the consumer found no message
//! ready (per call) and, for request-N's last call, how often the publisher waited for
//! credit; with `REQUEST_N_FLIGHTS=1` also each grant's flight: from the subscriber granting
//! to the first message paid by that grant reaching the consumer, against the messages the
//! consumer still had to read when it granted (timing the grants costs the request-N
//! consumer a little per message, so it is off by default). A consumer that waits about
//! once per grant is paced by the credits' round trip, not by itself.
//!
//! `cargo bench -p tailwater-stream --bench request_n -- --sample-count 20`; the windows
//! measured can be chosen with `REQUEST_N_WINDOWS=1024,4096`, the payload with a filter
//! (`stream::64` or `stream::1024`).

#[path = "../tests/support/credits.rs"]
#[allow(dead_code)]
mod credits;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use credits::{CreditsServer, Grant, Item, Ledger};
use futures_util::{Stream, StreamExt};
use tailwater_stream::Subscriber;
use tailwater_stream::request_n::demand;
use tokio::runtime::Runtime;

/// Messages per call for a payload of `payload` bytes.
const fn items(payload: usize) -> u64 {
    if payload >= 1024 { 50_000 } else { 200_000 }
}

/// Times the consumer found no message ready (its poll returned `Pending`) in the calls
/// since the last reset: a consumer that waits is paced by the transport (or the credits),
/// not by itself.
static CONSUMER_WAITS: AtomicU64 = AtomicU64::new(0);

/// Calls made since the counters were reset.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Time the consumer spent with no message ready in the calls since the last reset, in
/// microseconds.
static CONSUMER_WAITED_US: AtomicU64 = AtomicU64::new(0);

/// Grants whose first paid message has not reached the consumer yet: that message's
/// sequence number, when it was granted, and the messages the consumer still had to read
/// then. Shared by [`Granting`] (which adds) and [`Waits`] (which resolves).
type Watch = Rc<RefCell<VecDeque<(u64, Instant, u64)>>>;

/// The last request-N call's grant flights (grant to its first paid message at the
/// consumer) with the messages the consumer had ahead at the grant.
static FLIGHTS: Mutex<Vec<(Duration, u64)>> = Mutex::new(Vec::new());

/// Counts the `Pending`s of the stream it wraps, and the time until the next message,
/// into [`CONSUMER_WAITS`] and [`CONSUMER_WAITED_US`]; times the grants in `watch`, if any.
/// The same per-message work in both benchmarks (a branch on the sequence number).
struct Waits<S> {
    inner: S,
    waits: u64,
    since: Option<Instant>,
    waited: Duration,
    watch: Option<Watch>,
    flights: Vec<(Duration, u64)>,
}

impl<S> Waits<S> {
    fn new(inner: S, watch: Option<Watch>) -> Self {
        Self {
            inner,
            waits: 0,
            since: None,
            waited: Duration::ZERO,
            watch,
            flights: Vec::new(),
        }
    }
}

impl<S: Stream<Item = Result<Item, tonic::Status>> + Unpin> Stream for Waits<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Pending => {
                this.waits += 1;
                this.since.get_or_insert_with(Instant::now);
            }
            Poll::Ready(None) => {
                CONSUMER_WAITS.fetch_add(this.waits, Ordering::Relaxed);
                CONSUMER_WAITED_US.fetch_add(this.waited.as_micros() as u64, Ordering::Relaxed);
                CALLS.fetch_add(1, Ordering::Relaxed);
                if this.watch.is_some() {
                    *FLIGHTS.lock().expect("flights") = std::mem::take(&mut this.flights);
                }
            }
            Poll::Ready(Some(item)) => {
                if let Some(since) = this.since.take() {
                    this.waited += since.elapsed();
                }
                if let (Some(watch), Ok(item)) = (&this.watch, item) {
                    let mut watch = watch.borrow_mut();
                    if watch.front().is_some_and(|&(seq, ..)| seq == item.seq) {
                        let (_, at, ahead) = watch.pop_front().expect("front");
                        this.flights.push((at.elapsed(), ahead));
                    }
                }
            }
        }
        polled
    }
}

/// Adds each grant of the subscriber it wraps to a [`Watch`].
struct Granting<S> {
    inner: Subscriber<S>,
    last: u64,
    watch: Watch,
}

impl<S: Stream + Unpin> Stream for Granting<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        let granted = this.inner.granted();
        if granted != this.last {
            let ahead = this.last.saturating_sub(this.inner.received());
            this.watch
                .borrow_mut()
                .push_back((this.last, Instant::now(), ahead));
            this.last = granted;
        }
        polled
    }
}

/// Reads `items` to the end, as a consumer with no work per message; returns how many.
async fn drain(mut items: impl Stream<Item = Result<Item, tonic::Status>> + Unpin) -> u64 {
    let mut n = 0;
    while let Some(item) = items.next().await {
        divan::black_box(item.expect("item"));
        n += 1;
    }
    n
}

/// The consumer's waits per call since the last reset, and resets the counters.
fn consumer_waits() -> String {
    let calls = CALLS.swap(0, Ordering::Relaxed).max(1);
    let waits = CONSUMER_WAITS.swap(0, Ordering::Relaxed);
    let us = CONSUMER_WAITED_US.swap(0, Ordering::Relaxed);
    format!(
        "the consumer waited {} times, {} us a call ({calls} calls)",
        waits / calls,
        us / calls
    )
}

fn quantiles<T: Ord + Copy + fmt::Debug>(mut v: Vec<T>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "p10 {:?}, p50 {:?}, p90 {:?}, max {:?}",
        q(0.1),
        q(0.5),
        q(0.9),
        q(1.0)
    )
}

/// The windows (N) measured: `REQUEST_N_WINDOWS` (comma-separated), else 64 to 16384.
fn windows() -> Vec<u32> {
    std::env::var("REQUEST_N_WINDOWS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|w| {
                    w.trim()
                        .parse()
                        .expect("REQUEST_N_WINDOWS: a list of numbers")
                })
                .collect()
        })
        .unwrap_or_else(|| vec![64, 256, 1024, 4096, 16384])
}

fn main() {
    divan::main();
}

fn setup(payload: usize) -> (Runtime, tonic::transport::Channel, Arc<Ledger>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ledger = Arc::new(Ledger::default());
    let channel = rt.block_on(async {
        let server = CreditsServer {
            items: items(payload),
            payload,
            ledger: Arc::clone(&ledger),
            window: NonZeroU32::MIN,
            consume: Arc::new(|_| Box::pin(async {})),
        };
        let addr = credits::serve(server).await;
        credits::connect(addr).await
    });
    (rt, channel, ledger)
}

#[divan::bench(consts = [64, 1024])]
fn unbounded_stream<const PAYLOAD: usize>(b: divan::Bencher<'_, '_>) {
    let (rt, channel, _) = setup(PAYLOAD);
    consumer_waits();
    let expected = items(PAYLOAD);
    b.counter(divan::counter::ItemsCount::new(expected))
        .bench_local(|| {
            rt.block_on(async {
                let (_demand, grants) = demand();
                let items = credits::bidi::<Grant, Item>(
                    channel.clone(),
                    credits::FLOOD,
                    grants.map(|n| Grant { n }),
                )
                .await;
                assert_eq!(drain(Waits::new(items, None)).await, expected);
            })
        });
    eprintln!("unbounded_stream {PAYLOAD} B: {}", consumer_waits());
}

#[divan::bench(consts = [64, 1024], args = windows())]
fn request_n_stream<const PAYLOAD: usize>(b: divan::Bencher<'_, '_>, window: u32) {
    let (rt, channel, ledger) = setup(PAYLOAD);
    consumer_waits();
    // Timing the grants costs the consumer a little per message (not the unbounded one).
    let flights = std::env::var_os("REQUEST_N_FLIGHTS").is_some();
    let expected = items(PAYLOAD);
    b.counter(divan::counter::ItemsCount::new(expected))
        .bench_local(|| {
            rt.block_on(async {
                let (demand, grants) = demand();
                let items = credits::bidi::<Grant, Item>(
                    channel.clone(),
                    credits::SUBSCRIBE,
                    grants.map(|n| Grant { n }),
                )
                .await;
                let window = NonZeroU32::new(window).expect("window");
                let n = if flights {
                    let watch = Watch::default();
                    drain(Granting {
                        inner: Subscriber::new(
                            Waits::new(items, Some(Rc::clone(&watch))),
                            demand,
                            window,
                        ),
                        last: u64::from(window.get()),
                        watch,
                    })
                    .await
                } else {
                    drain(Subscriber::new(Waits::new(items, None), demand, window)).await
                };
                assert_eq!(n, expected);
            })
        });
    // Where the time goes: a consumer that waits once per grant, with flights longer than
    // the messages it had ahead, is paced by the credit round trip, not by itself.
    let (flight, ahead): (Vec<_>, Vec<_>) =
        FLIGHTS.lock().expect("flights").iter().copied().unzip();
    eprintln!(
        "request_n_stream {PAYLOAD} B, N = {window}: {}; last call: the publisher took {} credits and stalled {} times; grant flight {}; messages ahead at the grant {}",
        consumer_waits(),
        ledger.granted.load(Ordering::SeqCst),
        ledger.stalls.load(Ordering::SeqCst),
        if flights {
            quantiles(flight)
        } else {
            "not timed (REQUEST_N_FLIGHTS=1)".into()
        },
        quantiles(ahead),
    );
}
