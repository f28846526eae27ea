//! The same seed gives byte-identical JSON; another seed gives other numbers.

use tailwater_sim::engine::RunOptions;
use tailwater_sim::policy::PolicySpec;
use tailwater_sim::{run_scenario, scenario};

fn json(name: &str, seed: u64) -> String {
    let mut s = scenario::builtin(name).unwrap();
    s.seed = seed;
    let policies: Vec<PolicySpec> = [
        "none",
        "static+codel",
        "gradient2-corrected",
        "envoy",
        "vegas+lifo",
    ]
    .iter()
    .map(|p| PolicySpec::parse(p).unwrap())
    .collect();
    let r = run_scenario(&s, &policies, RunOptions { series: true }).unwrap();
    serde_json::to_string(&r).unwrap()
}

#[test]
fn same_seed_same_bytes() {
    for name in ["spike-10x", "retry-budgeted", "tiered-overload"] {
        let a = json(name, 7);
        let b = json(name, 7);
        assert_eq!(a, b, "{name}");
        assert_ne!(a, json(name, 8), "{name}: the seed must matter");
    }
}
