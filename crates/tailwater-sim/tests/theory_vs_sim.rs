//! The simulator against queueing theory, with fixed seeds.
//!
//! Mean waits of M/M/1 and M/M/c must be within 3 % of the exact values at ρ = 0.5 and 0.8;
//! Kingman's formula, exact for M/G/1 (Pollaczek–Khinchine), within 5 % at ρ = 0.9 for
//! c_a = 1, c_s = 0.5; and for c_a = c_s = 0.5, where Kingman is known to overestimate (the
//! Kraemer–Langenbach-Belz factor is 0.92 there), the simulated wait lies between KLB − 5 %
//! and Kingman + 2 %.

use tailwater_sim::simulate_model;
use tailwater_sim::theory::Model;

fn model(rate: f64, servers: u64, ca: f64, cs: f64) -> Model {
    Model {
        rate,
        service: 0.010,
        ca,
        cs,
        servers,
        queue_bound: None,
    }
}

fn check(m: Model, arrivals: u64, tolerance: f64) -> (f64, f64) {
    let predicted = m.predict().unwrap().wait_mean;
    let measured = simulate_model(&m, arrivals, 42).unwrap();
    let err = (measured.wait_mean - predicted) / predicted;
    println!(
        "c={} rho={:.2} ca={} cs={}: predicted Wq {:.4} ms, simulated {:.4} ms ({:+.2}%) over {} requests",
        m.servers,
        m.utilisation(),
        m.ca,
        m.cs,
        predicted * 1e3,
        measured.wait_mean * 1e3,
        err * 100.0,
        measured.served
    );
    assert!(
        err.abs() <= tolerance,
        "{m:?}: predicted {predicted}, simulated {}",
        measured.wait_mean
    );
    (predicted, measured.wait_mean)
}

#[test]
fn mm1_mean_wait_within_3_percent() {
    check(model(50.0, 1, 1.0, 1.0), 600_000, 0.03);
    check(model(80.0, 1, 1.0, 1.0), 3_000_000, 0.03);
}

#[test]
fn mmc_mean_wait_within_3_percent() {
    check(model(200.0, 4, 1.0, 1.0), 600_000, 0.03);
    check(model(320.0, 4, 1.0, 1.0), 2_000_000, 0.03);
}

#[test]
fn kingman_at_rho_0_9() {
    // M/G/1: Kingman = Pollaczek–Khinchine, exact.
    check(model(90.0, 1, 1.0, 0.5), 4_000_000, 0.05);
    // G/G/1 with smooth arrivals: Kingman overestimates.
    let m = model(90.0, 1, 0.5, 0.5);
    let kingman = m.predict().unwrap().wait_mean;
    let rho = m.utilisation();
    let (ca2, cs2) = (m.ca * m.ca, m.cs * m.cs);
    let klb =
        kingman * (-2.0 * (1.0 - rho) * (1.0 - ca2).powi(2) / (3.0 * rho * (ca2 + cs2))).exp();
    let sim = simulate_model(&m, 3_000_000, 42).unwrap().wait_mean;
    println!(
        "G/G/1 rho=0.9 ca=cs=0.5: Kingman {:.3} ms, KLB {:.3} ms, simulated {:.3} ms ({:+.1}% vs Kingman)",
        kingman * 1e3,
        klb * 1e3,
        sim * 1e3,
        (kingman - sim) / sim * 100.0
    );
    assert!(
        sim >= klb * 0.95 && sim <= kingman * 1.02,
        "sim {sim}, KLB {klb}, Kingman {kingman}"
    );
}

#[test]
fn mmck_blocking_matches() {
    // M/M/2/K=3 at ρ = 1.2: a bounded queue keeps an overloaded system stable.
    let m = Model {
        queue_bound: Some(3),
        ..model(240.0, 2, 1.0, 1.0)
    };
    let p = m.predict().unwrap();
    let s = simulate_model(&m, 600_000, 7).unwrap();
    println!(
        "M/M/2/3 rho=1.2: P(block) {:.4} vs {:.4}, Wq {:.3} ms vs {:.3} ms",
        p.p_block,
        s.blocked,
        p.wait_mean * 1e3,
        s.wait_mean * 1e3
    );
    assert!((s.blocked - p.p_block).abs() < 0.01);
    assert!((s.wait_mean - p.wait_mean).abs() / p.wait_mean < 0.03);
}

#[test]
fn processor_sharing_mean_response() {
    // M/G/1-PS: E[W] = E[S]/(1−ρ) whatever the service distribution.
    use std::time::Duration;
    use tailwater_sim::engine::{RunOptions, run};
    use tailwater_sim::policy::PolicySpec;
    use tailwater_sim::scenario::{Phase, Scenario, ServerModel};
    let mut s = Scenario::new(
        "ps",
        "",
        vec![Phase {
            duration: Duration::from_secs(20_000),
            load: 0.8,
            ramp_to: None,
        }],
    );
    s.server.model = ServerModel::ProcessorSharing;
    s.server.workers = 1;
    s.server.service.mean = Duration::from_millis(10);
    s.sample_interval = Duration::from_secs(100);
    s.client.timeout = Duration::from_secs(1_000_000);
    let r = run(
        &s,
        &PolicySpec::parse("none").unwrap(),
        RunOptions::default(),
    )
    .unwrap();
    let expected = 10.0 / (1.0 - 0.8);
    let err = (r.response_mean_ms - expected) / expected;
    println!(
        "M/G/1-PS rho=0.8: E[W] {expected:.3} ms, simulated {:.3} ms ({:+.2}%)",
        r.response_mean_ms,
        err * 100.0
    );
    assert!(err.abs() < 0.03);
}
