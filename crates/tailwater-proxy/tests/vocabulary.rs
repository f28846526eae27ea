//! The proxy's `/metrics` in tailwater-core's one vocabulary (issue 13, item 4): the
//! latency histogram's `outcome` label keeps refused requests out of the successes, every
//! family is a vocabulary metric, `promtool check metrics` accepts the text, and the
//! in-process burn rates show as gauges and as "budget left" in `/status`.
//!
//! promtool comes from Debian's `prometheus` package; without it the promtool check skips
//! loudly unless `TAILWATER_REQUIRE_PROMTOOL=1` (set by `.ci/run`).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use tailwater_core::vocabulary;

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn promtool_available() -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("TAILWATER_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "promtool not found and TAILWATER_REQUIRE_PROMTOOL=1: apt-get install prometheus"
        );
        eprintln!("SKIPPED: promtool not found (apt-get install prometheus)");
    }
    ok
}

#[tokio::test]
async fn metrics_speak_the_vocabulary_and_split_latency_by_outcome() {
    let backend = text_backend("ok").await;
    let cfg = config(&format!(
        "[[route]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"http://{}\"\n\
         [route.limit]\nalgorithm = \"aimd\"\nmin_limit = 1\nmax_limit = 8\n\
         [[route.rate_limit]]\nname = \"r\"\nrate = 3\nperiod = \"1m\"\n\
         [[route]]\nname = \"down\"\npath_prefix = \"/down\"\nupstream = \"http://127.0.0.1:9\"\nslo_objective = 99.0\n",
        backend.addr
    ));
    let running = start_proxy(cfg).await;
    let c = client();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (parts, _) = get(&c, running.addr, "/api/x").await.expect("api");
        codes.push(parts.status.as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    for _ in 0..2 {
        let (parts, _) = get(&c, running.addr, "/down").await.expect("down");
        assert_eq!(parts.status, 502);
    }
    // A reload of a missing file is refused and counted.
    assert!(
        running
            .proxy
            .reload_from_file("/nonexistent/tailwater.toml".as_ref())
            .is_err()
    );

    let text = running.proxy.metrics_text();
    let count = |labels: &str| {
        sample(
            &text,
            &format!("tailwater_request_duration_seconds_count{{{labels}}}"),
        )
    };
    // The 429s are their own series, not fast successes.
    assert_eq!(
        count("route=\"api\",outcome=\"success\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(count("route=\"api\",outcome=\"rate_limited\""), Some(2.0));
    assert_eq!(
        count("route=\"down\",outcome=\"upstream_error\""),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "tailwater_requests_total{route=\"down\",outcome=\"upstream_error\",reason=\"upstream_error\""
        ),
        Some(2.0)
    );
    // An outcome that has not happened yet is 0, not absent (an SLO's error ratio divides
    // sums over these series).
    assert_eq!(
        sample(
            &text,
            "tailwater_requests_total{route=\"api\",outcome=\"upstream_error\",reason=\"upstream_status\",tier=\"critical\"}"
        ),
        Some(0.0)
    );
    // Configured knobs, build info, reload counters.
    assert_eq!(
        sample(
            &text,
            "tailwater_limiter_max_limit{route=\"api\",algorithm=\"aimd\"}"
        ),
        Some(8.0)
    );
    assert_eq!(
        sample(&text, "tailwater_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert!(text.contains("tailwater_build_info{version=\""), "{text}");
    // Burn rates: every request to `down` failed, against a 1 % budget: 100×. The api
    // route's 429s are not errors of the service.
    assert_eq!(
        sample(
            &text,
            "tailwater_slo_burn_rate{route=\"down\",window=\"5m\"}"
        ),
        Some(100.0)
    );
    assert_eq!(
        sample(&text, "tailwater_slo_error_budget_remaining{route=\"api\"}"),
        Some(1.0)
    );
    let status = running.proxy.status();
    let down = status.iter().find(|r| r.name == "down").expect("down");
    assert!((down.budget.budget_left - (-99.0)).abs() < 1e-9, "{down:?}");
    assert_eq!(down.budget.burn_rates.get("1h"), Some(&100.0));

    // Every family is one of the vocabulary's.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).expect("name");
        assert!(
            vocabulary::ALL.iter().any(|m| m.name == name),
            "{name} is not in tailwater_core::vocabulary"
        );
    }

    if promtool_available() {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write metrics");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    running.shutdown(std::time::Duration::from_secs(5)).await;
}

#[test]
fn a_bad_objective_is_refused_with_its_field() {
    let toml = "[[route]]\nupstream = \"http://127.0.0.1:9\"\nslo_objective = 100\n";
    let err = match tailwater_proxy::Config::from_toml(toml, None) {
        Err(e) => e.to_string(),
        Ok(c) => match tailwater_proxy::Proxy::new(c) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an objective of 100 % was accepted"),
        },
    };
    assert!(err.contains("route[0].slo_objective"), "{err}");
}
