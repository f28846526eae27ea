use super::*;

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("3 parsecs").is_err());
}

#[test]
fn every_builtin_is_valid() {
    for name in BUILTIN {
        builtin(name).unwrap().validate().unwrap();
    }
}

#[test]
fn unknown_field_reports_line_and_field() {
    let text = "name = \"x\"\n[[phase]]\nduration = \"1s\"\nload = 1.0\nbogus = 3\n";
    let err = Scenario::from_toml(text, Path::new("s.toml")).unwrap_err();
    match &err {
        SimError::File { line, field, .. } => {
            assert_eq!(*line, 5, "{err}");
            assert_eq!(field.as_deref(), Some("bogus"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("s.toml:5:"), "{err}");
}

#[test]
fn invalid_values_name_field_and_line() {
    let text = "name = \"x\"\n[server]\nworkers = 4\n[arrival]\nprocess = \"gamma\"\ncv = -1.0\n[[phase]]\nduration = \"1s\"\nload = 1.0\n[[phase]]\nduration = \"1s\"\nload = -2\n";
    let err = Scenario::from_toml(text, Path::new("s.toml")).unwrap_err();
    assert_eq!(err.field(), Some("arrival.cv"), "{err}");
    assert!(err.to_string().starts_with("s.toml:6:"), "{err}");
    let fixed = text.replace("cv = -1.0", "cv = 1.0");
    let err = Scenario::from_toml(&fixed, Path::new("s.toml")).unwrap_err();
    assert_eq!(err.field(), Some("phase[1].load"), "{err}");
    assert!(err.to_string().starts_with("s.toml:12:"), "{err}");
    let neg = text.replace("workers = 4", "workers = -4");
    let err = Scenario::from_toml(&neg, Path::new("s.toml")).unwrap_err();
    assert_eq!(err.field(), Some("server.workers"), "{err}");
    assert!(err.to_string().starts_with("s.toml:3:"), "{err}");
}

#[test]
fn columns_count_characters_after_multi_byte_utf8() {
    // A parse error after multi-byte text on its line: the column counts characters (the
    // byte count would say 23), and no offset splits a character.
    let text = "name = \"x\"\ndescription = \"é→\" x\n[[phase]]\nduration = \"1s\"\nload = 1.0\n";
    let err = Scenario::from_toml(text, Path::new("s.toml")).unwrap_err();
    match &err {
        SimError::File { line, column, .. } => assert_eq!((*line, *column), (2, 20), "{err}"),
        other => panic!("{other:?}"),
    }
    // A validation error after multi-byte lines: its own line, the key's column.
    let text = "name = \"x\"\ndescription = \"é→🦀\"\n[server]\nworkers = -4\n[[phase]]\nduration = \"1s\"\nload = 1.0\n";
    let err = Scenario::from_toml(text, Path::new("s.toml")).unwrap_err();
    assert_eq!(err.field(), Some("server.workers"), "{err}");
    assert!(err.to_string().starts_with("s.toml:4:1:"), "{err}");
}
