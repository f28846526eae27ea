//! Per-item overhead of a [`Pipeline`] against a hand-written tokio `mpsc` pipeline of the
//! same shape (source task → map task → sink task, two queues of 16), in the same run.
//!
//! Each iteration pushes `ITEMS` integers through, on a current-thread runtime (the
//! hand-off cost, not the scheduling luck of a busy 2-core machine, is what is compared)
//! and on a 2-worker multi-thread runtime.
//!
//! `cargo bench -p tailwater-stream --bench pipeline`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tailwater_stream::{Pipeline, StageConfig};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::mpsc;

const ITEMS: u64 = 20_000;
const CAPACITY: usize = 16;

fn main() {
    divan::main();
}

fn runtime(flavor: &str) -> Runtime {
    match flavor {
        "current_thread" => Builder::new_current_thread().enable_time().build(),
        _ => Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build(),
    }
    .expect("runtime")
}

async fn hand_written() -> u64 {
    let (tx1, mut rx1) = mpsc::channel::<u64>(CAPACITY);
    let (tx2, mut rx2) = mpsc::channel::<u64>(CAPACITY);
    let source = tokio::spawn(async move {
        for x in 0..ITEMS {
            if tx1.send(x).await.is_err() {
                break;
            }
        }
    });
    let map = tokio::spawn(async move {
        while let Some(x) = rx1.recv().await {
            if tx2.send(x + 1).await.is_err() {
                break;
            }
        }
    });
    let sink = tokio::spawn(async move {
        let mut sum = 0;
        while let Some(x) = rx2.recv().await {
            sum += x;
        }
        sum
    });
    let _ = source.await;
    let _ = map.await;
    sink.await.expect("sink")
}

async fn pipeline() -> u64 {
    let sum = Arc::new(AtomicU64::new(0));
    let into = Arc::clone(&sum);
    let handle = Pipeline::from_stream(futures_util::stream::iter(0..ITEMS))
        .stage("map", StageConfig::new(), |x| async move { x + 1 })
        .sink("sink", StageConfig::new(), move |x| {
            into.fetch_add(x, Ordering::Relaxed);
            std::future::ready(())
        });
    handle.join().await.expect("pipeline");
    sum.load(Ordering::Relaxed)
}

#[divan::bench(args = ["current_thread", "multi_thread"])]
fn mpsc_by_hand(b: divan::Bencher<'_, '_>, flavor: &str) {
    let rt = runtime(flavor);
    b.counter(divan::counter::ItemsCount::new(ITEMS))
        .bench_local(|| assert_eq!(rt.block_on(hand_written()), ITEMS * (ITEMS + 1) / 2));
}

#[divan::bench(args = ["current_thread", "multi_thread"])]
fn tailwater_pipeline(b: divan::Bencher<'_, '_>, flavor: &str) {
    let rt = runtime(flavor);
    b.counter(divan::counter::ItemsCount::new(ITEMS))
        .bench_local(|| assert_eq!(rt.block_on(pipeline()), ITEMS * (ITEMS + 1) / 2));
}
