//! Invariants of every algorithm under arbitrary sample sequences: the limit stays within
//! `[min, max]` and at least 1, `update` returns what `limit` then reports, and no estimate
//! is NaN.

use std::time::Duration;

use proptest::prelude::*;

use super::{
    Aimd, EnvoyGradient, Estimates, Gradient2, LimitAlgorithm, Outcome, Sample, Vegas, Windowed,
};

/// One generated step: time advance (µs), RTT (µs), in-flight, outcome.
fn step() -> impl Strategy<Value = (u64, u64, usize, Outcome)> {
    (
        prop_oneof![Just(0u64), 0u64..2_000, 0u64..2_000_000],
        prop_oneof![
            Just(0u64),
            0u64..200,
            0u64..100_000,
            0u64..10_000_000,
            Just(u64::from(u32::MAX))
        ],
        prop_oneof![0usize..4, 0usize..300, 0usize..5_000],
        prop_oneof![
            6 => Just(Outcome::Success),
            2 => Just(Outcome::Dropped),
            1 => Just(Outcome::Ignored)
        ],
    )
}

fn finite(x: Option<f64>) -> bool {
    x.is_none_or(f64::is_finite)
}

fn check_estimates(e: &Estimates) -> bool {
    finite(e.gradient) && finite(e.queue)
}

/// Every algorithm under test with its bounds `(min, max)`.
fn algorithms(seed: u64) -> Vec<(Box<dyn LimitAlgorithm>, usize, usize)> {
    let small = |b: super::Gradient2Builder| {
        b.initial_limit(5)
            .min_limit(2)
            .max_limit(40)
            .baseline_window(20)
            .build()
            .expect("valid")
    };
    vec![
        (Box::new(super::Fixed::new(7).expect("valid")), 7, 7),
        (Box::new(Aimd::default()), 20, 200),
        (
            Box::new(Vegas::builder().seed(seed).build().expect("valid")),
            1,
            1000,
        ),
        (
            Box::new(
                Vegas::builder()
                    .seed(seed)
                    .initial_limit(3)
                    .min_limit(2)
                    .max_limit(9)
                    .smoothing(0.3)
                    .probe_multiplier(1)
                    .build()
                    .expect("valid"),
            ),
            2,
            9,
        ),
        (Box::new(Gradient2::reference()), 20, 200),
        (Box::new(Gradient2::corrected()), 20, 200),
        (Box::new(small(Gradient2::builder())), 2, 40),
        (Box::new(small(Gradient2::builder().corrected())), 2, 40),
        (
            Box::new(EnvoyGradient::builder().seed(seed).build().expect("valid")),
            3,
            1000,
        ),
        (
            Box::new(
                EnvoyGradient::builder()
                    .corrected()
                    .seed(seed)
                    .request_count(3)
                    .update_interval(Duration::from_millis(1))
                    .min_rtt_interval(Duration::from_millis(50))
                    .build()
                    .expect("valid"),
            ),
            3,
            1000,
        ),
        (
            Box::new(
                EnvoyGradient::builder()
                    .seed(seed)
                    .min_concurrency(1)
                    .min_limit(4)
                    .max_limit(10)
                    .request_count(2)
                    .update_interval(Duration::from_millis(1))
                    .min_rtt_interval(Duration::from_millis(20))
                    .build()
                    .expect("valid"),
            ),
            1,
            10,
        ),
        (
            Box::new(Windowed::new(
                Box::new(Gradient2::corrected()) as Box<dyn LimitAlgorithm>
            )),
            20,
            200,
        ),
        (Box::new(super::LlGuard::default()), 20, 200),
        (Box::new(super::Headroom::default()), 20, 5000),
        (
            Box::new(
                super::Headroom::builder()
                    .initial_limit(3)
                    .min_limit(2)
                    .max_limit(9)
                    .baseline_windows(3)
                    .guard_windows(2)
                    .dispersion_samples(0.0)
                    .build()
                    .expect("valid"),
            ),
            2,
            9,
        ),
        (
            Box::new(
                Windowed::builder()
                    .min_window(Duration::from_millis(1))
                    .max_window(Duration::from_millis(5))
                    .window_size(1)
                    .percentile(0.9)
                    .build(Vegas::builder().seed(seed).build().expect("valid"))
                    .expect("valid"),
            ),
            1,
            1000,
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_algorithm_stays_within_bounds_and_nan_free(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 1..400),
    ) {
        for (mut alg, min, max) in algorithms(seed) {
            let name = alg.name();
            let l = alg.limit();
            prop_assert!(l >= 1 && (min..=max).contains(&l), "{name}: initial {l}");
            let mut now = Duration::ZERO;
            for &(dt, rtt, in_flight, outcome) in &steps {
                now += Duration::from_micros(dt);
                let s = Sample { now, rtt: Duration::from_micros(rtt), in_flight, limit: 0, outcome, weight: 1, refused: 0 };
                let got = alg.update(&s);
                prop_assert_eq!(got, alg.limit(), "{}: update and limit disagree", name);
                prop_assert!(got >= 1 && (min..=max).contains(&got), "{name}: limit {got}");
                prop_assert!(check_estimates(&alg.estimates()), "{name}: {:?}", alg.estimates());
            }
        }
    }
}

#[test]
fn extreme_times_and_rtts_do_not_panic_or_hang() {
    let max = Duration::MAX;
    for (mut alg, min, lim) in algorithms(7) {
        let name = alg.name();
        let samples = [
            Sample::success(Duration::from_secs(1), Duration::from_millis(10), 10),
            Sample::success(max - Duration::from_secs(1), max, usize::MAX),
            Sample::dropped(max, max, usize::MAX),
            Sample::success(max, Duration::ZERO, 0),
            Sample::success(max, Duration::from_nanos(1), 1),
        ];
        for _ in 0..60 {
            for s in &samples {
                let l = alg.update(s);
                assert!((min..=lim).contains(&l), "{name}: {l}");
                assert!(check_estimates(&alg.estimates()), "{name}");
            }
        }
    }
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(1.0),
        -2.0f64..3.0,
    ]
}

fn any_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 0usize..5, 0usize..2_000, Just(usize::MAX)]
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (0u64..10_000_000).prop_map(Duration::from_micros),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any configuration either builds into an algorithm that keeps its invariants, or is
    /// refused with a `ConfigError`; no builder panics.
    #[test]
    fn any_configuration_builds_or_is_refused(
        sizes in proptest::collection::vec(any_size(), 5),
        ratios in proptest::collection::vec(any_f64(), 5),
        durations in proptest::collection::vec(any_duration(), 3),
        steps in proptest::collection::vec(step(), 1..50),
    ) {
        let mut built: Vec<Box<dyn LimitAlgorithm>> = Vec::new();
        if let Ok(v) = Vegas::builder()
            .initial_limit(sizes[0])
            .min_limit(sizes[1])
            .max_limit(sizes[2])
            .probe_multiplier(sizes[3])
            .smoothing(ratios[0])
            .build()
        {
            built.push(Box::new(v));
        }
        for variant in [super::Variant::Reference, super::Variant::Corrected] {
            if let Ok(g) = Gradient2::builder()
                .variant(variant)
                .initial_limit(sizes[0])
                .min_limit(sizes[1])
                .max_limit(sizes[2])
                .queue_size(sizes[3])
                .long_window(sizes[4])
                .baseline_window(sizes[4])
                .smoothing(ratios[0])
                .rtt_tolerance(ratios[1])
                .noload_tolerance(ratios[2])
                .backoff_ratio(ratios[3])
                .timeout(durations[0])
                .build()
            {
                built.push(Box::new(g));
            }
            if let Ok(e) = EnvoyGradient::builder()
                .variant(variant)
                .min_concurrency(sizes[1])
                .min_limit(sizes[0])
                .max_limit(sizes[2])
                .request_count(sizes[3])
                .jitter(ratios[0])
                .buffer(ratios[1])
                .percentile(ratios[2])
                .probe_fraction(ratios[3])
                .update_interval(durations[1])
                .min_rtt_interval(durations[2])
                .build()
            {
                built.push(Box::new(e));
            }
        }
        if let Ok(w) = Windowed::builder()
            .min_window(durations[0])
            .max_window(durations[1])
            .window_size(sizes[3])
            .min_rtt_threshold(durations[2])
            .percentile(ratios[4])
            .build(Aimd::default())
        {
            built.push(Box::new(w));
        }
        for mut alg in built {
            let mut now = Duration::ZERO;
            for &(dt, rtt, in_flight, outcome) in &steps {
                now += Duration::from_micros(dt);
                let s = Sample { now, rtt: Duration::from_micros(rtt), in_flight, limit: 0, outcome, weight: 1, refused: 0 };
                let l = alg.update(&s);
                prop_assert!(l >= 1, "{}: {}", alg.name(), l);
                prop_assert!(check_estimates(&alg.estimates()));
            }
        }
    }
}

#[test]
fn every_public_type_is_send_and_debug() {
    fn check<T: Send + std::fmt::Debug>() {}
    check::<super::Fixed>();
    check::<Aimd>();
    check::<super::AimdBuilder>();
    check::<Vegas>();
    check::<super::VegasBuilder>();
    check::<Gradient2>();
    check::<super::Gradient2Builder>();
    check::<EnvoyGradient>();
    check::<super::EnvoyGradientBuilder>();
    check::<Windowed<Box<dyn LimitAlgorithm>>>();
    check::<Windowed<Gradient2>>();
    check::<super::WindowedBuilder>();
    check::<super::Aggregate>();
    check::<super::Variant>();
    check::<super::LlGuard>();
    check::<super::LlGuardBuilder>();
    check::<super::Headroom>();
    check::<super::HeadroomBuilder>();
    check::<Estimates>();
    check::<Sample>();
}
