//! loom models: every interleaving of the permit accounting and the waiter hand-off.

use std::time::Duration;

use loom::thread;

use super::*;
use crate::algorithm::Fixed;
use crate::clock::ManualClock;

fn limiter(limit: usize, queue: bool) -> Limiter<ManualClock> {
    let mut b = Limiter::builder()
        .algorithm(Fixed::new(limit).expect("valid"))
        .clock(ManualClock::new());
    if queue {
        b = b.queue(
            QueueConfig::new(4, QueueDiscipline::Fifo, Duration::from_secs(1)).expect("valid"),
        );
    }
    b.build().expect("valid")
}

/// Two threads race to acquire one slot: at most one wins at a time, and every slot is
/// returned.
#[test]
fn loom_acquire_release_never_exceeds_the_limit() {
    loom::model(|| {
        let l = limiter(1, false);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                thread::spawn(move || {
                    if let Ok(p) = l.try_acquire() {
                        assert_eq!(p.in_flight_at_acquire(), 1);
                        assert!(l.in_flight() <= 1);
                        p.success();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(l.in_flight(), 0);
    });
}

/// A permit is released while a waiter enqueues: the waiter is either granted the slot or
/// still queued with the slot free for the next release — never both lost.
#[test]
fn loom_release_races_enqueue_without_losing_the_wakeup() {
    loom::model(|| {
        let l = limiter(1, true);
        let held = l.try_acquire_owned().expect("first permit");
        let releaser = thread::spawn(move || held.success());
        let outcome = l
            .enqueue(Request::new(), Duration::from_secs(1))
            .expect("queue has room");
        releaser.join().expect("thread");
        match outcome {
            Acquire::Ready(p) => p.success(),
            Acquire::Queued(mut w) => {
                // The release finished: the slot must have been handed to the waiter.
                let p = w.try_take().expect("granted").expect("a permit");
                p.success();
            }
        }
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.queue_depth(), 0);
    });
}

/// A waiter is dropped (cancelled) while the permit it waits for is released: the slot is
/// never leaked, whichever happens first.
#[test]
fn loom_cancelled_waiter_never_leaks_a_slot() {
    loom::model(|| {
        let l = limiter(1, true);
        let held = l.try_acquire().expect("first permit");
        let waiter = match l
            .enqueue(Request::new(), Duration::from_secs(1))
            .expect("room")
        {
            Acquire::Queued(w) => w,
            Acquire::Ready(_) => unreachable!("the only slot is held"),
        };
        let canceller = thread::spawn(move || drop(waiter));
        held.success();
        canceller.join().expect("thread");
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.queue_depth(), 0);
    });
}
