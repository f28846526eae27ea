use std::time::Duration;

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn balancer(n: usize, policy: Policy) -> Arc<Balancer> {
    let config = BalanceConfig {
        policy,
        ..BalanceConfig::default()
    };
    Arc::new(Balancer::new(n, config, Duration::ZERO).expect("valid"))
}

/// Sends `count` requests one at a time, 1 ms apart from `t`, endpoint `i` taking
/// `rtt(i)` and ending with `outcome(i)`; returns the count per endpoint and the new time.
fn drive(
    b: &Arc<Balancer>,
    mut t: Duration,
    count: usize,
    rtt: impl Fn(usize) -> Duration,
    outcome: impl Fn(usize) -> Outcome,
) -> (Vec<usize>, Duration) {
    let mut per = vec![0; b.len()];
    for _ in 0..count {
        t += MS(1);
        let s = b.select(t, 0).expect("an endpoint");
        let i = s.index();
        per[i] += 1;
        s.finish(t, Some(rtt(i)), outcome(i));
    }
    (per, t)
}

#[test]
fn peak_ewma_avoids_a_slow_endpoint_and_round_robin_does_not() {
    let slow = |i: usize| if i == 3 { MS(100) } else { MS(10) };
    let ok = |_| Outcome::Success;
    let b = balancer(4, Policy::PeakEwma);
    let (per, _) = drive(&b, Duration::ZERO, 4000, slow, ok);
    assert!(per[3] < 200, "the slow endpoint got {per:?}");
    let rr = balancer(4, Policy::RoundRobin);
    let (per, _) = drive(&rr, Duration::ZERO, 4000, slow, ok);
    assert_eq!(per, vec![1000; 4], "an exact rotation");
}

#[test]
fn least_request_prefers_the_endpoint_with_fewer_pending() {
    let b = balancer(2, Policy::LeastRequest);
    let held: Vec<_> = (0..3).map(|_| b.select(MS(1), 0).expect("one")).collect();
    // Whatever the first picks, least request spreads them 2 / 1.
    let on0 = held.iter().filter(|s| s.index() == 0).count();
    assert!(on0 == 1 || on0 == 2, "{on0}");
    let lighter = usize::from(on0 == 2);
    let next = b.select(MS(2), 0).expect("one");
    assert_eq!(next.index(), lighter);
    drop(held);
    assert_eq!(b.stats(0, MS(3)).pending + b.stats(1, MS(3)).pending, 1);
}

#[test]
fn a_failing_endpoint_is_ejected_then_returns_slowly() {
    let b = balancer(3, Policy::PeakEwma);
    let fail0 = |i: usize| {
        if i == 0 {
            Outcome::GatewayError
        } else {
            Outcome::Success
        }
    };
    let (_, t) = drive(&b, Duration::ZERO, 300, |_| MS(5), fail0);
    let st = b.stats(0, t);
    assert!(st.ejected, "{st:?}");
    assert_eq!(st.ejections, 1);
    // Ejected: nothing goes there until the 30 s are up.
    let (per, t) = drive(&b, t, 300, |_| MS(5), |_| Outcome::Success);
    assert_eq!(per[0], 0, "{per:?}");
    // Back after 30 s, at 10 % weight, ramping up over the 10 s window.
    let back = t.max(MS(30_000) + MS(10));
    assert!(!b.stats(0, back).ejected);
    let s = b.select(back, 0b110).expect("endpoint 0");
    s.finish(back, Some(MS(5)), Outcome::Success);
    assert!(b.stats(0, back).weight < 0.2, "{:?}", b.stats(0, back));
    let half = b.stats(0, back + MS(5_000)).weight;
    assert!((half - 0.5).abs() < 0.01, "{half}");
    assert_eq!(b.stats(0, back + MS(10_000)).weight, 1.0);
    // Under load (requests pending elsewhere) it takes its share again.
    let held: Vec<_> = (0..40)
        .map(|_| b.select(back + MS(10_000), 0).expect("one"))
        .collect();
    assert!(held.iter().any(|s| s.index() == 0));
}

#[test]
fn no_more_than_the_allowed_share_is_ejected() {
    let b = balancer(3, Policy::PeakEwma);
    let (_, t) = drive(
        &b,
        Duration::ZERO,
        600,
        |_| MS(5),
        |i| {
            if i < 2 {
                Outcome::ServerError
            } else {
                Outcome::Success
            }
        },
    );
    let ejected = (0..3).filter(|&i| b.stats(i, t).ejected).count();
    assert_eq!(ejected, 1, "one of three at most (10 %, at least one)");
    // A single endpoint is never ejected: it has nowhere else to send.
    let one = balancer(1, Policy::PeakEwma);
    let (per, t) = drive(
        &one,
        Duration::ZERO,
        50,
        |_| MS(5),
        |_| Outcome::GatewayError,
    );
    assert_eq!(per, vec![50]);
    assert!(!one.stats(0, t).ejected);
}

#[test]
fn failures_never_lower_the_estimate() {
    let b = balancer(2, Policy::PeakEwma);
    let s = b.select(MS(1), 0).expect("one");
    let i = s.index();
    s.finish(MS(2), Some(MS(50)), Outcome::Success);
    let before = b.stats(i, MS(3)).ewma;
    let s = b.select(MS(3), 1 << (1 - i)).expect("the same one");
    assert_eq!(s.index(), i);
    s.finish(
        MS(3),
        Some(Duration::from_micros(10)),
        Outcome::GatewayError,
    );
    assert!(b.stats(i, MS(3)).ewma >= before);
}

#[test]
fn excluded_endpoints_are_skipped_and_all_excluded_is_none() {
    let b = balancer(3, Policy::PeakEwma);
    for _ in 0..50 {
        let s = b.select(MS(1), 0b011).expect("endpoint 2");
        assert_eq!(s.index(), 2);
    }
    assert!(b.select(MS(1), 0b111).is_none());
}

#[test]
fn bad_settings_name_the_field() {
    let e = Balancer::new(0, BalanceConfig::default(), Duration::ZERO).expect_err("none");
    assert_eq!(e.field(), "endpoints");
    let mut c = BalanceConfig::default();
    c.outlier.max_ejection_percent = 101;
    let e = Balancer::new(2, c, Duration::ZERO).expect_err("percent");
    assert_eq!(e.field(), "max_ejection_percent");
    assert_eq!("Least-Request".parse::<Policy>(), Ok(Policy::LeastRequest));
    assert!("p2c".parse::<Policy>().is_err());
}
