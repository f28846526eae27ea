//! The wire contract beyond the README examples: hits_addend, every status field, the
//! draft-10 headers, limit overrides, bad requests, the HTTP side, validation errors with
//! file:line and reloads that keep the running configuration.

mod common;

use std::time::Duration;

use common::{desc, request, start};
use tailwater_rls::config::load_str;
use tailwater_rls::proto::{Code, RateLimitOverride};

const CONFIG: &str = r#"
domain: api
descriptors:
  - key: user
    rate_limit:
      name: per_user
      unit: minute
      requests_per_unit: 60
  - key: path
    rate_limit:
      unit: second
      requests_per_unit: 2
"#;

#[tokio::test]
async fn every_status_field_and_the_headers_are_filled() {
    let mut rls = start(&[("api.yaml", CONFIG)]).await;
    let r = rls
        .call(request("api", vec![desc(&[("user", "u1")])], 10))
        .await;
    assert_eq!(r.overall_code, Code::Ok as i32);
    let s = &r.statuses[0];
    assert_eq!(s.code, Code::Ok as i32);
    let l = s.current_limit.clone().expect("current_limit");
    assert_eq!((l.name.as_str(), l.requests_per_unit), ("per_user", 60));
    assert_eq!(s.limit_remaining, 50);
    // 10 hits of 60/min take 10 s to refill.
    let reset = s.duration_until_reset.expect("duration_until_reset");
    assert_eq!((reset.seconds, reset.nanos), (10, 0));
    let h: Vec<(&str, &str)> = r
        .response_headers_to_add
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(
        h,
        [
            ("RateLimit-Policy", "\"per_user\";q=60;w=60"),
            ("RateLimit", "\"per_user\";r=50;t=10"),
        ]
    );
}

#[tokio::test]
async fn hits_addend_zero_checks_without_charging() {
    let mut rls = start(&[("api.yaml", CONFIG)]).await;
    let mut d = desc(&[("path", "/x")]);
    d.hits_addend = Some(0);
    for _ in 0..5 {
        let r = rls.call(request("api", vec![d.clone()], 7)).await;
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert_eq!(r.statuses[0].limit_remaining, 2);
    }
    // The descriptor's own hits_addend beats the request's.
    d.hits_addend = Some(2);
    let r = rls.call(request("api", vec![d.clone()], 1)).await;
    assert_eq!(r.statuses[0].limit_remaining, 0);
    // Request-level 0 means 1.
    assert_eq!(rls.one("api", &[("path", "/y")], 0).await, Code::Ok);
    let r = rls
        .call(request("api", vec![desc(&[("path", "/y")])], 0))
        .await;
    assert_eq!(r.statuses[0].limit_remaining, 0);
}

#[tokio::test]
async fn denied_hits_are_not_counted() {
    let mut rls = start(&[("api.yaml", CONFIG)]).await;
    assert_eq!(rls.one("api", &[("path", "/z")], 2).await, Code::Ok);
    for _ in 0..100 {
        assert_eq!(rls.one("api", &[("path", "/z")], 1).await, Code::OverLimit);
    }
    // One emission interval (500 ms) later exactly one hit fits: the 100 denials cost nothing.
    rls.clock.advance(Duration::from_millis(500));
    assert_eq!(rls.one("api", &[("path", "/z")], 1).await, Code::Ok);
    assert_eq!(rls.one("api", &[("path", "/z")], 1).await, Code::OverLimit);
}

#[tokio::test]
async fn a_limit_override_bypasses_the_tree() {
    let mut rls = start(&[("api.yaml", CONFIG)]).await;
    let mut d = desc(&[("user", "u2")]);
    d.limit = Some(RateLimitOverride {
        requests_per_unit: 3,
        unit: 1, // SECOND
    });
    let r = rls.call(request("api", vec![d.clone()], 3)).await;
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .map(|l| l.requests_per_unit),
        Some(3)
    );
    let r = rls.call(request("api", vec![d], 1)).await;
    assert_eq!(r.overall_code, Code::OverLimit as i32);
}

#[tokio::test]
async fn bad_requests_are_invalid_argument() {
    let mut rls = start(&[("api.yaml", CONFIG)]).await;
    let e = rls
        .client
        .should_rate_limit(request("", vec![desc(&[("user", "u")])], 1))
        .await
        .expect_err("empty domain");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = rls
        .client
        .should_rate_limit(request("api", vec![], 1))
        .await
        .expect_err("no descriptors");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let many = (0..100).map(|_| desc(&[("user", "u")])).collect();
    let e = rls
        .client
        .should_rate_limit(request("api", many, 1))
        .await
        .expect_err("too many descriptors");
    assert!(e.message().contains("descriptors"), "{}", e.message());
    // Unknown domains are not limited (envoyproxy/ratelimit does the same).
    assert_eq!(rls.one("nope", &[("user", "u")], 1).await, Code::Ok);
}

#[tokio::test]
async fn the_json_endpoint_answers_200_then_429() {
    let rls = start(&[("api.yaml", CONFIG)]).await;
    let body = r#"{"domain":"api","descriptors":[{"entries":[{"key":"path","value":"/j"}]}],"hitsAddend":2}"#;
    let (status, json) = rls.http("POST", "/json", body).await;
    assert_eq!(status, 200, "{json}");
    assert!(json.contains(r#""overallCode":"OK""#), "{json}");
    assert!(
        json.contains(r#""requestsPerUnit":2,"unit":"SECOND""#),
        "{json}"
    );
    let (status, json) = rls.http("POST", "/json", body).await;
    assert_eq!(status, 429);
    assert!(json.contains(r#""overallCode":"OVER_LIMIT""#), "{json}");
    let (status, _) = rls.http("POST", "/json", "{not json").await;
    assert_eq!(status, 400);
    let (status, body) = rls.http("GET", "/healthcheck", "").await;
    assert_eq!((status, body.trim()), (200, "OK"));
    let (status, body) = rls.http("GET", "/rlconfig", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("per_user"), "{body}");
}

#[test]
fn validation_errors_name_the_file_and_line() {
    let cases = [
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: b\n  - key: a\n    value: b\n",
            5,
            "duplicate descriptor composite key 'a_b'",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: fortnight\n      requests_per_unit: 1\n",
            3,
            "invalid rate limit unit 'fortnight'",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n  - key: b\n    rate_limit:\n      unlimited: true\n      unit: second\n",
            4,
            "should not specify rate limit unit when unlimited",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    colour: red\n",
            3,
            "unknown key 'colour'",
        ),
        (
            "domain: d\ndescriptors:\n  - value: x\n",
            3,
            "descriptor has empty key",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: second\n      requests_per_unit: -1\n",
            6,
            "expected u32",
        ),
        (
            "descriptors: []\n",
            1,
            "config file cannot have empty domain",
        ),
    ];
    for (text, line, msg) in cases {
        let e = load_str("f.yaml", text).expect_err(msg);
        assert_eq!(e.file, "f.yaml");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains(msg), "{e}");
        assert!(
            e.to_string().starts_with(&format!("f.yaml:{line}: ")),
            "{e}"
        );
    }
}

#[tokio::test]
async fn duplicate_domains_and_bad_reloads_keep_the_running_config() {
    let mut rls = start(&[("api.yaml", CONFIG)]).await;
    // A second file with the same domain: refused, the running config stays.
    rls.dir.write("b.yaml", "domain: api\ndescriptors: []\n");
    let e = rls.watcher.poll().expect_err("duplicate domain");
    assert!(e.message.contains("duplicate domain 'api'"), "{e}");
    assert_eq!(e.file, common::path(&rls.dir, "b.yaml"));
    assert_eq!(e.line, Some(1));
    assert_eq!(rls.one("api", &[("path", "/r")], 2).await, Code::Ok);
    assert_eq!(rls.one("api", &[("path", "/r")], 1).await, Code::OverLimit);
    let (_, body) = rls.http("GET", "/rlconfig", "").await;
    assert!(body.contains("duplicate domain"), "{body}");
    // Fixed: the new file loads; nothing changed since: no reload.
    std::fs::remove_file(rls.dir.0.join("b.yaml")).expect("rm");
    rls.dir.write(
        "api.yaml",
        &CONFIG.replace("requests_per_unit: 2", "requests_per_unit: 5"),
    );
    assert_eq!(rls.watcher.poll(), Ok(true));
    assert_eq!(rls.watcher.poll(), Ok(false));
    assert_eq!(rls.one("api", &[("path", "/r2")], 5).await, Code::Ok);
    let (_, metrics) = rls.http("GET", "/metrics", "").await;
    assert!(
        metrics.contains("tailwater_rls_config_loads_total{result=\"error\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_redis_backed_watcher_refuses_year_rules_at_load() {
    let dir = common::TempDir::new();
    dir.write(
        "y.yaml",
        "domain: y\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: year\n      requests_per_unit: 10\n",
    );
    let e = tailwater_rls::ConfigWatcher::open_with_limit(&dir.0, 1 << 52).expect_err("year");
    assert!(e.message.contains("'y.k'"), "{e}");
    assert!(tailwater_rls::ConfigWatcher::open(&dir.0).is_ok());
}
