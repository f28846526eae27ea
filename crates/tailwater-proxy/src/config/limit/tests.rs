//! `[route.limit]` as a tagged enum: each algorithm's own parameters, errors at the key's
//! line, and one default per parameter whether or not the table is written.

use std::time::Duration;

use tailwater_core::algorithm::Sample;
use tailwater_core::names::{AlgorithmName, AlgorithmParams};

use super::*;
use crate::config::Config;

fn parse(limit: &str) -> Result<LimitConfig, crate::config::ConfigError> {
    let src = format!("[[route]]\nupstream = \"http://127.0.0.1:9\"\n[route.limit]\n{limit}\n");
    Config::from_toml(&src, None).map(|c| c.routes[0].limit)
}

/// Every parameter tailwater-core lists for `name`, set to a distinct value.
fn all_params_of(name: AlgorithmName) -> AlgorithmParams {
    let takes = |p: &str| name.parameters().contains(&p);
    AlgorithmParams {
        limit: takes("limit").then_some(7),
        initial_limit: takes("initial_limit").then_some(11),
        min_limit: takes("min_limit").then_some(3),
        max_limit: takes("max_limit").then_some(90),
        backoff_ratio: takes("backoff_ratio").then_some(0.75),
        timeout: takes("timeout").then_some(Duration::from_millis(1500)),
        smoothing: takes("smoothing").then_some(0.5),
        min_rtt_interval: takes("min_rtt_interval").then_some(Duration::from_secs(9)),
        burst_floor: takes("burst_floor").then_some(5),
        overload_floor: takes("overload_floor").then_some(2),
        seed: None,
    }
}

#[test]
fn each_variant_holds_exactly_the_parameters_its_algorithm_takes() {
    for name in AlgorithmName::ALL {
        let p = all_params_of(name);
        let config = LimitConfig::new(name, &p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.algorithm(), name);
        // Nothing set is lost (the variant has a field for every parameter) ...
        assert_eq!(config.params(), p, "{name}");
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        // ... and nothing else can be set.
        let everything = AlgorithmParams {
            limit: Some(7),
            initial_limit: Some(11),
            min_limit: Some(3),
            max_limit: Some(90),
            backoff_ratio: Some(0.75),
            timeout: Some(Duration::from_secs(1)),
            smoothing: Some(0.5),
            min_rtt_interval: Some(Duration::from_secs(9)),
            burst_floor: Some(5),
            overload_floor: Some(2),
            seed: None,
        };
        if name.parameters().len() < everything.set_fields().len() {
            assert!(LimitConfig::new(name, &everything).is_err(), "{name}");
        }
    }
}

#[test]
fn the_table_parses_into_the_variant_of_its_algorithm() {
    assert_eq!(parse("").unwrap(), LimitConfig::Recommended);
    assert_eq!(
        parse("algorithm = \"static\"\nlimit = 8").unwrap(),
        LimitConfig::Static(StaticLimit { limit: 8 })
    );
    assert_eq!(
        parse("algorithm = \"AIMD\"\nmin_limit = 4\ntimeout = \"1s\"").unwrap(),
        LimitConfig::Aimd(AimdLimit {
            min_limit: Some(4),
            timeout: Some(Duration::from_secs(1)),
            ..AimdLimit::default()
        })
    );
    assert_eq!(
        parse("algorithm = \"envoy-corrected\"\nmin_rtt_interval = \"30s\"").unwrap(),
        LimitConfig::EnvoyCorrected(EnvoyLimit {
            min_rtt_interval: Some(Duration::from_secs(30)),
            ..EnvoyLimit::default()
        })
    );
}

#[test]
fn headroom_takes_its_floors_from_the_table() {
    // A small pool behind the proxy: bursts get 8 in flight, overload may go down to 2.
    let config =
        parse("algorithm = \"headroom\"\nburst_floor = 8\noverload_floor = 2\nmin_limit = 4")
            .expect("headroom takes both floors");
    assert_eq!(
        config,
        LimitConfig::Headroom(HeadroomLimit {
            min_limit: Some(4),
            burst_floor: Some(8),
            overload_floor: Some(2),
            ..HeadroomLimit::default()
        })
    );
    config.validate().expect("the core's builder accepts them");
    // The floors are Headroom's alone: refused elsewhere, at their line.
    let err = parse("algorithm = \"aimd\"\noverload_floor = 2").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.overload_floor");
    assert_eq!(err.line(), Some(5));
    // And checked by the core's builder: an overload floor of 0 is named.
    let err = parse("algorithm = \"headroom\"\noverload_floor = 0").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.overload_floor", "{err}");
}

#[test]
fn aimd_times_out_at_the_documented_5_s_with_or_without_the_table() {
    // The surprise this replaces: writing `[route.limit] algorithm = "aimd"` changed the
    // timeout from the proxy's 1 s to the core's 5 s. There is one default, the core's.
    let config = parse("algorithm = \"aimd\"\nmin_limit = 1").unwrap();
    let LimitConfig::Aimd(aimd) = config else {
        panic!("{config:?}")
    };
    assert_eq!(aimd.timeout, None, "left to the core's default");
    let mut algorithm = config.build().unwrap();
    let at = |rtt_ms| Sample::success(Duration::from_secs(10), Duration::from_millis(rtt_ms), 20);
    let start = algorithm.limit();
    assert_eq!(start, 20);
    // 4.9 s is not a timeout: the limit grows ...
    assert_eq!(algorithm.update(&at(4_900)), start + 1);
    // ... 5.1 s is: it backs off by 0.9.
    assert!(
        algorithm.update(&at(5_100)) < start,
        "5.1 s counts as a drop"
    );
    // The same algorithm as the library's default AIMD.
    let mut library = tailwater_core::algorithm::Aimd::builder()
        .min_limit(1)
        .build()
        .unwrap();
    use tailwater_core::algorithm::LimitAlgorithm as _;
    assert_eq!(library.update(&at(4_900)), start + 1);
    assert!(library.update(&at(5_100)) < start);
}

#[test]
fn static_needs_its_limit_and_takes_nothing_else() {
    let err = parse("algorithm = \"static\"").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.limit");
    assert_eq!(
        err.line(),
        Some(3),
        "the table's header: the key is missing"
    );
    assert!(err.message().contains("required"), "{err}");
    for (limit, field, line) in [
        (
            "algorithm = \"static\"\nlimit = 8\nmin_limit = 2",
            "min_limit",
            6,
        ),
        (
            "max_limit = 2\nalgorithm = \"static\"\nlimit = 8",
            "max_limit",
            4,
        ),
    ] {
        let err = parse(limit).unwrap_err();
        assert_eq!(err.field(), format!("route[0].limit.{field}"), "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
        assert!(
            err.message()
                .starts_with("is not a parameter of algorithm `static` (it takes: limit)"),
            "{err}"
        );
    }
}

#[test]
fn inapplicable_and_unknown_keys_are_errors_at_their_line() {
    // Netflix's Gradient2 has no backoff: refused, not ignored.
    let err = parse("algorithm = \"gradient2\"\nbackoff_ratio = 0.8").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.backoff_ratio");
    assert_eq!(err.line(), Some(5));
    // A key no algorithm takes.
    let err = parse("algorithm = \"aimd\"\nbackof_ratio = 0.8").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.backof_ratio");
    assert_eq!(err.line(), Some(5));
    // Without `algorithm`, the route's default takes no parameters.
    let err = parse("min_limit = 4").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.min_limit");
    assert!(err.message().contains("`recommended`"), "{err}");
    // An inline table points at the key's column.
    let src = "[[route]]\nupstream = \"http://127.0.0.1:9\"\n\
               limit = { algorithm = \"static\", limit = 4, max_limit = 3 }\n";
    let err = Config::from_toml(src, None).unwrap_err();
    assert_eq!(err.field(), "route[0].limit.max_limit");
    assert_eq!((err.line(), err.column()), (Some(3), Some(44)));
    // Ranges are the core builders' checks, at validation.
    let err = parse("algorithm = \"vegas\"\nmin_limit = 9\nmax_limit = 2").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.min_limit");
    assert_eq!(err.line(), Some(5));
}
