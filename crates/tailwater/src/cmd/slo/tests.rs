fn code(argv: &[&str]) -> u8 {
    let mut full = vec!["slo"];
    full.extend_from_slice(argv);
    let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape");
    super::run(cli).expect("no I/O failure")
}

/// The bad-input message of a command that must fail.
fn message(argv: &[&str]) -> String {
    let mut full = vec!["slo"];
    full.extend_from_slice(argv);
    let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape");
    let outcome = match cli.command {
        super::Sub::Generate(a) => super::generate(&a),
        super::Sub::Eval(a) => super::evaluate(&a),
        super::Sub::Dashboard(a) => super::dashboard(&a),
        super::Sub::Ops(a) => super::ops(&a),
    };
    match outcome {
        Err(super::Failure::Input(m)) => m,
        Err(super::Failure::Io(e)) => panic!("{argv:?}: I/O failure {e:#}"),
        Ok(()) => panic!("{argv:?}: accepted"),
    }
}

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tailwater-slo-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("write temp file");
    p
}

const NATIVE: &str = "version: tailwater/v1\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli: availability\n";

#[test]
fn rls_dashboard_and_ops_rules_with_runbooks_are_written() {
    let dir = std::env::temp_dir().join(format!("tailwater-slo-cli-{}-ops", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dash = dir.join("rls.json");
    let rules = dir.join("ops.yml");
    let books = dir.join("runbooks");
    std::fs::create_dir_all(&dir).expect("dir");
    assert_eq!(
        code(&["dashboard", "--rls", "-o", dash.to_str().unwrap()]),
        0
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dash).expect("written")).expect("json");
    assert_eq!(d["uid"], "tailwater-rls");
    let argv = [
        "ops",
        "-o",
        rules.to_str().unwrap(),
        "--runbooks",
        books.to_str().unwrap(),
    ];
    assert_eq!(code(&argv), 0);
    let yaml = std::fs::read_to_string(&rules).expect("rules");
    assert!(yaml.contains("TailwaterAccessLogDropping"), "{yaml}");
    assert_eq!(std::fs::read_dir(&books).expect("runbooks").count(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dashboard_lists_the_config_routes_and_names_bad_input() {
    let cfg = tmp(
        "proxy.toml",
        "[[route]]\nname = \"api\"\nupstream = \"http://127.0.0.1:9\"\n",
    );
    let spec = tmp("dash.yaml", NATIVE);
    let out = std::env::temp_dir().join(format!(
        "tailwater-slo-cli-{}-dashboard.json",
        std::process::id()
    ));
    let (c, s, o) = (
        cfg.display().to_string(),
        spec.display().to_string(),
        out.display().to_string(),
    );
    assert_eq!(
        code(&["dashboard", "--proxy-config", &c, "--spec", &s, "-o", &o]),
        0
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("json");
    assert_eq!(d["templating"]["list"][1]["query"], "api");
    assert!(d.to_string().contains("shop-availability"));
    let bad = tmp(
        "bad.toml",
        "[[route]]\nupstream = \"http://127.0.0.1:9\"\ncolour = 1\n",
    );
    let b = bad.display().to_string();
    let m = message(&["dashboard", "--proxy-config", &b]);
    assert!(m.contains("colour"), "{m}");
}

#[test]
fn generate_writes_rules_runbooks_and_inhibition() {
    let spec = tmp("gen.yaml", NATIVE);
    let dir = std::env::temp_dir().join(format!("tailwater-slo-cli-{}-out", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules = dir.join("rules.yml");
    std::fs::create_dir_all(&dir).expect("dir");
    let (s, r, rb, inh) = (
        spec.display().to_string(),
        rules.display().to_string(),
        dir.join("rb").display().to_string(),
        dir.join("inhibit.yml").display().to_string(),
    );
    assert_eq!(
        code(&[
            "generate",
            &s,
            "-o",
            &r,
            "--runbooks",
            &rb,
            "--inhibit",
            &inh
        ]),
        0
    );
    let text = std::fs::read_to_string(&rules).expect("rules written");
    assert!(text.contains("slo:sli_total:rate1h"), "guard on by default");
    assert!(
        dir.join("rb/ShopAvailability-shop-availability-page.md")
            .exists()
    );
    assert!(
        std::fs::read_to_string(dir.join("inhibit.yml"))
            .expect("inhibit")
            .contains("equal: [sloth_id]")
    );
    assert_eq!(code(&["generate", &s, "-o", &r, "--no-traffic-guard"]), 0);
    assert!(
        !std::fs::read_to_string(&rules)
            .expect("rules")
            .contains("slo:sli_total")
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&spec);
}

#[test]
fn bad_input_exits_2() {
    let bad_spec = tmp("bad.yaml", &NATIVE.replace("99.9", "100"));
    let good = tmp("good.yaml", NATIVE);
    let raw = tmp(
        "raw.yaml",
        "version: prometheus/v1\nservice: s\nslos:\n  - name: r\n    objective: 99\n    sli:\n      raw:\n        error_ratio_query: x[{{.window}}]\n    alerting:\n      name: A\n",
    );
    let csv = tmp("bad.csv", "1,1,0\n1,1,0\n");
    let (b, g, r, c) = (
        bad_spec.display().to_string(),
        good.display().to_string(),
        raw.display().to_string(),
        csv.display().to_string(),
    );
    for (argv, want) in [
        (vec!["generate", b.as_str()], "`slos[0].objective`"),
        (
            vec!["generate", "/nonexistent/slo.yaml"],
            "/nonexistent/slo.yaml: ",
        ),
        (
            vec!["generate", r.as_str(), "--min-events", "10"],
            "--min-events: SLO `r` has a raw SLI",
        ),
        (
            vec!["eval", "--error-rate", "1", "--duration", "1h"],
            "give --objective",
        ),
        (
            vec![
                "eval",
                "--objective",
                "100",
                "--error-rate",
                "1",
                "--duration",
                "1h",
            ],
            "--objective: 100",
        ),
        (
            vec![
                "eval",
                "--objective",
                "99.9",
                "--error-rate",
                "1.5",
                "--duration",
                "1h",
            ],
            "--error-rate: 1.5",
        ),
        (
            vec![
                "eval",
                "--objective",
                "99.9",
                "--error-rate",
                "1",
                "--duration",
                "1h",
                "--rate",
                "0",
            ],
            "--rate: 0",
        ),
        (
            vec![
                "eval",
                "--objective",
                "99.9",
                "--error-rate",
                "1",
                "--duration",
                "1h",
                "--background",
                "1",
            ],
            "--background: 1",
        ),
        (
            vec!["eval", "--objective", "99.9"],
            "give a synthetic incident",
        ),
        (
            vec!["eval", "--objective", "99.9", "--csv", c.as_str()],
            ":2: `timestamp`",
        ),
        (
            vec!["eval", "--objective", "99.9", "--csv", "/nonexistent.csv"],
            "/nonexistent.csv: ",
        ),
        (
            vec![
                "eval",
                "--spec",
                g.as_str(),
                "--slo",
                "nope",
                "--error-rate",
                "1",
                "--duration",
                "1h",
            ],
            "--slo: no SLO `nope`",
        ),
        (
            vec![
                "eval",
                "--spec",
                b.as_str(),
                "--error-rate",
                "1",
                "--duration",
                "1h",
            ],
            "`slos[0].objective`",
        ),
        (
            vec![
                "eval",
                "--objective",
                "99.9",
                "--error-rate",
                "1",
                "--duration",
                "1h",
                "--eval-interval",
                "2h",
            ],
            "--eval-interval",
        ),
    ] {
        assert_eq!(code(&argv), 2, "{argv:?}");
        let got = message(&argv);
        assert!(got.contains(want), "{argv:?}: want {want:?} in {got:?}");
    }
    for p in [bad_spec, good, raw, csv] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn clap_refuses_bad_shapes() {
    for argv in [
        vec!["slo", "eval", "--objective", "99.9", "--duration", "1h"],
        vec![
            "slo",
            "eval",
            "--objective",
            "99.9",
            "--error-rate",
            "1",
            "--duration",
            "1y",
        ],
        vec![
            "slo",
            "eval",
            "--objective",
            "99.9",
            "--tier",
            "page:5m:1h:1",
            "--error-rate",
            "1",
            "--duration",
            "1h",
        ],
        vec!["slo", "generate", "x.yaml", "--min-events", "0"],
        vec!["slo", "generate", "x.yaml", "--period-days", "1"],
    ] {
        assert!(
            crate::cmd::parse_args::<super::Args>(&argv).is_err(),
            "{argv:?}"
        );
    }
}

#[test]
fn eval_runs_on_a_spec_and_a_csv() {
    let spec = tmp("ev.yaml", NATIVE);
    let csv = tmp(
        "ev.csv",
        "timestamp,total,errors\n60,600,0\n120,600,600\n180,600,0\n",
    );
    let (s, c) = (spec.display().to_string(), csv.display().to_string());
    assert_eq!(
        code(&[
            "eval",
            "--spec",
            &s,
            "--error-rate",
            "1",
            "--duration",
            "10m"
        ]),
        0
    );
    assert_eq!(
        code(&[
            "eval",
            "--objective",
            "99.9",
            "--csv",
            &c,
            "--tier",
            "page:10m:10m:1"
        ]),
        0
    );
    let _ = std::fs::remove_file(spec);
    let _ = std::fs::remove_file(csv);
}
