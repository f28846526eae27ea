//! Pipelines on tokio's paused (virtual) time: bounded memory under a slow sink,
//! throughput at the bottleneck's capacity, the bottleneck named, drain, batching,
//! limiter-driven concurrency, panics.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_core::clock::TokioClock;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_stream::pipeline::{BatchConfig, PipelineError};
use tailwater_stream::{Concurrency, Pipeline, StageConfig};
use tokio::time::{Instant, sleep};

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

/// A source that could emit one 1 KiB item every `every`, for ever.
fn ticking(every: Duration) -> impl Stream<Item = Vec<u8>> + Send + 'static {
    stream::unfold((), move |()| async move {
        sleep(every).await;
        Some((vec![0u8; 1024], ()))
    })
}

const ITEM_BYTES: u64 = 1024;

#[tokio::test(start_paused = true)]
async fn a_sink_ten_times_slower_keeps_memory_flat_and_is_named() {
    // Source 1 ms per item (1000/s), a parse stage 0.5 ms, the sink 10 ms (100/s).
    let capacity = 16;
    let handle = Pipeline::from_stream(ticking(Duration::from_millis(1)))
        .stage(
            "parse",
            StageConfig::new().capacity(nz(capacity)),
            |item| async move {
                sleep(Duration::from_micros(500)).await;
                item
            },
        )
        .sink(
            "write",
            StageConfig::new().capacity(nz(capacity)),
            |item: Vec<u8>| async move {
                sleep(Duration::from_millis(10)).await;
                drop(item);
            },
        );

    // Warm up 2 s, then watch 8 s, sampling every 100 ms.
    sleep(Duration::from_secs(2)).await;
    let start = handle.stats();
    let mut max_in_flight = 0;
    let mut max_queued = 0;
    for _ in 0..80 {
        sleep(Duration::from_millis(100)).await;
        let stats = handle.stats();
        max_in_flight = max_in_flight.max(stats.in_flight());
        max_queued = max_queued.max(stats.queued());
        for stage in &stats.stages {
            assert!(
                stage.queue_depth <= stage.queue_capacity as u64,
                "{stage:?}"
            );
        }
    }
    let end = handle.stats();
    let window = end.since(&start);

    // Memory: two queues of 16 plus one item in each worker and one held by the source.
    let bound = 2 * capacity as u64 + 3;
    assert!(
        max_in_flight <= bound,
        "in flight {max_in_flight} > {bound}"
    );
    println!(
        "slow sink: max in flight {max_in_flight} items ({} KiB), max queued {max_queued}, bound {bound}",
        max_in_flight * ITEM_BYTES / 1024
    );

    // Throughput: the sink's capacity, 100/s, within 5 %.
    let done = window.completed() as f64 / 8.0;
    assert!((done - 100.0).abs() <= 5.0, "throughput {done}/s");
    // The source was pulled only as fast as the sink drained it.
    let admitted = window.admitted() as f64 / 8.0;
    assert!((admitted - 100.0).abs() <= 5.0, "admitted {admitted}/s");

    // The bottleneck is named: the sink busy, upstream backpressured.
    let bottleneck = window.bottleneck().expect("a bottleneck");
    assert_eq!(bottleneck.name, "write");
    assert!(bottleneck.busy_ratio() > 0.95, "{bottleneck:?}");
    let source = &window.stages[0];
    assert!(source.backpressured_ratio() > 0.8, "{source:?}");
    let parse = &window.stages[1];
    assert!(parse.backpressured_ratio() > 0.85, "{parse:?}");
    println!("window stats: {window:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_middle_stage_with_two_workers_sets_the_pace_and_is_named() {
    // The middle stage takes 10 ms with 2 workers: 200/s; the sink keeps up (1 ms).
    let handle = Pipeline::from_stream(ticking(Duration::from_millis(1)))
        .stage(
            "enrich",
            StageConfig::new().concurrency(Concurrency::fixed(nz(2))),
            |item| async move {
                sleep(Duration::from_millis(10)).await;
                item
            },
        )
        .sink("write", StageConfig::new(), |_item: Vec<u8>| async move {
            sleep(Duration::from_millis(1)).await;
        });
    sleep(Duration::from_secs(1)).await;
    let start = handle.stats();
    sleep(Duration::from_secs(5)).await;
    let window = handle.stats().since(&start);
    let rate = window.completed() as f64 / 5.0;
    assert!((rate - 200.0).abs() <= 10.0, "throughput {rate}/s");
    let bottleneck = window.bottleneck().expect("a bottleneck");
    assert_eq!(bottleneck.name, "enrich");
    let sink = &window.stages[2];
    assert!(sink.idle_ratio() > 0.7, "{sink:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_is_named_the_bottleneck() {
    let handle = Pipeline::from_stream(ticking(Duration::from_millis(10)))
        .stage("parse", StageConfig::new(), |item| async move { item })
        .sink("write", StageConfig::new(), |_item: Vec<u8>| async move {
            sleep(Duration::from_millis(1)).await;
        });
    sleep(Duration::from_secs(2)).await;
    let stats = handle.stats();
    // The source is "busy" producing (waiting for its ticks): it is the bottleneck.
    assert_eq!(stats.bottleneck().map(|s| s.name.as_str()), Some("source"));
    assert!(stats.stages[2].idle_ratio() > 0.8, "{:?}", stats.stages[2]);
}

#[tokio::test(start_paused = true)]
async fn drain_delivers_every_admitted_item_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&seen);
    let counter = stream::iter(0u64..).then(|n| async move {
        sleep(Duration::from_micros(100)).await;
        n
    });
    let handle = Pipeline::from_stream(counter)
        .stage("a", StageConfig::new().capacity(nz(8)), |n| async move {
            sleep(Duration::from_millis(1)).await;
            n
        })
        .batch("batch", BatchConfig::new(nz(5), Duration::from_millis(20)))
        .sink(
            "b",
            StageConfig::new().capacity(nz(4)),
            move |batch: Vec<u64>| {
                let into = Arc::clone(&into);
                async move {
                    sleep(Duration::from_millis(3)).await;
                    into.lock().expect("lock").extend(batch);
                }
            },
        );
    sleep(Duration::from_millis(500)).await;
    let before = handle.stats();
    assert!(
        before.in_flight() > 5,
        "items are queued when the drain starts: {before:?}"
    );
    let stats = handle.shutdown().await.expect("no panic");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(stats.admitted(), seen.len() as u64);
    assert_eq!(stats.queued(), 0);
    assert_eq!(
        stats.stages[2].processed, stats.stages[3].processed,
        "every batch reached the sink"
    );
    assert!(
        seen.iter().copied().eq(0..seen.len() as u64),
        "in order, no gaps"
    );
    assert!(stats.admitted() >= before.admitted());
}

#[tokio::test(start_paused = true)]
async fn batches_fill_to_size_or_leave_after_linger() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&batches);
    let origin = Instant::now();
    // 25 items at once, then 3 more after a second.
    let source = stream::iter(0..25u32).chain(stream::iter(25..28u32).then(|n| async move {
        if n == 25 {
            sleep(Duration::from_secs(1)).await;
        }
        n
    }));
    let handle = Pipeline::from_stream(source)
        .batch(
            "batch",
            BatchConfig::new(nz(10), Duration::from_millis(50)).capacity(nz(32)),
        )
        .sink("sink", StageConfig::new(), move |batch: Vec<u32>| {
            let into = Arc::clone(&into);
            async move {
                into.lock().expect("lock").push((batch, origin.elapsed()));
            }
        });
    handle.join().await.expect("no panic");
    let batches = batches.lock().expect("lock").clone();
    let sizes: Vec<usize> = batches.iter().map(|(b, _)| b.len()).collect();
    assert_eq!(sizes, [10, 10, 5, 3]);
    // The partial batch of 5 left after lingering 50 ms, not at once.
    assert_eq!(batches[2].1, Duration::from_millis(50));
    // The last 3 came together (their source was ready at once after the second).
    assert!(batches[3].1 >= Duration::from_secs(1));
    assert_eq!(
        batches
            .iter()
            .flat_map(|(b, _)| b.clone())
            .collect::<Vec<_>>(),
        (0..28).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_limiter_drives_a_stages_concurrency() {
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(2).expect("limit"))
        .clock(TokioClock::new())
        .queue(QueueConfig::new(16, QueueDiscipline::Fifo, Duration::from_secs(5)).expect("queue"))
        .build()
        .expect("limiter");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    let handle = Pipeline::from_stream(ticking(Duration::from_millis(1)))
        .stage(
            "call",
            StageConfig::new().concurrency(Concurrency::limited(nz(8), limiter.clone())),
            move |item| {
                let (r, p) = (Arc::clone(&r), Arc::clone(&p));
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    sleep(Duration::from_millis(10)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    item
                }
            },
        )
        .sink("sink", StageConfig::new(), |_item: Vec<u8>| async {});
    sleep(Duration::from_secs(1)).await;
    let start = handle.stats();
    sleep(Duration::from_secs(2)).await;
    let window = handle.stats().since(&start);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "the limiter's limit, not the 8 workers"
    );
    let rate = window.completed() as f64 / 2.0;
    assert!((rate - 200.0).abs() <= 10.0, "throughput {rate}/s");
    let call = window.bottleneck().expect("a bottleneck");
    assert_eq!(call.name, "call");
    assert!(call.limited_ratio() > 0.5, "{call:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_stage_is_reported_by_name() {
    let done = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&done);
    let handle = Pipeline::from_stream(stream::iter(0..10u32))
        .stage("boom", StageConfig::new(), |n| async move {
            assert!(n != 3, "bad item");
            n
        })
        .sink("sink", StageConfig::new(), move |_n| {
            d.fetch_add(1, Ordering::SeqCst);
            async {}
        });
    match handle.join().await {
        Err(PipelineError::StagePanicked { stage, stats }) => {
            assert_eq!(stage, "boom");
            assert_eq!(stats.completed(), 3);
            assert_eq!(done.load(Ordering::SeqCst), 3);
        }
        other => panic!("expected a panic report, got {other:?}"),
    }
}
