use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::format::{CLIENT_BUDGET, Cursor, Formatter, Line, MAX_FIELD, MAX_LINE, escape};
use super::*;
use crate::config::{AccessLogConfig, AccessLogFormat};

const FORMATS: [AccessLogFormat; 2] = [AccessLogFormat::Text, AccessLogFormat::Json];

fn stamp(f: &mut Formatter, ms: u64) -> String {
    let mut buf = [0; 64];
    let mut out = Cursor::new(&mut buf);
    f.time(&mut out, UNIX_EPOCH + Duration::from_millis(ms));
    let n = out.len();
    String::from_utf8(buf[..n].to_vec()).expect("ASCII")
}

#[test]
fn times_are_rfc3339_utc_and_the_second_is_reused_only_within_it() {
    let mut f = Formatter::new(AccessLogFormat::Text);
    assert_eq!(stamp(&mut f, 1_796_235_367_123), "2026-12-02T18:16:07.123Z");
    // The same second from the cache, the next one and the previous one afresh.
    assert_eq!(stamp(&mut f, 1_796_235_367_999), "2026-12-02T18:16:07.999Z");
    assert_eq!(stamp(&mut f, 1_796_235_368_004), "2026-12-02T18:16:08.004Z");
    assert_eq!(stamp(&mut f, 1_796_235_367_050), "2026-12-02T18:16:07.050Z");
    // A leap day.
    assert_eq!(stamp(&mut f, 951_782_400_000), "2000-02-29T00:00:00.000Z");
}

fn escaped(raw: &[u8], json: bool, cap: usize) -> String {
    let mut buf = vec![0; cap + 3];
    let mut out = Cursor::new(&mut buf);
    escape(&mut out, raw, json, cap);
    let n = out.len();
    String::from_utf8(buf[..n].to_vec()).expect("ASCII")
}

#[test]
fn hostile_bytes_cannot_end_a_line_or_a_value() {
    let hostile = b"/a\"b\\c\r\nFORGED 200 \x1b[31m\x00\x7f\xff";
    let t = escaped(hostile, false, MAX_FIELD);
    assert_eq!(t, r#"/a\"b\\c\x0d\x0aFORGED 200 \x1b[31m\x00\x7f\xff"#);
    let j = format!("\"{}\"", escaped(hostile, true, MAX_FIELD));
    let back: String = serde_json::from_str(&j).expect("valid JSON string");
    assert_eq!(back, "/a\"b\\c\r\nFORGED 200 \u{1b}[31m\u{0}\u{7f}\u{ff}");
    assert!(!j.contains('\n') && !j.contains('\r'));
}

#[test]
fn huge_values_are_cut_between_escapes() {
    let t = escaped(&[b'a'; MAX_FIELD * 4], false, MAX_FIELD);
    assert_eq!(t.len(), MAX_FIELD + 3);
    assert!(t.ends_with("..."));
    // A value that fits exactly is not marked.
    assert_eq!(escaped(&[b'a'; 16], false, 16), "a".repeat(16));
    // Escapes are never split: 1 + 4 + 4 bytes fit in 10, the third escape does not.
    assert_eq!(escaped(b"a\x01\x02\x03", false, 10), r"a\x01\x02...");
    assert_eq!(escaped(b"\x01\x02", true, 11), r"\u0001...");
    assert_eq!(escaped(b"\"\"\"", false, 5), r#"\"\"..."#);
}

/// A request's record as the writer gets it: begun from `req` on a log that goes
/// nowhere, finished with `notes`, status 503 and a duration of 1.5 ms.
struct Record {
    pending: Pending,
    notes: Notes,
    time: SystemTime,
    status: u16,
    duration: Duration,
}

fn sink() -> Arc<AccessLog> {
    let cfg = AccessLogConfig {
        path: "-".into(),
        format: AccessLogFormat::Text,
        buffer_lines: 1,
        buffer_bytes: 1 << 16,
    };
    AccessLog::open(&cfg, Arc::default()).expect("stdout")
}

fn begun(time: SystemTime, req: &RequestFields<'_>) -> Record {
    Record {
        pending: sink().begin(req),
        notes: Notes::default(),
        time,
        status: 503,
        duration: Duration::from_micros(1500),
    }
}

fn record(ua: Option<&[u8]>, notes: Notes) -> Record {
    let req = RequestFields {
        peer: "127.0.0.1:4000".parse().unwrap(),
        method: b"GET",
        target: b"/x?\"y\"\n",
        protocol: "HTTP/1.1",
        user_agent: ua,
    };
    let mut r = begun(UNIX_EPOCH, &req);
    r.notes = notes;
    r
}

impl Record {
    /// The line the writer formats, through the same queue entry.
    fn line(&self, format: AccessLogFormat) -> String {
        let q = queue::Queue::new(1, 1 << 16);
        let p = &self.pending;
        let nanos = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
        let (entry, route) = p.entry(&self.notes, self.status, nanos);
        assert!(q.push(entry, [p.client.as_slice(), route]));
        q.close();
        let mut batch = queue::Batch::default();
        assert!(q.take(&mut batch, Duration::ZERO));
        let line: Line<'_> = batch.lines(|_| self.time).next().expect("one");
        let mut buf = vec![0; MAX_LINE];
        let mut out = Cursor::new(&mut buf);
        Formatter::new(format).line(&mut out, &line);
        let n = out.len();
        String::from_utf8(buf[..n].to_vec()).expect("ASCII")
    }
}

fn line(format: AccessLogFormat, r: &Record) -> String {
    r.line(format)
}

#[test]
fn both_formats_carry_every_field() {
    let notes = Notes {
        route: Some(Inline::new(&[b"api"])),
        decision: Some("shed"),
        reason: "queue_timeout",
        tier: Some(Criticality::Sheddable),
        limit: Some(7),
        queue_wait: Some(Duration::from_millis(5)),
        bytes: 12,
        ..Notes::default()
    };
    let r = record(Some(b"ua\" injected=1"), notes);
    assert_eq!(r.pending.client, b"GET/x?\"y\"\nua\" injected=1");
    let text = line(AccessLogFormat::Text, &r);
    assert_eq!(
        text,
        "1970-01-01T00:00:00.000Z 127.0.0.1:4000 \"GET /x?\\\"y\\\"\\x0a HTTP/1.1\" \
         \"ua\\\" injected=1\" 503 12 0.001500 - route=\"api\" decision=shed \
         reason=queue_timeout tier=sheddable queue_wait=0.005000 limit=7\n"
    );
    let json = line(AccessLogFormat::Json, &r);
    assert_eq!(json.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    assert_eq!(v["client"], "127.0.0.1:4000");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["target"], "/x?\"y\"\n");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["user_agent"], "ua\" injected=1");
    assert_eq!(v["status"], 503);
    assert_eq!(v["bytes"], 12);
    assert_eq!(v["duration"], 0.0015);
    assert_eq!(v["route"], "api");
    assert_eq!(v["decision"], "shed");
    assert_eq!(v["reason"], "queue_timeout");
    assert_eq!(v["tier"], "sheddable");
    assert_eq!(v["limit"], 7);
    assert_eq!(v["queue_wait"], 0.005);
    assert!(v["upstream_time"].is_null());
}

#[test]
fn fields_that_do_not_apply_are_dashes_or_nulls() {
    let r = record(None, Notes::default());
    assert_eq!(
        line(AccessLogFormat::Text, &r),
        "1970-01-01T00:00:00.000Z 127.0.0.1:4000 \"GET /x?\\\"y\\\"\\x0a HTTP/1.1\" - 503 0 \
         0.001500 - route=- decision=refused reason=- tier=- queue_wait=- limit=-\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&line(AccessLogFormat::Json, &r)).expect("one JSON object");
    for key in [
        "user_agent",
        "upstream_time",
        "route",
        "reason",
        "tier",
        "queue_wait",
        "limit",
    ] {
        assert!(v[key].is_null(), "{key}: {v}");
    }
    assert_eq!(v["decision"], "refused");
    let v6 = RequestFields {
        peer: "[::1]:8080".parse().unwrap(),
        method: b"GET",
        target: b"/",
        protocol: "HTTP/2.0",
        user_agent: None,
    };
    let text = line(AccessLogFormat::Text, &begun(UNIX_EPOCH, &v6));
    assert!(text.contains(" [::1]:8080 \"GET / HTTP/2.0\" "), "{text}");
}

#[test]
fn every_line_is_bounded_printable_and_whole_however_hostile_the_values() {
    let nasty: Vec<u8> = (0..6000u32)
        .map(|i| [0xff, b'"', 0x01, b'a'][i as usize % 4])
        .collect();
    let req = RequestFields {
        peer: "[fe80::1:2:3:4%4294967295]:65535".parse().unwrap(),
        method: &nasty,
        target: &nasty,
        protocol: "HTTP/1.1",
        user_agent: Some(&nasty),
    };
    let mut r = begun(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)), &req);
    let p = &r.pending;
    assert_eq!(p.client.len(), 3 * (MAX_FIELD + 1), "each value is capped");
    assert_eq!(
        &p.client[..usize::from(p.method_len)],
        &nasty[..MAX_FIELD + 1]
    );
    assert_eq!(usize::from(p.user_agent_len), MAX_FIELD + 1);
    let ua_at = usize::from(p.method_len) + usize::from(p.target_len);
    assert_eq!(&p.client[ua_at..], &nasty[..MAX_FIELD + 1]);
    r.status = u16::MAX;
    r.duration = Duration::MAX;
    r.notes = Notes {
        route: Some(Inline::new(&[&nasty])),
        decision: Some("rate_limited"),
        reason: "queue_timeout",
        tier: Some(Criticality::CriticalPlus),
        limit: Some(usize::MAX),
        queue_wait: Some(Duration::MAX),
        upstream: Some(Duration::MAX),
        bytes: u64::MAX,
        ..Notes::default()
    };
    for format in FORMATS {
        let l = line(format, &r);
        assert!(l.len() < MAX_LINE, "{format:?}: {} bytes", l.len());
        assert!(l.len() > CLIENT_BUDGET, "{format:?}: the budget is used");
        assert_eq!(
            l.find('\n'),
            Some(l.len() - 1),
            "{format:?}: one whole line"
        );
        assert!(l[..l.len() - 1].bytes().all(|b| (0x20..0x7f).contains(&b)));
        if format == AccessLogFormat::Json {
            let v: serde_json::Value = serde_json::from_str(&l).expect("one JSON object");
            assert!(v["user_agent"].as_str().is_some_and(|s| s.ends_with("...")));
        }
    }
}

/// A request with user agent `ua` finished on `log` (status 503).
fn finished(log: &Arc<AccessLog>, ua: Option<&[u8]>) {
    let req = RequestFields {
        peer: "127.0.0.1:4000".parse().unwrap(),
        method: b"GET",
        target: b"/",
        protocol: "HTTP/1.1",
        user_agent: ua,
    };
    log.begin(&req).finish(Box::default(), Some(503));
}

fn temp_log(name: &str, buffer_lines: usize) -> AccessLogConfig {
    let path = std::env::temp_dir().join(format!("tw-al-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    AccessLogConfig {
        path: path.to_string_lossy().into_owned(),
        format: AccessLogFormat::Text,
        buffer_lines,
        buffer_bytes: 1 << 20,
    }
}

#[test]
fn a_full_queue_drops_and_counts() {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cfg = temp_log("full", 1);
    // The writer waits an hour between batches: the queue of one record holds the
    // first of these, and every other one is dropped.
    let (log, thread) =
        AccessLog::start(&cfg, Arc::clone(&dropped), Duration::from_secs(3600)).expect("open");
    for _ in 0..1000 {
        finished(&log, None);
    }
    let lost = dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lost, 999);
    drop(log);
    thread.join().expect("writer");
    let text = std::fs::read_to_string(&cfg.path).expect("log");
    assert_eq!(text.lines().count() as u64, 1000 - lost);
    let _ = std::fs::remove_file(&cfg.path);
}

#[test]
fn closing_the_log_wakes_its_writer_at_once_and_writes_every_line() {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cfg = temp_log("close", 64);
    // Without the wake-up on close, the thread would sleep for an hour.
    let (log, thread) =
        AccessLog::start(&cfg, Arc::clone(&dropped), Duration::from_secs(3600)).expect("open");
    for _ in 0..10 {
        finished(&log, Some(b"probe"));
    }
    drop(log);
    let (done, joined) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(thread.join().is_ok()));
    assert_eq!(
        joined.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "the writer ends when the log closes"
    );
    let text = std::fs::read_to_string(&cfg.path).expect("log");
    assert_eq!(text.lines().count(), 10);
    assert!(text.lines().all(|l| l.contains("\"probe\" 503 ")), "{text}");
    assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    let _ = std::fs::remove_file(&cfg.path);
}

#[tokio::test]
async fn the_lean_path_counts_body_bytes_after_the_first_head() {
    let ((), notes) = scope(async {
        // A head of 50 bytes and 3 body bytes in the first write, 10 more after.
        note_head(429, 50);
        note_written(53);
        note_written(10);
        // A later head (a local answer after a failure) changes neither.
        note_head(502, 40);
    })
    .await;
    assert_eq!(notes.status, 429);
    assert_eq!(notes.bytes - notes.head, 13);
    // Outside a scope the hooks do nothing (and do not panic).
    note_head(200, 1);
    note_written(1);
}

/// Two requests' futures polled in turn by one thread (as a worker polls its tasks): each
/// one's hooks reach its own notes, never the other's, and none outside a poll.
#[tokio::test]
async fn interleaved_requests_keep_their_own_notes() {
    let request = |status: u16, len: usize| async move {
        note_head(status, len);
        tokio::task::yield_now().await;
        note_written(len);
        tokio::task::yield_now().await;
        note_written(1);
    };
    let (((), a), ((), b)) = tokio::join!(scope(request(200, 10)), scope(request(404, 20)));
    assert_eq!((a.status, a.head, a.bytes), (200, 10, 11));
    assert_eq!((b.status, b.head, b.bytes), (404, 20, 21));
    // A scope polled inside another has its own notes; the outer one's are back after.
    let (((), inner), outer) = scope(async {
        note_written(5);
        let inner = scope(async { note_written(7) }).await;
        note_written(5);
        inner
    })
    .await;
    assert_eq!((inner.bytes, outer.bytes), (7, 10));
}

/// A thread's client buffer, reused by its next record, carries nothing of the last one.
#[test]
fn a_reused_client_buffer_holds_only_its_own_request() {
    let log = sink();
    let huge = vec![b'x'; 5000];
    let big = RequestFields {
        peer: "127.0.0.1:4000".parse().unwrap(),
        method: &huge,
        target: &huge,
        protocol: "HTTP/1.1",
        user_agent: Some(&huge),
    };
    log.begin(&big).finish(Box::default(), Some(200));
    let small = RequestFields {
        method: b"GET",
        target: b"/",
        user_agent: None,
        ..big
    };
    let p = log.begin(&small);
    assert_eq!(p.client, b"GET/");
    assert_eq!(p.user_agent_len, queue::ABSENT);
    p.finish(Box::default(), Some(200));
}

/// Requests in flight at once on one thread each get a buffer of their own back, and the
/// thread keeps at most [`SPARES`] of them.
#[test]
fn a_thread_keeps_a_bounded_pool_of_client_buffers() {
    let log = sink();
    let spares = || SPARE_BYTES.with(|p| p.borrow().len());
    let targets: Vec<Vec<u8>> = (0..SPARES + 6)
        .map(|i| format!("/{i}").into_bytes())
        .collect();
    let begin = |target: &[u8]| {
        log.begin(&RequestFields {
            peer: "127.0.0.1:4000".parse().unwrap(),
            method: b"GET",
            target,
            protocol: "HTTP/1.1",
            user_agent: None,
        })
    };
    let first: Vec<Pending> = targets[..3].iter().map(|t| begin(t)).collect();
    first
        .into_iter()
        .for_each(|p| p.finish(Box::default(), Some(200)));
    assert_eq!(spares(), 3);
    let again: Vec<Pending> = targets.iter().map(|t| begin(t)).collect();
    assert_eq!(spares(), 0);
    for (p, t) in again.iter().zip(&targets) {
        assert_eq!(p.client, [&b"GET"[..], t].concat());
    }
    again
        .into_iter()
        .for_each(|p| p.finish(Box::default(), Some(200)));
    assert_eq!(spares(), SPARES);
}

#[test]
fn the_queue_is_bounded_by_bytes_as_well_as_lines() {
    // Room for the entries of three short requests (and their bytes), though the line
    // bound would take a thousand.
    let r = record(Some(b"probe"), Notes::default());
    let (entry, route) = r.pending.entry(&r.notes, 200, 1);
    let client = r.pending.client.as_slice();
    let each = std::mem::size_of::<queue::Entry>() + client.len() + route.len();
    let q = queue::Queue::new(1000, 3 * each + each / 2);
    let accepted = (0..10).filter(|_| q.push(entry, [client, route])).count();
    assert_eq!(accepted, 3);
    // The writer takes what was queued, in order.
    let mut batch = queue::Batch::default();
    q.close();
    assert!(q.take(&mut batch, Duration::ZERO));
    assert_eq!(batch.lines(|_| UNIX_EPOCH).count(), 3);
    assert!(
        !q.push(entry, [client, route]),
        "a closed queue takes nothing"
    );
}

#[test]
fn the_word_scan_finds_the_first_special_byte_wherever_it_is() {
    use super::format::plain_run;
    let class = |b: u8| !(0x20..=0x7e).contains(&b) || b == b'"' || b == b'\\';
    for len in 0..20 {
        for at in 0..len {
            for b in 0..=255u8 {
                // Special bytes after the first one too (a borrow must not hide it).
                let mut s = vec![b'a'; len];
                s[at] = b;
                if at + 1 < len {
                    s[at + 1] = 0;
                }
                let want = s.iter().position(|&x| class(x)).unwrap_or(len);
                assert_eq!(plain_run(&s), want, "{s:?}");
            }
        }
    }
}
