//! Tests of `tailwater load`'s arguments (bad input names the field and exits 2, defaults) and
//! exit codes.

fn code(argv: &[&str]) -> u8 {
    let mut full = vec!["load"];
    full.extend_from_slice(argv);
    let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape");
    super::run(cli).expect("no runtime error")
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    let url = "http://127.0.0.1:1/";
    for (argv, field) in [
        (vec![url, "--rate", "-5"], "rate"),
        (vec![url, "--rate", "abc"], "rate"),
        (vec![url, "--rate", "100", "--duration", "-1s"], "duration"),
        (vec![url, "--rate", "100", "--duration", "10"], "duration"),
        (vec![url, "--schedule", "500:10s,oops"], "schedule"),
        (vec![url, "--schedule", "ramp:1..-2:5s"], "schedule"),
        (vec![url], "rate"),
        (vec!["ftp://example.com/", "--rate", "1"], "url"),
        (vec![url, "--rate", "1", "--timeout", "0s"], "timeout"),
        (vec![url, "--rate", "1", "-H", "novalue"], "header"),
        (
            vec![url, "--rate", "1", "--connections", "0"],
            "connections",
        ),
        (
            vec![url, "--rate", "1", "--header-mix", "x-c: a=-1"],
            "header_mix",
        ),
        (
            vec![url, "--rate", "1", "--json", "/nonexistent-dir/out.json"],
            "json",
        ),
        (
            vec![url, "--rate", "1", "--report", "/nonexistent-dir/r.html"],
            "report",
        ),
        (
            vec![url, "--rate", "1", "--hgrm", "/nonexistent-dir/x.hgrm"],
            "hgrm",
        ),
        (vec![url, "--rate", "10", "-n", "0"], "requests"),
        (vec![url, "--rate", "10", "-n", "many"], "requests"),
        (vec![url, "--rate", "0", "-n", "5"], "rate"),
        (vec![url, "--schedule", "10:1s", "-n", "5"], "requests"),
        (vec![url, "--rate", "1", "--fail-on", "p99<200"], "fail_on"),
        (vec![url, "--rate", "1", "--fail-on", "speed<1"], "fail_on"),
        (vec![url, "--rate", "1", "--drain", "-1s"], "drain"),
        (
            vec![url, "--rate", "1", "--json", "-", "--report", "-"],
            "json",
        ),
        (vec![url, "--rate", "1", "--hdr-log", "-"], "hdr_log"),
        (
            vec![url, "--rate", "1", "--pace-quantum", "11ms"],
            "pace_quantum",
        ),
        (
            vec![url, "--rate", "1", "--pace-quantum", "-1us"],
            "pace_quantum",
        ),
        (
            vec![url, "--rate", "1", "--pace-quantum", "fast"],
            "pace_quantum",
        ),
        (
            vec![url, "--rate", "1", "-T", "bad\u{7f}value"],
            "content_type",
        ),
    ] {
        let cli = {
            let mut full = vec!["load"];
            full.extend_from_slice(&argv);
            crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape")
        };
        let err = super::build_config(&cli.opts).expect_err("refused");
        assert_eq!(err.field(), field, "{argv:?}: {err}");
        assert_eq!(code(&argv), 2, "{argv:?}");
    }
}

#[test]
fn pace_quantum_defaults_to_250us_and_takes_zero() {
    let quantum = |extra: &[&str]| {
        let mut full = vec!["load", "http://127.0.0.1:1/", "--rate", "1"];
        full.extend_from_slice(extra);
        let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap");
        super::build_config(&cli.opts).expect("valid").pace_quantum
    };
    assert_eq!(quantum(&[]), tailwater_load::DEFAULT_PACE_QUANTUM);
    assert_eq!(
        quantum(&[]),
        std::time::Duration::from_micros(250),
        "the help text names 250us"
    );
    assert_eq!(
        quantum(&["--pace-quantum", "0s"]),
        std::time::Duration::ZERO
    );
    assert_eq!(
        quantum(&["--pace-quantum", "1ms"]),
        std::time::Duration::from_millis(1)
    );
}

#[test]
fn exit_code_is_3_for_a_missed_threshold_or_no_success() {
    let verdict = |passed| tailwater_load::Verdict {
        threshold: "p99<1ms".into(),
        actual: "2ms".into(),
        passed,
    };
    assert_eq!(super::exit_code(&[], false), 0);
    assert_eq!(super::exit_code(&[verdict(true)], false), 0);
    assert_eq!(super::exit_code(&[verdict(true), verdict(false)], false), 3);
    assert_eq!(super::exit_code(&[verdict(true)], true), 3);
}

#[test]
fn schedule_file_errors_give_file_and_line() {
    let path = std::env::temp_dir().join(format!("tw-sched-{}.txt", std::process::id()));
    std::fs::write(&path, "# warm up\n100:1s\n200:zz\n").expect("temp file");
    let p = path.display().to_string();
    let cli = crate::cmd::parse_args::<super::Args>([
        "load",
        "http://127.0.0.1:1/",
        "--schedule-file",
        &p,
    ])
    .expect("clap");
    let err = super::build_config(&cli.opts).expect_err("refused");
    let _ = std::fs::remove_file(&path);
    assert_eq!(err.field(), "schedule");
    assert!(err.to_string().contains(":3:"), "{err}");
}
