use super::*;

#[test]
fn default_limit_is_valid_and_complete() {
    let checks = suite("default-limit").unwrap();
    for c in &checks {
        c.scenario.validate().unwrap();
    }
    let n = |g: &str| checks.iter().filter(|c| c.group == g).count();
    assert_eq!(n("no-harm"), 6 * 3 * 3 * 2);
    assert_eq!(n("overload"), 13);
    assert_eq!(n("settle"), 1);
    assert_eq!(n("replicas"), 1);
    assert_eq!(n("tiers"), 2);
    assert!(suite("nope").is_none());
}

#[test]
fn judge_applies_the_goals() {
    // A short healthy cell: static at the worker count sheds at 0.9x on 4 workers (Erlang
    // loss), `none` never does.
    let mut s = no_harm_cell(
        "exp",
        &no_harm_services()[4].1,
        4,
        Duration::from_millis(2),
        0.9,
    );
    s.phase[0].duration = Duration::from_secs(2);
    let goal = Goal::NoHarm {
        max_shed: NO_HARM_SHED_NINE,
    };
    let run = |p: &str| {
        judge(
            goal,
            engine::run(&s, &PolicySpec::parse(p).unwrap(), RunOptions::default()).unwrap(),
            None,
        )
    };
    let fixed = run("static");
    assert!(!fixed.pass && fixed.shed > 0.1, "{fixed:?}");
    let none = run("none");
    assert!(none.pass && none.shed == 0.0);
}

#[test]
fn text_tables_align_columns_and_rule_the_header() {
    let rows = vec![
        vec!["a".to_string(), "bb".to_string()],
        vec!["ccc".to_string(), "d".to_string()],
    ];
    assert_eq!(
        crate::text::text_table(&rows, true),
        "a    bb\n-------\nccc  d\n"
    );
    assert_eq!(crate::text::text_table(&rows, false), "a    bb\nccc  d\n");
    assert_eq!(crate::text::text_table(&[], true), "");
}
