use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::word::MAX_LIMIT;
use super::*;
use crate::algorithm::{Aimd, Fixed, Outcome, Sample};
use crate::clock::ManualClock;
use crate::criticality::Criticality;

const MS: Duration = Duration::from_millis(1);

fn fixed(n: usize) -> LimiterBuilder<ManualClock> {
    Limiter::builder()
        .algorithm(Fixed::new(n).unwrap())
        .clock(ManualClock::new())
}

/// A waker that records whether it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn poll_once<C: Clock>(
    w: &mut Waiter<C>,
    flag: &Arc<Flag>,
) -> Poll<Result<OwnedPermit<C>, Rejection>> {
    let waker = Waker::from(Arc::clone(flag));
    let mut cx = Context::from_waker(&waker);
    Pin::new(w).poll(&mut cx)
}

fn queued<C: Clock>(a: Acquire<C>) -> Waiter<C> {
    match a {
        Acquire::Queued(w) => w,
        Acquire::Ready(_) => panic!("expected to wait"),
    }
}

#[test]
fn admits_up_to_the_limit_then_rejects_with_a_reason() {
    let l = fixed(2).build().unwrap();
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    assert_eq!(a.in_flight_at_acquire(), 1);
    assert_eq!(b.in_flight_at_acquire(), 2);
    let r = l.try_acquire().unwrap_err();
    assert_eq!(r.reason, RejectReason::LimitReached);
    assert_eq!((r.limit, r.in_flight), (2, 2));
    assert_eq!(r.retry_after, Duration::from_secs(1));
    a.success();
    b.dropped();
    assert_eq!(l.in_flight(), 0);
    let s = l.stats();
    assert_eq!((s.counters.success, s.counters.dropped), (1, 1));
    assert_eq!(s.counters.rejected_for(RejectReason::LimitReached), 1);
    assert_eq!(s.peak_in_flight, 2);
    assert_eq!(s.algorithm, "static");
}

#[test]
fn dropping_a_permit_counts_as_ignored_and_frees_the_slot() {
    let l = fixed(1).build().unwrap();
    drop(l.try_acquire().unwrap());
    assert_eq!(l.in_flight(), 0);
    l.try_acquire().unwrap().ignore();
    assert_eq!(l.stats().counters.ignored, 2);
}

/// Every way a permit ends (each report, or a drop) releases it exactly once and gives back
/// an owned permit's handle on the limiter: the limiter's state (here its clock) is freed
/// when the last permit ends after the limiter itself was dropped.
#[test]
fn every_end_of_a_permit_releases_it_once_and_gives_back_its_handle() {
    /// A clock that holds a token: it is freed with the limiter's state.
    #[derive(Debug, Clone)]
    struct Tracked(ManualClock, #[allow(dead_code)] Arc<()>);
    impl crate::clock::Clock for Tracked {
        fn now(&self) -> Duration {
            self.0.now()
        }
    }
    type End = fn(OwnedPermit<Tracked>);
    let ends: [(&str, End); 5] = [
        ("success", |p| p.success()),
        ("success_with_rtt", |p| p.success_with_rtt(MS)),
        ("dropped", |p| p.dropped()),
        ("ignore", |p| p.ignore()),
        ("drop", drop),
    ];
    for bypass in [false, true] {
        for (name, end) in ends {
            let token = Arc::new(());
            let limiter = Limiter::builder()
                .algorithm(Fixed::new(1).unwrap())
                .rtt_sampling(RttSampling::All)
                .clock(Tracked(ManualClock::new(), Arc::clone(&token)))
                .build()
                .unwrap();
            let request = Request::new().bypass(bypass);
            end(limiter.try_acquire_owned_with(request).unwrap());
            assert_eq!(limiter.in_flight(), 0, "{name}, bypass {bypass}");
            let c = limiter.stats().counters;
            assert_eq!(
                c.success + c.dropped + c.ignored,
                1,
                "{name}, bypass {bypass}"
            );
            let held = limiter.try_acquire_owned_with(request).unwrap();
            assert!(bypass || limiter.try_acquire().is_err(), "{name}: limit 1");
            drop(limiter);
            assert_eq!(
                Arc::strong_count(&token),
                2,
                "{name}: the permit holds the limiter"
            );
            end(held);
            assert_eq!(
                Arc::strong_count(&token),
                1,
                "{name}, bypass {bypass}: freed"
            );
        }
    }
}

/// A fixed limit that keeps every sample it is fed, for the tests to read.
#[derive(Debug)]
struct Record(usize, Arc<std::sync::Mutex<Vec<Sample>>>);

impl LimitAlgorithm for Record {
    fn name(&self) -> &'static str {
        "record"
    }
    fn limit(&self) -> usize {
        self.0
    }
    fn update(&mut self, s: &Sample) -> usize {
        self.1.lock().expect("not poisoned").push(*s);
        self.0
    }
}

#[test]
fn rtt_is_measured_by_the_limiter_clock() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clock = ManualClock::new();
    let l = Limiter::builder()
        .algorithm(Record(4, Arc::clone(&seen)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let p = l.try_acquire().unwrap();
    let q = l.try_acquire().unwrap();
    clock.advance(7 * MS);
    p.success();
    q.ignore(); // ignored samples are not fed
    l.try_acquire().unwrap().success_with_rtt(3 * MS);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], Sample::success(7 * MS, 7 * MS, 1).at_limit(4));
    assert_eq!(seen[1].rtt, 3 * MS);
    assert_eq!(seen[1].in_flight, 1);
}

#[test]
fn samples_carry_the_running_refusal_count() {
    // The limit is 1: a second request is refused while the first is held. Each sample
    // carries every refusal so far, so the algorithm can tell the demand it turned away.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = Limiter::builder()
        .algorithm(Record(1, Arc::clone(&seen)))
        .clock(ManualClock::new())
        .build()
        .expect("a valid limiter");
    let p = l.try_acquire().expect("a free slot");
    assert!(l.try_acquire().is_err());
    assert!(l.try_acquire().is_err());
    p.success();
    let p = l.try_acquire().expect("a free slot");
    assert!(l.try_acquire().is_err());
    p.success();
    let refused: Vec<u64> = seen
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|s| s.refused)
        .collect();
    assert_eq!(refused, [2, 3]);
}

#[test]
fn samples_carry_the_limit_at_admission() {
    // The algorithm's limit is 3 until the first sample, then 10: a sample says the limit it
    // was admitted under, so the algorithm can tell that the limiter was full then.
    #[derive(Debug, Default)]
    struct Record(Arc<std::sync::Mutex<Vec<Sample>>>);
    impl LimitAlgorithm for Record {
        fn name(&self) -> &'static str {
            "record"
        }
        fn limit(&self) -> usize {
            if self.0.lock().unwrap().is_empty() {
                3
            } else {
                10
            }
        }
        fn update(&mut self, s: &Sample) -> usize {
            self.0.lock().unwrap().push(*s);
            10
        }
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = Limiter::builder()
        .algorithm(Record(Arc::clone(&seen)))
        .clock(ManualClock::new())
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, 5 * MS).unwrap())
        .build()
        .unwrap();
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    let c = l.try_acquire().unwrap();
    // Full at 3: the fourth waits, and is granted under the new limit of 10 (while c's
    // sample raises it, before c's permit is returned: 4 in flight).
    let Ok(Acquire::Queued(mut w)) = l.enqueue(Request::new(), 5 * MS) else {
        panic!("the fourth request finds the limit full and waits");
    };
    c.success();
    let Some(Ok(d)) = w.try_take() else {
        panic!("granted once the limit rose");
    };
    b.success();
    d.success();
    a.success();
    let seen = seen.lock().unwrap();
    let got: Vec<(usize, usize, bool)> = seen
        .iter()
        .map(|s| (s.in_flight, s.limit, s.filled_limit()))
        .collect();
    // c filled the limit of 3; b did not; d was granted at 4 in flight under 10; a was first.
    assert_eq!(
        got,
        [(3, 3, true), (2, 3, false), (4, 10, false), (1, 3, false)]
    );
}

#[test]
fn the_algorithm_moves_the_limit_and_shrinking_never_revokes() {
    let l = Limiter::builder()
        .algorithm(
            Aimd::builder()
                .initial_limit(10)
                .min_limit(2)
                .build()
                .unwrap(),
        )
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let permits: Vec<_> = (0..10).map(|_| l.try_acquire().unwrap()).collect();
    let mut it = permits.into_iter();
    it.next().unwrap().dropped(); // 10 * 0.9 = 9
    assert_eq!(l.limit(), 9);
    it.next().unwrap().dropped(); // 8
    it.next().unwrap().dropped(); // 7
    assert_eq!(l.limit(), 7);
    // 7 permits still held at a limit of 7: none revoked, none admitted.
    assert_eq!(l.in_flight(), 7);
    assert!(l.try_acquire().is_err());
    drop(it);
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn tiers_shed_the_least_important_first() {
    let l = fixed(10).tiers(TierThresholds::default()).build().unwrap();
    let req = |t| Request::new().tier(t);
    // Under contention for everything (the limit full of CriticalPlus work that keeps
    // being refused), each tier keeps its reservation: Sheddable gets 20 % of 10 = 2,
    // SheddablePlus up to 5, Critical up to 8, CriticalPlus up to 10.
    let mut held: Vec<_> = (0..10)
        .map(|_| l.try_acquire_with(req(Criticality::CriticalPlus)).unwrap())
        .collect();
    for _ in 0..10 {
        let r = l
            .try_acquire_with(req(Criticality::CriticalPlus))
            .unwrap_err();
        assert_eq!(r.reason, RejectReason::LimitReached);
    }
    held.clear();
    for _ in 0..2 {
        held.push(l.try_acquire_with(req(Criticality::Sheddable)).unwrap());
    }
    let r = l.try_acquire_with(req(Criticality::Sheddable)).unwrap_err();
    assert_eq!(
        (r.reason, r.tier),
        (RejectReason::TierThreshold, Criticality::Sheddable)
    );
    for _ in 0..3 {
        held.push(l.try_acquire_with(req(Criticality::SheddablePlus)).unwrap());
    }
    assert!(l.try_acquire_with(req(Criticality::SheddablePlus)).is_err());
    for _ in 0..3 {
        held.push(l.try_acquire_with(req(Criticality::Critical)).unwrap());
    }
    assert!(l.try_acquire_with(req(Criticality::Critical)).is_err());
    for _ in 0..2 {
        held.push(l.try_acquire_with(req(Criticality::CriticalPlus)).unwrap());
    }
    let r = l
        .try_acquire_with(req(Criticality::CriticalPlus))
        .unwrap_err();
    assert_eq!(r.reason, RejectReason::LimitReached);
    let c = l.stats().counters;
    assert_eq!(c.rejected_in_tier(Criticality::Sheddable), 1);
    assert_eq!(c.rejected_in_tier(Criticality::CriticalPlus), 11);
    assert_eq!(c.admitted_by_tier, [12, 3, 3, 2]);
}

/// The issue-16 regression: untagged (`Critical`) traffic was capped at 80 % of the limit
/// even when nothing more important was waiting.
#[test]
fn no_reservation_without_contention() {
    let l = fixed(10).tiers(TierThresholds::default()).build().unwrap();
    // Least important first: each tier fills the whole limit, and its refusal at the limit
    // reserves nothing for the tiers still to come, which are more important.
    for tier in Criticality::ALL.into_iter().rev() {
        let held: Vec<_> = (0..10)
            .map(|_| l.try_acquire_with(Request::new().tier(tier)).unwrap())
            .collect();
        let r = l.try_acquire_with(Request::new().tier(tier)).unwrap_err();
        assert_eq!(r.reason, RejectReason::LimitReached, "{tier}");
        drop(held);
    }
}

#[test]
fn a_freed_slot_goes_to_the_refused_tier_and_the_headroom_decays() {
    let tiers = TierThresholds::default()
        .with_contention_window(10 * MS)
        .unwrap();
    let l = fixed(10).tiers(tiers).build().unwrap();
    let req = |t| Request::new().tier(t);
    let mut held: Vec<_> = (0..10)
        .map(|_| l.try_acquire_with(req(Criticality::Sheddable)).unwrap())
        .collect();
    // A Critical request is refused at the full limit: the next freed slot is kept for
    // Critical work, not handed to more Sheddable work.
    assert!(l.try_acquire_with(req(Criticality::Critical)).is_err());
    held.pop();
    let r = l.try_acquire_with(req(Criticality::Sheddable)).unwrap_err();
    assert_eq!(r.reason, RejectReason::TierThreshold);
    held.push(l.try_acquire_with(req(Criticality::Critical)).unwrap());
    // One refusal, one slot of headroom: with two free, Sheddable may take one.
    held.truncate(8);
    held.push(l.try_acquire_with(req(Criticality::Sheddable)).unwrap());
    assert!(l.try_acquire_with(req(Criticality::Sheddable)).is_err());
    // A window without Critical refusals gives the slot back.
    l.clock().advance(10 * MS);
    held.push(l.try_acquire_with(req(Criticality::Sheddable)).unwrap());
    assert_eq!(l.in_flight(), 10);
    assert!(
        TierThresholds::default()
            .with_contention_window(Duration::ZERO)
            .is_err()
    );
}

/// With a queue, waiting is literal: the queue hands the next free slot to the most
/// important waiter, so requests that waited (and timed out) leave no headroom behind, and
/// a less important tier borrows the whole limit once nobody more important waits.
#[test]
fn with_a_queue_only_waiting_requests_hold_less_important_tiers_back() {
    let tiers = TierThresholds::default()
        .with_contention_window(Duration::from_secs(1))
        .unwrap();
    let l = fixed(10)
        .tiers(tiers)
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, 5 * MS).unwrap())
        .build()
        .unwrap();
    let req = |t| Request::new().tier(t);
    let mut held: Vec<_> = (0..10)
        .map(|_| l.try_acquire_with(req(Criticality::Sheddable)).unwrap())
        .collect();
    let Ok(Acquire::Queued(mut waiter)) = l.enqueue(req(Criticality::Critical), 5 * MS) else {
        panic!("a Critical request finds the limit full and waits");
    };
    // A fresh Sheddable request does not jump ahead of it.
    let Ok(Acquire::Queued(mut behind)) = l.enqueue(req(Criticality::Sheddable), 5 * MS) else {
        panic!("the Sheddable request waits too");
    };
    held.pop();
    let Some(Ok(granted)) = waiter.try_take() else {
        panic!("the freed slot goes to the Critical waiter");
    };
    assert!(behind.try_take().is_none());
    l.clock().advance(6 * MS);
    l.expire_waiters();
    assert!(matches!(behind.try_take(), Some(Err(_))));
    drop(granted);
    held.clear();
    let refill: Vec<_> = (0..10)
        .map(|_| l.try_acquire_with(req(Criticality::Sheddable)).unwrap())
        .collect();
    assert_eq!(refill.len(), 10);
}

/// With a queue, an important request the queue turns away (here: timed out) holds less
/// important work back as a refusal does without a queue.
#[test]
fn with_a_queue_a_turned_away_request_builds_headroom() {
    let tiers = TierThresholds::default()
        .with_contention_window(Duration::from_secs(1))
        .unwrap();
    let l = fixed(10)
        .tiers(tiers)
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, 5 * MS).unwrap())
        .build()
        .unwrap();
    let req = |t| Request::new().tier(t);
    let mut held: Vec<_> = (0..10)
        .map(|_| l.try_acquire_with(req(Criticality::Sheddable)).unwrap())
        .collect();
    let Ok(Acquire::Queued(mut waiter)) = l.enqueue(req(Criticality::Critical), 5 * MS) else {
        panic!("a Critical request finds the limit full and waits");
    };
    l.clock().advance(6 * MS);
    l.expire_waiters();
    assert!(matches!(waiter.try_take(), Some(Err(_))));
    held.pop();
    let r = l.try_acquire_with(req(Criticality::Sheddable)).unwrap_err();
    assert_eq!(r.reason, RejectReason::TierThreshold);
    held.push(l.try_acquire_with(req(Criticality::Critical)).unwrap());
}

#[test]
fn bypass_is_counted_but_never_limited() {
    let l = fixed(1).build().unwrap();
    let _p = l.try_acquire().unwrap();
    let b = l.try_acquire_with(Request::new().bypass(true)).unwrap();
    assert!(b.is_bypass());
    assert_eq!(l.in_flight(), 1);
    b.success();
    assert_eq!(l.in_flight(), 1);
    assert_eq!(l.stats().counters.bypassed, 1);
}

#[test]
fn partitions_guarantee_their_share_and_borrow_only_unreserved_capacity() {
    let l = fixed(10)
        .partition("live", 0.7)
        .partition("batch", 0.3)
        .build()
        .unwrap();
    let live = l.partition("live").unwrap();
    let batch = l.partition("batch").unwrap();
    assert!(l.partition("nope").is_none());
    let r = |p| Request::new().partition(p);
    // Batch alone may borrow live's idle capacity only beyond live's reservation (7):
    // it gets its own 3 and nothing more while live is idle.
    let mut held: Vec<_> = (0..3)
        .map(|_| l.try_acquire_with(r(batch)).unwrap())
        .collect();
    let e = l.try_acquire_with(r(batch)).unwrap_err();
    assert_eq!(e.reason, RejectReason::PartitionLimit);
    // Live gets its 7 guaranteed even though batch is busy.
    for _ in 0..7 {
        held.push(l.try_acquire_with(r(live)).unwrap());
    }
    assert_eq!(l.in_flight(), 10);
    assert_eq!(
        l.try_acquire_with(r(live)).unwrap_err().reason,
        RejectReason::LimitReached
    );
    drop(held);
    // Live may borrow batch's share when batch is idle? No: batch's 3 are reserved. Live
    // reaches 7 and stops; the total never exceeds the limit.
    let held: Vec<_> = (0..7)
        .map(|_| l.try_acquire_with(r(live)).unwrap())
        .collect();
    assert_eq!(
        l.try_acquire_with(r(live)).unwrap_err().reason,
        RejectReason::PartitionLimit
    );
    let stats = l.stats();
    assert_eq!(stats.partitions[0].in_flight, 7);
    assert_eq!(stats.partitions[0].guaranteed, 7);
    drop(held);
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn partitions_with_unreserved_capacity_let_anyone_borrow() {
    let l = fixed(10)
        .partition("a", 0.2)
        .partition("b", 0.2)
        .build()
        .unwrap();
    let a = l.partition("a").unwrap();
    // 6 of 10 are unreserved: `a` can hold its 2 plus the 6 free ones.
    let held: Vec<_> = (0..8)
        .map(|_| l.try_acquire_with(Request::new().partition(a)).unwrap())
        .collect();
    assert!(l.try_acquire_with(Request::new().partition(a)).is_err());
    // `b` still has its 2 reserved.
    let b = l.partition("b").unwrap();
    let _b1 = l.try_acquire_with(Request::new().partition(b)).unwrap();
    let _b2 = l.try_acquire_with(Request::new().partition(b)).unwrap();
    assert_eq!(l.in_flight(), 10);
    drop(held);
}

#[test]
fn bad_builder_input_is_a_typed_error() {
    let e = fixed(4)
        .partition("a", 0.8)
        .partition("b", 0.4)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "partition.share");
    let e = fixed(4).partition("a", f64::NAN).build().unwrap_err();
    assert_eq!(e.field(), "partition.share");
    let e = fixed(4)
        .partition("a", 0.1)
        .partition("a", 0.1)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "partition.name");
    assert_eq!(
        QueueConfig::new(0, QueueDiscipline::Fifo, MS)
            .unwrap_err()
            .field(),
        "queue.capacity"
    );
    assert_eq!(
        QueueConfig::new(1, QueueDiscipline::Fifo, Duration::ZERO)
            .unwrap_err()
            .field(),
        "queue.max_wait"
    );
    let codel = QueueDiscipline::CoDel {
        target: 10 * MS,
        interval: 5 * MS,
    };
    assert_eq!(
        QueueConfig::new(1, codel, MS).unwrap_err().field(),
        "queue.interval"
    );
}

#[test]
fn without_a_queue_enqueue_rejects_at_once() {
    let l = fixed(1).build().unwrap();
    let _p = l.try_acquire().unwrap();
    let e = l
        .enqueue(Request::new(), Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.reason, RejectReason::LimitReached);
}

fn queued_limiter(limit: usize, cap: usize, d: QueueDiscipline) -> Limiter<ManualClock> {
    fixed(limit)
        .queue(QueueConfig::new(cap, d, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap()
}

/// Enqueues three waiters while one permit is held, then releases permits one at a time
/// and returns the order in which waiters were granted.
fn grant_order(d: QueueDiscipline, clock_step: Duration) -> Vec<usize> {
    let l = queued_limiter(1, 10, d);
    let held = l.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..3)
        .map(|_| {
            let w = queued(l.enqueue(Request::new(), Duration::from_secs(1)).unwrap());
            l.clock().advance(clock_step);
            w
        })
        .collect();
    let mut order = Vec::new();
    let mut current = Some(held);
    while let Some(p) = current.take() {
        p.success();
        for (i, w) in waiters.iter_mut().enumerate() {
            if let Some(Ok(p)) = w.try_take() {
                order.push(i);
                current = Some(p);
            }
        }
    }
    order
}

#[test]
fn queue_disciplines_order_waiters() {
    assert_eq!(grant_order(QueueDiscipline::Fifo, MS), vec![0, 1, 2]);
    assert_eq!(grant_order(QueueDiscipline::Lifo, MS), vec![2, 1, 0]);
    // Adaptive LIFO: FIFO while the queue is young, LIFO once it has stood for 100 ms.
    assert_eq!(
        grant_order(QueueDiscipline::adaptive_lifo(), MS),
        vec![0, 1, 2]
    );
    assert_eq!(
        grant_order(QueueDiscipline::adaptive_lifo(), 60 * MS),
        vec![2, 1, 0]
    );
}

#[test]
fn more_important_tiers_wait_ahead_and_displace_less_important_ones() {
    let l = queued_limiter(1, 2, QueueDiscipline::Fifo);
    let held = l.try_acquire().unwrap();
    let t = Duration::from_secs(1);
    let mut low = queued(
        l.enqueue(Request::new().tier(Criticality::Sheddable), t)
            .unwrap(),
    );
    let mut mid = queued(
        l.enqueue(Request::new().tier(Criticality::Critical), t)
            .unwrap(),
    );
    // The queue is full: a CriticalPlus request displaces the Sheddable one.
    let mut top = queued(
        l.enqueue(Request::new().tier(Criticality::CriticalPlus), t)
            .unwrap(),
    );
    assert_eq!(
        low.try_take().unwrap().unwrap_err().reason,
        RejectReason::Displaced
    );
    // A Sheddable request finds nothing to displace.
    let e = l
        .enqueue(Request::new().tier(Criticality::Sheddable), t)
        .unwrap_err();
    assert_eq!(e.reason, RejectReason::QueueFull);
    held.success();
    assert!(mid.try_take().is_none());
    let p = top.try_take().unwrap().unwrap();
    p.success();
    mid.try_take().unwrap().unwrap().success();
    assert_eq!(l.in_flight(), 0);
    assert_eq!(l.queue_depth(), 0);
}

#[test]
fn waiters_time_out_at_their_deadline() {
    let l = queued_limiter(1, 4, QueueDiscipline::Fifo);
    let _held = l.try_acquire().unwrap();
    let mut w = queued(l.enqueue(Request::new(), 50 * MS).unwrap());
    assert_eq!(w.deadline(), 50 * MS);
    assert_eq!(l.next_deadline(), Some(50 * MS));
    l.clock().advance(49 * MS);
    assert_eq!(l.expire_waiters(), 1);
    assert!(w.try_take().is_none());
    l.clock().advance(MS);
    assert_eq!(l.expire_waiters(), 0);
    let e = w.try_take().unwrap().unwrap_err();
    assert_eq!(e.reason, RejectReason::QueueTimeout);
    assert_eq!(
        l.stats().counters.rejected_for(RejectReason::QueueTimeout),
        1
    );
}

#[test]
fn the_queue_caps_a_callers_timeout_at_max_wait() {
    let l = fixed(1)
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, 20 * MS).unwrap())
        .build()
        .unwrap();
    let _held = l.try_acquire().unwrap();
    let w = queued(l.enqueue(Request::new(), Duration::from_secs(60)).unwrap());
    assert_eq!(w.deadline(), 20 * MS);
}

#[test]
fn codel_cuts_waits_short_once_a_standing_queue_forms() {
    let l = fixed(1)
        .queue(QueueConfig::codel(100).unwrap())
        .build()
        .unwrap();
    let clock = l.clock().clone();
    let _held = l.try_acquire().unwrap();
    // A fresh queue: a waiter may wait up to N = 100 ms.
    let mut first = queued(l.enqueue(Request::new(), Duration::from_secs(1)).unwrap());
    assert_eq!(first.next_check(Duration::ZERO), 5 * MS);
    clock.advance(6 * MS);
    l.expire_waiters();
    assert!(
        first.try_take().is_none(),
        "not yet a standing queue: no CoDel cut"
    );
    // The queue stays non-empty: at 100 ms it is standing and waits are cut to M = 5 ms.
    clock.set(99 * MS);
    let mut second = queued(l.enqueue(Request::new(), Duration::from_secs(1)).unwrap());
    clock.set(100 * MS);
    l.expire_waiters();
    // first waited 100 ms >= N: its normal cap; it leaves as a CoDel cut.
    assert_eq!(
        first.try_take().unwrap().unwrap_err().reason,
        RejectReason::QueueCoDel
    );
    assert!(second.try_take().is_none(), "second has waited 1 ms only");
    clock.set(104 * MS);
    l.expire_waiters();
    assert!(second.try_take().unwrap().is_err(), "cut at M = 5 ms");
    assert_eq!(l.queue_depth(), 0);
}

#[test]
fn a_dropped_waiter_leaves_the_queue_and_does_not_swallow_a_wakeup() {
    let l = queued_limiter(1, 4, QueueDiscipline::Fifo);
    let held = l.try_acquire().unwrap();
    let t = Duration::from_secs(1);
    let a = queued(l.enqueue(Request::new(), t).unwrap());
    let mut b = queued(l.enqueue(Request::new(), t).unwrap());
    let flag = Arc::new(Flag::default());
    assert!(poll_once(&mut b, &flag).is_pending());
    drop(a);
    assert_eq!(l.queue_depth(), 1);
    held.success();
    assert!(flag.0.load(Ordering::SeqCst), "b was woken");
    let Poll::Ready(Ok(p)) = poll_once(&mut b, &flag) else {
        panic!("b should hold the permit")
    };
    assert_eq!(l.in_flight(), 1);
    p.success();
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn a_waiter_dropped_after_its_grant_passes_the_permit_on() {
    let l = queued_limiter(1, 4, QueueDiscipline::Fifo);
    let held = l.try_acquire().unwrap();
    let t = Duration::from_secs(1);
    let a = queued(l.enqueue(Request::new(), t).unwrap());
    let mut b = queued(l.enqueue(Request::new(), t).unwrap());
    held.success(); // granted to a, which never collects it
    assert_eq!(l.in_flight(), 1);
    assert!(b.try_take().is_none());
    drop(a); // releases a's permit, which goes to b
    let p = b.try_take().unwrap().unwrap();
    assert_eq!(l.in_flight(), 1);
    drop(p);
    assert_eq!(l.in_flight(), 0);
    let c = l.stats().counters;
    assert_eq!(c.admitted_from_queue, 2);
    assert_eq!(c.ignored, 2);
}

#[test]
fn a_raised_limit_admits_waiters() {
    let l = Limiter::builder()
        .algorithm(
            Aimd::builder()
                .initial_limit(2)
                .min_limit(1)
                .build()
                .unwrap(),
        )
        .clock(ManualClock::new())
        .queue(QueueConfig::new(4, QueueDiscipline::Fifo, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap();
    let a = l.try_acquire().unwrap();
    let _b = l.try_acquire().unwrap();
    let mut w1 = queued(l.enqueue(Request::new(), Duration::from_secs(1)).unwrap());
    let mut w2 = queued(l.enqueue(Request::new(), Duration::from_secs(1)).unwrap());
    // a succeeds with 1 in flight at acquire: 1*2 >= 2, so the limit grows to 3; a's slot and
    // the new slot go to w1 and w2.
    a.success();
    assert_eq!(l.limit(), 3);
    assert!(w1.try_take().unwrap().is_ok());
    assert!(w2.try_take().unwrap().is_ok());
}

#[cfg(feature = "tokio")]
mod tokio_tests {
    use super::*;
    use crate::clock::TokioClock;

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_then_times_out_with_tokio_timers() {
        let l = Limiter::builder()
            .algorithm(Fixed::new(1).unwrap())
            .clock(TokioClock::new())
            .queue(QueueConfig::new(4, QueueDiscipline::Fifo, Duration::from_secs(1)).unwrap())
            .build()
            .unwrap();
        let held = l.try_acquire().unwrap();
        let start = tokio::time::Instant::now();
        let e = l.acquire(Request::new(), 30 * MS).await.unwrap_err();
        assert_eq!(e.reason, RejectReason::QueueTimeout);
        assert!(start.elapsed() >= 30 * MS && start.elapsed() < 40 * MS);
        // Released while waiting: granted.
        let l2 = l.clone();
        let task = tokio::spawn(async move {
            l2.acquire(Request::new(), 30 * MS)
                .await
                .map(|p| p.success())
        });
        tokio::time::sleep(10 * MS).await;
        held.success();
        task.await.unwrap().unwrap();
        assert_eq!(l.in_flight(), 0);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Acquire(u8),
        Enqueue(u8, u8),
        Release(usize, u8),
        DropWaiter(usize),
        Advance(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u8>().prop_map(Op::Acquire),
            2 => (any::<u8>(), any::<u8>()).prop_map(|(t, ms)| Op::Enqueue(t, ms)),
            3 => (any::<usize>(), any::<u8>()).prop_map(|(i, o)| Op::Release(i, o)),
            1 => any::<usize>().prop_map(Op::DropWaiter),
            1 => any::<u8>().prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the sequence of operations: admission never exceeds the limit or a tier's
        /// capacity, the limit stays within [min, max], every permit is released exactly once
        /// (in-flight returns to 0), and the queue never exceeds its capacity.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..200), codel in any::<bool>()) {
            let discipline = if codel { QueueDiscipline::codel() } else { QueueDiscipline::Lifo };
            let tiers = TierThresholds::default();
            let l = Limiter::builder()
                .algorithm(Aimd::builder().initial_limit(4).min_limit(2).max_limit(8).build().unwrap())
                .clock(ManualClock::new())
                .tiers(tiers)
                .queue(QueueConfig::new(5, discipline, Duration::from_millis(50)).unwrap())
                .build()
                .unwrap();
            let mut permits: Vec<Permit<'_, ManualClock>> = Vec::new();
            let mut waiters: Vec<Waiter<ManualClock>> = Vec::new();
            let mut issued = 0usize;
            let tier = |b: u8| Criticality::ALL[usize::from(b) % 4];
            for op in ops {
                match op {
                    Op::Acquire(t) => {
                        let before = l.in_flight();
                        let limit = l.limit();
                        if let Ok(p) = l.try_acquire_with(Request::new().tier(tier(t))) {
                            prop_assert!(before < limit);
                            prop_assert!(p.in_flight_at_acquire() <= limit);
                            issued += 1;
                            permits.push(p);
                        }
                    }
                    Op::Enqueue(t, ms) => {
                        match l.enqueue(Request::new().tier(tier(t)), Duration::from_millis(u64::from(ms) + 1)) {
                            Ok(Acquire::Ready(p)) => { issued += 1; permits.push(p) }
                            Ok(Acquire::Queued(w)) => waiters.push(w),
                            Err(_) => {}
                        }
                    }
                    Op::Release(i, o) if !permits.is_empty() => {
                        let p = permits.swap_remove(i % permits.len());
                        match o % 3 { 0 => p.success(), 1 => p.dropped(), _ => p.ignore() }
                    }
                    Op::Release(..) => {}
                    Op::DropWaiter(i) if !waiters.is_empty() => {
                        drop(waiters.swap_remove(i % waiters.len()));
                    }
                    Op::DropWaiter(_) => {}
                    Op::Advance(ms) => { l.clock().advance(Duration::from_millis(u64::from(ms))); l.expire_waiters(); }
                }
                // Collect granted waiters.
                let mut i = 0;
                while i < waiters.len() {
                    match waiters[i].try_take() {
                        Some(Ok(p)) => { issued += 1; permits.push(p); waiters.swap_remove(i); }
                        Some(Err(_)) => { waiters.swap_remove(i); }
                        None => i += 1,
                    }
                }
                let limit = l.limit();
                prop_assert!((2..=8).contains(&limit));
                prop_assert!(l.queue_depth() <= 5);
                prop_assert!(l.queue_depth() <= waiters.len());
                // Waiters are collected after every operation, so every held slot is a permit.
                prop_assert_eq!(l.in_flight(), permits.len());
            }
            drop(waiters);
            drop(permits);
            prop_assert_eq!(l.in_flight(), 0);
            // Every permit issued was released exactly once (reported or dropped).
            let c = l.stats().counters;
            prop_assert_eq!(c.success + c.dropped + c.ignored, issued as u64);
            prop_assert_eq!(c.admitted_total(), issued as u64);
        }

        /// Tiers reserve nothing without contention: a request is refused below the limit
        /// only after a request of a more important tier has been refused. And shedding is
        /// strictly by tier: at one instant, once a request of a tier has been refused with
        /// `x` in flight, no less important request is admitted with `x − 1` or more in
        /// flight (a freed slot never goes to less important work).
        #[test]
        fn tiers_reserve_only_under_contention_and_shed_in_order(
            ops in proptest::collection::vec((0u8..4, 0u8..8), 1..300),
        ) {
            const LIMIT: usize = 10;
            let l = fixed(LIMIT).tiers(TierThresholds::default()).build().unwrap();
            let mut permits = Vec::new();
            let mut contended = [false; 4];
            // Per tier, the least in flight at which it was refused at this instant.
            let mut refused_at: [Option<usize>; 4] = [None; 4];
            for (t, action) in ops {
                let tier = Criticality::ALL[usize::from(t)];
                match action {
                    0..=4 => {
                        let before = l.in_flight();
                        match l.try_acquire_with(Request::new().tier(tier)) {
                            Ok(p) => {
                                for more in &Criticality::ALL[..tier.index()] {
                                    if let Some(x) = refused_at[more.index()] {
                                        prop_assert!(before + 1 < x, "{tier} admitted at {before} after {more} refused at {x}");
                                    }
                                }
                                permits.push(p);
                            }
                            Err(r) => {
                                if !contended[tier.index()] {
                                    prop_assert_eq!(before, LIMIT);
                                    prop_assert_eq!(r.reason, RejectReason::LimitReached);
                                }
                                for lower in &mut contended[tier.index() + 1..] {
                                    *lower = true;
                                }
                                let x = &mut refused_at[tier.index()];
                                *x = Some(x.map_or(before, |x| x.min(before)));
                            }
                        }
                    }
                    5 | 6 => {
                        if !permits.is_empty() {
                            permits.swap_remove(usize::from(t) % permits.len()).success();
                        }
                    }
                    _ => {
                        l.clock().advance(Duration::from_millis(1 + u64::from(t) * 5));
                        refused_at = [None; 4];
                    }
                }
            }
        }
    }
}

#[test]
fn stress_threads_never_exceed_the_limit_and_release_everything() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 1_000_000;
    let l = Limiter::builder()
        .algorithm(
            Aimd::builder()
                .initial_limit(8)
                .min_limit(2)
                .max_limit(16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let admitted = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let l = l.clone();
            let admitted = Arc::clone(&admitted);
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    if let Ok(p) = l.try_acquire() {
                        assert!(p.in_flight_at_acquire() <= 16);
                        admitted.fetch_add(1, Ordering::Relaxed);
                        if (i + t) % 97 == 0 {
                            p.dropped();
                        } else {
                            p.success();
                        }
                    }
                }
            });
        }
    });
    let s = l.stats();
    assert_eq!(s.in_flight, 0);
    assert!(s.peak_in_flight <= 16, "peak {}", s.peak_in_flight);
    assert!(s.limit >= 2 && s.limit <= 16);
    let total = s.counters.success + s.counters.dropped + s.counters.ignored;
    assert_eq!(total, admitted.load(Ordering::Relaxed) as u64);
    assert_eq!(
        s.counters.admitted_total() + s.counters.rejected_total(),
        (THREADS * ROUNDS) as u64
    );
}

#[test]
fn stress_fixed_limit_peak_is_the_limit_exactly_bounded() {
    let l = Limiter::new(Fixed::new(3).unwrap());
    let over = AtomicBool::new(false);
    let current = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..100_000 {
                    if let Ok(p) = l.try_acquire() {
                        let n = current.fetch_add(1, Ordering::SeqCst) + 1;
                        if n > 3 {
                            over.store(true, Ordering::SeqCst);
                        }
                        current.fetch_sub(1, Ordering::SeqCst);
                        p.success();
                    }
                }
            });
        }
    });
    assert!(
        !over.load(Ordering::SeqCst),
        "more than 3 permits were held at once"
    );
    assert_eq!(l.in_flight(), 0);
    assert!(l.stats().peak_in_flight <= 3);
}

/// An algorithm that aggregates samples (so the limiter may sample) and records them.
#[derive(Debug, Default)]
struct Aggregating(Arc<std::sync::Mutex<Vec<Sample>>>);

impl LimitAlgorithm for Aggregating {
    fn name(&self) -> &'static str {
        "aggregating"
    }
    fn limit(&self) -> usize {
        100
    }
    fn update(&mut self, s: &Sample) -> usize {
        self.0.lock().unwrap().push(*s);
        100
    }
    fn aggregates_samples(&self) -> bool {
        true
    }
}

/// A limiter on a manual clock with an [`Aggregating`] algorithm, and what it was fed.
fn aggregating() -> (
    Limiter<ManualClock>,
    ManualClock,
    Arc<std::sync::Mutex<Vec<Sample>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clock = ManualClock::new();
    let l = Limiter::builder()
        .algorithm(Aggregating(Arc::clone(&seen)))
        .clock(clock.clone())
        .build()
        .unwrap();
    (l, clock, seen)
}

/// Runs `per_ms` requests (each released at once) per millisecond for `ms`
/// milliseconds; returns how many permits were sampled.
fn drive(l: &Limiter<ManualClock>, clock: &ManualClock, per_ms: usize, ms: usize) -> usize {
    let mut sampled = 0;
    for _ in 0..ms {
        for _ in 0..per_ms {
            let p = l.try_acquire().unwrap();
            sampled += usize::from(p.is_sampled());
            p.success();
        }
        clock.advance(MS);
    }
    sampled
}

#[test]
fn at_high_rates_a_steady_subset_measures_its_rtt_and_every_outcome_is_counted() {
    let (l, clock, seen) = aggregating();
    // 1 000/s: below twice the default target (2 000/s), every permit is measured.
    assert_eq!(drive(&l, &clock, 1, 500), 500);
    // 100 000/s for 1 s: the sampler settles at 1 in 32 (3 125 samples/s ≥ 2 000).
    drive(&l, &clock, 100, 1000);
    seen.lock().unwrap().clear();
    let sampled = drive(&l, &clock, 100, 1000);
    assert_eq!(sampled, 100_000 / 32);
    assert_eq!(seen.lock().unwrap().len(), sampled);
    assert_eq!(l.stats().counters.success, 500 + 200_000);
    assert_eq!(l.stats().counters.admitted_total(), 500 + 200_000);
    // Back to 1 000/s: after one sampled permit shows the rate, every permit again.
    drive(&l, &clock, 1, 200);
    assert_eq!(drive(&l, &clock, 1, 100), 100);
}

#[test]
fn a_drop_always_reaches_the_algorithm_with_the_latest_measured_rtt() {
    let (l, clock, seen) = aggregating();
    drive(&l, &clock, 100, 1000);
    // Find an unsampled permit, and have it fail.
    let p = loop {
        let p = l.try_acquire().unwrap();
        if !p.is_sampled() {
            break p;
        }
        clock.advance(3 * MS);
        p.success();
    };
    seen.lock().unwrap().clear();
    p.dropped();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].outcome, Outcome::Dropped);
    assert_eq!(seen[0].rtt, 3 * MS, "the latest sampled success's RTT");
}

#[test]
fn rtt_sampling_all_and_per_sample_algorithms_measure_every_permit() {
    let clock = ManualClock::new();
    let all = Limiter::builder()
        .algorithm(Aggregating::default())
        .rtt_sampling(RttSampling::All)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(drive(&all, &clock, 100, 1000), 100_000);
    let aimd = Limiter::builder()
        .algorithm(Aimd::builder().initial_limit(200).build().unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(drive(&aimd, &clock, 100, 1000), 100_000);
}

#[test]
fn limits_and_queues_beyond_the_word_are_refused_or_capped() {
    let l = Limiter::builder()
        .algorithm(Fixed::new(1 << 30).unwrap())
        .build()
        .unwrap();
    assert_eq!(l.limit(), MAX_LIMIT);
    let err = Limiter::builder()
        .queue(QueueConfig::new(1 << 25, QueueDiscipline::Fifo, MS).unwrap())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "queue.capacity");
}

#[test]
fn owned_permits_outlive_the_borrow_and_move_across_threads() {
    let l = fixed(2).build().unwrap();
    let p = l.try_acquire_owned().unwrap();
    let q = l
        .try_acquire_owned_with(Request::new().tier(Criticality::Sheddable))
        .unwrap();
    drop(l.clone());
    std::thread::spawn(move || {
        p.success();
        q.dropped();
    })
    .join()
    .unwrap();
    assert_eq!(l.in_flight(), 0);
    let c = l.stats().counters;
    assert_eq!((c.success, c.dropped), (1, 1));
}

/// The default limiter (RTT sampling on, counters striped by thread, `Critical` admissions
/// derived) under four threads: every admission and outcome is counted exactly, per tier.
#[test]
fn stress_default_limiter_counts_every_tier_and_outcome_exactly() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 250_000;
    let l = Limiter::builder()
        .tiers(TierThresholds::default())
        .build()
        .unwrap();
    let admitted: [AtomicUsize; 4] = Default::default();
    let dropped = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (l, admitted, dropped) = (&l, &admitted, &dropped);
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    let tier = Criticality::ALL[(i + t) % 4];
                    if let Ok(p) = l.try_acquire_with(Request::new().tier(tier)) {
                        admitted[tier.index()].fetch_add(1, Ordering::Relaxed);
                        if i % 101 == 0 {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            p.dropped();
                        } else {
                            p.success();
                        }
                    }
                }
            });
        }
    });
    let c = l.stats().counters;
    let expected: Vec<u64> = admitted
        .iter()
        .map(|a| a.load(Ordering::Relaxed) as u64)
        .collect();
    assert_eq!(c.admitted_by_tier.to_vec(), expected);
    assert_eq!(c.dropped, dropped.load(Ordering::Relaxed) as u64);
    assert_eq!(c.success + c.dropped, expected.iter().sum::<u64>());
    assert_eq!(
        c.admitted_total() + c.rejected_total(),
        (THREADS * ROUNDS) as u64
    );
}

/// The inlined admission (no partitions) and the out-of-line one (any limiter with
/// partitions) decide alike below the limit: the same in-flight counts, RTT sampling by
/// admission sequence, tier counts and peak.
#[test]
fn the_inlined_and_the_out_of_line_admission_agree() {
    let clock = ManualClock::new();
    let build = |partitioned: bool| {
        let mut b = Limiter::builder()
            .algorithm(Aggregating::default())
            .tiers(TierThresholds::default())
            .clock(clock.clone());
        if partitioned {
            b = b.partition("other", 0.01);
        }
        b.build().unwrap()
    };
    let (fast, slow) = (build(false), build(true));
    let tiers = [
        Criticality::Critical,
        Criticality::Sheddable,
        Criticality::CriticalPlus,
        Criticality::SheddablePlus,
    ];
    let mut sampled = 0;
    // 12 000/s for 300 ms: the sampler moves to 1 in 4 on the way.
    for ms in 0..300 {
        let mut held = Vec::new();
        for i in 0..12 {
            let request = Request::new().tier(tiers[(ms + i) % 4]);
            let (f, s) = (
                fast.try_acquire_with(request).unwrap(),
                slow.try_acquire_with(request).unwrap(),
            );
            assert_eq!(f.in_flight_at_acquire(), i + 1);
            assert_eq!(f.in_flight_at_acquire(), s.in_flight_at_acquire());
            assert_eq!(f.is_sampled(), s.is_sampled(), "ms {ms}, permit {i}");
            assert_eq!(f.tier(), s.tier());
            sampled += usize::from(f.is_sampled());
            held.push((f, s));
        }
        clock.advance(MS);
        for (f, s) in held {
            f.success();
            s.success();
        }
    }
    assert!(sampled < 300 * 12 / 2, "sampling set in: {sampled}");
    let (f, s) = (fast.stats(), slow.stats());
    assert_eq!(f.counters, s.counters);
    assert_eq!(f.peak_in_flight, 12);
    assert_eq!(s.peak_in_flight, 12);
    assert_eq!(f.counters.admitted_by_tier, [900; 4]);
}
