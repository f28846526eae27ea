//! Unit tests of the request-N adaptors (no transport: the grants are polled by hand).

use super::*;
use futures_util::StreamExt;
use std::sync::atomic::AtomicU64;
use std::task::Waker;

fn poll<S: Stream + Unpin>(s: &mut S) -> Poll<Option<S::Item>> {
    Pin::new(s).poll_next(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn grants_coalesce_and_end_with_the_last_demand() {
    let (demand, mut grants) = demand();
    assert_eq!(poll(&mut grants), Poll::Pending);
    demand.request(3);
    demand.request(4);
    assert_eq!(poll(&mut grants), Poll::Ready(Some(7)));
    let other = demand.clone();
    drop(demand);
    other.request(1);
    drop(other);
    assert_eq!(poll(&mut grants), Poll::Ready(Some(1)));
    assert_eq!(poll(&mut grants), Poll::Ready(None));
}

#[test]
fn the_source_is_not_polled_without_credit() {
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&pulled);
    let source = futures_util::stream::iter(0..100u32).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let (demand, grants) = demand();
    let mut publisher = RequestN::new(source, grants);
    assert_eq!(poll(&mut publisher), Poll::Pending);
    assert_eq!(pulled.load(Ordering::Relaxed), 0);
    demand.request(2);
    assert_eq!(poll(&mut publisher), Poll::Ready(Some(0)));
    assert_eq!(poll(&mut publisher), Poll::Ready(Some(1)));
    assert_eq!(poll(&mut publisher), Poll::Pending);
    assert_eq!(pulled.load(Ordering::Relaxed), 2);
    // The subscriber cancels after one more credit: one more item, then the end.
    demand.request(1);
    drop(demand);
    assert_eq!(poll(&mut publisher), Poll::Ready(Some(2)));
    assert_eq!(poll(&mut publisher), Poll::Ready(None));
    assert_eq!((publisher.granted(), publisher.emitted()), (3, 3));
    // Two waits for credit: before the first grant and after the second item.
    assert_eq!(publisher.stalls(), 2);
}

/// Takes every grant waiting on `grants`; returns the total taken so far into `granted`.
fn take(grants: &mut Grants, granted: &mut u64) -> u64 {
    while let Poll::Ready(Some(g)) = poll(grants) {
        *granted += u64::from(g);
    }
    *granted
}

#[test]
fn a_subscriber_grants_n_then_quarter_windows_of_finished_items() {
    let (demand, mut grants) = demand();
    let n = 8;
    let mut subscriber = Subscriber::new(
        futures_util::stream::iter(0..10u32),
        demand,
        NonZeroU32::new(n).expect("n"),
    );
    let mut granted = 0u64;
    assert_eq!(take(&mut grants, &mut granted), 8, "the window at once");
    // The k-th poll yields item k-1 and marks item k-2 finished; items are always ready,
    // so the subscriber never idles and grants in batches.
    let mut expected = Vec::new();
    for k in 1..=10u64 {
        assert!(matches!(poll(&mut subscriber), Poll::Ready(Some(_))));
        let finished = k - 1;
        let now = take(&mut grants, &mut granted);
        assert!(
            now <= u64::from(n) + finished,
            "granted {now} > n + {finished}"
        );
        assert_eq!(subscriber.granted(), now);
        expected.push(now);
    }
    // Grants of 2 (n / 4) as every second item is finished.
    assert_eq!(expected, [8, 8, 10, 10, 12, 12, 14, 14, 16, 16]);
}

/// A source whose items are pushed by the test: `Pending` when empty.
fn manual() -> (
    std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<u32>>>,
    impl Stream<Item = u32> + Unpin,
) {
    let queue = std::rc::Rc::new(std::cell::RefCell::new(std::collections::VecDeque::new()));
    let source = std::rc::Rc::clone(&queue);
    let stream = futures_util::stream::poll_fn(move |_| match source.borrow_mut().pop_front() {
        Some(item) => Poll::Ready(Some(item)),
        None => Poll::Pending,
    });
    (queue, stream)
}

#[test]
fn a_subscriber_that_catches_up_grants_what_it_finished_at_once() {
    let (queue, source) = manual();
    let (demand, mut grants) = demand();
    // n = 64: batches of 16, grants on idle from 2 finished items.
    let mut subscriber = Subscriber::new(source, demand, NonZeroU32::new(64).expect("n"));
    let mut granted = 0;
    assert_eq!(take(&mut grants, &mut granted), 64);
    queue.borrow_mut().extend([0, 1, 2]);
    for _ in 0..3 {
        assert!(matches!(poll(&mut subscriber), Poll::Ready(Some(_))));
    }
    assert_eq!(
        take(&mut grants, &mut granted),
        64,
        "2 finished: below a batch"
    );
    // The consumer finishes the third item and finds nothing ready: the three go back now.
    assert_eq!(poll(&mut subscriber), Poll::Pending);
    assert_eq!(take(&mut grants, &mut granted), 67);
    // One finished item is below the least an idle grant sends: it waits for company.
    queue.borrow_mut().push_back(3);
    assert!(matches!(poll(&mut subscriber), Poll::Ready(Some(3))));
    assert_eq!(poll(&mut subscriber), Poll::Pending);
    assert_eq!(take(&mut grants, &mut granted), 67);
    queue.borrow_mut().push_back(4);
    assert!(matches!(poll(&mut subscriber), Poll::Ready(Some(4))));
    assert_eq!(poll(&mut subscriber), Poll::Pending);
    assert_eq!(take(&mut grants, &mut granted), 69);
    assert_eq!(subscriber.granted(), 69);
}

proptest::proptest! {
    /// Whatever arrives when: never more granted than `n` plus the finished items; never
    /// a batch's worth of finished items held back; and none held back past the idle
    /// minimum once the consumer waits.
    #[test]
    fn a_subscriber_never_grants_ahead_of_its_consumer(
        n in 1u32..300,
        arrivals in proptest::collection::vec(0usize..40, 1..60),
    ) {
        let (queue, source) = manual();
        let (demand, mut grants) = demand();
        let mut subscriber = Subscriber::new(source, demand, NonZeroU32::new(n).expect("n"));
        let (batch, idle_min) = (u64::from((n / 4).max(1)), u64::from((n / 32).max(1)));
        let mut granted = 0;
        let mut received = 0u64;
        let mut next = 0u32;
        for burst in arrivals {
            queue.borrow_mut().extend(next..next + burst as u32);
            next += burst as u32;
            loop {
                let polled = poll(&mut subscriber);
                // Every item yielded before this poll is finished.
                let finished = received;
                let now = take(&mut grants, &mut granted);
                proptest::prop_assert!(now <= u64::from(n) + finished);
                proptest::prop_assert!(u64::from(n) + finished - now < batch);
                match polled {
                    Poll::Ready(Some(_)) => received += 1,
                    Poll::Pending => {
                        proptest::prop_assert!(u64::from(n) + finished - now < idle_min);
                        break;
                    }
                    Poll::Ready(None) => unreachable!("the source never ends"),
                }
            }
        }
    }
}
