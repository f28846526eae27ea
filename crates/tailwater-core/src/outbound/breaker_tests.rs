use std::sync::Mutex;

use proptest::prelude::*;

use super::*;
use crate::clock::ManualClock;
use crate::outbound::Window;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn cfg() -> BreakerConfig {
    BreakerConfig {
        window: Window::Count(10),
        min_calls: 4,
        jitter: 0.0,
        ..Default::default()
    }
}

fn breaker(cfg: BreakerConfig) -> (CircuitBreaker<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (
        CircuitBreaker::with_clock(cfg, clock.clone()).unwrap(),
        clock,
    )
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Acquire and record at once.
    Call(Outcome),
    Advance(Duration),
    /// Acquire, expecting a refusal with this retry_after.
    Refused(Duration),
}

/// Hand-computed transitions: each row is a step and the state after it.
#[test]
fn closed_open_half_open_closed_by_hand() {
    use BreakerState::*;
    use Outcome::*;
    let (b, clock) = breaker(cfg());
    let rows: &[(Step, BreakerState)] = &[
        // 3 calls: below min_calls 4, however bad.
        (Step::Call(Dropped), Closed),
        (Step::Call(Dropped), Closed),
        (Step::Call(Dropped), Closed),
        // 4th call reaches min_calls: 3 of 4 failed = 75 % ≥ 50 %: trip for 5 s.
        (Step::Call(Success), Open),
        (Step::Refused(5 * S), Open),
        (Step::Advance(4 * S), Open),
        (Step::Refused(S), Open),
        (Step::Advance(S), Open),
        // The first call after 5 s is a probe; 2 successes of 3 close it (reopen_after 2).
        (Step::Call(Success), HalfOpen),
        (Step::Call(Success), Closed),
        // Closed again with an empty window: 4 failures trip it, trips = 1 again (5 s).
        (Step::Call(Dropped), Closed),
        (Step::Call(Dropped), Closed),
        (Step::Call(Dropped), Closed),
        (Step::Call(Dropped), Open),
        (Step::Refused(5 * S), Open),
        (Step::Advance(5 * S), Open),
        // A failed probe, then a second failure: re-open for 10 s (2nd consecutive trip).
        (Step::Call(Dropped), HalfOpen),
        (Step::Call(Dropped), Open),
        (Step::Refused(10 * S), Open),
        (Step::Advance(10 * S), Open),
        (Step::Call(Dropped), HalfOpen),
        (Step::Call(Dropped), Open),
        (Step::Refused(20 * S), Open), // 3rd trip: 20 s
    ];
    for (i, &(step, want)) in rows.iter().enumerate() {
        match step {
            Step::Call(o) => b.try_acquire().expect("admitted").record(o),
            Step::Advance(d) => clock.advance(d),
            Step::Refused(d) => assert_eq!(b.try_acquire().unwrap_err().retry_after, d, "row {i}"),
        }
        assert_eq!(b.state(), want, "row {i}: {step:?}");
    }
}

#[test]
fn slow_calls_trip_on_their_own_rate() {
    let (b, clock) = breaker(BreakerConfig {
        slow_call: 100 * MS,
        ..cfg()
    });
    let slow = |o| {
        let p = b.try_acquire().unwrap();
        clock.advance(150 * MS);
        p.record(o);
    };
    // 1 slow of 4 = 25 %: closed; 2 of 5 = 40 %: closed; 3 of 6 = 50 %: open, although
    // every call succeeded.
    for o in [Outcome::Success; 3] {
        b.try_acquire().unwrap().record(o);
    }
    slow(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    slow(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    slow(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn half_open_admits_at_most_probes_and_reclaims_leaked_permits() {
    let (b, clock) = breaker(BreakerConfig {
        half_open_deadline: 2 * S,
        ..cfg()
    });
    for _ in 0..4 {
        b.try_acquire().unwrap().record(Outcome::Dropped);
    }
    clock.advance(5 * S);
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert!(probes.iter().all(|p| p.is_probe()));
    // Every probe slot taken: refused until the half-open deadline.
    let e = b.try_acquire().unwrap_err();
    assert_eq!((e.state, e.retry_after), (BreakerState::HalfOpen, 2 * S));
    // The probes leak (never recorded, never dropped).
    std::mem::forget(probes);
    clock.advance(2 * S);
    // At the deadline the 3 leaked probes count as failed: re-open for 10 s.
    let e = b.try_acquire().unwrap_err();
    assert_eq!((e.state, e.retry_after), (BreakerState::Open, 10 * S));
    clock.advance(10 * S);
    // A fresh episode: probes are issued again, the breaker is not wedged.
    b.try_acquire().unwrap().record(Outcome::Success);
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn a_dropped_probe_returns_its_slot_and_late_results_are_ignored() {
    let (b, clock) = breaker(cfg());
    let before_trip = b.try_acquire().unwrap();
    for _ in 0..4 {
        b.try_acquire().unwrap().record(Outcome::Dropped);
    }
    // A success from a call admitted before the trip does not count.
    before_trip.record(Outcome::Success);
    clock.advance(5 * S);
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().is_err());
    drop(probes); // cancelled: Ignored, slots back
    let p = b.try_acquire().unwrap();
    assert!(p.is_probe());
    assert_eq!(b.stats().probes_in_flight, 1);
}

#[test]
fn hint_is_a_floor_and_jitter_spreads_open_intervals() {
    let (b, _clock) = breaker(cfg());
    for _ in 0..3 {
        b.try_acquire().unwrap().record(Outcome::Dropped);
    }
    b.try_acquire()
        .unwrap()
        .record_with_hint(Outcome::Dropped, Some(30 * S));
    assert_eq!(b.try_acquire().unwrap_err().retry_after, 30 * S);
    // 100 breakers with different seeds, tripped at the same instant, re-probe over
    // [4 s, 6 s] (±20 %), not at one instant.
    let clock = ManualClock::new();
    let opens: Vec<Duration> = (0..100)
        .map(|seed| {
            let b = CircuitBreaker::with_clock(
                BreakerConfig {
                    seed,
                    jitter: 0.2,
                    ..cfg()
                },
                clock.clone(),
            )
            .unwrap();
            for _ in 0..4 {
                b.try_acquire().unwrap().record(Outcome::Dropped);
            }
            b.try_acquire().unwrap_err().retry_after
        })
        .collect();
    let (lo, hi) = (opens.iter().min().unwrap(), opens.iter().max().unwrap());
    assert!(*lo >= 4 * S && *hi <= 6 * S, "{lo:?}..{hi:?}");
    assert!(*hi - *lo > S, "jitter should spread: {lo:?}..{hi:?}");
}

#[test]
fn observer_sees_each_transition_once() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let clock = ManualClock::new();
    let b = CircuitBreaker::with_observer(
        cfg(),
        clock.clone(),
        Arc::new(move |t: Transition| sink.lock().unwrap().push((t.from, t.to))),
    )
    .unwrap();
    for _ in 0..4 {
        b.try_acquire().unwrap().record(Outcome::Dropped);
    }
    clock.advance(5 * S);
    b.try_acquire().unwrap().record(Outcome::Success);
    b.try_acquire().unwrap().record(Outcome::Success);
    use BreakerState::*;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
}

/// resilience4j #1432 / SmallRye #319: many threads arriving together at the OPEN → HALF_OPEN
/// transition get at most `probes` permits between them.
#[test]
fn concurrent_callers_at_the_transition_get_at_most_probes_permits() {
    for _ in 0..20 {
        let (b, clock) = breaker(cfg());
        for _ in 0..4 {
            b.try_acquire().unwrap().record(Outcome::Dropped);
        }
        clock.advance(5 * S);
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (b, barrier) = (b.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    // Hold every permit won: a probe released early would free its slot.
                    (0..50)
                        .filter_map(|_| b.try_acquire().ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let won: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(won.len(), 3, "exactly `probes` permits");
        assert!(won.iter().all(|p| p.is_probe()));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Finish(usize, u8),
    Forget(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        3 => (0usize..16, 0u8..3).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => (0usize..16).prop_map(Op::Forget),
        2 => (0u16..3000).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Whatever the interleaving, leaks and timing, the probes the breaker counts in flight
    /// never exceed the bound, and the breaker never stays half-open past its deadline with
    /// every slot taken (leaks are reclaimed).
    #[test]
    fn probes_never_exceed_the_bound(ops in proptest::collection::vec(op(), 1..300)) {
        let (b, clock) = breaker(BreakerConfig {
            open_base: S,
            half_open_deadline: S,
            ..cfg()
        });
        let mut held: Vec<BreakerPermit<ManualClock>> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => if let Ok(p) = b.try_acquire() {
                    held.push(p);
                },
                Op::Finish(i, o) if i < held.len() => {
                    let o = [Outcome::Success, Outcome::Dropped, Outcome::Ignored][o as usize];
                    held.swap_remove(i).record(o);
                }
                Op::Forget(i) if i < held.len() => std::mem::forget(held.swap_remove(i)),
                Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
                _ => {}
            }
            let st = b.stats();
            prop_assert!(st.probes_in_flight <= 3, "{st:?}");
            if st.state == BreakerState::HalfOpen {
                // One deadline later a call is always answered by a decision or a permit.
                clock.advance(S);
                match b.try_acquire() {
                    Ok(p) => held.push(p),
                    Err(e) => prop_assert_eq!(e.state, BreakerState::Open),
                }
            }
        }
    }
}
