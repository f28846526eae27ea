use super::*;

#[test]
fn erlang_c_golden_vector() {
    // 100 calls per 30 min, AHT 180 s: A = 10 Erlangs, 14 agents (pyworkforce, CRAN ErlangC).
    let c = erlang_c(14, 10.0);
    assert!((c - 0.1741319).abs() < 1e-6, "{c}");
    let m = Model {
        rate: 100.0 / 1800.0,
        service: 180.0,
        ca: 1.0,
        cs: 1.0,
        servers: 14,
        queue_bound: None,
    };
    let p = m.predict().unwrap();
    assert!((p.wait_mean - 7.836).abs() < 1e-3, "ASA {}", p.wait_mean);
    assert!((p.utilisation - 0.7142857).abs() < 1e-7);
    // P(Wq ≤ 20 s) = 1 − C e^{−(cμ−λ)·20} = 0.88835.
    let sl = 1.0 - c * (-(14.0 / 180.0 - 100.0 / 1800.0) * 20.0f64).exp();
    assert!((sl - 0.88835).abs() < 1e-5, "{sl}");
}

#[test]
fn mm1_exact() {
    // M/M/1, ρ = 0.8, E[S] = 10 ms: Wq = ρ/(μ−λ) = 40 ms, W = 50 ms, L = 4.
    let m = Model {
        rate: 80.0,
        service: 0.01,
        ca: 1.0,
        cs: 1.0,
        servers: 1,
        queue_bound: None,
    };
    let p = m.predict().unwrap();
    assert!((p.wait_mean - 0.04).abs() < 1e-12);
    assert!((p.response_mean - 0.05).abs() < 1e-12);
    assert!((p.in_system_mean - 4.0).abs() < 1e-9);
    assert!((p.p_wait - 0.8).abs() < 1e-12);
    // Wait p99 = ln(ρ/0.01)/(μ−λ) = ln 80 / 20.
    let q = m.wait_quantile(0.99).unwrap();
    assert!((q - 80f64.ln() / 20.0).abs() < 1e-12);
    // Kingman = Allen–Cunneen at c = 1: ρ/(1−ρ)·(ca²+cs²)/2·E[S].
    let g = Model {
        ca: 0.5,
        cs: 1.5,
        ..m
    }
    .predict()
    .unwrap();
    assert!((g.wait_mean - 4.0 * (0.25 + 2.25) / 2.0 * 0.01).abs() < 1e-12);
}

#[test]
fn absurd_servers_and_queue_bounds_are_refused() {
    let m = Model {
        rate: 100.0,
        service: 0.01,
        ca: 1.0,
        cs: 1.0,
        servers: 4_294_967_296,
        queue_bound: None,
    };
    let e = m.predict().expect_err("4294967296 servers");
    assert!(e.to_string().contains("servers"), "{e}");
    let m = Model {
        servers: 2,
        queue_bound: Some(1_000_000_000),
        ..m
    };
    let e = m.predict().expect_err("queue bound of 1e9");
    assert!(e.to_string().contains("queue-bound"), "{e}");
}

#[test]
fn erlang_b_is_stable_for_many_servers() {
    let c = erlang_c(2000, 1900.0);
    assert!(c.is_finite() && c > 0.0 && c < 1.0, "{c}");
}

#[test]
fn mmck_matches_mm1k() {
    // M/M/1/K with K = 2 waiting (3 in system), ρ = 1: every state equally likely.
    let (_, block, lq) = mmck(1, 2, 1.0);
    assert!((block - 0.25).abs() < 1e-12);
    assert!((lq - (0.25 + 2.0 * 0.25)).abs() < 1e-12);
}

#[test]
fn bad_inputs_name_the_field() {
    let ok = Model {
        rate: 100.0,
        service: 0.02,
        ca: 1.0,
        cs: 1.0,
        servers: 1,
        queue_bound: None,
    };
    assert_eq!(ok.predict().unwrap_err().field(), Some("rate")); // ρ = 2
    assert!(
        Model {
            queue_bound: Some(10),
            ..ok
        }
        .predict()
        .is_ok()
    );
    assert_eq!(
        Model { rate: -1.0, ..ok }.validate().unwrap_err().field(),
        Some("rate")
    );
    assert_eq!(
        Model {
            ca: -0.1,
            servers: 4,
            ..ok
        }
        .validate()
        .unwrap_err()
        .field(),
        Some("ca")
    );
    assert_eq!(
        Model {
            cs: f64::NAN,
            servers: 4,
            ..ok
        }
        .validate()
        .unwrap_err()
        .field(),
        Some("cs")
    );
    assert_eq!(
        Budget::parse("p100=1s").unwrap_err().field(),
        Some("budget")
    );
    assert_eq!(Budget::parse("p0=1s").unwrap_err().field(), Some("budget"));
    assert!(check_percentile(1.0).is_err());
    assert!(Budget::parse("p99.9=100ms").is_ok());
}

#[test]
fn sizing_meets_the_budget() {
    let base = Model {
        rate: 200.0,
        service: 0.02,
        ca: 1.2,
        cs: 1.5,
        servers: 1,
        queue_bound: None,
    };
    // The p99 of a lognormal service time with mean 20 ms and CV 1.5 is 139 ms: a response
    // budget of 100 ms is infeasible and says so; a wait budget is not.
    let err = size_servers(base, Some(Budget::parse("p99=100ms").unwrap()), None).unwrap_err();
    assert_eq!(err.field(), Some("budget"));
    let b = Budget::parse("wait-p99=20ms").unwrap();
    let c = size_servers(base, Some(b), None).unwrap();
    let at = Model { servers: c, ..base };
    let below = Model {
        servers: c - 1,
        ..base
    };
    assert!(b.predicted(&at).unwrap() <= 0.02);
    assert!(below.utilisation() >= 1.0 || b.predicted(&below).unwrap() > 0.02);
    let base = Model { cs: 0.5, ..base };
    let b = Budget::parse("p99=100ms").unwrap();
    let c = size_servers(base, Some(b), None).unwrap();
    let at = Model { servers: c, ..base };
    let below = Model {
        servers: c - 1,
        ..base
    };
    assert!(b.predicted(&at).unwrap() <= 0.1);
    assert!(below.utilisation() >= 1.0 || b.predicted(&below).unwrap() > 0.1);
    assert_eq!(size_servers(base, None, Some(0.5)).unwrap(), 8);
}

#[test]
fn samples_give_the_cvs() {
    let s = parse_samples("interarrival,service\n0.01,5ms\n0.03 15ms\n# comment\n").unwrap();
    assert_eq!(s.count, 2);
    assert!((s.rate - 50.0).abs() < 1e-9);
    assert!((s.service - 0.01).abs() < 1e-12);
    assert!(parse_samples("1 2 3\n").is_err());
}
