//! [`Headroom`] started under overload, on a discrete-event bench with a manual clock: a
//! FIFO pool of workers behind the limiter, and an open-loop client whose connections cap the
//! in-flight count (as `tailwater load`: requests wait for a free connection; a refused
//! request frees its connection at once).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The bench: `workers` FIFO workers of `service` (constant, or exponential from a fixed
/// xorshift sequence), `rate` arrivals per second evenly spaced (from `step`'s time on, its
/// rate), at most `connections` in flight from the client.
struct Bench {
    workers: usize,
    service: Duration,
    exponential: bool,
    rate: f64,
    connections: usize,
    step: Option<(Duration, f64)>,
    /// A share of the requests `factor` times slower than `service`: (share, factor).
    slow: Option<(f64, f64)>,
}

/// What a run saw: the limit and in-flight count every 100 ms, requests served and refused.
#[derive(Debug, Default)]
struct Run {
    limits: Vec<usize>,
    in_flight: Vec<usize>,
    served: u64,
    refused: u64,
}

impl Run {
    /// The mean limit over the points from `from` (in 100 ms steps) on.
    fn mean_limit(&self, from: usize) -> f64 {
        let tail = &self.limits[from..];
        tail.iter().sum::<usize>() as f64 / tail.len() as f64
    }
}

impl Bench {
    fn run(&self, h: &mut Headroom, seconds: u64) -> Run {
        let end = Duration::from_secs(seconds);
        let gap = |t: Duration| match self.step {
            Some((at, rate)) if t >= at => Duration::from_secs_f64(1.0 / rate),
            _ => Duration::from_secs_f64(1.0 / self.rate),
        };
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        };
        let mut service = || {
            let base = if self.exponential {
                self.service.mul_f64(-uniform().ln())
            } else {
                self.service
            };
            match self.slow {
                Some((share, factor)) if uniform() < share => base.mul_f64(factor),
                _ => base,
            }
        };
        // When each worker is next free, and the admitted requests by completion time:
        // (done, admitted, in-flight at admission, limit at admission).
        let mut free: BinaryHeap<Reverse<Duration>> =
            (0..self.workers).map(|_| Reverse(Duration::ZERO)).collect();
        let mut done: BinaryHeap<Reverse<(Duration, Duration, usize, usize)>> = BinaryHeap::new();
        let (mut in_flight, mut waiting) = (0usize, 0u64);
        let mut next_arrival = Duration::ZERO;
        let mut next_point = Duration::ZERO;
        let mut run = Run::default();
        loop {
            let next_done = done.peek().map(|Reverse(d)| d.0);
            let now = match next_done {
                Some(d) if d <= next_arrival => d,
                _ => next_arrival,
            };
            if now >= end {
                return run;
            }
            while next_point <= now {
                run.limits.push(h.limit());
                run.in_flight.push(in_flight);
                next_point += ms(100);
            }
            if next_done == Some(now) {
                if let Some(Reverse((t, admitted, at, limit))) = done.pop() {
                    in_flight -= 1;
                    run.served += 1;
                    h.update(&Sample::success(t, t - admitted, at).at_limit(limit));
                }
            } else {
                waiting += 1;
                next_arrival += gap(next_arrival);
            }
            // Free connections take the waiting requests; a refusal frees its connection.
            while waiting > 0 && in_flight < self.connections {
                waiting -= 1;
                let limit = h.limit();
                if in_flight >= limit {
                    run.refused += 1;
                    continue;
                }
                in_flight += 1;
                let Some(Reverse(at)) = free.pop() else {
                    unreachable!("a worker per slot")
                };
                let finish = at.max(now) + service();
                free.push(Reverse(finish));
                done.push(Reverse((finish, now, in_flight, limit)));
            }
        }
    }
}

/// The dashboard check's busy route (`scripts/check-dashboard.sh`): `tailwater backend` with
/// 2 workers × 20 ms (100/s) offered 300 req/s by a client of 100 connections, overloaded
/// from the first request.
fn busy_route() -> Bench {
    Bench {
        workers: 2,
        service: ms(20),
        exponential: false,
        rate: 300.0,
        connections: 100,
        step: None,
        slow: None,
    }
}

#[test]
fn started_under_overload_the_baseline_is_not_the_first_rounds_queue() {
    // 100 requests are in flight before the first completes (the first-round limit and the
    // client's connections), so every early window's mean is a queue's. Before the warm-up
    // restarted at slow start's exit the baseline was that queue (0.60 s) and the limit 120:
    // above the client's 100 connections, it never bound again and protected nothing.
    let mut h = Headroom::default();
    let run = busy_route().run(&mut h, 20);
    assert!(!h.slow_start);
    let baseline = h.baseline().expect("a baseline");
    // At the floor of 20 in flight the service answers in 10 × 20 ms: the least queue the
    // default floor allows, and the baseline (the lowest window mean once restarted: the
    // 10th percentile crept up with the standing queue, to 0.39 s after 20 s).
    assert!(baseline <= ms(250), "{baseline:?}");
    // The limit binds (under the 100 connections) and sits near the floor, not above the
    // client: 28-41 over the last 10 s (it was 120).
    let limit = run.mean_limit(100);
    assert!(limit <= 50.0, "{limit}: {:?}", run.limits);
    let in_flight = run.in_flight[100..].iter().sum::<usize>() / run.in_flight[100..].len();
    assert!(in_flight < 80, "{in_flight}");
    // Still the service's capacity: 100/s for 20 s, less the first round trip.
    assert!(run.served >= 1900, "{}", run.served);
}

#[test]
fn slow_start_ends_when_the_demand_caps_in_flight() {
    // 500 workers at 20 ms and a client of 100 connections with more to send than they
    // carry: 100 in flight whatever the limit. Slow start grows the limit to 202 (a success
    // admitted at 100 in flight is half of it) and the limit stops there; slow start used to
    // stay on forever, waiting for a queue the limit never met. It ends after
    // SLOW_START_IDLE windows without growth, and the limit stays above the demand.
    let bench = Bench {
        workers: 500,
        service: ms(20),
        exponential: true,
        rate: 10_000.0,
        connections: 100,
        step: None,
        slow: None,
    };
    let mut h = Headroom::default();
    let run = bench.run(&mut h, 5);
    assert!(!h.slow_start, "{:?}", run.limits);
    assert!(
        run.limits[10..].iter().all(|&l| l >= 100),
        "{:?}",
        run.limits
    );
    // Nothing is refused after the first round trip (the first-round limit hands over to
    // the initial 20 while 100 are in flight).
    assert!(run.refused <= 200, "{}", run.refused);
}

#[test]
fn a_queue_that_builds_under_the_connections_is_drained() {
    // The busy route with exponential service (mean 20 ms): the 300 req/s fill the 100
    // connections over the first second, so the queue builds slowly, each window's mean a
    // little above the last, and the completion rate's noise (60-140/s in windows of ten)
    // hides the plateau. Slow start grew the limit to 202, above the connections, and ended
    // holding it there (its "rate fell" hold read the noise as a slowdown): baseline 0.79 s,
    // a limit that never bound again. Now the window mean, 30x slow start's lowest while the
    // rate never grew, restarts the warm-up, the limit drains to the knee and the guard
    // forgets the queue's windows.
    let mut h = Headroom::default();
    let bench = Bench {
        exponential: true,
        ..busy_route()
    };
    let run = bench.run(&mut h, 20);
    assert!(!h.slow_start);
    let baseline = h.baseline().expect("a baseline");
    assert!(baseline <= ms(250), "{baseline:?}");
    let limit = run.mean_limit(100);
    assert!(limit <= 50.0, "{limit}: {:?}", run.limits);
    assert!(run.served >= 1900, "{}", run.served);
}

#[test]
fn a_doubling_at_a_load_step_is_undone_when_it_only_queues() {
    // 48 workers × 30 ms (1 600/s) at 0.5× load for 3 s, then 1.4× (the suite's
    // `step-1.4x`). The first binding window after the step still holds the RTTs of requests
    // admitted before it, so it reads as far from the knee and the limit doubled (72 → 144);
    // the queue that doubling let in took 2 s of cuts to drain (the limit settled 1.6–3.8 s
    // after the step). Now the windows that show the queue while the completion rate is no
    // more than the old limit carried undo the doubling at once, and the limit holds.
    let mut h = Headroom::default();
    let bench = Bench {
        workers: 48,
        service: ms(30),
        exponential: false,
        rate: 800.0,
        connections: 10_000,
        step: Some((Duration::from_secs(3), 2_240.0)),
        slow: None,
    };
    let run = bench.run(&mut h, 8);
    let settled = run.mean_limit(50);
    // From 1 s after the step on, the limit stays within ±25 % of where it settles.
    let after = &run.limits[40..];
    let worst = after
        .iter()
        .map(|l| (*l as f64 / settled - 1.0).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 0.25, "settled {settled}, {:?}", run.limits);
    // And the queue's in-flight count came back with it: no more than 1.6 × the workers.
    let peak = run.in_flight[40..].iter().copied().max().unwrap_or(0);
    assert!(peak <= 77, "{peak}: {:?}", run.in_flight);
}

#[test]
fn a_burst_that_drains_raises_the_limit_that_shed_it() {
    // 4 workers × 20 ms, of which 5 % take 10× as long (mean 29 ms: 138/s), offered 124/s
    // (0.9×). When a few slow requests meet, the queue builds past 20 and drains by itself
    // once they are done: a healthy service's own variance. Every binding window of such a
    // burst queued, so the latency rule held the limit at the burst floor of 20 for the
    // whole run and shed each burst's tail (the suite's bimodal 4-worker cells: up to 7.3 %
    // at 0.9×). Now a burst that shed and then drained doubles the limit, and a limit that
    // does not bind keeps that room.
    let bench = Bench {
        workers: 4,
        service: ms(20),
        exponential: false,
        rate: 124.0,
        connections: 10_000,
        step: None,
        slow: Some((0.05, 10.0)),
    };
    let mut h = Headroom::default();
    let run = bench.run(&mut h, 60);
    let offered = (run.served + run.refused) as f64;
    let shed = run.refused as f64 / offered;
    // 0.85 % shed before (the limit at 20 throughout), 0.12 % now.
    assert!(
        shed <= 0.005,
        "shed {:.2} %: {:?}",
        shed * 100.0,
        run.limits
    );
    assert!(
        run.limits[100..].iter().any(|&l| l >= 40),
        "{:?}",
        run.limits
    );
    // The same run, overloaded (2×) from 60 s on: a queue that stands takes that room back
    // at once (80 → 40 within 1.5 s of the step), not by a tenth per window. Down to the
    // tail room of rule 13, not to 20 (before session 23): this service (CV 1.6 on 4
    // workers) queues 40 deep at 0.9× load by its own nature.
    let overloaded = Bench {
        step: Some((Duration::from_secs(60), 280.0)),
        ..bench
    };
    let mut h = Headroom::default();
    let run = overloaded.run(&mut h, 64);
    assert!(
        run.limits[590..600].iter().any(|&l| l >= 40),
        "{:?}",
        &run.limits[590..]
    );
    assert!(
        run.limits[615..].iter().all(|&l| (20..=45).contains(&l)),
        "{:?}",
        &run.limits[590..]
    );
}

#[test]
fn slow_start_judges_the_rate_plateau_per_round_trip() {
    // 500 workers × 300 ms exponential (1 667/s) at 0.5× load: a healthy pool that needs
    // about 250 in flight. Windows of 25 samples last 40-70 ms, a sixth of the RTT, and the
    // completions answer a rise of the limit a round trip later, so three windows in a row
    // without a quarter more completions were one round's noise: slow start ended at a
    // tenth of the pool and drained to the guard's estimate of the young requests (the
    // suite's `no-harm exp w500 300ms 0.5x` shed up to 1.16 % while the limit climbed
    // back). Counted per mean RTT, the plateau waits for the pool to answer.
    let bench = Bench {
        workers: 500,
        service: ms(300),
        exponential: true,
        rate: 833.0,
        connections: 10_000,
        step: None,
        slow: None,
    };
    let mut h = Headroom::default();
    let run = bench.run(&mut h, 10);
    // Per window, slow start drained 256 → 95 at 0.8 s and the limit took another second
    // to come back; per round trip it climbs on to about twice the demand.
    let passed = run
        .limits
        .iter()
        .position(|&l| l >= 200)
        .expect("the limit reaches 200");
    assert!(
        run.limits[passed..].iter().all(|&l| l >= 200),
        "{:?}",
        run.limits
    );
    // The climb from the initial limit costs the first second's excess; with the drain
    // 5.06 % of 10 s was shed, 2.77 % without.
    let offered = (run.served + run.refused) as f64;
    let shed = run.refused as f64 / offered;
    assert!(
        shed <= 0.035,
        "shed {:.2} %: {:?}",
        shed * 100.0,
        run.limits
    );
}
