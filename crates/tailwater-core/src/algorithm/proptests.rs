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
                let s = Sample { now, rtt: Duration::from_micros(rtt), in_flight, outcome };
                let got = alg.update(&s);
                prop_assert_eq!(got, alg.limit(), "{}: update and limit disagree", name);
                prop_assert!(got >= 1 && (min..=max).contains(&got), "{name}: limit {got}");
                prop_assert!(check_estimates(&alg.estimates()), "{name}: {:?}", alg.estimates());
            }
        }
    }
}
