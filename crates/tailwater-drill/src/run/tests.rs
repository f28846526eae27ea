use std::collections::BTreeMap;

use tailwater_core::names::AlgorithmName;
use tailwater_load::IntervalReport;

use super::*;
use crate::config::INTERVAL;

fn interval(start_ms: u64, ok: u64, shed: u64) -> IntervalReport {
    let mut status = BTreeMap::new();
    status.insert(200, ok);
    status.insert(503, shed);
    IntervalReport {
        start: Duration::from_millis(start_ms),
        duration: INTERVAL,
        target_rate: 0.0,
        achieved_rate: 0.0,
        responses: ok + shed,
        sent: ok + shed,
        status,
        errors: BTreeMap::new(),
        corrected: Percentiles::default(),
        uncorrected: Percentiles::default(),
        success: Percentiles::default(),
        send_lag: Percentiles::default(),
    }
}

fn report(intervals: Vec<IntervalReport>) -> Report {
    Report {
        target: String::new(),
        target_rate: 0.0,
        achieved_rate: 0.0,
        elapsed: Duration::ZERO,
        schedule_duration: Duration::ZERO,
        stopped_early: false,
        scheduled: 0,
        delayed_by_cap: 0,
        abandoned: 0,
        connections: 1,
        max_in_flight: 1,
        http2: false,
        total: Default::default(),
        phases: Vec::new(),
        tiers: Vec::new(),
        intervals,
        meta: tailwater_load::RunMeta::new(std::time::SystemTime::UNIX_EPOCH),
    }
}

#[test]
fn goodput_counts_only_the_steady_part_of_a_phase() {
    // Phase [2 s, 4 s) with a 1 s timeout: only intervals [3 s, 4 s) count.
    let r = report(
        (0..20)
            .map(|i| interval(i * 250, if (12..16).contains(&i) { 50 } else { 7 }, 3))
            .collect(),
    );
    let g = goodput_during(
        &r,
        Duration::from_secs(2),
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    assert_eq!(g, 200.0);
    // A phase shorter than the timeout uses its second half.
    let g = goodput_during(
        &r,
        Duration::from_millis(2500),
        Duration::from_millis(1000),
        Duration::from_secs(1),
    );
    // Window [3 s, 3.5 s): two intervals of 50.
    assert_eq!(g, 200.0);
    // No interval in the window: 0, not a division by zero.
    assert_eq!(
        goodput_during(
            &r,
            Duration::from_secs(60),
            Duration::from_secs(2),
            Duration::from_secs(1)
        ),
        0.0
    );
}

#[test]
fn nearest_sample() {
    let s = |ms| Sample {
        elapsed: Duration::from_millis(ms),
        backend: BackendStats::default(),
        limit: Some(ms as usize),
    };
    let samples = [s(250), s(500), s(760)];
    assert_eq!(
        at(&samples, Duration::from_millis(740)).and_then(|s| s.limit),
        Some(760)
    );
    assert_eq!(
        at(&samples, Duration::from_millis(0)).and_then(|s| s.limit),
        Some(250)
    );
    assert!(at(&[], Duration::ZERO).is_none());
}

#[test]
fn run_refuses_to_nest_in_a_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let result = rt.block_on(async { run(&DrillConfig::quick(), None) });
    assert!(matches!(result, Err(DrillError::Internal(_))));
}

#[test]
fn proxy_and_backend_configs_are_valid_for_every_algorithm_and_queue() {
    let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
    // Every algorithm the core has, Envoy's included, and every queue discipline.
    for algorithm in AlgorithmName::ALL {
        for queue in tailwater_core::names::QueueName::ALL {
            let mut c = DrillConfig::quick();
            c.algorithm = algorithm;
            c.queue = queue;
            let p = proxy_config(&c, addr).expect("valid proxy config");
            assert_eq!(p.routes.len(), 1);
            assert_eq!(p.upstream.request_timeout, c.timeout);
        }
    }
    // The default drill runs the proxy's default algorithm, untuned.
    let p = proxy_config(&DrillConfig::full(), addr).expect("valid proxy config");
    assert_eq!(p.routes[0].limit.algorithm(), AlgorithmName::Recommended);
    assert_eq!(
        p.routes[0].limit.params(),
        tailwater_core::names::AlgorithmParams::default()
    );
    let b = backend_config(&DrillConfig::full());
    assert_eq!(b.capacity(), 200.0);
}
