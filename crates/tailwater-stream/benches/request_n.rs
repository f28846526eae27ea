//! Throughput of a request-N server stream over gRPC against the same stream without
//! credits (bounded only by HTTP/2 flow control), with a consumer that keeps up, in the
//! same run, on one loopback connection (127.0.0.1).
//!
//! Each iteration opens one bidi call and reads `ITEMS` (200 000) messages of 64 bytes: a
//! long stream, so that the request-N call's one extra round trip before its first message
//! (the first grant) is not what is measured. `window` is the subscriber's N (credits
//! granted back every N / 2 items). The unbounded stream is the same bidi call, same
//! framing, message count and size, with the server ignoring the grants.
//!
//! After each benchmark it prints, for its last call, how often the consumer found no
//! message ready and, for request-N, how often the publisher waited for credit: the two
//! numbers that tell a window too small for the round trip from a per-message cost.
//!
//! `cargo bench -p tailwater-stream --bench request_n`

#[path = "../tests/support/credits.rs"]
#[allow(dead_code)]
mod credits;

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use credits::{CreditsServer, Grant, Item, Ledger};
use futures_util::{Stream, StreamExt};
use tailwater_stream::Subscriber;
use tailwater_stream::request_n::demand;
use tokio::runtime::Runtime;

const ITEMS: u64 = 200_000;

/// Times the consumer found no message ready (its poll returned `Pending`) in the last
/// call: a consumer that waits is paced by the transport (or the credits), not by itself.
static CONSUMER_WAITS: AtomicU64 = AtomicU64::new(0);

/// Counts the `Pending`s of the stream it wraps into [`CONSUMER_WAITS`].
struct Waits<S>(S, u64);

impl<S: Stream + Unpin> Stream for Waits<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.0).poll_next(cx);
        match polled {
            Poll::Pending => self.1 += 1,
            Poll::Ready(None) => CONSUMER_WAITS.store(self.1, Ordering::Relaxed),
            Poll::Ready(Some(_)) => {}
        }
        polled
    }
}

fn main() {
    divan::main();
}

fn setup() -> (Runtime, tonic::transport::Channel, Arc<Ledger>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ledger = Arc::new(Ledger::default());
    let channel = rt.block_on(async {
        let server = CreditsServer {
            items: ITEMS,
            payload: 64,
            ledger: Arc::clone(&ledger),
            window: NonZeroU32::MIN,
            consume: Arc::new(|_| Box::pin(async {})),
        };
        let addr = credits::serve(server).await;
        credits::connect(addr).await
    });
    (rt, channel, ledger)
}

#[divan::bench]
fn unbounded_stream(b: divan::Bencher<'_, '_>) {
    let (rt, channel, _) = setup();
    b.counter(divan::counter::ItemsCount::new(ITEMS))
        .bench_local(|| {
            rt.block_on(async {
                let (_demand, grants) = demand();
                let items = credits::bidi::<Grant, Item>(
                    channel.clone(),
                    credits::FLOOD,
                    grants.map(|n| Grant { n }),
                )
                .await;
                let mut items = Waits(items, 0);
                let mut n = 0;
                while let Some(item) = items.next().await {
                    divan::black_box(item.expect("item"));
                    n += 1;
                }
                assert_eq!(n, ITEMS);
            })
        });
    eprintln!(
        "unbounded_stream: last call, the consumer waited {} times",
        CONSUMER_WAITS.load(Ordering::Relaxed)
    );
}

#[divan::bench(args = [64, 256, 1024, 4096, 16384])]
fn request_n_stream(b: divan::Bencher<'_, '_>, window: u32) {
    let (rt, channel, ledger) = setup();
    b.counter(divan::counter::ItemsCount::new(ITEMS))
        .bench_local(|| {
            rt.block_on(async {
                let (demand, grants) = demand();
                let items = credits::bidi::<Grant, Item>(
                    channel.clone(),
                    credits::SUBSCRIBE,
                    grants.map(|n| Grant { n }),
                )
                .await;
                let mut items = Subscriber::new(
                    Waits(items, 0),
                    demand,
                    NonZeroU32::new(window).expect("window"),
                );
                let mut n = 0;
                while let Some(item) = items.next().await {
                    divan::black_box(item.expect("item"));
                    n += 1;
                }
                assert_eq!(n, ITEMS);
            })
        });
    // Where the time goes: a publisher that stalls (waits for credit) about once per
    // grant is paced by the window's round trips, not by the consumer.
    eprintln!(
        "request_n_stream N = {window}: last call, the consumer waited {} times; the publisher took {} credits and stalled {} times (grants of {}: {})",
        CONSUMER_WAITS.load(Ordering::Relaxed),
        ledger.granted.load(Ordering::SeqCst),
        ledger.stalls.load(Ordering::SeqCst),
        (window / 2).max(1),
        (ITEMS.saturating_sub(u64::from(window))).div_ceil(u64::from((window / 2).max(1))),
    );
}
