//! The generated rules through Prometheus's own tools: `promtool check rules` on every
//! example, and `promtool test rules` on synthetic series of the proxy's metrics: a total
//! outage pages and tickets, the page resets after the outage, and the low-traffic guard
//! keeps a quiet service from paging (while the same rules without the guard page).
//!
//! promtool comes from Debian's `prometheus` package. Without it these tests skip loudly,
//! unless `TAILWATER_REQUIRE_PROMTOOL=1` (set by `.ci/run`), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    eprintln!(
        "SKIPPED: promtool not found (apt-get install prometheus); set TAILWATER_REQUIRE_PROMTOOL=1 to fail instead"
    );
    None
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tailwater-slo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

fn write_rules(dir: &Path, name: &str, spec: &str) -> PathBuf {
    let set = tailwater_slo::spec::parse(spec, name).expect("spec");
    let path = dir.join(format!("{name}.rules.yml"));
    std::fs::write(
        &path,
        tailwater_slo::rules::generate(&set)
            .to_yaml()
            .expect("yaml"),
    )
    .expect("write");
    path
}

#[test]
fn every_example_passes_promtool_check_rules() {
    let Some(pt) = promtool() else { return };
    let tmp = TempDir::new("check");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sloth");
    let mut files = Vec::new();
    for ex in ["getting-started", "raw-home-wifi", "k8s-apiserver"] {
        let spec = std::fs::read_to_string(fixtures.join(format!("{ex}.yml"))).expect("fixture");
        files.push(write_rules(&tmp.0, ex, &spec));
    }
    files.push(write_rules(&tmp.0, "native", NATIVE));
    let mut args = vec!["check", "rules"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    run(&pt, &args, &tmp.0);
}

const NATIVE: &str = "version: tailwater/v1\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    route: api\n    sli: availability\n  - name: latency\n    objective: 99\n    route: api\n    sli: latency\n    threshold: 0.25\n";

fn alert(sev: &str, window: &str) -> String {
    format!(
        "          - exp_labels:\n              alertname: ShopAvailability\n              sloth_id: shop-availability\n              sloth_service: shop\n              sloth_slo: availability\n              sloth_severity: {sev}\n              sloth_window: {window}\n            exp_annotations:\n              title: ({sev}) shop availability SLO error budget burn rate is too fast.\n              summary: shop availability SLO error budget burn rate is over expected.\n"
    )
}

#[test]
fn an_outage_pages_and_tickets_then_the_page_resets_tier_by_tier() {
    let Some(pt) = promtool() else { return };
    let tmp = TempDir::new("outage");
    write_rules(&tmp.0, "native", NATIVE);
    // 10 requests/s succeed for an hour, all fail for 20 minutes, then succeed again.
    let test = format!(
        "rule_files: [native.rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'tailwater_requests_total{{route=\"api\",outcome=\"success\"}}'\n        values: '0+600x60 36000x19 36000+600x40'\n      - series: 'tailwater_requests_total{{route=\"api\",outcome=\"upstream_error\"}}'\n        values: '0x60 600+600x19 12000x40'\n    alert_rule_test:\n      - eval_time: 59m\n        alertname: ShopAvailability\n        exp_alerts: []\n      - eval_time: 65m\n        alertname: ShopAvailability\n        exp_alerts:\n{}{}      - eval_time: 100m\n        alertname: ShopAvailability\n        exp_alerts:\n{}{}      - eval_time: 112m\n        alertname: ShopAvailability\n        exp_alerts:\n{}",
        alert("page", "5m"),
        alert("ticket", "2h"),
        // 20 minutes after the outage the 1h/5m tier has reset; the 6h/30m one holds until
        // its 30m window is clean.
        alert("page", "30m"),
        alert("ticket", "2h"),
        alert("ticket", "2h"),
    );
    std::fs::write(tmp.0.join("test.yml"), test).expect("write");
    run(&pt, &["test", "rules", "test.yml"], &tmp.0);
}

fn quiet_service(guard: &str) -> String {
    format!(
        "rule_files: [native.rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'tailwater_requests_total{{route=\"api\",outcome=\"success\"}}'\n        values: '0+1x60 60x20'\n      - series: 'tailwater_requests_total{{route=\"api\",outcome=\"upstream_error\"}}'\n        values: '0x60 1+1x20'\n    alert_rule_test:\n      - eval_time: 70m\n        alertname: ShopAvailability\n        exp_alerts:\n{guard}"
    )
}

#[test]
fn the_traffic_guard_keeps_one_request_a_minute_from_paging() {
    let Some(pt) = promtool() else { return };
    // One request a minute (60 an hour, under the 70 the 14.4x tier needs), all failing
    // for 10 minutes: guarded rules stay quiet.
    let tmp = TempDir::new("guard");
    write_rules(&tmp.0, "native", NATIVE);
    std::fs::write(tmp.0.join("test.yml"), quiet_service("          []\n")).expect("write");
    run(&pt, &["test", "rules", "test.yml"], &tmp.0);

    // The same series without the guard page: the guard is what keeps them quiet.
    let tmp = TempDir::new("noguard");
    let unguarded = NATIVE.replace("slos:", "traffic_guard: off\nslos:");
    write_rules(&tmp.0, "native", &unguarded);
    std::fs::write(
        tmp.0.join("test.yml"),
        quiet_service(&format!("{}{}", alert("page", "5m"), alert("ticket", "2h"))),
    )
    .expect("write");
    run(&pt, &["test", "rules", "test.yml"], &tmp.0);
}
