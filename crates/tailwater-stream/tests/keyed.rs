//! The keyed dispatcher on tokio's paused time: per-key order (proptest), a slow key
//! confined to its worker and reported hot, and the three full-queue policies.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tailwater_stream::keyed::{
    DispatchError, Dispatched, FullPolicy, KeyedConfig, KeyedDispatcher,
};
use tokio::time::{Instant, sleep};

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Items of one key are handled in dispatch order, whatever the interleaving of keys,
    /// the handler times (which make keys unbind and rebind to other workers) and the pool.
    #[test]
    fn per_key_order_holds(
        items in proptest::collection::vec((0u8..6, 0u64..4), 1..120),
        workers in 1usize..5,
        queue in 1usize..4,
    ) {
        let seen: Arc<Mutex<HashMap<u8, Vec<usize>>>> = Arc::default();
        let into = Arc::clone(&seen);
        let expected = paused_runtime().block_on(async move {
            let config = KeyedConfig::new(nz(workers), nz(queue))
                .policy(FullPolicy::Wait(Duration::from_secs(3600)));
            let dispatcher = KeyedDispatcher::spawn(config, move |key: u8, (seq, ms): (usize, u64)| {
                let into = Arc::clone(&into);
                async move {
                    sleep(Duration::from_millis(ms)).await;
                    into.lock().expect("lock").entry(key).or_default().push(seq);
                }
            });
            let mut expected: HashMap<u8, Vec<usize>> = HashMap::new();
            for (seq, (key, ms)) in items.into_iter().enumerate() {
                dispatcher.dispatch(key, (seq, ms)).await.expect("waits for room");
                expected.entry(key).or_default().push(seq);
            }
            let stats = dispatcher.shutdown().await;
            assert_eq!(stats.active_keys, 0);
            assert_eq!(stats.queued, 0);
            expected
        });
        let seen = seen.lock().expect("lock").clone();
        prop_assert_eq!(seen, expected);
    }
}

/// Per-key handled counts over a window, with open-loop producers: every key sends one
/// item each 8 ms (about half the pool's capacity); `slow` takes 100 ms per item instead
/// of 1 ms.
async fn run_keys(keys: u32, slow: Option<u32>) -> (HashMap<u32, u64>, Vec<u32>) {
    let window_start = Duration::from_millis(500);
    let window_end = Duration::from_millis(2500);
    let origin = Instant::now();
    let counts: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
    let into = Arc::clone(&counts);
    let config =
        KeyedConfig::new(nz(16), nz(4)).policy(FullPolicy::Wait(Duration::from_millis(50)));
    let dispatcher = KeyedDispatcher::spawn(config, move |key: u32, ()| {
        let into = Arc::clone(&into);
        async move {
            let took = if Some(key) == slow { 100 } else { 1 };
            sleep(Duration::from_millis(took)).await;
            let at = origin.elapsed();
            if at > window_start && at <= window_end {
                *into.lock().expect("lock").entry(key).or_default() += 1;
            }
        }
    });
    let mut producers = Vec::new();
    for key in 0..keys {
        let dispatcher = dispatcher.clone();
        producers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            while origin.elapsed() < window_end {
                tick.tick().await;
                let _ = dispatcher.dispatch(key, ()).await;
            }
        }));
    }
    for p in producers {
        p.await.expect("producer");
    }
    let hot = dispatcher.stats().hot_keys.iter().map(|h| h.key).collect();
    dispatcher.shutdown().await;
    let counts = counts.lock().expect("lock").clone();
    (counts, hot)
}

#[tokio::test(start_paused = true)]
async fn a_key_a_hundred_times_slower_leaves_the_others_their_throughput() {
    let keys = 64;
    let (baseline, hot_before) = run_keys(keys, None).await;
    let (with_slow, hot) = run_keys(keys, Some(7)).await;
    let others = |counts: &HashMap<u32, u64>| -> u64 {
        counts
            .iter()
            .filter(|(k, _)| **k != 7)
            .map(|(_, n)| n)
            .sum()
    };
    let ratio = others(&with_slow) as f64 / others(&baseline) as f64;
    println!("other keys' throughput with a 100x slower key: {ratio:.3} of baseline");
    assert!(ratio >= 0.9, "ratio {ratio}");
    // Not only in aggregate: no other key is starved.
    for key in (0..keys).filter(|k| *k != 7) {
        let r = with_slow[&key] as f64 / baseline[&key] as f64;
        assert!(r >= 0.9, "key {key}: {r}");
    }
    assert!(
        hot_before.is_empty(),
        "no hot key without one: {hot_before:?}"
    );
    assert_eq!(hot, [7], "the slow key is reported hot");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_spills_or_waits_until_the_deadline() {
    // Each dispatcher's single worker is held at a gate of its own.
    let make = |policy, gate: Arc<tokio::sync::Semaphore>| {
        KeyedDispatcher::spawn(
            KeyedConfig::new(nz(1), nz(1)).policy(policy),
            move |_k: u8, _n: u32| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.expect("open").forget();
                }
            },
        )
    };
    let closed = || Arc::new(tokio::sync::Semaphore::new(0));
    // One item runs (blocked on the gate), one fills the queue.
    let fill = |d: KeyedDispatcher<u8, u32>| async move {
        d.dispatch(1, 0).await.expect("runs");
        tokio::task::yield_now().await;
        d.dispatch(1, 1).await.expect("queued");
        d
    };

    let reject = fill(make(FullPolicy::Reject, closed())).await;
    match reject.dispatch(1, 2).await {
        Err(DispatchError::Full { key: 1, item: 2 }) => {}
        other => panic!("expected Full with the item back, got {other:?}"),
    }
    assert_eq!(reject.stats().rejected, 1);

    let spilled = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&spilled);
    let spill = fill(make(
        FullPolicy::Spill(Arc::new(move |k, n| {
            into.lock().expect("lock").push((k, n));
        })),
        closed(),
    ))
    .await;
    assert_eq!(
        spill.dispatch(1, 2).await.expect("spilled"),
        Dispatched::Spilled
    );
    assert_eq!(*spilled.lock().expect("lock"), [(1, 2)]);
    assert_eq!(spill.stats().spilled, 1);

    let gate = closed();
    let wait = fill(make(
        FullPolicy::Wait(Duration::from_millis(250)),
        Arc::clone(&gate),
    ))
    .await;
    let started = Instant::now();
    match wait.dispatch(1, 2).await {
        Err(DispatchError::Timeout { key: 1, item: 2 }) => {}
        other => panic!("expected Timeout with the item back, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    // Room appears while waiting: the wait succeeds.
    let waiter = {
        let wait = wait.clone();
        tokio::spawn(async move { wait.dispatch(1, 3).await })
    };
    sleep(Duration::from_millis(100)).await;
    gate.add_permits(1);
    assert!(matches!(
        waiter.await.expect("task"),
        Ok(Dispatched::Queued)
    ));
    gate.add_permits(100);
    let stats = wait.shutdown().await;
    assert_eq!(stats.timed_out, 1);
    assert_eq!(stats.handled, 3);
}
