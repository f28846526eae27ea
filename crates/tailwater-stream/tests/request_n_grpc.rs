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
