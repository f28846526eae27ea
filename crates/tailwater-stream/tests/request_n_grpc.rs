//! Request-N over real gRPC calls on 127.0.0.1:0: the publisher never has more than N
//! items outstanding, in both directions; without credits the same call runs far ahead.

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use support::credits::{self, CreditsServer, Grant, Item, Ledger};
use tailwater_stream::Subscriber;
use tailwater_stream::request_n::{RequestN, demand};

const N: u32 = 8;
const ITEMS: u64 = 300;
const PAYLOAD: usize = 1024;

fn server(ledger: Arc<Ledger>) -> CreditsServer {
    let consumed = Arc::clone(&ledger);
    CreditsServer {
        items: ITEMS,
        payload: PAYLOAD,
        ledger,
        window: NonZeroU32::new(N).expect("n"),
        consume: Arc::new(move |_item| {
            let consumed = Arc::clone(&consumed);
            Box::pin(async move {
                // A slow consumer (the workload, not synchronisation).
                tokio::time::sleep(Duration::from_millis(1)).await;
                consumed.consumed.fetch_add(1, Ordering::SeqCst);
            })
        }),
    }
}

/// Reads `items`, slowly, counting each consumed item in `ledger`; returns the sequence.
async fn consume_slowly<S>(mut items: S, ledger: &Ledger) -> Vec<u64>
where
    S: futures_util::Stream<Item = Result<Item, tonic::Status>> + Unpin,
{
    let mut seqs = Vec::new();
    while let Some(item) = items.next().await {
        let item = item.expect("item");
        tokio::time::sleep(Duration::from_millis(1)).await;
        ledger.consumed.fetch_add(1, Ordering::SeqCst);
        seqs.push(item.seq);
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_with_credits_never_runs_more_than_n_ahead() {
    let ledger = Arc::new(Ledger::default());
    let addr = credits::serve(server(Arc::clone(&ledger))).await;
    let channel = credits::connect(addr).await;

    let (demand, grants) = demand();
    let items =
        credits::bidi::<Grant, Item>(channel, credits::SUBSCRIBE, grants.map(|n| Grant { n }))
            .await;
    let subscriber = Subscriber::new(items, demand, NonZeroU32::new(N).expect("n"));
    let seqs = consume_slowly(subscriber, &ledger).await;

    assert_eq!(seqs, (0..ITEMS).collect::<Vec<_>>());
    let max = ledger.max_outstanding.load(Ordering::SeqCst);
    println!("request-N server stream: max outstanding {max} (N = {N})");
    assert!(max <= u64::from(N), "outstanding {max} > {N}");
    assert_eq!(
        max,
        u64::from(N),
        "the window is used in full by a slow consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credits_the_same_stream_runs_far_ahead() {
    let ledger = Arc::new(Ledger::default());
    let addr = credits::serve(server(Arc::clone(&ledger))).await;
    let channel = credits::connect(addr).await;
    let (_demand, grants) = demand();
    let items =
        credits::bidi::<Grant, Item>(channel, credits::FLOOD, grants.map(|n| Grant { n })).await;
    let seqs = consume_slowly(items, &ledger).await;
    assert_eq!(seqs.len() as u64, ITEMS);
    let max = ledger.max_outstanding.load(Ordering::SeqCst);
    println!("unbounded server stream: max outstanding {max}");
    // HTTP/2 flow control bounds bytes (64 KiB windows), not messages: dozens run ahead.
    assert!(max > 4 * u64::from(N), "outstanding only {max}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_with_credits_never_runs_more_than_n_ahead() {
    let ledger = Arc::new(Ledger::default());
    let addr = credits::serve(server(Arc::clone(&ledger))).await;
    let channel = credits::connect(addr).await;

    // The client publishes against grants that arrive on the response half.
    let (local, grants) = demand();
    let publisher_ledger = Arc::clone(&ledger);
    let source = futures_util::stream::iter(0..ITEMS).map(move |seq| {
        publisher_ledger.on_send();
        Item {
            seq,
            payload: vec![1; PAYLOAD],
        }
    });
    let mut from_server =
        credits::bidi::<Item, Grant>(channel, credits::PUBLISH, RequestN::new(source, grants))
            .await;
    while let Some(grant) = from_server.next().await {
        local.request(grant.expect("grant").n);
    }
    assert_eq!(ledger.sent.load(Ordering::SeqCst), ITEMS);
    assert_eq!(ledger.consumed.load(Ordering::SeqCst), ITEMS);
    let max = ledger.max_outstanding.load(Ordering::SeqCst);
    println!("request-N client stream: max outstanding {max} (N = {N})");
    assert!(max <= u64::from(N), "outstanding {max} > {N}");
    assert_eq!(max, u64::from(N));
}

/// A consumer with no work per item: the subscriber's grants then go out in batches and
/// whenever it catches up with the stream (the inner stream has nothing ready), and still
/// never pay for more than N unfinished items.
const FAST_N: u32 = 64;
const FAST_ITEMS: u64 = 20_000;

fn fast_server(ledger: Arc<Ledger>) -> CreditsServer {
    let consumed = Arc::clone(&ledger);
    CreditsServer {
        items: FAST_ITEMS,
        payload: 64,
        ledger,
        window: NonZeroU32::new(FAST_N).expect("n"),
        consume: Arc::new(move |_item| {
            consumed.consumed.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_consumer_never_has_more_than_n_outstanding_either() {
    let ledger = Arc::new(Ledger::default());
    let addr = credits::serve(fast_server(Arc::clone(&ledger))).await;
    let channel = credits::connect(addr).await;

    let (demand, grants) = demand();
    let items =
        credits::bidi::<Grant, Item>(channel, credits::SUBSCRIBE, grants.map(|n| Grant { n }))
            .await;
    let mut subscriber = Subscriber::new(items, demand, NonZeroU32::new(FAST_N).expect("n"));
    let mut next = 0;
    while let Some(item) = subscriber.next().await {
        assert_eq!(item.expect("item").seq, next);
        next += 1;
        ledger.consumed.fetch_add(1, Ordering::SeqCst);
    }
    assert_eq!(next, FAST_ITEMS);
    let max = ledger.max_outstanding.load(Ordering::SeqCst);
    println!(
        "request-N server stream, fast consumer: max outstanding {max} (N = {FAST_N}), {} credits granted, the publisher stalled {} times",
        subscriber.granted(),
        ledger.stalls.load(Ordering::SeqCst)
    );
    assert!(max <= u64::from(FAST_N), "outstanding {max} > {FAST_N}");
    assert!(subscriber.granted() <= u64::from(FAST_N) + FAST_ITEMS);
    // The window was refilled many times over: the stream ran on grants, not on N alone.
    assert!(ledger.granted.load(Ordering::SeqCst) >= FAST_ITEMS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_to_a_fast_consumer_never_runs_more_than_n_ahead() {
    let ledger = Arc::new(Ledger::default());
    let addr = credits::serve(fast_server(Arc::clone(&ledger))).await;
    let channel = credits::connect(addr).await;

    let (local, grants) = demand();
    let publisher_ledger = Arc::clone(&ledger);
    let source = futures_util::stream::iter(0..FAST_ITEMS).map(move |seq| {
        publisher_ledger.on_send();
        Item {
            seq,
            payload: vec![1; 64],
        }
    });
    let mut from_server =
        credits::bidi::<Item, Grant>(channel, credits::PUBLISH, RequestN::new(source, grants))
            .await;
    while let Some(grant) = from_server.next().await {
        local.request(grant.expect("grant").n);
    }
    assert_eq!(ledger.sent.load(Ordering::SeqCst), FAST_ITEMS);
    assert_eq!(ledger.consumed.load(Ordering::SeqCst), FAST_ITEMS);
    let max = ledger.max_outstanding.load(Ordering::SeqCst);
    println!("request-N client stream, fast consumer: max outstanding {max} (N = {FAST_N})");
    assert!(max <= u64::from(FAST_N), "outstanding {max} > {FAST_N}");
}
