//! Every configuration example of envoyproxy/ratelimit's README ("Examples" 1–9), loaded
//! unchanged and called through the generated tonic client over a real socket, decides as
//! that README documents. Time is a manual clock: GCRA refills only when a test says so.

mod common;

use std::time::Duration;

use common::{desc, request, start};
use tailwater_rls::proto::{Code, ProtoUnit};

const OK: Code = Code::Ok;
const OVER: Code = Code::OverLimit;

#[tokio::test]
async fn example_1_two_values_of_one_key() {
    let mut rls = start(&[(
        "mongo.yaml",
        r#"
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500

  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
"#,
    )])
    .await;
    let users = [("database", "users")];
    assert_eq!(rls.one("mongo_cps", &users, 500).await, OK);
    assert_eq!(rls.one("mongo_cps", &users, 1).await, OVER);
    // Each value has its own 500/s.
    assert_eq!(
        rls.one("mongo_cps", &[("database", "default")], 500).await,
        OK
    );
    // A value with no rule is not limited.
    let r = rls
        .call(request(
            "mongo_cps",
            vec![desc(&[("database", "other")])],
            1_000,
        ))
        .await;
    assert_eq!(r.overall_code, OK as i32);
    assert_eq!(r.statuses[0].current_limit, None);
    // 500/s is one hit every 2 ms (GCRA: no window to wait for).
    rls.clock.advance(Duration::from_millis(2));
    assert_eq!(rls.one("mongo_cps", &users, 1).await, OK);
    assert_eq!(rls.one("mongo_cps", &users, 1).await, OVER);
}

#[tokio::test]
async fn example_2_nested_and_multiple_descriptors() {
    let mut rls = start(&[(
        "messaging.yaml",
        r#"
domain: messaging
descriptors:
  # Only allow 5 marketing messages a day
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5

  # Only allow 100 messages a day to any unique phone number
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
"#,
    )])
    .await;
    let both = |n: &'static str| {
        request(
            "messaging",
            vec![
                desc(&[("message_type", "marketing"), ("to_number", n)]),
                desc(&[("to_number", n)]),
            ],
            1,
        )
    };
    for i in 0..5 {
        let r = rls.call(both("2061111111")).await;
        assert_eq!(r.overall_code, OK as i32, "call {i}");
        assert_eq!(r.statuses[0].limit_remaining, 4 - i);
        assert_eq!(r.statuses[1].limit_remaining, 99 - i);
    }
    // The 6th marketing message is over: a logical OR of the two decisions.
    let r = rls.call(both("2061111111")).await;
    assert_eq!(r.overall_code, OVER as i32);
    assert_eq!(r.statuses[0].code, OVER as i32);
    assert_eq!(r.statuses[1].code, OK as i32);
    // The denied call charged nothing: still 95 left for that number.
    assert_eq!(r.statuses[1].limit_remaining, 95);
    let limit = r.statuses[0].current_limit.clone().expect("limit");
    assert_eq!(
        (limit.requests_per_unit, limit.unit),
        (5, ProtoUnit::Day as i32)
    );
    // Another number has its own 5 per day.
    assert_eq!(rls.call(both("2062222222")).await.overall_code, OK as i32);
    // Non-marketing messages to the first number: 95 more.
    assert_eq!(
        rls.one("messaging", &[("to_number", "2061111111")], 95)
            .await,
        OK
    );
    assert_eq!(
        rls.one("messaging", &[("to_number", "2061111111")], 1)
            .await,
        OVER
    );
}

#[tokio::test]
async fn example_3_key_value_beats_key_only() {
    let mut rls = start(&[(
        "ip.yaml",
        r#"
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit:
      unit: second
      requests_per_unit: 10

  # Black list IP
  - key: remote_address
    value: 50.0.0.5
    rate_limit:
      unit: second
      requests_per_unit: 0
"#,
    )])
    .await;
    let ip1 = [("remote_address", "50.0.0.1")];
    assert_eq!(rls.one("edge_proxy_per_ip", &ip1, 10).await, OK);
    assert_eq!(rls.one("edge_proxy_per_ip", &ip1, 1).await, OVER);
    assert_eq!(
        rls.one("edge_proxy_per_ip", &[("remote_address", "50.0.0.2")], 1)
            .await,
        OK
    );
    let r = rls
        .call(request(
            "edge_proxy_per_ip",
            vec![desc(&[("remote_address", "50.0.0.5")])],
            1,
        ))
        .await;
    assert_eq!(r.overall_code, OVER as i32);
    let s = &r.statuses[0];
    assert_eq!(
        s.current_limit.as_ref().map(|l| l.requests_per_unit),
        Some(0)
    );
    assert_eq!(s.limit_remaining, 0);
}

#[tokio::test]
async fn example_4_levels_must_match_the_entry_count() {
    let shallow = r#"
domain: example4
descriptors:
  - key: key
    value: value
    rate_limit:
      requests_per_unit: 300
      unit: second
"#;
    let mut rls = start(&[("e4.yaml", shallow)]).await;
    let two = [("key", "value"), ("subkey", "subvalue")];
    let r = rls.call(request("example4", vec![desc(&two)], 1_000)).await;
    assert_eq!(r.overall_code, OK as i32);
    assert_eq!(r.statuses[0].current_limit, None);

    let deep = r#"
domain: example4
descriptors:
  - key: key
    value: value
    descriptors:
      - key: subkey
        rate_limit:
          requests_per_unit: 300
          unit: second
"#;
    let mut rls = start(&[("e4.yaml", deep)]).await;
    assert_eq!(rls.one("example4", &two, 300).await, OK);
    assert_eq!(rls.one("example4", &two, 1).await, OVER);
}

#[tokio::test]
async fn example_5_unlimited() {
    let mut rls = start(&[(
        "internal.yaml",
        r#"
domain: internal
descriptors:
  - key: ldap
    rate_limit:
      unlimited: true

  - key: azure
    rate_limit:
      unit: minute
      requests_per_unit: 100
"#,
    )])
    .await;
    let r = rls
        .call(request("internal", vec![desc(&[("ldap", "x")])], 1_000_000))
        .await;
    assert_eq!(r.overall_code, OK as i32);
    assert_eq!(r.statuses[0].code, OK as i32);
    assert_eq!(r.statuses[0].limit_remaining, u32::MAX);
    assert_eq!(rls.one("internal", &[("azure", "x")], 100).await, OK);
    assert_eq!(rls.one("internal", &[("azure", "x")], 1).await, OVER);
}

#[tokio::test]
async fn example_6_shadow_mode() {
    let mut rls = start(&[(
        "e6.yaml",
        r#"
domain: example6
descriptors:
  - key: service
    descriptors:
      - key: user
        value: user-a
        rate_limit:
          requests_per_unit: 10
          unit: second
        shadow_mode: true
      - key: user
        value: user-b
        rate_limit:
          requests_per_unit: 20
          unit: second
"#,
    )])
    .await;
    let a = [("service", "auth-service"), ("user", "user-a")];
    let b = [("service", "auth-service"), ("user", "user-b")];
    for _ in 0..15 {
        assert_eq!(rls.one("example6", &a, 1).await, OK);
    }
    assert_eq!(rls.one("example6", &b, 20).await, OK);
    assert_eq!(rls.one("example6", &b, 1).await, OVER);
    // The breaches of user-a are counted.
    let (status, metrics) = rls.http("GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tailwater_rls_rule_shadow_mode{key=\"example6.service.user_user-a\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn example_7_replaces() {
    let mut rls = start(&[(
        "e7.yaml",
        r#"
domain: example7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          name: specific_limit
          requests_per_unit: 5
          unit: second
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          replaces:
            - name: specific_limit
          requests_per_unit: 10
          unit: second
"#,
    )])
    .await;
    let d1 = [("key_1", "value_1"), ("user", "bkthomps")];
    let d2 = [("key_2", "value_2"), ("user", "bkthomps")];
    for i in 0..10 {
        let r = rls
            .call(request("example7", vec![desc(&d1), desc(&d2)], 1))
            .await;
        assert_eq!(r.overall_code, OK as i32, "call {i}");
        // The replaced rule is not evaluated.
        assert_eq!(r.statuses[0].current_limit, None);
    }
    let r = rls
        .call(request("example7", vec![desc(&d1), desc(&d2)], 1))
        .await;
    assert_eq!(r.overall_code, OVER as i32);
    // ... and its counter was not touched: 5/s are still there on their own.
    assert_eq!(rls.one("example7", &d1, 5).await, OK);
    assert_eq!(rls.one("example7", &d1, 1).await, OVER);
}

#[tokio::test]
async fn example_8_detailed_metric() {
    let mut rls = start(&[(
        "e8.yaml",
        r#"
domain: example8
descriptors:
  - key: key1
    detailed_metric: true
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: key1
    value: value1
    rate_limit:
      unit: minute
      requests_per_unit: 20
"#,
    )])
    .await;
    assert_eq!(
        rls.one("example8", &[("key1", "unspecified_value")], 10)
            .await,
        OK
    );
    assert_eq!(
        rls.one("example8", &[("key1", "unspecified_value")], 1)
            .await,
        OVER
    );
    assert_eq!(
        rls.one("example8", &[("key1", "unspecified_value2")], 10)
            .await,
        OK
    );
    assert_eq!(rls.one("example8", &[("key1", "value1")], 20).await, OK);
    let (_, metrics) = rls.http("GET", "/metrics", "").await;
    for key in [
        "example8.key1_unspecified_value",
        "example8.key1_unspecified_value2",
        "example8.key1_value1",
    ] {
        assert!(
            metrics.contains(&format!("tailwater_rls_rule_total_hits{{key=\"{key}\"}}")),
            "{key} missing from {metrics}"
        );
    }
    assert!(!metrics.contains("key=\"example8.key1\""));
}

#[tokio::test]
async fn example_9_wildcard_values() {
    let mut rls = start(&[(
        "e9.yaml",
        r#"
domain: example9
descriptors:
  - key: key1
    value: value*
    rate_limit:
      unit: minute
      requests_per_unit: 20
"#,
    )])
    .await;
    for v in ["value_1", "value_2"] {
        assert_eq!(rls.one("example9", &[("key1", v)], 20).await, OK);
        assert_eq!(rls.one("example9", &[("key1", v)], 1).await, OVER);
    }
    let r = rls
        .call(request("example9", vec![desc(&[("key1", "other")])], 100))
        .await;
    assert_eq!(r.overall_code, OK as i32);
    assert_eq!(r.statuses[0].current_limit, None);
}
