use super::*;

#[test]
fn stall_windows() {
    let s = Stall::parse("1s@5s every 10s").unwrap();
    assert_eq!(s.end_if_stalled(Duration::from_secs(4)), None);
    assert_eq!(
        s.end_if_stalled(Duration::from_millis(5500)),
        Some(Duration::from_secs(6))
    );
    assert_eq!(s.end_if_stalled(Duration::from_secs(6)), None);
    assert_eq!(
        s.end_if_stalled(Duration::from_millis(15_100)),
        Some(Duration::from_secs(16))
    );
    let once = Stall::parse("1s@5s").unwrap();
    assert_eq!(once.end_if_stalled(Duration::from_millis(15_100)), None);
    assert_eq!(Stall::parse("1s").unwrap_err().field(), "stall");
    assert_eq!(Stall::parse("2s@1s every 1s").unwrap_err().field(), "stall");
}

#[test]
fn distributions_parse() {
    assert_eq!(
        ServiceDistribution::parse("exp").unwrap(),
        ServiceDistribution::Exponential
    );
    assert_eq!(
        ServiceDistribution::parse("lognormal:0.5").unwrap(),
        ServiceDistribution::LogNormal { cv: 0.5 }
    );
    assert_eq!(
        ServiceDistribution::parse("x").unwrap_err().field(),
        "distribution"
    );
    assert_eq!(
        ServiceDistribution::parse("bimodal").unwrap(),
        ServiceDistribution::BIMODAL
    );
    assert_eq!(
        ServiceDistribution::parse("bimodal:0.01:50").unwrap(),
        ServiceDistribution::Bimodal {
            slow_fraction: 0.01,
            slow_factor: 50.0
        }
    );
    for bad in [
        "bimodal:2:10",
        "bimodal:0.1",
        "bimodal:0.1:1",
        "lognormal:0",
        "lognormal:x",
    ] {
        assert_eq!(
            ServiceDistribution::parse(bad).unwrap_err().field(),
            "distribution",
            "{bad}"
        );
    }
    assert!((ServiceDistribution::BIMODAL.cv() - 1.35).abs() < 0.01);
}

#[test]
fn samples_have_the_configured_mean() {
    for d in [
        ServiceDistribution::Constant,
        ServiceDistribution::Exponential,
        ServiceDistribution::LogNormal { cv: 1.5 },
        ServiceDistribution::BIMODAL,
    ] {
        let mut c = BackendConfig::new(NonZeroUsize::MIN, Duration::from_millis(10));
        c.distribution = d;
        let b = Backend::new(c);
        let n = 20_000;
        let mean: f64 = (0..n).map(|_| b.state.sample().as_secs_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.010).abs() < 0.0008, "{d:?}: {mean}");
    }
}
