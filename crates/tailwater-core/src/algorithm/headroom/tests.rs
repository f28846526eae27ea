//! Unit tests of [`Headroom`] on a manual clock.

use std::collections::VecDeque;

use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Feeds one sample every 2 ms with `rtt` and `in_flight` until a window closes.
fn window(h: &mut Headroom, t: &mut Duration, rtt: Duration, in_flight: usize, drop: bool) {
    let closed = h.windows.closed();
    while h.windows.closed() == closed {
        let s = if drop {
            Sample::dropped(*t, rtt, in_flight)
        } else {
            Sample::success(*t, rtt, in_flight)
        };
        h.update(&s);
        *t += ms(2);
    }
}

#[test]
fn table_binding_windows_against_the_baseline() {
    // No guard (margin ~0), no dispersion sizing (constant RTTs: CV 0, no error term).
    let mut h = Headroom::builder()
        .initial_limit(40)
        .min_limit(2)
        .max_limit(1000)
        .margin(1e-9)
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .unwrap();
    let mut t = Duration::ZERO;
    // Warm-up: the first window closes 20 ms after the first sample, under 4 × its 10 ms
    // mean: it holds and teaches no baseline.
    window(&mut h, &mut t, ms(10), 40, false);
    assert_eq!((h.limit(), h.baseline()), (40, None));
    // Baseline = 10th percentile of the means so far (rank round(0.1·(n−1))): 10 ms.
    // 10 ms: ratio 1 ≤ 1 + (2 − 1)/2 = 1.5, far from the knee: doubles, 40 → 80.
    window(&mut h, &mut t, ms(10), 40, false);
    assert_eq!(h.limit(), 80);
    // 17 ms: ratio 1.7 ≤ 2 but > 1.5: +1.
    window(&mut h, &mut t, ms(17), 80, false);
    assert_eq!(h.limit(), 81);
    // 30 ms: ratio 3 > 2: g = 2/3, L = 81 · (0.8 + 0.2 · 2/3) = 75.6.
    window(&mut h, &mut t, ms(30), 81, false);
    assert!((h.limit - 75.6).abs() < 1e-9, "{}", h.limit);
    assert_eq!(h.limit(), 75);
    // 50 ms but in-flight 10 < 75: the limit did not bind, so it holds.
    window(&mut h, &mut t, ms(50), 10, false);
    assert!((h.limit - 75.6).abs() < 1e-9);
    // 100 ms binding: ratio 10, g clamped to 0.5: L = 75.6 · 0.9 = 68.04.
    window(&mut h, &mut t, ms(100), 75, false);
    assert!((h.limit - 68.04).abs() < 1e-9, "{}", h.limit);
    // A drop backs off by 0.9, binding or not: 61.236.
    window(&mut h, &mut t, ms(10), 1, true);
    assert!((h.limit - 61.236).abs() < 1e-9, "{}", h.limit);
    assert_eq!(h.baseline(), Some(ms(10)));
}

#[test]
fn noise_allowance_widens_with_dispersion() {
    // Two windows, both with mean 25 ms against a 10 ms baseline (ratio 2.5, tolerance 2):
    // constant RTTs count as queueing; RTTs alternating 5 and 45 ms (CV 0.8, 11 samples:
    // allowance 2 + 2 · 0.8/√11 = 2.48) do not.
    let build = || {
        Headroom::builder()
            .initial_limit(40)
            .min_limit(2)
            .margin(1e-9)
            .dispersion_samples(0.0)
            .slow_start(false)
            .build()
            .unwrap()
    };
    let mut t = Duration::ZERO;
    let mut calm = build();
    window(&mut calm, &mut t, ms(10), 40, false); // warm-up
    window(&mut calm, &mut t, ms(10), 40, false);
    let l = calm.limit();
    window(&mut calm, &mut t, ms(25), l, false);
    assert!(calm.limit() < l, "{} vs {l}", calm.limit());
    let mut noisy = build();
    let mut t = Duration::ZERO;
    window(&mut noisy, &mut t, ms(10), 40, false); // warm-up
    window(&mut noisy, &mut t, ms(10), 40, false);
    let l = noisy.limit();
    let closed = noisy.windows.closed();
    let mut i = 0u64;
    while noisy.windows.closed() == closed {
        let rtt = if i.is_multiple_of(2) { ms(45) } else { ms(5) };
        noisy.update(&Sample::success(t, rtt, l));
        t += ms(2);
        i += 1;
    }
    assert!(noisy.limit() > l, "{} vs {l}", noisy.limit());
}

#[test]
fn finds_the_knee_and_keeps_it_through_a_uniform_slowdown() {
    use super::super::window_stats::fluid_pool;
    // 48 workers at 30 ms with demand above any limit from the start: within 2 s the limit
    // sits between the knee and the tolerance (2 × 48), then every request becomes 4x
    // slower and the guard keeps the limit near the knee. (Without slow start: from a start
    // under overload in this fluid model, slow start ends on the rate plateau well above
    // the knee and the limit is still near 290 after 2000 samples.)
    let no_slow_start = || Headroom::builder().slow_start(false).build().unwrap();
    let mut h = no_slow_start();
    let mut t = Duration::ZERO;
    let warm = fluid_pool(&mut h, &mut t, 48, ms(30), 3000);
    let settled = warm[2000..].iter().sum::<usize>() / 1000;
    assert!((48..=100).contains(&settled), "{settled}");
    let slow = fluid_pool(&mut h, &mut t, 48, ms(120), 1000);
    let after = slow.iter().sum::<usize>() / slow.len();
    assert!(after >= 40, "{settled} then {after}");
    // A pool that halves (24 workers, same speed): the limit falls.
    let mut h = no_slow_start();
    let mut t = Duration::ZERO;
    fluid_pool(&mut h, &mut t, 48, ms(30), 3000);
    let halved = fluid_pool(&mut h, &mut t, 24, ms(30), 3000);
    let tail = halved[2000..].iter().sum::<usize>() / 1000;
    assert!(tail < settled, "{settled} then {tail}");
}

/// Exponential service times with the given mean, from a fixed xorshift sequence seeded
/// with `seed` (not 0), so a test's pool behaves the same on every run.
fn exponential(seed: u64) -> impl FnMut(Duration) -> Duration {
    let mut x = seed;
    move |mean: Duration| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        mean.mul_f64(-(((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64).ln())
    }
}

/// `workers` workers of `service` each behind a FIFO, with demand above any limit: a
/// request admitted at `a` completes at `max(a + service, previous + service / workers)`,
/// and each completion frees a permit that is taken again at once. An RTT is the time since
/// admission, so through a standing queue it lags the limit by about one RTT, as on a real
/// socket. Returns the limit after every 100 completions.
fn standing_queue(
    h: &mut Headroom,
    workers: u32,
    service: Duration,
    t: &mut Duration,
    completions: usize,
) -> Vec<usize> {
    let mut queue: VecDeque<(Duration, usize, Duration)> = VecDeque::new();
    let mut last = *t;
    let mut exp = exponential(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    for i in 0..completions {
        while queue.len() < h.limit() {
            last = (*t + exp(service)).max(last + exp(service / workers));
            queue.push_back((*t, queue.len() + 1, last));
        }
        if let Some((admitted, in_flight, done)) = queue.pop_front() {
            *t = done;
            h.update(&Sample::success(*t, *t - admitted, in_flight));
        }
        if i % 100 == 99 {
            out.push(h.limit());
        }
    }
    out
}

#[test]
fn a_standing_queue_does_not_ratchet_the_limit_up() {
    // 8 workers at 40 ms (200/s): 60 s at half load (a clean baseline), then 60 s of
    // sustained overload, floor 4. The latency rule cuts toward the knee (8); the guard's
    // F there is only the lagged in-flight count of the standing queue, and its 1.25 probe
    // used to lift the limit past it at every cut (to 1151 within 60 s).
    let mut h = Headroom::builder()
        .min_limit(4)
        .initial_limit(20)
        .build()
        .unwrap();
    let mut t = Duration::ZERO;
    for _ in 0..6000 {
        t += ms(10);
        h.update(&Sample::success(t, ms(40), 4));
    }
    let limits = standing_queue(&mut h, 8, ms(40), &mut t, 12_000);
    let tail = &limits[20..];
    let peak = tail.iter().copied().max().unwrap_or(0);
    let mean = tail.iter().sum::<usize>() / tail.len();
    assert!(
        peak <= 64 && mean <= 32,
        "peak {peak}, mean {mean}: {limits:?}"
    );
}

#[test]
fn table_slow_start_grows_per_success_while_half_the_limit_is_in_flight() {
    let mut h = Headroom::default();
    let t = ms(1);
    // Limit 20: a success admitted at 10 in flight (2 · 10 ≥ 20) adds SLOW_START_GAIN = 2.
    h.update(&Sample::success(t, ms(30), 10));
    assert_eq!(h.limit(), 22);
    // At 22, 10 in flight is under half: no growth.
    h.update(&Sample::success(t, ms(30), 10));
    assert_eq!(h.limit(), 22);
    // A sample standing for 4 completions (sampled every 4th permit) adds 2 · 4.
    h.update(&Sample {
        weight: 4,
        ..Sample::success(t, ms(30), 11)
    });
    assert_eq!(h.limit(), 30);
    // A drop does not grow it.
    h.update(&Sample::dropped(t, ms(30), 30));
    assert_eq!(h.limit(), 30);
    // Without slow start nothing grows before a window closes.
    let mut off = Headroom::builder().slow_start(false).build().unwrap();
    off.update(&Sample::success(t, ms(30), 20));
    assert_eq!(off.limit(), 20);
}

#[test]
fn slow_start_ends_on_a_rate_plateau_and_drains_to_the_knee() {
    // One success every 0.1 ms at 10 ms, whatever the limit: a service that completes
    // 10 000/s at most (a knee of 100 in flight). Slow start grows the limit per success;
    // the completion rate does not grow by a quarter within three growing windows, so slow
    // start ends and the limit drains to 1.5 × the Little's-law estimate: max rate
    // 10 000/s × min mean RTT 10 ms = 100, so 150.
    let mut h = Headroom::builder().dispersion_samples(0.0).build().unwrap();
    let mut t = Duration::ZERO;
    let mut peak = 0;
    for _ in 0..2000 {
        t += Duration::from_micros(100);
        let l = h.limit();
        peak = peak.max(l);
        h.update(&Sample::success(t, ms(10), l));
        if !h.slow_start {
            break;
        }
    }
    assert!(!h.slow_start, "slow start did not end: {}", h.limit());
    assert!(peak > 150, "{peak}");
    assert!((140..=150).contains(&h.limit()), "{}", h.limit());
}

#[test]
fn a_small_pool_under_sustained_overload_falls_below_the_burst_floor() {
    // 4 workers at 20 ms (200/s): 20 s at half load (in-flight 2, a clean baseline), then
    // sustained overload through a standing queue, with the small-pool floor opted into
    // (`min_limit` 2; the default is 20). The floor of 20 used to hold the limit
    // at five times the workers (a queue of four service times behind every request).
    let mut h = Headroom::builder().min_limit(2).build().unwrap();
    let mut t = Duration::ZERO;
    for _ in 0..2000 {
        t += ms(10);
        h.update(&Sample::success(t, ms(20), 2).at_limit(h.limit()));
    }
    let limits = standing_queue(&mut h, 4, ms(20), &mut t, 4000);
    let tail = &limits[20..];
    let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
    assert!((4.0..=12.0).contains(&mean), "mean {mean}: {limits:?}");
}

/// A pool of `workers` in front of a FIFO line, its demand far past what it completes:
/// every permit freed is taken again at once, and the limiter refuses `per` requests for
/// every completion (its running count starting at `from`). Service times are exponential
/// from a fixed xorshift sequence; a request starts on the first free worker after the
/// requests admitted before it. Returns the limit after every 100 completions.
fn overloaded_pool(
    h: &mut Headroom,
    workers: usize,
    service: Duration,
    t: &mut Duration,
    completions: usize,
    (from, per): (u64, u64),
) -> Vec<usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut exp = exponential(0x2545_F491_4F6C_DD1D);
    let mut free = vec![*t; workers];
    let mut running: BinaryHeap<Reverse<(Duration, Duration, usize)>> = BinaryHeap::new();
    let mut refused = from;
    let mut out = Vec::new();
    for i in 0..completions {
        while running.len() < h.limit() {
            let k = (0..workers).min_by_key(|&k| free[k]).unwrap_or(0);
            free[k] = free[k].max(*t) + exp(service);
            running.push(Reverse((free[k], *t, running.len() + 1)));
        }
        if let Some(Reverse((done, admitted, in_flight))) = running.pop() {
            *t = done;
            refused += per;
            let s = Sample::success(*t, *t - admitted, in_flight).at_limit(h.limit());
            h.update(&s.after_refusals(refused));
        }
        if i % 100 == 99 {
            out.push(h.limit());
        }
    }
    out
}

/// `n` completions of half load on 4 workers at 20 ms (one every 10 ms, 2 in flight, 20 ms
/// each), the limiter's running refusal count staying at `refused`.
fn half_load(h: &mut Headroom, t: &mut Duration, n: usize, refused: u64) {
    for _ in 0..n {
        *t += ms(10);
        let s = Sample::success(*t, ms(20), 2).at_limit(h.limit());
        h.update(&s.after_refusals(refused));
    }
}

/// `b`'s `Headroom` after 20 s of [`half_load`] with no refusal (a clean baseline of 20 ms).
fn half_loaded(b: HeadroomBuilder) -> (Headroom, Duration) {
    let mut h = b.build().expect("a valid configuration");
    let mut t = Duration::ZERO;
    half_load(&mut h, &mut t, 2000, 0);
    (h, t)
}

/// The default `Headroom` [`half_loaded`]: below the burst floor, at the pool's burst room
/// (constant RTTs: no dispersion; 6 × the knee of 100/s × 20 ms = 12).
fn half_loaded_small_pool() -> (Headroom, Duration) {
    let (h, t) = half_loaded(Headroom::builder());
    assert!((10..=14).contains(&h.limit()), "{}", h.limit());
    (h, t)
}

#[test]
fn a_calm_small_pool_rests_at_its_burst_room_unless_its_service_is_dispersed() {
    // Half load on 4 workers, the default builder (`min_limit` 20 left alone). With
    // constant 20 ms RTTs the unused limit decays below 20 to the burst room, 12.
    let run = |rtt: &dyn Fn(u64) -> Duration, n: u64| {
        let mut h = Headroom::default();
        let mut t = Duration::ZERO;
        let mut lowest = usize::MAX;
        for i in 0..n {
            t += ms(10);
            h.update(&Sample::success(t, rtt(i), 2).at_limit(h.limit()));
            lowest = lowest.min(h.limit());
        }
        (h.limit(), lowest)
    };
    let (calm, _) = run(&|_| ms(20), 3000);
    assert!((10..=14).contains(&calm), "{calm}");
    // Not before 100 successes: a dispersed service's first few may all be fast.
    let (_, early) = run(&|_| ms(20), 90);
    assert_eq!(early, 20);
    // One request in 50 takes 20 times as long (400 ms; CV 1.9 pooled): most windows hold
    // none, so their averaged CV reads low, but the pooled CV keeps the limit at 20.
    let (_, rare_slow) = run(&|i| if i % 50 == 49 { ms(400) } else { ms(20) }, 3000);
    assert_eq!(rare_slow, 20);
}

#[test]
fn a_small_pool_whose_limiter_refuses_far_more_than_completes_falls_below_the_burst_floor() {
    // Rule 11 (session 21): the same pool at 5× (four refusals per completion) with the
    // default floors. The limit goes to 1.5 times the knee (200/s × 20 ms = 4): 6, within
    // the first 100 completions, and stays near it while the refusals go on.
    let (mut h, mut t) = half_loaded_small_pool();
    let limits = overloaded_pool(&mut h, 4, ms(20), &mut t, 3000, (0, 4));
    assert!(limits[0] < 20, "{limits:?}");
    let tail = &limits[5..];
    let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
    assert!((4.0..=9.0).contains(&mean), "mean {mean}: {limits:?}");
    // Without the refusals (an algorithm fed by hand: `refused` stays 0) the default
    // floor of 20 returns once the queue stands (the burst room at the pool's full rate,
    // 6 × 4, is above it), as before the rule.
    let (mut h, mut t) = half_loaded_small_pool();
    let limits = overloaded_pool(&mut h, 4, ms(20), &mut t, 3000, (0, 0));
    assert!(limits.iter().all(|&l| l >= 20), "{limits:?}");
    // Nor does a limiter that refuses less than twice the completions (2× load) take the
    // limit below the floor.
    let (mut h, mut t) = half_loaded_small_pool();
    let limits = overloaded_pool(&mut h, 4, ms(20), &mut t, 3000, (0, 1));
    assert!(limits.iter().all(|&l| l >= 20), "{limits:?}");
}

#[test]
fn a_min_limit_that_is_set_holds_under_overload_too() {
    // A floor the user chose is the floor: rule 11 stops at `min_limit` 10 (the knee's room
    // is 6), unless an overload floor is set as well.
    let overloaded = |b: HeadroomBuilder| {
        let (mut h, mut t) = half_loaded(b);
        overloaded_pool(&mut h, 4, ms(20), &mut t, 2000, (0, 4))
    };
    let held = overloaded(Headroom::builder().min_limit(10));
    assert!(held.iter().all(|&l| l >= 10), "{held:?}");
    assert!(held[5..].contains(&10), "{held:?}");
    let lower = overloaded(Headroom::builder().min_limit(10).overload_floor(4));
    assert!(lower[5..].iter().any(|&l| l < 10), "{lower:?}");
}

#[test]
fn the_burst_floor_returns_once_the_refusals_stop() {
    // After the overload the demand falls back to half load and the limiter refuses no
    // more (its running count stays where it was): the limit leaves the knee's room (6)
    // for the floors again: the burst floor once the queue drains, then, unused, the
    // calm pool's burst room (12).
    let (mut h, mut t) = half_loaded_small_pool();
    let limits = overloaded_pool(&mut h, 4, ms(20), &mut t, 1000, (0, 4));
    assert!(limits[9] <= 9, "{limits:?}");
    let mut after = Vec::new();
    for _ in 0..20 {
        half_load(&mut h, &mut t, 10, 4 * 1000);
        after.push(h.limit());
    }
    assert!(after.contains(&20), "{after:?}");
    assert!((10..=14).contains(&h.limit()), "{after:?}");
}

#[test]
fn a_large_pool_is_left_to_the_latency_rule() {
    // 48 workers at 20 ms (2400/s): the knee's room (1.5 × 48) is above the burst floor, so
    // rule 11 does not cut: the limit behind the same refusals is what it is without them.
    let run = |per: u64| {
        let mut h = Headroom::default();
        let mut t = Duration::ZERO;
        for _ in 0..4000 {
            t += ms(1);
            h.update(&Sample::success(t, ms(20), 24).at_limit(h.limit()));
        }
        overloaded_pool(&mut h, 48, ms(20), &mut t, 6000, (0, per))
    };
    assert_eq!(run(4), run(0));
}

#[test]
fn an_idle_limit_decays_to_a_small_pools_burst_room_only() {
    // Half load on 4 workers (100/s, 2 in flight): the limit never binds. With constant
    // 20 ms RTTs (CV 0) the burst room is 6 × the knee (100/s × 20 ms = 2): 12, and the
    // unused limit decays from 20 toward it. With RTTs of 1 and 59 ms in turn (CV 0.97)
    // the room is (6 + 4 × 0.93) × 3 ≈ 29, over the burst floor: the limit stays at 20.
    let run = |rtt: &dyn Fn(u64) -> Duration| {
        let mut h = Headroom::builder().min_limit(2).build().unwrap();
        let mut t = Duration::ZERO;
        for i in 0..3000u64 {
            t += ms(10);
            h.update(&Sample::success(t, rtt(i), 2).at_limit(h.limit()));
        }
        h.limit()
    };
    let calm = run(&|_| ms(20));
    assert!((10..=14).contains(&calm), "{calm}");
    let dispersed = run(&|i| if i.is_multiple_of(2) { ms(1) } else { ms(59) });
    assert_eq!(dispersed, 20);
}

#[test]
fn isolated_bursts_keep_the_burst_floor() {
    // Every fourth window is a burst that fills the limit and queues (3× the baseline);
    // the others are idle. No queue stands, so the limit stays at the burst floor.
    let mut h = Headroom::builder()
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .unwrap();
    let mut t = Duration::ZERO;
    for k in 0..200 {
        let l = h.limit();
        if k % 4 == 3 {
            window(&mut h, &mut t, ms(60), l, false);
        } else {
            window(&mut h, &mut t, ms(20), l / 2, false);
        }
    }
    assert!(h.limit() >= 20, "{}", h.limit());
}

/// Feeds one window of samples every 2 ms with `rtt`, a `full` share of them admitted
/// into the last free slot (`in_flight` = the limit), the others at half the limit.
fn window_full(h: &mut Headroom, t: &mut Duration, rtt: Duration, full: f64) {
    let closed = h.windows.closed();
    let mut i = 0u64;
    while h.windows.closed() == closed {
        let l = h.limit();
        let at = if (i as f64 * full).fract() + full >= 1.0 {
            l
        } else {
            l / 2
        };
        h.update(&Sample::success(*t, rtt, at).at_limit(l));
        *t += ms(2);
        i += 1;
    }
}

#[test]
fn bursts_that_fill_the_limit_now_and_then_grow_it_sustained_demand_does_not() {
    let build = || {
        Headroom::builder()
            .initial_limit(40)
            .dispersion_samples(0.0)
            .slow_start(false)
            .build()
            .unwrap()
    };
    // A baseline of 10 ms (a warm-up window first).
    let calm = |h: &mut Headroom, t: &mut Duration| {
        for _ in 0..20 {
            window_full(h, t, ms(10), 0.0);
        }
    };
    // One admission in ten fills the limit, no queue: the limit sheds a healthy service's
    // bursts and doubles (every other window).
    let mut h = build();
    let mut t = Duration::ZERO;
    calm(&mut h, &mut t);
    let l = h.limit();
    window_full(&mut h, &mut t, ms(12), 0.1);
    assert_eq!(h.limit(), 2 * l);
    window_full(&mut h, &mut t, ms(12), 0.1);
    assert_eq!(h.limit(), 2 * l);
    // The same bursts queue (3× the baseline): held, not cut.
    window_full(&mut h, &mut t, ms(30), 0.1);
    assert_eq!(h.limit(), 2 * l);
    // Sustained: every admission fills the limit and the window queues: cut.
    let mut h = build();
    let mut t = Duration::ZERO;
    calm(&mut h, &mut t);
    let l = h.limit();
    window_full(&mut h, &mut t, ms(30), 1.0);
    assert!(h.limit() < l, "{} vs {l}", h.limit());
}

/// A small pool at the burst floor (20) with a no-queue baseline of 10 ms: the default
/// tolerances, no slow start, constant RTTs (no error term), a warm-up and 19 calm windows
/// at half the limit.
fn calm_small_pool() -> (Headroom, Duration) {
    let mut h = Headroom::builder()
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .expect("a valid configuration");
    let mut t = Duration::ZERO;
    for _ in 0..20 {
        window_full(&mut h, &mut t, ms(10), 0.0);
    }
    assert_eq!((h.limit(), h.baseline()), (20, Some(ms(10))));
    (h, t)
}

#[test]
fn a_burst_that_queues_deep_keeps_the_room_its_drain_made() {
    // Rule 9 (session 19): a burst sheds (one admission in ten fills the limit, 3× the
    // baseline), drains (half the limit in flight, no queue): the limit doubles, 20 → 40.
    let (mut h, mut t) = calm_small_pool();
    window_full(&mut h, &mut t, ms(30), 0.1);
    assert_eq!(h.limit(), 20);
    window_full(&mut h, &mut t, ms(10), 0.0);
    assert_eq!(h.limit(), 40);
    // The next burst queues 4× the baseline (1.5 times the allowance of 2 and more) in two
    // binding windows in a row, while the limit bound in few recent windows and few
    // admissions filled it: a healthy small pool's burst (4 workers at 0.9× load, bimodal,
    // queue ten times the baseline for a second). The room stays; before, this "standing
    // queue" took it back to 20 (the assertion failed with 20) and the rest of the burst was
    // shed.
    window_full(&mut h, &mut t, ms(40), 0.1);
    window_full(&mut h, &mut t, ms(40), 0.1);
    assert_eq!(h.limit(), 40);
    // Sustained demand still takes it back: two windows in a row in which every admission
    // filled the limit.
    window_full(&mut h, &mut t, ms(40), 1.0);
    assert_eq!(h.limit(), 40);
    window_full(&mut h, &mut t, ms(40), 1.0);
    assert_eq!(h.limit(), 20);
}

#[test]
fn a_lull_in_demand_that_keeps_binding_the_limit_does_not_double_it() {
    // A burst that sheds, then two binding windows 4× the baseline while the limit bound in
    // under 40 % of recent windows (a third: 0.33), then a drain: a healthy pool's burst,
    // and the drain doubles the limit. Before, the two deep windows forgot the episode and
    // the limit stayed at 20 (the assertion failed with 20).
    let (mut h, mut t) = calm_small_pool();
    window_full(&mut h, &mut t, ms(30), 0.1);
    window_full(&mut h, &mut t, ms(40), 0.1);
    window_full(&mut h, &mut t, ms(40), 0.1);
    assert!(h.binding_share < STANDING_SHARE, "{}", h.binding_share);
    window_full(&mut h, &mut t, ms(10), 0.0);
    assert_eq!(h.limit(), 40);
    // The same deep windows after a limit of 40 (above the burst floor) bound in four
    // windows in a row (a share of 0.41 and more): a demand that keeps coming back to the
    // limit, as the drill's at 1× load. Its lull is no burst's end: the limit stays. (With
    // the forgetting at three such windows, or without the share, the drill's limit doubled
    // 40 → 80 in such a lull and the step to 2× load found 80 in flight on 8 workers: p99
    // 2.1× unloaded.)
    let mut h = Headroom::builder()
        .initial_limit(40)
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .expect("a valid configuration");
    let mut t = Duration::ZERO;
    for _ in 0..20 {
        window_full(&mut h, &mut t, ms(10), 0.0);
    }
    assert_eq!((h.limit(), h.baseline()), (40, Some(ms(10))));
    long_burst(&mut h, &mut t);
    window_full(&mut h, &mut t, ms(10), 0.0);
    assert_eq!(h.limit(), 40);
}

/// Four binding windows in a row 2.5× the baseline (queued: the allowance is 2), one
/// admission in ten filling the limit, then one 4× the baseline (1.5 times the allowance
/// and more: a queue that stands) with the limit bound in 41 % and more of recent windows.
fn long_burst(h: &mut Headroom, t: &mut Duration) {
    for _ in 0..4 {
        window_full(h, t, ms(25), 0.1);
    }
    window_full(h, t, ms(40), 0.1);
    assert!(h.binding_share >= STANDING_SHARE, "{}", h.binding_share);
}

#[test]
fn a_long_first_burst_at_the_burst_floor_still_doubles_at_its_drain() {
    // Session 20: the same windows as the drill's lull, but at the burst floor of 20 after
    // calm windows only (the share was 0 when the burst began). That is a small pool's
    // first long burst (4 workers × 30 ms at 0.9× load, bimodal, seed 2: eight binding
    // windows, the share 0 → 0.41 by the fourth), not a demand that keeps binding the limit:
    // its drain doubles 20 → 40. Before, the standing queue forgot the episode, the limit
    // stayed at 20 (the assertion failed with 20) and the next burst was shed at 20 too
    // (2.98 % of that cell's traffic; 1.72 % now).
    let (mut h, mut t) = calm_small_pool();
    long_burst(&mut h, &mut t);
    assert_eq!(h.limit(), 20);
    window_full(&mut h, &mut t, ms(10), 0.0);
    assert_eq!(h.limit(), 40);
}

#[test]
fn the_first_round_limit_holds_until_the_first_sample() {
    // Before any sample: the first-round limit (100), whatever the initial limit below it.
    let mut h = Headroom::default();
    assert_eq!(h.limit(), FIRST_ROUND_LIMIT);
    // The first sample hands over to the initial limit (20), here grown once by slow start
    // (admitted at 10 in flight: half of 20).
    h.update(&Sample::success(ms(300), ms(300), 10));
    assert_eq!(h.limit(), 22);
    // Never below the initial limit, never above the ceiling; at the initial limit it
    // admits no more than that before feedback.
    let limit = |b: HeadroomBuilder| b.build().unwrap().limit();
    assert_eq!(limit(Headroom::builder().first_round_limit(20)), 20);
    assert_eq!(limit(Headroom::builder().initial_limit(300)), 300);
    assert_eq!(limit(Headroom::builder().max_limit(60)), 60);
    // An ignored outcome is feedback too: it ends the first round.
    let mut h = Headroom::default();
    h.update(&Sample {
        outcome: Outcome::Ignored,
        ..Sample::success(ms(1), ms(1), 1)
    });
    assert_eq!(h.limit(), 20);
}

#[test]
fn bad_config_names_the_field() {
    let field = |b: HeadroomBuilder| b.build().unwrap_err().field();
    let b = Headroom::builder;
    assert_eq!(field(b().min_limit(0)), "min_limit");
    assert_eq!(field(b().initial_limit(1)), "initial_limit");
    assert_eq!(field(b().tolerance(0.5)), "tolerance");
    assert_eq!(field(b().tolerance(f64::NAN)), "tolerance");
    assert_eq!(field(b().sustained_tolerance(0.9)), "sustained_tolerance");
    assert_eq!(field(b().margin(0.0)), "margin");
    assert_eq!(field(b().growth(5.0)), "growth");
    assert_eq!(field(b().backoff_ratio(1.0)), "backoff_ratio");
    assert_eq!(field(b().baseline_windows(0)), "baseline_windows");
    assert_eq!(field(b().guard_windows(0)), "guard_windows");
    assert_eq!(field(b().dispersion_samples(-1.0)), "dispersion_samples");
    assert_eq!(field(b().timeout(Duration::ZERO)), "timeout");
    assert_eq!(field(b().overload_floor(0)), "overload_floor");
}

#[test]
fn the_timeout_scales_with_the_baseline() {
    // A slow service (200 ms windows) whose limit of 100 does not bind. One success of 6 s
    // (30 baselines) is a dispersed service's tail, not a loss: under the fixed 5 s timeout
    // it counted as a drop and backed the limit off to 90 (lognormal CV 2 at 300 ms: 0.2 %
    // of requests over 5 s, and 500 workers at 0.5× load shed 0.5-1.0 %). One of 11 s
    // (55 baselines) is still a drop.
    let mut h = Headroom::builder()
        .initial_limit(100)
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .unwrap();
    let mut t = Duration::ZERO;
    for _ in 0..50 {
        window(&mut h, &mut t, ms(200), 10, false);
    }
    assert_eq!(h.baseline(), Some(ms(200)));
    assert_eq!(h.limit(), 100);
    let tail = |h: &mut Headroom, t: &mut Duration, rtt: Duration| {
        h.update(&Sample::success(*t, rtt, 10));
        *t += ms(2);
        window(h, t, ms(200), 10, false);
    };
    tail(&mut h, &mut t, ms(6_000));
    assert_eq!(h.limit(), 100);
    tail(&mut h, &mut t, ms(11_000));
    assert_eq!(h.limit(), 90);
    // Without a baseline (or below 5 s / 50) the configured timeout holds.
    let mut h = Headroom::builder()
        .initial_limit(100)
        .slow_start(false)
        .timeout(ms(50))
        .build()
        .unwrap();
    let mut t = Duration::ZERO;
    h.update(&Sample::success(t, ms(60), 10));
    t += ms(30);
    h.update(&Sample::success(t, ms(20), 10));
    assert_eq!(h.limit(), 90);
}

#[test]
fn a_young_window_is_no_baseline_for_slow_starts_exit() {
    // In slow start a window in which the limit grew by more than an eighth holds mostly
    // young requests, the fast ones of which completed first: its mean is biased low. It
    // used to enter the baseline while there was none, and the next pressed window, at
    // 2.5 times that mean, read as a queue and ended slow start at a fraction of the pool
    // (the suite's `no-harm logn1 w500 300ms 0.5x`, seed 4: 0.51 % shed while the limit
    // climbed back). Now it teaches nothing, and slow start goes on.
    let mut h = Headroom::builder().dispersion_samples(0.0).build().unwrap();
    let mut t = Duration::ZERO;
    // The warm-up (four mean RTTs): 20 ms windows at one in flight (not pressed, no growth).
    while t < ms(60) {
        window(&mut h, &mut t, ms(20), 1, false);
    }
    assert!(h.slow_start && h.started.is_some());
    // A young window: every success at the limit grows it by 2.
    let opened = h.limit();
    window(&mut h, &mut t, ms(20), opened, false);
    assert!(
        h.limit() as f64 > opened as f64 * SLOW_START_YOUNG,
        "{}",
        h.limit()
    );
    assert!(h.started.is_none(), "warm");
    // A pressed window that is not young (one success at half the limit), at 2.5× the
    // young window's mean.
    let closed = h.windows.closed();
    let mut first = true;
    while h.windows.closed() == closed {
        let at = if std::mem::take(&mut first) {
            h.limit() / 2
        } else {
            1
        };
        h.update(&Sample::success(t, ms(50), at));
        t += ms(2);
    }
    assert!(h.slow_start, "slow start ended at {}", h.limit());
}

/// Feeds one window of a closed loop at the limit: every sample sees the limit in flight
/// and takes `rtt`, one every `rtt / limit` (Little's law: the in-flight count completes at
/// `limit / rtt`).
fn window_at_limit(h: &mut Headroom, t: &mut Duration, rtt: Duration) {
    let closed = h.windows.closed();
    while h.windows.closed() == closed {
        let l = h.limit();
        h.update(&Sample::success(*t, rtt, l));
        *t += rtt / l.max(1) as u32;
    }
}

#[test]
fn a_slower_service_is_not_cut_below_the_in_flight_count_it_completes_at() {
    // Rule 3's floor (session 19, second round): a limit of 40 held by demand at 10 ms
    // (4 000/s), then every request 2× slower (2 000/s at the same 40 in flight). The
    // completion rate halved, and once its 8-window mean fell (two cuts of 5 % later:
    // 40 → 36) the latency rule's cuts stop at 1.1 × the guard's estimate F (the in-flight
    // count: this pool completes at whatever it holds), so the limit stays at 36 or more.
    // Before, the latency rule cut on to below the guard's margin (0.8 F) and the guard's
    // own 1.25 F ended the guarding at once: a sawtooth down to 30 (the assertion failed
    // with 30), whose lower half left a slowed pool's workers idle (`slowdown-2x@0.9`,
    // seed 1).
    let mut h = Headroom::builder()
        .initial_limit(40)
        .max_limit(40)
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .expect("a valid configuration");
    let mut t = Duration::ZERO;
    for _ in 0..40 {
        window_at_limit(&mut h, &mut t, ms(10));
    }
    assert_eq!((h.limit(), h.baseline()), (40, Some(ms(10))));
    let mut low = usize::MAX;
    for _ in 0..60 {
        window_at_limit(&mut h, &mut t, ms(20));
        low = low.min(h.limit());
    }
    assert!(h.rate_fell());
    assert!(low >= 36, "{low}");
}

#[test]
fn an_undone_doubling_stands_in_a_window_that_did_not_bind() {
    // Rule 8 undoes a doubling that the next windows show queued while pressing on the
    // limit; pressing includes a window whose mean is 1.5 times the allowance, which need
    // not bind (its in-flight count below the doubled limit). Such a window's proposal was
    // then replaced by "an unbound limit is kept", so the undo was lost and the doubled
    // room came down by the latency rule's tenths (`cpu-thrash`: 144 → 72 undone, kept at
    // 144, 0.8 s of cuts; p99 2.3–3.2× unloaded, 1.7–2.1× with the undo standing).
    let mut h = Headroom::builder()
        .initial_limit(60)
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .expect("a valid configuration");
    let mut t = Duration::ZERO;
    for _ in 0..40 {
        window_full(&mut h, &mut t, ms(100), 0.0);
    }
    let l = h.limit();
    // One admission in ten fills the limit, no queue: doubled.
    window_full(&mut h, &mut t, ms(120), 0.1);
    assert_eq!(h.limit(), 2 * l);
    // The next window queues 4× the baseline at half the doubled limit in flight (not
    // binding), completing no more than the old limit carried: undone (before, kept at
    // 120: the assertion failed with 120).
    window_full(&mut h, &mut t, ms(400), 0.0);
    assert_eq!(h.limit(), l);
}

#[test]
fn a_queue_that_never_drains_does_not_double_the_limit() {
    // Rule 6 (session 20): a replica at the burst floor behind a shared, overloaded server.
    // Its RTT stands at 1.9 times the baseline window after window (the other replicas'
    // queue), with 18 of its 20 slots in flight: no window is far from the knee (1.5).
    let (mut h, mut t) = calm_small_pool();
    for _ in 0..=CALM_WINDOWS {
        window(&mut h, &mut t, ms(19), 18, false);
    }
    assert_eq!(h.limit(), 20);
    // A binding window that happens not to queue (1.8 times the baseline, under the
    // allowance of 2) while one admission in ten filled the limit: no burst drained, so
    // only the latency rule's +1 applies. Before, rule 6 read it as a burst the limit shed
    // and doubled it, 20 → 40 (the assertion failed with 40): `replicas-4` seed 3's sum
    // jumped 100 → 140 at 9.82 s of 10.
    window_full(&mut h, &mut t, ms(18), 0.1);
    assert_eq!(h.limit(), 21);
    // After a window far from the knee (the queue drained), the same window doubles.
    window(&mut h, &mut t, ms(10), 18, false);
    window_full(&mut h, &mut t, ms(18), 0.1);
    assert_eq!(h.limit(), 42);
}

/// Feeds one window of samples every 2 ms whose RTTs alternate between `lo` and `hi` (mean
/// and dispersion as given), each admitted with `in_flight` = `in_flight(limit)`.
fn window_alternating(
    h: &mut Headroom,
    t: &mut Duration,
    (lo, hi): (Duration, Duration),
    in_flight: impl Fn(usize) -> usize,
) {
    let closed = h.windows.closed();
    let mut i = 0u64;
    while h.windows.closed() == closed {
        let l = h.limit();
        let rtt = if i.is_multiple_of(2) { lo } else { hi };
        h.update(&Sample::success(*t, rtt, in_flight(l)).at_limit(l));
        *t += ms(2);
        i += 1;
    }
}

/// Rule 10's tests: a limit of 40 (growth 1, no slow start) calm at half of it, on a service
/// of 10 ms mean and CV 0.5 (5 / 15 ms alternating).
fn calm_cv_half_at_40() -> (Headroom, Duration) {
    let mut h = Headroom::builder()
        .initial_limit(40)
        .min_limit(2)
        .margin(1e-9)
        .growth(1.0)
        .dispersion_samples(0.0)
        .slow_start(false)
        .build()
        .expect("a valid configuration");
    let mut t = Duration::ZERO;
    for _ in 0..20 {
        window_alternating(&mut h, &mut t, (ms(5), ms(15)), |l| l / 2);
    }
    assert_eq!((h.limit(), h.baseline()), (40, Some(ms(10))));
    (h, t)
}

#[test]
fn a_processor_sharing_server_is_held_to_the_knee_a_line_in_front_of_a_pool_is_not() {
    // Rule 10 (session 20). A service of 10 ms mean and CV 0.5 (5 / 15 ms), calm at half the
    // limit; then sustained demand fills the limit and every window's mean is 1.4 times the
    // baseline. Through a line in front of a pool every request waits alike, so the RTT's CV
    // falls (10.5 / 17.5 ms: CV 0.25); on a processor-sharing server every request is
    // stretched alike and the CV stays (7 / 21 ms: CV 0.5).
    let run = |queued: (Duration, Duration)| {
        let (mut h, mut t) = calm_cv_half_at_40();
        for _ in 0..40 {
            window_alternating(&mut h, &mut t, queued, |l| l);
        }
        h
    };
    let pool = run((Duration::from_micros(10_500), Duration::from_micros(17_500)));
    let shared = run((ms(7), ms(21)));
    // The pool's line is within the sustained tolerance (1.4 < 1.5): the limit grows (by 1
    // per window; no doubling with a growth of 1). The shared server's is past the knee
    // (1.4 > 1.0 + the error term 0.32): cut, to 28. Before, the shared server's limit held
    // at 40 (its allowance was even wider than the pool's: its CV is higher), and the second
    // assertion failed with 40. `cpu-thrash` (48 cores thrashing past 48 in flight): 83-85 %
    // of capacity at a limit of 58-72 before, 93.8-96.4 % at about 46-53 now.
    assert!(pool.limit() >= 40, "{}", pool.limit());
    assert!(shared.limit() < 40, "{}", shared.limit());
    assert!(pool.sharing < PS_CV_SHARE, "{}", pool.sharing);
    assert!(shared.sharing >= PS_CV_SHARE, "{}", shared.sharing);
}

#[test]
fn a_processor_sharing_server_is_held_to_the_knee_while_a_queue_stands_before_the_share() {
    // Rule 10 (session 20, limit20c). The same service as above (10 ms, CV 0.5, calm at half
    // a limit of 40); then a load step: two windows fill the limit at 2.5 times the baseline
    // (a queue that stands: two pressed windows in a row) and the next at 1.6 times, the CV
    // unchanged (processor sharing). Six binding windows lift the binding share only to
    // 0.55, under the three quarters of sustained demand, so before this change the burst
    // tolerance of 2 applied: the two deep windows cut 40 → 38 (a tenth at most, here 4 %
    // each), and the windows at 1.6 times held it there (the last assertion failed with 38).
    // Now the tolerance is 1 from the third window on: 1.6 times is past the knee, cut to 33.
    // `cpu-thrash` (a load step onto 48 thrashing cores): seed 3 94.7 → 96.0 % of capacity,
    // seed 4 93.8 → 94.2 %.
    let (mut h, mut t) = calm_cv_half_at_40();
    for _ in 0..2 {
        window_alternating(
            &mut h,
            &mut t,
            (Duration::from_micros(12_500), ms(38)),
            |l| l,
        );
    }
    assert_eq!(h.limit(), 38);
    for _ in 0..4 {
        window_alternating(&mut h, &mut t, (ms(8), ms(24)), |l| l);
    }
    assert!(h.binding_share < SUSTAINED_SHARE, "{}", h.binding_share);
    assert!(h.sharing >= PS_CV_SHARE, "{}", h.sharing);
    assert!(h.limit() <= 34, "{}", h.limit());
}

#[test]
fn slow_starts_leftover_limit_reached_past_the_tolerance_does_not_double() {
    // Rule 6 (session 20, limit20c). A limit of 80 (above the burst floor) that has never
    // bound: calm windows of 10 ms mean at half the limit. Then a load step reaches it: a
    // window in which one admission in five fills the limit (a burst's share, under 35 %)
    // and whose mean is 2.1 times the baseline, past the tolerance of 2 and within the
    // allowance only by the error term. With CV 0.5 this is a step, not a burst: the limit
    // grows by 1 to 81 (before: doubled 80 → 160, and the assertion failed with 160). A
    // dispersed service (CV 0.9) reaches past the tolerance by chance in its bursts: it
    // still doubles.
    let run = |calm: (Duration, Duration), step: (Duration, Duration)| {
        let mut h = Headroom::builder()
            .initial_limit(80)
            .min_limit(2)
            .margin(1e-9)
            .dispersion_samples(0.0)
            .slow_start(false)
            .build()
            .expect("a valid configuration");
        let mut t = Duration::ZERO;
        for _ in 0..20 {
            window_alternating(&mut h, &mut t, calm, |l| l / 2);
        }
        assert_eq!((h.limit(), h.baseline()), (80, Some(ms(10))));
        assert_eq!(h.binding_share, 0.0);
        let closed = h.windows.closed();
        let mut i = 0u64;
        while h.windows.closed() == closed {
            let l = h.limit();
            let rtt = if i.is_multiple_of(2) { step.0 } else { step.1 };
            let in_flight = if i.is_multiple_of(5) { l } else { l / 2 };
            h.update(&Sample::success(t, rtt, in_flight).at_limit(l));
            t += ms(2);
            i += 1;
        }
        h.limit()
    };
    let step = run(
        (ms(5), ms(15)),
        (Duration::from_micros(10_500), Duration::from_micros(31_500)),
    );
    assert_eq!(step, 81);
    let dispersed = run((ms(1), ms(19)), (Duration::from_micros(2_100), ms(40)));
    assert_eq!(dispersed, 160);
}

/// `n` samples 1 ms apart, 20 ms each, the limiter full (in flight = the limit); every
/// `drop_every`-th of them a drop (0: none). Returns the limit at the end.
fn full_with_drops(h: &mut Headroom, t: &mut Duration, n: u64, drop_every: u64) -> usize {
    for i in 0..n {
        *t += ms(1);
        let in_flight = h.limit();
        let s = if drop_every > 0 && i % drop_every == drop_every - 1 {
            Sample::dropped(*t, ms(20), in_flight)
        } else {
            Sample::success(*t, ms(20), in_flight)
        };
        h.update(&s.at_limit(in_flight));
    }
    h.limit()
}

#[test]
fn the_drops_a_service_always_has_do_not_back_the_limit_off() {
    // Rule 12. One sample in 200 a drop (a rare request outlasting the client's timeout),
    // the service otherwise at its baseline: the limit stays where the same service without
    // drops keeps it (before the rule, every window holding a drop cut it by a tenth).
    let run = |drop_every| {
        let mut h = Headroom::builder()
            .min_limit(2)
            .build()
            .expect("a valid configuration");
        let mut t = Duration::ZERO;
        let limit = full_with_drops(&mut h, &mut t, 20_000, drop_every);
        (h, t, limit)
    };
    let (_, _, clean) = run(0);
    let (mut h, mut t, rare) = run(200);
    assert!(rare as f64 >= 0.8 * clean as f64, "{rare} against {clean}");
    // Drops well past the usual share (one in three) still back it off.
    let dropping = full_with_drops(&mut h, &mut t, 500, 3);
    assert!(
        (dropping as f64) < 0.5 * rare as f64,
        "{dropping} from {rare}"
    );
}
