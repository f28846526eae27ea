//! `tailwater drill --quick` as CI runs it: the protected run's goodput at 5× capacity is
//! higher than the unprotected run's, and every request has exactly one outcome (counts,
//! not timings).

use tailwater_drill::{DrillConfig, render_html, render_table, run, to_json};

#[test]
fn quick_drill_protected_beats_unprotected_at_5x() {
    let config = DrillConfig::quick();
    let report = run(&config, None).expect("the drill runs");
    let table = render_table(&report);
    println!("{table}");

    for side in report.sides() {
        assert_eq!(side.phases.len(), config.multipliers.len());
        assert_eq!(
            side.abandoned,
            0,
            "{}: requests abandoned",
            side.side.as_str()
        );
        for p in &side.phases {
            assert!(
                p.outcomes_balance(),
                "{} {}x: scheduled {} requests {} ok {} shed {} other {} timeouts {} errors {}",
                side.side.as_str(),
                p.multiplier,
                p.scheduled,
                p.requests,
                p.ok,
                p.shed,
                p.other_status,
                p.timeouts,
                p.errors
            );
            assert!(p.scheduled > 0);
        }
    }

    let (unprotected, protected) = report.phase_at(5.0).expect("a 5x phase");
    println!(
        "5x: unprotected ok {} of {}, protected ok {} of {}",
        unprotected.ok, unprotected.requests, protected.ok, protected.requests
    );
    assert!(
        protected.ok > unprotected.ok,
        "protected goodput at 5x ({} ok) is not above unprotected ({} ok)",
        protected.ok,
        unprotected.ok
    );

    // The backend's service-time distribution is part of every rendering.
    assert!(table.contains("(constant service times)"), "{table}");
    let json = to_json(&report);
    assert_eq!(json["service_dist"], "constant");
    assert_eq!(json["algorithm"], "recommended");
    assert_eq!(json["outcomes_balance"], serde_json::Value::Bool(true));
    assert_eq!(
        json["protected"]["phases"].as_array().map(Vec::len),
        Some(config.multipliers.len())
    );
    assert!(
        json["protected"]["series"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    // The HTML report is self-contained: charts inline, nothing fetched.
    let html = render_html(&report);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.matches("<svg").count() >= 5, "charts are inline SVG");
    for fetch in ["src=", "href=", "<script", "<link", "url(", "@import"] {
        assert!(!html.contains(fetch), "the report must not load `{fetch}`");
    }
    assert!(html.contains("critical_plus"));
    assert!(html.contains("(constant service times;"));
}
