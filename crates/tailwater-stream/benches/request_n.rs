//! Throughput of a request-N server stream over gRPC against the same stream without
//! credits (bounded only by HTTP/2 flow control), with a consumer that keeps up, in the
//! same run, on one loopback connection (127.0.0.1).
//!
//! Each iteration opens one bidi call and reads `ITEMS` (200 000) messages of 64 bytes: a
//! long stream, so that the request-N call's one extra round trip before its first message
//! (the first grant) is not what is measured. `window` is the subscriber's N (credits
//! granted back every N / 2 items).
//!
//! `cargo bench -p tailwater-stream --bench request_n`

#[path = "../tests/support/credits.rs"]
#[allow(dead_code)]
mod credits;

use std::num::NonZeroU32;
use std::sync::Arc;

use credits::{CreditsServer, Grant, Item, Ledger};
use futures_util::StreamExt;
use tailwater_stream::Subscriber;
use tailwater_stream::request_n::demand;
use tokio::runtime::Runtime;

const ITEMS: u64 = 200_000;

fn main() {
    divan::main();
}

fn setup() -> (Runtime, tonic::transport::Channel) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let channel = rt.block_on(async {
        let server = CreditsServer {
            items: ITEMS,
            payload: 64,
            ledger: Arc::new(Ledger::default()),
            window: NonZeroU32::MIN,
            consume: Arc::new(|_| Box::pin(async {})),
        };
        let addr = credits::serve(server).await;
        credits::connect(addr).await
    });
    (rt, channel)
}

#[divan::bench]
fn unbounded_stream(b: divan::Bencher<'_, '_>) {
    let (rt, channel) = setup();
    b.counter(divan::counter::ItemsCount::new(ITEMS))
        .bench_local(|| {
            rt.block_on(async {
                let (_demand, grants) = demand();
                let mut items = credits::bidi::<Grant, Item>(
                    channel.clone(),
                    credits::FLOOD,
                    grants.map(|n| Grant { n }),
                )
                .await;
                let mut n = 0;
                while let Some(item) = items.next().await {
                    divan::black_box(item.expect("item"));
                    n += 1;
                }
                assert_eq!(n, ITEMS);
            })
        });
}

#[divan::bench(args = [64, 256, 1024, 4096])]
fn request_n_stream(b: divan::Bencher<'_, '_>, window: u32) {
    let (rt, channel) = setup();
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
                let mut items =
                    Subscriber::new(items, demand, NonZeroU32::new(window).expect("window"));
                let mut n = 0;
                while let Some(item) = items.next().await {
                    divan::black_box(item.expect("item"));
                    n += 1;
                }
                assert_eq!(n, ITEMS);
            })
        });
}
