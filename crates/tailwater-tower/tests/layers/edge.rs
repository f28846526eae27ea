use std::time::Duration;

use tailwater_core::rate::Quota;
use tailwater_tower::edge::{
    RateLimitPolicies, error_response, is_grpc, pushback_ms, retry_after_secs,
};

#[test]
fn retry_after_rounds_up_and_is_at_least_one_second() {
    let table = [
        (Duration::ZERO, 1),
        (Duration::from_nanos(1), 1),
        (Duration::from_millis(999), 1),
        (Duration::from_secs(1), 1),
        (Duration::from_millis(1001), 2),
        (Duration::from_secs(30), 30),
    ];
    for (d, want) in table {
        assert_eq!(retry_after_secs(d), want, "{d:?}");
    }
    assert_eq!(pushback_ms(Duration::from_micros(1500)), 2);
    assert_eq!(pushback_ms(Duration::ZERO), 1);
    assert_eq!(pushback_ms(Duration::from_secs(30)), 30_000);
}

#[test]
fn ratelimit_headers_follow_draft_10() {
    let p = RateLimitPolicies::new([
        ("burst", Quota::per_second(10).unwrap()),
        ("daily", Quota::per_day(1000).unwrap()),
    ])
    .unwrap();
    assert_eq!(
        p.policy_header(),
        "\"burst\";q=10;w=1, \"daily\";q=1000;w=86400"
    );
    assert_eq!(p.ratelimit_header(1, 0, 3600), "\"daily\";r=0;t=3600");
    // Names are Structured-Field Strings: quotes and backslashes are escaped.
    let p = RateLimitPolicies::new([("a\"b\\c", Quota::per_minute(5).unwrap())]).unwrap();
    assert_eq!(p.policy_header(), r#""a\"b\\c";q=5;w=60"#);
    // Non-ASCII names cannot be carried.
    let err = RateLimitPolicies::new([("café", Quota::per_minute(5).unwrap())]).unwrap_err();
    assert_eq!(err.field(), "rate_limit.policy_name");
}

#[test]
fn grpc_is_detected_by_content_type() {
    let mut h = http::HeaderMap::new();
    assert!(!is_grpc(&h));
    h.insert("content-type", "application/json".parse().unwrap());
    assert!(!is_grpc(&h));
    for ct in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web",
    ] {
        h.insert("content-type", ct.parse().unwrap());
        assert!(is_grpc(&h), "{ct}");
    }
}

#[test]
fn foreign_errors_have_no_edge_response() {
    let err: tailwater_tower::BoxError = "boom".into();
    assert!(error_response(&*err, false).is_none());
}
