//! The route table's tests: names of algorithms and queues, defaults.

use tailwater_core::names::{AlgorithmName, QueueName};

use super::*;
use crate::config::Config;

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

/// A table of one route `api` with `limit` as its `[route.limit]` body and `extra` after it
/// (other tables of the route), to reload into.
fn config_of(limit: &str, extra: &str) -> Config {
    let src = format!(
        "[[route]]\nname = \"api\"\nupstream = [\"http://127.0.0.1:9\", \"http://127.0.0.1:10\"]\n\
         [route.limit]\n{limit}\n{extra}\n"
    );
    Config::from_toml(&src, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_reload_keeps_the_limiter_of_an_equal_limit_and_builds_a_new_one_for_a_changed_field() {
    let limit = "algorithm = \"aimd\"\nmin_limit = 2\nmax_limit = 50\ntimeout = \"2s\"";
    let old = RouteTable::build(&config_of(limit, "")).unwrap();
    let limiter = old.routes()[0].admission.limiter();
    // State that only the same limiter has: a permit in flight and a learned limit.
    let permit = limiter.try_acquire_owned().unwrap();
    let learned = limiter.limit();
    assert_eq!(limiter.in_flight(), 1);

    // The same values, written in another order and spelling: the same limiter.
    let same = "timeout = \"2000ms\"\nmax_limit = 50\nalgorithm = \"AIMD\"\nmin_limit = 2";
    let reloaded =
        RouteTable::build_reusing(valid(&config_of(same, "")), Some(&old), None, 1).unwrap();
    let kept = reloaded.routes()[0].admission.limiter();
    assert_eq!(
        kept.in_flight(),
        1,
        "the permit of the old table is counted"
    );
    assert_eq!(kept.limit(), learned);
    // The balancer of unchanged endpoints is kept too.
    assert!(Arc::ptr_eq(
        &old.routes()[0].balance.as_ref().unwrap().balancer,
        &reloaded.routes()[0].balance.as_ref().unwrap().balancer
    ));

    // One field changed (the limit's, the queue's or a tier's): a fresh limiter.
    for (limit, extra) in [
        (limit.replace("max_limit = 50", "max_limit = 51"), ""),
        (limit.to_owned(), "[route.queue]\ncapacity = 64"),
        (limit.to_owned(), "[route.tiers]\nsheddable = 0.1"),
    ] {
        let changed =
            RouteTable::build_reusing(valid(&config_of(&limit, extra)), Some(&reloaded), None, 1)
                .unwrap();
        let fresh = changed.routes()[0].admission.limiter();
        assert_eq!(fresh.in_flight(), 0, "{limit} {extra}");
    }
    // A changed balance setting builds a new balancer.
    let changed = RouteTable::build_reusing(
        valid(&config_of(
            limit,
            "[route.balance]\npolicy = \"round-robin\"",
        )),
        Some(&reloaded),
        None,
        1,
    )
    .unwrap();
    assert!(!Arc::ptr_eq(
        &reloaded.routes()[0].balance.as_ref().unwrap().balancer,
        &changed.routes()[0].balance.as_ref().unwrap().balancer
    ));
    drop(permit);
    assert_eq!(kept.in_flight(), 0);
}

/// `config`, validated (building takes the proof).
fn valid(config: &Config) -> Validated<'_> {
    config.validated().expect("a valid configuration")
}
