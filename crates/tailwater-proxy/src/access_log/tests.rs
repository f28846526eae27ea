use std::time::{Duration, UNIX_EPOCH};

use super::format::{MAX_FIELD, json_string, rfc3339, text_escape};
use super::*;
use crate::config::AccessLogFormat;

#[test]
fn times_are_rfc3339_utc() {
    let mut s = String::new();
    rfc3339(
        &mut s,
        UNIX_EPOCH + Duration::from_millis(1_796_235_367_123),
    );
    assert_eq!(s, "2026-12-02T18:16:07.123Z");
    s.clear();
    // A leap day.
    rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400));
    assert_eq!(s, "2000-02-29T00:00:00.000Z");
}

#[test]
fn hostile_bytes_cannot_end_a_line_or_a_value() {
    let hostile = b"/a\"b\\c\r\nFORGED 200 \x1b[31m\x00\x7f\xff";
    let mut t = String::new();
    text_escape(&mut t, hostile);
    assert_eq!(t, r#"/a\"b\\c\x0d\x0aFORGED 200 \x1b[31m\x00\x7f\xff"#);
    let mut j = String::new();
    json_string(&mut j, hostile);
    let back: String = serde_json::from_str(&j).expect("valid JSON string");
    assert!(back.starts_with("/a\"b\\c\r\nFORGED"), "{back:?}");
    assert!(!j.contains('\n') && !j.contains('\r'));
}

#[test]
fn huge_values_are_cut() {
    let big = vec![b'a'; MAX_FIELD * 4];
    let mut t = String::new();
    text_escape(&mut t, &big);
    assert_eq!(t.len(), MAX_FIELD + 3);
    assert!(t.ends_with("..."));
}

fn line(format: AccessLogFormat, notes: &Notes) -> String {
    let req = RequestFields {
        peer: "127.0.0.1:4000".parse().unwrap(),
        method: b"GET",
        target: b"/x?\"y\"\n",
        protocol: "HTTP/1.1",
        user_agent: Some(b"ua\" injected=1"),
    };
    let mut s = String::new();
    format::begin(&mut s, format, UNIX_EPOCH, &req);
    format::finish(&mut s, format, 503, notes, Duration::from_micros(1500));
    s
}

#[test]
fn both_formats_carry_every_field() {
    let notes = Notes {
        route: Some("api".into()),
        decision: Some("shed"),
        reason: "queue_timeout",
        tier: Some(Criticality::Sheddable),
        limit: Some(7),
        queue_wait: Some(Duration::from_millis(5)),
        bytes: 12,
        ..Notes::default()
    };
    let text = line(AccessLogFormat::Text, &notes);
    assert_eq!(
        text,
        "1970-01-01T00:00:00.000Z 127.0.0.1:4000 \"GET /x?\\\"y\\\"\\x0a HTTP/1.1\" \
         \"ua\\\" injected=1\" 503 12 0.001500 - route=\"api\" decision=shed \
         reason=queue_timeout tier=sheddable queue_wait=0.005000 limit=7\n"
    );
    let json = line(AccessLogFormat::Json, &notes);
    assert_eq!(json.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(v["target"], "/x?\"y\"\n");
    assert_eq!(v["user_agent"], "ua\" injected=1");
    assert_eq!(v["status"], 503);
    assert_eq!(v["decision"], "shed");
    assert_eq!(v["reason"], "queue_timeout");
    assert_eq!(v["tier"], "sheddable");
    assert_eq!(v["limit"], 7);
    assert_eq!(v["queue_wait"], 0.005);
    assert!(v["upstream_time"].is_null());
}

#[test]
fn a_full_queue_drops_and_counts() {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let dir = std::env::temp_dir().join(format!("tw-al-{}", std::process::id()));
    let cfg = crate::config::AccessLogConfig {
        path: dir.to_string_lossy().into_owned(),
        format: AccessLogFormat::Text,
        buffer_lines: 1,
    };
    let log = AccessLog::open(&cfg, Arc::clone(&dropped)).expect("open");
    // The writer wakes every 20 ms; 1000 sends in a row outrun a queue of one line.
    for _ in 0..1000 {
        log.send("x\n".to_owned());
    }
    let lost = dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(lost >= 900, "dropped {lost}");
    drop(log);
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn status_and_head_of_a_written_response() {
    let buf = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 3\r\n\r\nabc";
    assert_eq!(format::status_of(buf), Some(429));
    assert_eq!(format::head_len(buf), Some(buf.len() - 3));
}
