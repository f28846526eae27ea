use super::*;
use crate::scenario::Phase;

fn offered(s: &Scenario) -> u64 {
    run(
        s,
        &PolicySpec::parse("none").unwrap(),
        RunOptions::default(),
    )
    .unwrap()
    .offered
}

#[test]
fn arrival_counts_follow_the_schedule() {
    // A ramp 0 → 2x of 1600/s over 10 s: 16 000 arrivals expected.
    let mut s = Scenario::new(
        "ramp",
        "",
        vec![Phase {
            duration: Duration::from_secs(10),
            load: 0.0,
            ramp_to: Some(2.0),
        }],
    );
    let n = offered(&s) as f64;
    assert!((n - 16_000.0).abs() < 400.0, "{n}");
    // On/off bursts keep the mean rate: 1x for 10 s = 16 000.
    s.phase[0].ramp_to = None;
    s.phase[0].load = 1.0;
    s.arrival.process = "on_off".into();
    s.arrival.on = Some(Duration::from_millis(100));
    s.arrival.off = Some(Duration::from_millis(300));
    let n = offered(&s) as f64;
    assert!((n - 16_000.0).abs() < 400.0, "{n}");
    // Constant arrivals are exact.
    s.arrival.process = "constant".into();
    assert!((offered(&s) as i64 - 16_000).abs() <= 1);
}

#[test]
fn workers_can_change_mid_run() {
    // 48 workers, 0.7x load; from 3 s only 24 remain: 1.4x of the new capacity. Without a
    // limiter the server queue grows; the capacity used for overload goodput halves.
    let mut s = Scenario::new("bn", "", vec![Phase::constant(Duration::from_secs(6), 0.7)]);
    s.capacity = vec![crate::scenario::CapacityChange {
        at: Duration::from_secs(3),
        factor: 1.0,
        workers: Some(24),
    }];
    let opts = RunOptions { series: true };
    let r = run(&s, &PolicySpec::parse("none").unwrap(), opts).unwrap();
    let cap = |t: f64| {
        r.series
            .iter()
            .find(|p| p.t >= t)
            .map(|p| p.capacity_rps)
            .unwrap()
    };
    assert!((cap(1.0) - 1600.0).abs() < 1e-6);
    assert!((cap(4.0) - 800.0).abs() < 1e-6);
    assert!(r.overload_goodput.is_some(), "overloaded after the change");
    let queue_late = r
        .series
        .iter()
        .rev()
        .find(|p| p.t <= 5.9)
        .unwrap()
        .server_queue;
    assert!(queue_late > 200, "{queue_late}");
}

#[test]
fn replicas_each_have_a_limiter_and_share_the_server() {
    // Four static limiters of 12 behind round robin in front of 48 workers at 2x load:
    // together they admit like one limiter of 48, and the reported limit is the sum.
    let mut s = Scenario::new("r", "", vec![Phase::constant(Duration::from_secs(3), 2.0)]);
    s.replicas = 4;
    let four = run(
        &s,
        &PolicySpec::parse("static:12").unwrap(),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(four.mean_limit, Some(48.0));
    assert!(four.peak_in_flight <= 48, "{}", four.peak_in_flight);
    s.replicas = 1;
    let one = run(
        &s,
        &PolicySpec::parse("static:48").unwrap(),
        RunOptions::default(),
    )
    .unwrap();
    let (a, b) = (four.successes as f64, one.successes as f64);
    assert!((a - b).abs() / b < 0.05, "{a} vs {b}");
    // A single limiter of 12 admits a quarter.
    let quarter = run(
        &s,
        &PolicySpec::parse("static:12").unwrap(),
        RunOptions::default(),
    )
    .unwrap();
    assert!((quarter.successes as f64) < b * 0.3);
    s.replicas = 0;
    assert!(s.validate().is_err());
}
