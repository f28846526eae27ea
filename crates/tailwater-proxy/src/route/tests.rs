//! The route table's tests: names of algorithms and queues, defaults.

use tailwater_core::names::{AlgorithmName, QueueName};

use super::*;

fn route_with(limit: &str, queue: &str) -> Result<RouteTable, ConfigError> {
    let src =
        format!("[[route]]\nupstream = \"http://127.0.0.1:9\"\n{queue}\n[route.limit]\n{limit}\n");
    let cfg = Config::from_toml(&src, None)?;
    RouteTable::build(&cfg)
}

#[test]
fn every_algorithm_and_queue_of_the_core_is_selectable_by_its_name() {
    for name in AlgorithmName::ALL {
        let limit = match name {
            AlgorithmName::Static => format!("algorithm = \"{name}\"\nlimit = 10"),
            _ => format!("algorithm = \"{name}\""),
        };
        let table = route_with(&limit, "").unwrap();
        let built = name
            .build(&tailwater_core::names::AlgorithmParams {
                limit: (name == AlgorithmName::Static).then_some(10),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            table.routes()[0].admission.limiter().stats().algorithm,
            built.name()
        );
    }
    for q in QueueName::ALL {
        let table = route_with("", &format!("queue = {{ discipline = \"{q}\" }}")).unwrap();
        assert_eq!(
            table.routes()[0].admission.wait().is_some(),
            q != QueueName::None,
            "{q}"
        );
    }
}

#[test]
fn names_are_spelt_one_way_and_errors_list_the_valid_ones() {
    let err = route_with("algorithm = \"gradient\"", "").unwrap_err();
    assert_eq!(err.line(), Some(5));
    assert!(err.message().contains("envoy-corrected"), "{err}");
    let err = route_with("", "queue = { discipline = \"adaptive_lifo\" }").unwrap_err();
    assert_eq!(err.line(), Some(3));
    assert!(err.message().contains("adaptive-lifo"), "{err}");
    let err = route_with("algorithm = \"aimd\"\nsmoothing = 0.5", "").unwrap_err();
    assert_eq!(err.field(), "route[0].limit.smoothing");
    assert_eq!(err.line(), Some(6));
}

#[test]
fn a_route_without_a_limit_table_uses_the_recommended_algorithm() {
    let cfg = Config::simple("http://127.0.0.1:9".parse().unwrap());
    let table = RouteTable::build(&cfg).unwrap();
    let stats = table.routes()[0].admission.limiter().stats();
    assert_eq!(
        stats.algorithm,
        tailwater_core::algorithm::LimitAlgorithm::name(&tailwater_core::algorithm::recommended())
    );
    assert_eq!(stats.limit, {
        use tailwater_core::algorithm::LimitAlgorithm as _;
        tailwater_core::algorithm::recommended().limit()
    });
    // The queue stays the proxy's: CoDel, 128 waiters, 100 ms at most.
    assert_eq!(stats.queue_capacity, 128);
    assert_eq!(
        table.routes()[0].admission.wait(),
        Some(Duration::from_millis(100))
    );
}
