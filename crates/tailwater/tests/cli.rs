//! The `tailwater` command as a user runs it: exit codes, stdout, closed pipes, `--json`.

use std::process::{Command, Stdio};

/// A loopback port with nothing listening (held for the test's run, so no other test can
/// take it): every request is a connect error.
fn dead_url() -> (String, tailwater_test::port::RefusedPort) {
    let refused = tailwater_test::port::RefusedPort::new().expect("port");
    (format!("http://{}/", refused.addr()), refused)
}

fn load(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailwater"));
    cmd.arg("load").args(args).stdin(Stdio::null());
    cmd
}

/// A run where every request failed exits 3, and a closed stdout (`| head -c0`) is not a
/// panic (exit 101 before).
#[test]
fn a_run_where_nothing_succeeded_exits_3_even_into_a_closed_pipe() {
    let (url, _held) = dead_url();
    let mut child = load(&[&url, "-R", "50", "-n", "5", "--timeout", "1s", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Close our end of stdout before the summary is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--json -` puts the JSON alone on stdout (parseable), the summary on stderr; the JSON
/// carries the version and the command line.
#[test]
fn json_to_stdout_is_parseable_and_says_where_it_came_from() {
    let (url, _held) = dead_url();
    let out = load(&[
        &url,
        "-R",
        "50",
        "-n",
        "3",
        "--timeout",
        "1s",
        "-q",
        "--json",
        "-",
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["scheduled"], 3);
    assert_eq!(json["errors"]["connect"], 3);
    assert_eq!(json["tailwater"]["version"], env!("CARGO_PKG_VERSION"));
    let command = json["tailwater"]["command"].as_str().expect("command");
    assert!(
        command.contains("load") && command.contains("--json -"),
        "{command}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Outcomes"), "{stderr}");
}

/// A missed threshold exits 3 and says which.
#[test]
fn a_missed_threshold_exits_3() {
    let (url, _held) = dead_url();
    let out = load(&[
        &url,
        "-R",
        "50",
        "-n",
        "2",
        "--timeout",
        "1s",
        "-q",
        "--fail-on",
        "errors<1%",
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL  errors<1%"), "{stdout}");
}

/// `--seed` has one default in every subcommand that takes it (drill said 7, the rest 1).
#[test]
fn seed_has_one_default_across_subcommands() {
    for cmd in ["load", "drill", "backend", "plan"] {
        let help = tailwater(&[cmd, "--help"]);
        assert_eq!(help.status.code(), Some(0), "{cmd}");
        let text = String::from_utf8_lossy(&help.stdout);
        // The option's help runs until the next option line.
        let after = text.split("--seed").nth(1).unwrap_or_default();
        let seed = &after[..after.find("\n  -").unwrap_or(after.len())];
        assert!(seed.contains("[default: 1]"), "{cmd}: {seed}");
    }
}

fn tailwater(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tailwater"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tailwater")
}

/// `--json` means the same in every subcommand: bare (or `-`) = JSON alone on stdout;
/// `--json FILE` = JSON in the file and the usual text on stdout.
#[test]
fn json_has_one_meaning_across_subcommands() {
    let plan = [
        "plan",
        "--rate",
        "80",
        "--service-time",
        "10ms",
        "--servers",
        "1",
    ];
    let bare = tailwater(&[&plan[..], &["--json"]].concat());
    assert_eq!(bare.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&bare.stdout).expect("plan JSON");
    assert!(json.get("prediction").is_some(), "{json}");

    let dir = std::env::temp_dir().join(format!("tw-cli-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("plan.json");
    let to_file = tailwater(&[&plan[..], &["--json", file.to_str().expect("utf-8")]].concat());
    assert_eq!(to_file.status.code(), Some(0));
    let text = String::from_utf8_lossy(&to_file.stdout);
    assert!(
        !text.trim_start().starts_with('{'),
        "text, not JSON: {text}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("JSON");
    assert_eq!(saved, json);
    let _ = std::fs::remove_dir_all(&dir);
}
