//! The anchors' known failure modes, reproduced with the reference variants and shown to be
//! avoided by the corrected ones. Every scenario is a scripted sequence of samples; the
//! numbers in the comments are what the (deterministic) run produces.

use std::time::Duration;

use super::{EnvoyGradient, Gradient2, LimitAlgorithm, Sample};

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1000.0)
}

/// Feeds `n` samples from `make(i, limit)`; returns the limit after each one.
fn run<A: LimitAlgorithm>(
    a: &mut A,
    n: usize,
    mut make: impl FnMut(usize, usize) -> Sample,
) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let s = make(i, a.limit());
            a.update(&s)
        })
        .collect()
}

fn first_index_of(limits: &[usize], value: usize) -> Option<usize> {
    limits.iter().position(|&l| l == value)
}

/// Netflix #176: an overloaded backend fails fast (drops with an RTT of 1 ms) while the
/// limiter is saturated. The reference reads the fast failures as "no queueing" and raises
/// its limit to the maximum; the corrected variant backs off to the floor.
#[test]
fn gradient2_176_reference_raises_limit_on_fast_drops_corrected_backs_off() {
    let healthy = |i: usize, l: usize| Sample::success(ms(i as f64), ms(10.0), l);
    let failing = |i: usize, l: usize| Sample::dropped(ms(i as f64), ms(1.0), l);

    let mut reference = Gradient2::reference();
    let mut corrected = Gradient2::corrected();
    // 20 healthy saturated samples: both grow by 0.8 per sample, 20 → 36.
    run(&mut reference, 20, healthy);
    run(&mut corrected, 20, healthy);
    assert_eq!(reference.limit(), 36);
    assert_eq!(corrected.limit(), 36);

    let r = run(&mut reference, 500, failing);
    let c = run(&mut corrected, 500, failing);
    // Reference: never comes down, +0.8 per drop, reaches max (200) after 205 drops.
    assert!(
        r.windows(2).all(|w| w[1] >= w[0]),
        "reference never backs off"
    );
    assert_eq!(first_index_of(&r, 200), Some(204));
    assert_eq!(reference.limit(), 200);
    // Corrected: ×0.9 per drop, at the floor (20) after 6 drops and stays there.
    assert_eq!(first_index_of(&c, 20), Some(5));
    assert!(c[5..].iter().all(|&l| l == 20));
}

/// Netflix #134: after a healthy spell at 10 ms, the service is modestly overloaded and its
/// RTT settles at 18.75 ms (gradient 1.5·10/18.75 = 0.8) with the limiter saturated. The
/// reference's long RTT follows the elevated RTT and the fixed `+4` walks the limit up to
/// the maximum; the corrected variant's no-load anchor keeps seeing the queue.
#[test]
fn gradient2_134_reference_creeps_to_max_under_modest_overload_corrected_holds_the_floor() {
    let warm = |i: usize, _l: usize| Sample::success(ms(i as f64), ms(10.0), 0);
    let overload = |i: usize, l: usize| Sample::success(ms(i as f64), ms(18.75), l);

    let mut reference = Gradient2::reference();
    let mut corrected = Gradient2::corrected();
    // App-limited warm-up (in-flight 0): both hold 20 and learn the 10 ms baseline.
    run(&mut reference, 100, warm);
    run(&mut corrected, 100, warm);

    let r = run(&mut reference, 1500, overload);
    let c = run(&mut corrected, 1500, overload);
    // At first the reference sees g = 0.8 and holds at its equilibrium 4/(1 − 0.8) = 20 ...
    assert_eq!(r[0], 20);
    assert!((reference_gradient_after(100, 1) - 0.8).abs() < 0.01);
    // ... then its long RTT creeps towards 18.75 ms and the limit rises without bound.
    assert!(r.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(first_index_of(&r, 200), Some(R134_REACHES_MAX));
    assert_eq!(*r.last().expect("non-empty"), 200);
    // Corrected: gradient 0.8 against the 10 ms anchor, no headroom: pinned at the floor 20
    // for all 1500 samples.
    assert!(c.iter().all(|&l| l == 20), "max {:?}", c.iter().max());
    assert!((corrected.estimates().gradient.expect("gradient") - 0.8).abs() < 1e-9);
}

/// The sample index at which the reference reaches 200 in the #134 scenario.
const R134_REACHES_MAX: usize = 284;

/// The reference gradient after `warm` warm-up samples and `overloaded` samples at 18.75 ms.
fn reference_gradient_after(warm: usize, overloaded: usize) -> f64 {
    let mut g = Gradient2::reference();
    run(&mut g, warm, |i, _| {
        Sample::success(ms(i as f64), ms(10.0), 0)
    });
    run(&mut g, overloaded, |i, l| {
        Sample::success(ms(i as f64), ms(18.75), l)
    });
    g.estimates().gradient.expect("gradient")
}

/// Netflix #137: every request times out at the client's 5 s deadline, so every RTT is
/// exactly 5 s. The reference sees a flat RTT (gradient 1) and climbs to the maximum; the
/// corrected variant treats `rtt ≥ timeout` as a drop and falls to the floor.
#[test]
fn gradient2_137_reference_climbs_to_max_when_all_time_out_corrected_falls_to_min() {
    let timeout = |i: usize, l: usize| Sample::success(ms(i as f64), Duration::from_secs(5), l);
    let mut reference = Gradient2::builder()
        .initial_limit(100)
        .build()
        .expect("valid");
    let mut corrected = Gradient2::builder()
        .corrected()
        .initial_limit(100)
        .build()
        .expect("valid");

    let r = run(&mut reference, 1000, timeout);
    let c = run(&mut corrected, 1000, timeout);
    // Reference: +0.8 per sample, 100 → 200 after 125 samples, and it stays there.
    assert_eq!(first_index_of(&r, 200), Some(124));
    assert_eq!(reference.limit(), 200);
    // Corrected: ×0.9 per timeout, 100 → 20 after 15 samples (100·0.9¹⁵ = 20.6), and it
    // stays there.
    assert_eq!(first_index_of(&c, 20), Some(14));
    assert!(c[14..].iter().all(|&l| l == 20));
}

/// What a healthy service sees from an Envoy controller.
#[derive(Debug, Default, PartialEq)]
struct EnvoyRun {
    /// Requests refused because the limit was below the demand.
    rejected: u64,
    /// Time with the limit below the demand.
    time_below_demand: Duration,
    /// Time with the limit pinned at `min_concurrency` (3).
    time_pinned: Duration,
    /// Completed minRTT windows.
    windows: u32,
}

/// A healthy service: 50 requests always waiting, each takes 10 ms whatever the concurrency
/// (its capacity is far above the demand). Every 10 ms tick, `min(50, limit)` requests
/// complete and the rest are refused. Counted after a 10 s warm-up, for 5 minutes.
fn healthy_envoy(mut e: EnvoyGradient) -> EnvoyRun {
    const DEMAND: usize = 50;
    let tick = Duration::from_millis(10);
    let warmup = Duration::from_secs(10);
    let end = warmup + Duration::from_secs(300);
    let mut out = EnvoyRun::default();
    let mut now = Duration::ZERO;
    let mut was_probing = e.in_min_rtt_window();
    while now < end {
        now += tick;
        let admitted = e.limit().min(DEMAND);
        if now > warmup {
            out.rejected += (DEMAND - admitted) as u64;
            if e.limit() < DEMAND {
                out.time_below_demand += tick;
            }
            if e.limit() == 3 {
                out.time_pinned += tick;
            }
        }
        for _ in 0..admitted {
            e.update(&Sample::success(now, tick, admitted));
        }
        let probing = e.in_min_rtt_window();
        if was_probing && !probing && now > warmup {
            out.windows += 1;
        }
        was_probing = probing;
    }
    out
}

/// Envoy #8337, #9007, #46532: every minRTT window pins the limit to 3 until 50 samples have
/// arrived, even though the service is healthy, and most requests get a 503 meanwhile. The
/// corrected variant probes at half the limit, which a healthy service never notices.
#[test]
fn envoy_pins_to_3_in_every_min_rtt_window_corrected_probes_without_503s() {
    let reference = healthy_envoy(EnvoyGradient::reference());
    let corrected = healthy_envoy(EnvoyGradient::corrected());

    // Reference: 4 windows in 5 minutes (60 s + up to 15 % jitter apart), each pinning the
    // limit at 3 for 170 ms (50 samples at 3 per 10 ms tick): 680 ms pinned, and 47 of the
    // 50 requests refused on each of those 68 ticks (3196 refusals, in bursts).
    assert_eq!(reference.windows, 4);
    assert_eq!(reference.time_pinned, Duration::from_millis(680));
    assert_eq!(reference.time_below_demand, reference.time_pinned);
    assert_eq!(reference.rejected, 47 * 68);
    // Corrected: the same windows, never below the demand, nothing refused.
    assert_eq!(corrected.windows, 4);
    assert_eq!(corrected.time_pinned, Duration::ZERO);
    assert_eq!(corrected.time_below_demand, Duration::ZERO);
    assert_eq!(corrected.rejected, 0);
}

/// The corrections must not simply pin the limit low: once the drops, the overload or the
/// timeouts end, the corrected Gradient2 grows back like the reference.
#[test]
fn gradient2_corrected_recovers_once_the_fault_ends() {
    let mut g = Gradient2::corrected();
    run(&mut g, 100, |i, _| {
        Sample::success(ms(i as f64), ms(10.0), 0)
    });
    run(&mut g, 300, |i, l| {
        Sample::dropped(ms(i as f64), ms(1.0), l)
    });
    run(&mut g, 300, |i, l| {
        Sample::success(ms(i as f64), ms(18.75), l)
    });
    run(&mut g, 300, |i, l| {
        Sample::success(ms(i as f64), Duration::from_secs(5), l)
    });
    assert_eq!(g.limit(), 20);
    // Healthy again at 10 ms and saturated: +0.8 per sample, 20 → 200 after 225 samples.
    let back = run(&mut g, 300, |i, l| {
        Sample::success(ms(i as f64), ms(10.0), l)
    });
    assert_eq!(first_index_of(&back, 200), Some(224));
}

/// A service that queues: 20 workers, 10 ms each, so with `n` in flight a request takes
/// `10 ms · max(1, n/20)`; 100 requests always waiting. Returns the limit after each tick
/// (from 10 s on) and the minRTT at the end.
fn queueing_envoy(mut e: EnvoyGradient) -> (Vec<usize>, Duration) {
    const DEMAND: usize = 100;
    let tick = Duration::from_millis(10);
    let mut now = Duration::ZERO;
    let mut limits = Vec::new();
    while now < Duration::from_secs(310) {
        now += tick;
        let n = e.limit().min(DEMAND);
        let rtt = tick.mul_f64((n as f64 / 20.0).max(1.0));
        for _ in 0..n {
            e.update(&Sample::success(now, rtt, n));
        }
        if now > Duration::from_secs(10) {
            limits.push(e.limit());
        }
    }
    (limits, e.estimates().min_rtt.expect("measured"))
}

/// Probing at half the limit still finds the true no-load RTT of a service that queues, so
/// the corrected controller settles where the reference does (the fixed point of
/// `L·g + √(L·g) = L` with `g = 12.5 ms / (10 ms · L/20)` is L = 30).
#[test]
fn envoy_corrected_still_measures_the_no_load_rtt_of_a_queueing_service() {
    let (r, r_min) = queueing_envoy(EnvoyGradient::reference());
    let (c, c_min) = queueing_envoy(EnvoyGradient::corrected());
    assert_eq!(r_min, Duration::from_millis(10));
    assert_eq!(c_min, Duration::from_millis(10));
    let median = |v: &[usize]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    assert_eq!(median(&r), 30);
    assert_eq!(median(&c), 30);
    // Only the reference drops to 3 during its windows.
    assert!(r.contains(&3));
    assert!(c.iter().all(|&l| l >= 15), "min {:?}", c.iter().min());
}

/// The price of the #134 fix, stated as a test: a latency shift that lasts longer than two
/// baseline windows (2 × 1000 samples; about 17 to 33 minutes under `Windowed`'s 1 s
/// windows) is accepted as the service's new normal, and the limit grows again.
#[test]
fn gradient2_corrected_accepts_a_permanent_latency_shift_after_two_baseline_windows() {
    let mut g = Gradient2::corrected();
    run(&mut g, 100, |i, _| {
        Sample::success(ms(i as f64), ms(10.0), 0)
    });
    let c = run(&mut g, 2500, |i, l| {
        Sample::success(ms(i as f64), ms(18.75), l)
    });
    // Samples 1..=1000 (100 at 10 ms) are remembered until sample 2000, i.e. overload sample
    // 1899; from then on the anchor is 18.75 ms and the limit grows by 0.8 per sample.
    assert!(c[..1900].iter().all(|&l| l == 20));
    assert_eq!(first_index_of(&c, 200), Some(1900 + 224));
    assert_eq!(g.estimates().min_rtt, Some(ms(18.75)));
}
