//! The connections' own pacing on a manual clock: a discrete-event simulation of connection
//! tasks driving the real [`Cursor`] and [`Claim::release`], with no sleeping.

use super::*;
use crate::config::Config;
use std::collections::BTreeSet;

/// One simulated request: what the connection task released, and when it was claimed.
#[derive(Debug, Clone, Copy)]
struct Sent {
    job: Job,
    claim: Claim,
    sent_at: Instant,
}

/// Simulates `connections` connection tasks: each claims when free, wakes at the claim's
/// wake-up plus `oversleep` (the OS's slack), "sends" at once, and is busy for `service`.
/// The free connection with the earliest time (then the lowest number) moves next.
fn simulate(
    cursor: &Cursor,
    start: Instant,
    mix: Option<&HeaderMix>,
    connections: usize,
    service: Duration,
    oversleep: Duration,
) -> Vec<Sent> {
    let mut free_at = vec![start; connections];
    let mut out = Vec::new();
    loop {
        let (c, now) = free_at
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(i, t)| (*t, *i))
            .unwrap();
        let Some(claim) = cursor.claim(mix, now) else {
            return out;
        };
        let sent_at = match claim.wake {
            Some(w) => {
                assert!(w >= claim.intended, "wakes before the intended time");
                w + oversleep
            }
            None => now,
        };
        let job = claim.release(sent_at);
        out.push(Sent {
            job,
            claim,
            sent_at,
        });
        free_at[c] = sent_at + service;
    }
}

fn cursor(config: &Config, start: Instant) -> Cursor {
    Cursor::new(
        &config.schedule,
        config.spacing,
        config.seed,
        config.pace_quantum,
        config.max_requests,
        start,
    )
}

#[test]
fn the_wake_up_is_on_the_quantum_grid_never_early_less_than_a_quantum_late() {
    let start = Instant::now();
    let q = Duration::from_micros(250);
    for us in [0u64, 1, 50, 249, 250, 251, 499, 500, 12_345] {
        let intended = start + Duration::from_micros(us);
        let w = wake_at(start, intended, q);
        assert!(w >= intended, "{us}");
        assert!(w - intended < q, "{us}");
        assert_eq!((w - start).as_nanos() % q.as_nanos(), 0, "{us}");
        assert_eq!(wake_at(start, intended, Duration::ZERO), intended);
    }
}

#[test]
fn with_free_connections_and_quantum_zero_every_request_is_released_exactly_on_time() {
    let schedule = Schedule::parse("1000:1s,ramp:1000..5000:1s").unwrap();
    let mut config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
    config.pace_quantum = Duration::ZERO;
    let start = Instant::now();
    let sent = simulate(
        &cursor(&config, start),
        start,
        None,
        10,
        Duration::from_micros(500),
        Duration::ZERO,
    );
    let want: Vec<_> = schedule.arrivals(Spacing::Uniform, 1).collect();
    assert_eq!(sent.len(), want.len());
    for (s, a) in sent.iter().zip(&want) {
        assert_eq!(s.job.index, a.index, "claimed out of order");
        assert_eq!(s.job.intended, start + a.offset);
        assert_eq!(s.job.released, s.job.intended);
        assert_eq!(usize::from(s.job.phase), a.phase);
        assert_eq!(s.claim.wake, Some(s.job.intended), "claimed late");
    }
}

#[test]
fn above_the_quantum_rate_connections_wake_together_never_early_at_most_a_quantum_late() {
    // 20 000/s (50 µs apart), 250 µs quantum, 40 µs wake-up slack, 100 connections each busy
    // 300 µs per request: about five requests share each wake-up instant.
    let schedule = Schedule::constant(20_000.0, Duration::from_millis(100)).unwrap();
    let mut config = Config::new("http://127.0.0.1:9/", schedule).unwrap();
    let quantum = Duration::from_micros(250);
    let slack = Duration::from_micros(40);
    config.pace_quantum = quantum;
    let start = Instant::now();
    let sent = simulate(
        &cursor(&config, start),
        start,
        None,
        100,
        Duration::from_micros(300),
        slack,
    );
    assert_eq!(sent.len(), 2000);
    let mut wakes = BTreeSet::new();
    let mut max_lag = Duration::ZERO;
    for (n, s) in sent.iter().enumerate() {
        assert_eq!(s.job.intended - start, Duration::from_micros(50 * n as u64));
        assert!(s.job.released >= s.job.intended, "job {n} released early");
        let lag = s.job.released - s.job.intended;
        assert!(lag <= quantum + slack, "job {n} lag {lag:?}");
        max_lag = max_lag.max(lag);
        wakes.insert(s.claim.wake.expect("a free connection was always waiting"));
    }
    // The quantum is used, not just bounded.
    assert!(
        max_lag >= quantum - Duration::from_micros(50),
        "{max_lag:?}"
    );
    // One wake-up instant per quantum at most (400 in 100 ms), shared by the connections.
    assert!(wakes.len() <= 100_000 / 250 + 1, "{} wake-ups", wakes.len());
    let mean = sent.len() as f64 / wakes.len() as f64;
    assert!(mean >= 4.0, "mean requests per wake-up {mean}");

    // Quantum zero: every request at its own time.
    config.pace_quantum = Duration::ZERO;
    let exact = simulate(
        &cursor(&config, start),
        start,
        None,
        100,
        Duration::from_micros(300),
        Duration::ZERO,
    );
    assert!(exact.iter().all(|s| s.job.released == s.job.intended));
}

#[test]
fn too_few_connections_make_requests_wait_for_one_which_counts_as_connection_wait() {
    // 10 000/s on 2 connections busy 1 ms each: they carry 2 000/s, so arrivals fall due
    // before a connection is free. They are claimed first come first served when one frees
    // up, released "at their intended time" (the pacer was not late; the wait is the
    // connection's), and their intended times never move.
    let schedule = Schedule::constant(10_000.0, Duration::from_millis(20)).unwrap();
    let config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
    let start = Instant::now();
    let service = Duration::from_millis(1);
    let sent = simulate(
        &cursor(&config, start),
        start,
        None,
        2,
        service,
        Duration::ZERO,
    );
    assert_eq!(sent.len(), 200);
    let mut overdue = 0;
    for (n, s) in sent.iter().enumerate() {
        assert_eq!(s.job.index, n as u64, "not first come first served");
        assert_eq!(
            s.job.intended - start,
            Duration::from_micros(100 * n as u64)
        );
        if s.claim.wake.is_none() {
            overdue += 1;
            assert_eq!(s.job.released, s.job.intended, "job {n}");
        }
    }
    assert!(overdue >= 190, "{overdue} of 200 waited for a connection");
    // The last one waited about 100 ms − 20 ms for a connection: latency measured from its
    // intended time includes that wait.
    let last = sent.last().unwrap();
    let waited = last.sent_at - last.job.intended;
    assert!(
        (Duration::from_millis(75)..Duration::from_millis(85)).contains(&waited),
        "{waited:?}"
    );
}

#[test]
fn a_count_bounds_the_claims_and_unclaimed_due_arrivals_are_abandoned_not_lost() {
    let schedule = Schedule::parse("1000:100ms,2000:100ms").unwrap();
    let mut config = Config::new("http://127.0.0.1:9/", schedule).unwrap();
    let start = Instant::now();
    config.max_requests = Some(120);
    let limited = simulate(
        &cursor(&config, start),
        start,
        None,
        4,
        Duration::from_micros(100),
        Duration::ZERO,
    );
    assert_eq!(limited.len(), 120);

    // 300 arrivals; 150 claimed, then the run ends at 150 ms with everything else unclaimed:
    // the 75 still unclaimed arrivals due by then (100 ms + 50 ms at 2 000/s, minus the 25
    // of phase 1 claimed) are counted, per phase, and nothing is claimable afterwards.
    config.max_requests = None;
    let c = cursor(&config, start);
    for _ in 0..150 {
        assert!(c.claim(None, start).is_some());
    }
    let per_phase = [AtomicU64::new(0), AtomicU64::new(0)];
    let left = c.abandon_due(start + Duration::from_millis(150), &per_phase);
    // Arrivals 0..=99 in phase 0 (0..99 ms), 100..=299 in phase 1 from 100 ms, 500 µs apart:
    // those at or before 150 ms are 100..=200, of which 150..=200 were not claimed.
    assert_eq!(left, 51);
    assert_eq!(per_phase[0].load(Ordering::Relaxed), 0);
    assert_eq!(per_phase[1].load(Ordering::Relaxed), 51);
    assert!(c.claim(None, start).is_none());
}

#[test]
fn the_header_mix_is_drawn_in_arrival_order_seeded_and_weighted() {
    let schedule = Schedule::constant(10_000.0, Duration::from_secs(1)).unwrap();
    let mut config = Config::new("http://127.0.0.1:9/", schedule).unwrap();
    config.header_mix = Some(HeaderMix::parse("x-criticality: critical=75,sheddable=25").unwrap());
    let mix = config.header_mix.clone();
    let start = Instant::now();
    let run = |connections| {
        simulate(
            &cursor(&config, start),
            start,
            mix.as_ref(),
            connections,
            Duration::from_micros(700),
            Duration::ZERO,
        )
    };
    let a = run(3);
    let b = run(50);
    let sheddable = a.iter().filter(|s| s.job.tag == 1).count();
    assert!((2300..2700).contains(&sheddable), "{sheddable}");
    // Arrival k gets the same value however many connections share the schedule.
    assert!(
        a.iter()
            .zip(&b)
            .all(|(x, y)| x.job.index == y.job.index && x.job.tag == y.job.tag)
    );
}
