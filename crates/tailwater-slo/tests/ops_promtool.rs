//! The operational alerts (`tailwater slo ops`) through `promtool`: `check rules`, and
//! `test rules` on synthetic series of the proxy's and the RLS's metrics: each alert
//! stays quiet on healthy series, fires on the failure it is about, and resolves after it.
//!
//! promtool comes from Debian's `prometheus` package; without it these tests skip loudly,
//! unless `TAILWATER_REQUIRE_PROMTOOL=1` (set by `.ci/run`), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use tailwater_slo::rules::Rule;

fn promtool() -> Option<PathBuf> {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(PathBuf::from("promtool"));
    }
    if std::env::var("TAILWATER_REQUIRE_PROMTOOL").as_deref() == Ok("1") {
        panic!("promtool not found and TAILWATER_REQUIRE_PROMTOOL=1: apt-get install prometheus");
    }
    eprintln!("SKIPPED: promtool not found (apt-get install prometheus)");
    None
}

fn run(promtool: &Path, args: &[&str], cwd: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The expected alert `name` with `labels` (besides severity and component, which come
/// from the rules), as promtool's test YAML.
fn expected(name: &str, labels: &[(&str, &str)]) -> String {
    let file = tailwater_slo::ops::rules(None);
    let rule = file.groups[0]
        .rules
        .iter()
        .find_map(|r| match r {
            Rule::Alert {
                alert,
                labels,
                annotations,
                ..
            } if alert == name => Some((labels.clone(), annotations.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no alert {name}"));
    let mut s = String::from("          - exp_labels:\n");
    for (k, v) in rule
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(labels.iter().copied())
    {
        s += &format!("              {k}: {}\n", serde_json::to_string(v).unwrap());
    }
    s += "            exp_annotations:\n";
    for (k, v) in &rule.1 {
        s += &format!("              {k}: {}\n", serde_json::to_string(v).unwrap());
    }
    s
}

fn case(name: &str, at: &str, alerts: &str) -> String {
    format!("      - eval_time: {at}\n        alertname: {name}\n        exp_alerts:\n{alerts}")
}

#[test]
fn operational_alerts_fire_on_their_failure_and_resolve() {
    let Some(pt) = promtool() else { return };
    let dir = std::env::temp_dir().join(format!("tailwater-slo-ops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let yaml = tailwater_slo::ops::rules(None).to_yaml().expect("yaml");
    std::fs::write(dir.join("ops.yml"), yaml).expect("write");
    run(&pt, &["check", "rules", "ops.yml"], &dir);

    let reload = "TailwaterProxyConfigReloadFailed";
    let rls_load = "TailwaterRlsConfigLoadFailed";
    let drops = "TailwaterAccessLogDropping";
    let fallback = "TailwaterRlsStoreFallback";
    let p = [("instance", "proxy:9901")];
    let r = [("instance", "rls:8080")];
    let mut cases = String::new();
    // Healthy for 10 minutes: nothing fires (successful reloads and loads count too).
    for name in [reload, rls_load, drops, fallback] {
        cases += &case(name, "9m", "          []\n");
    }
    // A refused reload at 11m: fires while it is in the last 15 minutes, then resolves.
    cases += &case(reload, "12m", &expected(reload, &p));
    cases += &case(reload, "40m", "          []\n");
    cases += &case(rls_load, "12m", &expected(rls_load, &r));
    cases += &case(rls_load, "40m", "          []\n");
    // Lines dropped from 11m to 20m.
    cases += &case(drops, "15m", &expected(drops, &p));
    cases += &case(drops, "40m", "          []\n");
    // Fallback from 11m to 30m: pending for its 2 minutes, then firing, then resolved.
    cases += &case(fallback, "12m", "          []\n");
    cases += &case(
        fallback,
        "20m",
        &expected(fallback, &[r[0], ("store", "redis")]),
    );
    cases += &case(fallback, "45m", "          []\n");
    let test = format!(
        "rule_files: [ops.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         \x20     - series: 'tailwater_config_reloads_total{{instance=\"proxy:9901\",result=\"success\"}}'\n        values: '0+1x60'\n\
         \x20     - series: 'tailwater_config_reloads_total{{instance=\"proxy:9901\",result=\"failure\"}}'\n        values: '0x10 1x50'\n\
         \x20     - series: 'tailwater_rls_config_loads_total{{instance=\"rls:8080\",result=\"success\"}}'\n        values: '1x60'\n\
         \x20     - series: 'tailwater_rls_config_loads_total{{instance=\"rls:8080\",result=\"error\"}}'\n        values: '0x10 1x50'\n\
         \x20     - series: 'tailwater_access_log_dropped_total{{instance=\"proxy:9901\"}}'\n        values: '0x10 0+50x9 450x40'\n\
         \x20     - series: 'tailwater_rls_fallback_calls_total{{instance=\"rls:8080\",store=\"redis\"}}'\n        values: '0x10 0+600x19 11400x30'\n\
         \x20   alert_rule_test:\n{cases}"
    );
    std::fs::write(dir.join("test.yml"), test).expect("write");
    run(&pt, &["test", "rules", "test.yml"], &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
