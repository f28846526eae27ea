use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Feeds `n` samples of `rtt` spread evenly over `[from, to)`.
fn feed(e: &mut EnvoyGradient, from: Duration, to: Duration, n: u32, rtt: Duration) {
    let step = (to - from) / n;
    for i in 0..n {
        let now = from + step * i;
        e.update(&Sample::success(now, rtt, 1));
    }
}

#[test]
fn reference_table() {
    // No jitter so that the next minRTT window is at a known time.
    let mut e = EnvoyGradient::builder().jitter(0.0).build().unwrap();
    assert_eq!(e.limit(), 3);
    assert_eq!(e.estimates().probing, Some(true));
    // minRTT window: 50 samples of 10 ms, ending at t = 49 ms.
    for i in 0..50 {
        e.update(&Sample::success(ms(i), ms(10), 1));
    }
    assert_eq!(e.estimates().min_rtt, Some(ms(10)));
    assert_eq!(e.estimates().probing, Some(false));
    assert_eq!(e.limit(), 3); // the limit put aside was the initial 3
    // Each row: samples every 10 ms of one update interval, then the sample that reveals
    // the deadline (it fires first, then the sample joins the next interval).
    // (deadline ms, rtt ms, expected limit)
    let steps = [
        (149, 10, 5),  // p50 10, g = 12.5/10 = 1.25: 3·1.25 = 3.75, + 1.94 = 5.69
        (249, 10, 8),  // 5·1.25 = 6.25, + 2.5 = 8.75
        (349, 10, 13), // 8·1.25 = 10, + 3.16 = 13.16
        (449, 25, 9),  // p50 of {10, 25×10} = 25, g 0.5: 6.5, + 2.55 = 9.05
        (549, 20, 7),  // p50 of {25, 20×10} = 20, g 0.625: 5.625, + 2.37 = 7.997
    ];
    let mut t = ms(49);
    for (end, rtt, want) in steps {
        feed(&mut e, t, ms(end), 10, ms(rtt));
        t = ms(end);
        e.update(&Sample::success(t, ms(rtt), 1));
        assert_eq!(e.limit(), want, "update at {end} ms");
    }
    let est = e.estimates();
    assert_eq!(est.short_rtt, Some(ms(20)));
    assert!((est.gradient.unwrap() - 0.625).abs() < 1e-12);
    assert!((est.queue.unwrap() - 5.625f64.sqrt()).abs() < 1e-12);
}

#[test]
fn reference_pins_during_every_window_and_restores_after() {
    let mut e = EnvoyGradient::builder()
        .jitter(0.0)
        .min_rtt_interval(ms(1000))
        .build()
        .unwrap();
    for i in 0..50 {
        e.update(&Sample::success(ms(i), ms(10), 1));
    }
    // Grow for a while: every 100 ms with samples at the minRTT.
    let mut t = ms(50);
    while t < ms(1040) {
        e.update(&Sample::success(t, ms(10), 1));
        t += ms(5);
    }
    // Updates at 149, 249, ..., 949 ms: 5, 8, 13, 20, 30, 43, 61, 84, 115.
    assert_eq!(e.limit(), 115);
    // At 1049 ms the update (115·1.25 = 143.75, + 11.99 → 155) fires, then the next
    // window (49 + 1000 ms) pins the limit to 3.
    e.update(&Sample::success(ms(1049), ms(10), 1));
    assert!(e.in_min_rtt_window());
    assert_eq!(e.limit(), 3);
    // Requests that started before the window (1049 ms) are discarded.
    e.update(&Sample::success(ms(1050), ms(10), 1));
    assert_eq!(e.samples.count(), 0);
    e.update(&Sample::success(ms(1051), ms(1), 1));
    assert_eq!(e.samples.count(), 1);
    for i in 0..49 {
        e.update(&Sample::success(ms(1060 + i), ms(10), 1));
    }
    assert!(!e.in_min_rtt_window());
    assert_eq!(e.limit(), 155);
}

#[test]
fn five_updates_at_the_floor_force_a_new_window() {
    let mut e = EnvoyGradient::builder().jitter(0.0).build().unwrap();
    for i in 0..50 {
        e.update(&Sample::success(ms(i), ms(10), 1));
    }
    // RTT 100 ms against minRTT 10 ms: g = 0.5 each time; 3·0.5 = 1.5 + 1.22 = 2.72 → 3.
    // Updates at 149, 249, ... each keep the limit at the floor 3.
    let mut t = ms(50);
    let mut entered_at = None;
    while t < ms(1000) {
        e.update(&Sample::success(t, ms(100), 3));
        if e.in_min_rtt_window() {
            entered_at = Some(t);
            break;
        }
        t += ms(10);
    }
    // 5 consecutive floor-to-floor updates: 149, 249, 349, 449, 549 ms.
    assert_eq!(entered_at, Some(ms(550)));
}

#[test]
fn corrected_probes_at_half_the_limit() {
    let mut e = EnvoyGradient::builder()
        .corrected()
        .jitter(0.0)
        .min_rtt_interval(ms(1000))
        .build()
        .unwrap();
    for i in 0..50 {
        e.update(&Sample::success(ms(i), ms(10), 1));
    }
    let mut t = ms(50);
    while t < ms(1040) {
        e.update(&Sample::success(t, ms(10), 1));
        t += ms(5);
    }
    assert_eq!(e.limit(), 115);
    // The update at 1049 ms gives 155; the window then probes at ceil(155·0.5) = 78.
    e.update(&Sample::success(ms(1049), ms(10), 1));
    assert!(e.in_min_rtt_window());
    assert_eq!(e.limit(), 78);
    assert_eq!(e.name(), "envoy-gradient-corrected");
}

#[test]
fn idle_gaps_do_not_loop_per_interval() {
    let mut e = EnvoyGradient::reference();
    for i in 0..50 {
        e.update(&Sample::success(ms(i), ms(10), 1));
    }
    // A year later: one timer pass, not 3·10⁸ iterations.
    let later = Duration::from_secs(365 * 24 * 3600);
    e.update(&Sample::success(later, ms(10), 1));
    assert!(e.in_min_rtt_window());
    assert!(e.next_update.is_none());
}

#[test]
fn bad_config_names_the_field() {
    let field = |b: EnvoyGradientBuilder| b.build().unwrap_err().field();
    let b = EnvoyGradient::builder;
    assert_eq!(
        field(b().update_interval(Duration::ZERO)),
        "update_interval"
    );
    assert_eq!(
        field(b().min_rtt_interval(Duration::ZERO)),
        "min_rtt_interval"
    );
    assert_eq!(field(b().request_count(0)), "request_count");
    assert_eq!(field(b().jitter(1.5)), "jitter");
    assert_eq!(field(b().jitter(f64::NAN)), "jitter");
    assert_eq!(field(b().min_concurrency(0)), "min_concurrency");
    assert_eq!(field(b().min_concurrency(2000)), "min_concurrency");
    assert_eq!(field(b().min_limit(0)), "min_limit");
    assert_eq!(field(b().min_limit(20).max_limit(10)), "min_limit");
    assert_eq!(field(b().buffer(-0.1)), "buffer");
    assert_eq!(field(b().percentile(0.0)), "percentile");
    assert_eq!(field(b().probe_fraction(0.0)), "probe_fraction");
    assert_eq!(field(b().probe_fraction(f64::INFINITY)), "probe_fraction");
}
