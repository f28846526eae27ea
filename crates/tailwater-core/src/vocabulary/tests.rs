use super::*;

#[test]
fn names_follow_prometheus_conventions_and_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for m in ALL {
        assert!(seen.insert(m.name), "{} twice", m.name);
        assert!(m.name.starts_with("tailwater_"), "{}", m.name);
        assert_eq!(
            m.kind == Kind::Counter,
            m.name.ends_with("_total"),
            "{}: only counters end in _total",
            m.name
        );
        if m.unit == "seconds" {
            assert!(m.name.contains("_seconds"), "{}", m.name);
        }
        assert!(!m.help.contains('\n'), "{}", m.name);
    }
    assert!(REQUEST_DURATION.labels.contains(&"outcome"));
    for o in [
        "success",
        "upstream_error",
        "shed",
        "rate_limited",
        "timeout",
    ] {
        assert!(outcome::ALL.contains(&o), "{o}");
    }
}
