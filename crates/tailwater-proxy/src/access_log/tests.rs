use std::time::Duration;

use super::cursor::escape;
use super::format::{CLIENT_BUDGET, MAX_FIELD, MAX_LINE};
use super::*;
use crate::config::{AccessLogConfig, AccessLogFormat};

const FORMATS: [AccessLogFormat; 2] = [AccessLogFormat::Text, AccessLogFormat::Json];

fn stamp(f: &mut Stamp, ms: u64) -> String {
    let mut buf = [0; 64];
    let mut out = Cursor::new(&mut buf);
    f.put(&mut out, ms * 1_000_000);
    let n = out.len();
    String::from_utf8(buf[..n].to_vec()).expect("ASCII")
}

#[test]
fn times_are_rfc3339_utc_and_the_second_is_reused_only_within_it() {
    let mut f = Stamp::new();
    assert_eq!(stamp(&mut f, 1_796_235_367_123), "2026-12-02T18:16:07.123Z");
    // The same millisecond, copied whole.
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

/// A request's line: begun from `req` on a log that goes nowhere, at `time` (ns since
/// the epoch), finished with `notes`, status 503 and a duration of 1.5 ms.
struct Record<'a> {
    req: RequestFields<'a>,
    notes: Notes,
    time: u64,
    status: u16,
    duration: Duration,
}

fn sink(format: AccessLogFormat) -> Arc<AccessLog> {
    let cfg = AccessLogConfig {
        path: "-".into(),
        format,
        buffer_lines: 1,
        buffer_bytes: 1 << 16,
    };
    AccessLog::open(&cfg, Arc::default()).expect("stdout")
}

fn begun(time: u64, req: RequestFields<'_>) -> Record<'_> {
    Record {
        req,
        notes: Notes::default(),
        time,
        status: 503,
        duration: Duration::from_micros(1500),
    }
}

const PEER: &str = "127.0.0.1:4000";

fn record(ua: Option<&[u8]>, notes: Notes) -> Record<'_> {
    let req = RequestFields {
        peer: PEER.parse().unwrap(),
        method: b"GET",
        target: b"/x?\"y\"\n",
        protocol: "HTTP/1.1",
        user_agent: ua,
    };
    let mut r = begun(0, req);
    r.notes = notes;
    r
}

impl Record<'_> {
    /// A stand-in for the request's whole head as read: its values, each after its
    /// length (different values, different bytes).
    fn raw(&self) -> Vec<u8> {
        let r = &self.req;
        let mut raw = Vec::new();
        let values = [r.method, r.target, r.protocol.as_bytes()];
        for v in values.into_iter().chain(r.user_agent) {
            raw.extend_from_slice(&v.len().to_le_bytes());
            raw.extend_from_slice(v);
        }
        raw
    }

    /// The line as the request's thread formats it, head and tail.
    fn line(&self, format: AccessLogFormat) -> String {
        self.line_with(format, &mut HeadCache::new(), &mut TailCache::new())
    }

    /// [`Self::line`] through caches that earlier lines may have filled.
    fn line_with(
        &self,
        format: AccessLogFormat,
        head: &mut HeadCache,
        tail: &mut TailCache,
    ) -> String {
        let raw = self.raw();
        let p = sink(format).begin_at(&self.req, Some(head), &raw, 0, self.time);
        let nanos = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
        p.line(head.rest_text(), &self.notes, self.status, nanos, tail)
    }
}

fn line(format: AccessLogFormat, r: &Record<'_>) -> String {
    r.line(format)
}

#[test]
fn both_formats_carry_every_field() {
    let notes = Notes {
        route: Some(Inline::new(b"api")),
        decision: Some("shed"),
        reason: "queue_timeout",
        tier: Some(Criticality::Sheddable),
        limit: Some(7),
        queue_wait: Some(5_000_000),
        bytes: 12,
        ..Notes::default()
    };
    let r = record(Some(b"ua\" injected=1"), notes);
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
    let text = line(AccessLogFormat::Text, &begun(0, v6));
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
    let mut r = begun(u64::from(u32::MAX) * 1_000_000_000, req);
    r.status = u16::MAX;
    r.duration = Duration::MAX;
    r.notes = Notes {
        route: Some(Inline::new(&nasty)),
        decision: Some("rate_limited"),
        reason: "queue_timeout",
        tier: Some(Criticality::CriticalPlus),
        limit: Some(usize::MAX),
        queue_wait: Some(u64::MAX),
        upstream: Some(u64::MAX),
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
    log.begin(&req).finish(log, Box::default(), Some(503));
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

/// A thread's head buffer, reused by its next line, carries nothing of the last one.
#[test]
fn a_reused_head_buffer_holds_only_its_own_request() {
    let log = sink(AccessLogFormat::Text);
    let huge = vec![b'x'; 5000];
    let big = RequestFields {
        peer: PEER.parse().unwrap(),
        method: &huge,
        target: &huge,
        protocol: "HTTP/1.1",
        user_agent: Some(&huge),
    };
    log.begin(&big).finish(&log, Box::default(), Some(200));
    let small = RequestFields {
        method: b"GET",
        target: b"/",
        user_agent: None,
        ..big
    };
    let p = log.begin_at(&small, None, b"", 0, 0);
    assert_eq!(
        p.line(b"", &Notes::default(), 200, 0, &mut TailCache::new()),
        "1970-01-01T00:00:00.000Z 127.0.0.1:4000 \"GET / HTTP/1.1\" - 200 0 0.000000 - \
         route=- decision=refused reason=- tier=- queue_wait=- limit=-\n"
    );
}

/// Requests in flight at once on one thread each get a head buffer of their own back, and
/// the thread keeps at most [`SPARES`] of them.
#[test]
fn a_thread_keeps_a_bounded_pool_of_head_buffers() {
    let log = sink(AccessLogFormat::Text);
    let spares = || RESTS.with(|l| l.borrow().len());
    let targets: Vec<Vec<u8>> = (0..SPARES + 6)
        .map(|i| format!("/{i}").into_bytes())
        .collect();
    let begin = |target: &[u8]| {
        log.begin_at(
            &RequestFields {
                peer: PEER.parse().unwrap(),
                method: b"GET",
                target,
                protocol: "HTTP/1.1",
                user_agent: None,
            },
            None,
            b"",
            0,
            0,
        )
    };
    let first: Vec<Pending> = targets[..3].iter().map(|t| begin(t)).collect();
    first
        .into_iter()
        .for_each(|p| p.finish(&log, Box::default(), Some(200)));
    assert_eq!(spares(), 3);
    let again: Vec<Pending> = targets.iter().map(|t| begin(t)).collect();
    assert_eq!(spares(), 0);
    for (p, t) in again.iter().zip(&targets) {
        let t = String::from_utf8_lossy(t);
        let head = format!("{PEER} \"GET {t} HTTP/1.1\" -");
        assert_eq!(p.rest.as_deref(), Some(head.as_bytes()));
    }
    again
        .into_iter()
        .for_each(|p| p.finish(&log, Box::default(), Some(200)));
    assert_eq!(spares(), SPARES);
}

#[test]
fn the_sinks_together_are_bounded_by_bytes_as_well_as_lines() {
    // Room for three lines (and a half), though the line bound would take a thousand.
    let line = b"a line of a short request\n";
    let each = line.len();
    let sinks = sink::Sinks::new(1000, 3 * each + each / 2);
    let mine = sinks.for_this_thread();
    let accepted = (0..10).filter(|_| sinks.push(&mine, line)).count();
    assert_eq!(accepted, 3);
    let another = || {
        std::thread::scope(|s| {
            s.spawn(|| sinks.push(&sinks.for_this_thread(), line))
                .join()
                .expect("thread")
        })
    };
    assert!(!another(), "another thread's sink finds the bound taken");
    // The writer takes the lines, in order, and gives their room back.
    let mut out = Vec::new();
    let (lines, used) = sinks.take(&mine, &mut out, false);
    assert_eq!(lines, 3);
    assert_eq!(out[..used], line.repeat(3));
    assert!(another());
    sinks.close();
    assert!(!sinks.push(&mine, line), "a closed log takes nothing");

    // The line bound is shared by every thread's sink.
    let sinks = sink::Sinks::new(4, 1 << 16);
    let mine = sinks.for_this_thread();
    assert!(sinks.push(&mine, line));
    let others: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let sink = sinks.for_this_thread();
                    (0..5).filter(|_| sinks.push(&sink, line)).count()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("thread")).sum()
    });
    assert_eq!(others, 3);
    assert!(!sinks.push(&mine, line));
}

/// Plain bytes copied a word at a time, then escapes: the same as escaping byte by byte,
/// wherever the first special byte is.
#[test]
fn escaping_by_words_matches_escaping_by_bytes() {
    let by_bytes = |s: &[u8], json: bool| -> String {
        s.iter()
            .map(|&b| match b {
                b'"' | b'\\' => format!("\\{}", b as char),
                0x20..=0x7e => (b as char).to_string(),
                _ if json => format!("\\u00{b:02x}"),
                _ => format!("\\x{b:02x}"),
            })
            .collect()
    };
    for len in 0..20 {
        for at in 0..len {
            for b in [0, 0x1f, b'"', b'\\', 0x7f, 0x80, 0xff, b'a'] {
                let mut s = vec![b'a'; len];
                s[at] = b;
                for json in [false, true] {
                    assert_eq!(escaped(&s, json, MAX_FIELD), by_bytes(&s, json), "{s:?}");
                }
            }
        }
    }
    // Cut in the middle of a word, and right after one.
    assert_eq!(
        escaped(&[b'a'; 20], false, 12),
        format!("{}...", "a".repeat(12))
    );
    assert_eq!(
        escaped(&[b'a'; 20], false, 8),
        format!("{}...", "a".repeat(8))
    );
}

#[test]
fn the_word_scan_finds_the_first_special_byte_wherever_it_is() {
    use super::cursor::plain_run;
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

/// The caches of repeated parts (a connection's client address and user agent, its whole
/// head after the time, a thread's last route to queue wait) write exactly what
/// formatting afresh writes, for a sequence of lines whose values change (also to values
/// of the same length), repeat, are escaped, or are cut by the line's budget (a value cut
/// in one line must not be copied into a line that has room for it).
#[test]
fn cached_parts_write_what_a_fresh_format_writes() {
    let long_target = vec![b'/'; CLIENT_BUDGET - 100];
    let long_ua = vec![b'u'; 200];
    let odd_route: &[u8] = b"r\"\n";
    let uas: [Option<&[u8]>; 5] = [
        Some(b"curl/8.5.0"),
        Some(b"curl/8.5.0"),
        Some(b"ua \"quoted\" \x01"),
        Some(&long_ua),
        None,
    ];
    let targets: [&[u8]; 3] = [b"/a", b"/b", &long_target];
    let routes: [Option<&[u8]>; 4] = [Some(b"api"), Some(b"api"), Some(odd_route), None];
    let decisions = [Some("admitted"), Some("shed"), None];
    let peers = ["127.0.0.1:4000", "127.0.0.1:4001", "[::1]:80"];
    // A thread's cache sees many clients; a connection's, one.
    for (format, conn) in FORMATS.into_iter().flat_map(|f| [(f, false), (f, true)]) {
        let mut head = if conn {
            HeadCache::for_conn()
        } else {
            HeadCache::new()
        };
        let mut tail = TailCache::new();
        let mut lines = 0;
        for (i, ua) in uas.iter().chain(uas.iter().rev()).enumerate() {
            for (j, target) in targets.iter().enumerate() {
                for (k, route) in routes.iter().enumerate() {
                    let req = RequestFields {
                        peer: peers[if conn { 2 } else { (i + j) % peers.len() }]
                            .parse()
                            .unwrap(),
                        method: if i % 4 < 2 { b"GET" } else { b"PUT" },
                        target,
                        protocol: if j == 1 { "HTTP/1.0" } else { "HTTP/1.1" },
                        user_agent: *ua,
                    };
                    let mut r = begun(
                        1_796_235_367_123_000_000 + (i * 7 + k) as u64 * 1_000_000,
                        req,
                    );
                    r.notes.route = route.map(Inline::new);
                    r.notes.decision = decisions[(i + k) % decisions.len()];
                    r.notes.reason = if k == 1 { "overload" } else { "" };
                    r.notes.tier = (j == 0).then_some(Criticality::Critical);
                    r.notes.limit = Some(k);
                    let fresh = r.line(format);
                    assert_eq!(
                        r.line_with(format, &mut head, &mut tail),
                        fresh,
                        "{format:?} {i} {j} {k}"
                    );
                    lines += 1;
                }
            }
        }
        assert_eq!(lines, 120);
    }
}

/// The table-driven number writers write what `std`'s formatting writes.
#[test]
fn numbers_and_seconds_match_std_formatting() {
    let write = |f: &dyn Fn(&mut Cursor<'_>)| {
        let mut buf = [0; 64];
        let mut c = Cursor::new(&mut buf);
        f(&mut c);
        let n = c.len();
        String::from_utf8(buf[..n].to_vec()).expect("ASCII")
    };
    let edges = [
        0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 65_535, 99_999, 100_000,
    ];
    let more = [999_999, 1_000_000, 1_234_567, u64::from(u32::MAX), u64::MAX];
    let sample = (0..200_000).step_by(7).chain(edges).chain(more);
    for n in sample.clone() {
        assert_eq!(write(&|c| c.num(n)), n.to_string());
    }
    for ms in [0, 7, 42, 999] {
        assert_eq!(write(&|c| c.millis(ms)), format!("{ms:03}"));
    }
    let nanos = sample.flat_map(|n| [n, n.wrapping_mul(997), n.wrapping_mul(1_000_003)]);
    for ns in nanos.chain([999_999_999, 1_000_000_000, 59_999_999_999, u64::MAX]) {
        let want = format!("{}.{:06}", ns / 1_000_000_000, ns % 1_000_000_000 / 1000);
        assert_eq!(write(&|c| c.secs(ns)), want, "{ns}");
    }
}

/// The short-value comparison of the caches agrees with `==`, whatever the length and
/// wherever the one differing byte is.
#[test]
fn short_comparisons_match_slice_equality() {
    use super::cursor::same_bytes;
    for len in 0..40 {
        let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(same_bytes(&a, &a.clone()), "{len}");
        for at in 0..len {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!same_bytes(&a, &b), "{len} {at}");
        }
        let longer = [a.as_slice(), b"x"].concat();
        assert!(
            !same_bytes(&a, &longer) && !same_bytes(&longer, &a),
            "{len}"
        );
    }
}

/// A client that does not repeat its requests stops filling its connection's head cache
/// after a short streak of misses, and one that starts repeating is cached again within
/// 16 requests; every line is what a fresh format writes either way.
#[test]
fn the_head_cache_backs_off_on_a_streak_of_misses() {
    let (mut head, mut tail) = (HeadCache::for_conn(), TailCache::new());
    let mut check = |target: &[u8], head: &mut HeadCache| {
        let req = RequestFields {
            peer: PEER.parse().unwrap(),
            method: b"GET",
            target,
            protocol: "HTTP/1.1",
            user_agent: Some(b"curl/8.5.0"),
        };
        let r = begun(1_796_235_367_123_000_000, req);
        assert_eq!(
            r.line_with(AccessLogFormat::Text, head, &mut tail),
            r.line(AccessLogFormat::Text)
        );
    };
    for i in 0..40 {
        check(format!("/t{i}").as_bytes(), &mut head);
    }
    assert!(!head.holds_rest(), "40 misses in a row: not kept");
    let mut repeats = 0;
    while !head.holds_rest() {
        check(b"/same", &mut head);
        repeats += 1;
        assert!(repeats <= 16, "not cached again within 16 repeats");
    }
    check(b"/same", &mut head);
    assert!(head.holds_rest());
}

/// The tail's lead (status, bytes) and end (queue wait, limit) come from the thread's
/// cache only when they are the ones it holds: lines whose status, bytes, queue wait and
/// limit change, repeat or come back, through one cache, are what a fresh format writes.
#[test]
fn the_tail_caches_write_what_a_fresh_format_writes() {
    let statuses = [200, 200, 503, 200, 404];
    let bytes = [13, 13, 13, 0, 1_000_000];
    let waits = [None, None, Some(1_500_000), None, Some(0)];
    let limits = [Some(20), Some(20), Some(20), None, Some(21)];
    for format in FORMATS {
        let (mut head, mut tail) = (HeadCache::for_conn(), TailCache::new());
        for i in 0..60 {
            let req = RequestFields {
                peer: PEER.parse().unwrap(),
                method: b"GET",
                target: b"/",
                protocol: "HTTP/1.1",
                user_agent: Some(b"curl/8.5.0"),
            };
            let mut r = begun(1_796_235_367_123_000_000, req);
            r.status = statuses[i % 5];
            r.notes.bytes = bytes[i / 3 % 5];
            r.notes.queue_wait = waits[i / 2 % 5];
            r.notes.limit = limits[i / 7 % 5];
            r.notes.route = Some(Inline::new(if i % 11 == 0 { b"b" } else { b"api" }));
            r.notes.decision = Some("admitted");
            r.notes.tier = Some(Criticality::Critical);
            assert_eq!(
                r.line_with(format, &mut head, &mut tail),
                r.line(format),
                "{format:?} {i}"
            );
        }
    }
}

/// A lean-path connection's requests, begun and finished through its cache and written
/// in place in the thread's sink, are the lines a fresh format writes (time and duration
/// aside, which the sink's path reads from the clock): when the connection repeats its
/// head (a hit: nothing formatted at the begin, the cached head copied at the end), when
/// the client changes a value between requests (also to one of the same length, or the
/// same head bytes with another user agent), and with hostile bytes in the target and
/// the user agent, which must come out escaped; also after a streak of misses, when the
/// cache no longer keeps its key but still holds the request's head until it ends.
#[test]
fn a_connections_lines_through_the_sink_are_what_a_fresh_format_writes() {
    let hostile_ua: &[u8] = b"evil\" \n{\"x\":1}\\\x00\xff";
    let targets: [&[u8]; 6] = [b"/a", b"/a", b"/b", b"/a\"\n\r\x1b[31m", b"/a", b"/ok"];
    let uas: [Option<&[u8]>; 6] = [
        Some(b"curl/8.5.0"),
        Some(b"curl/8.5.0"),
        Some(b"curl/8.5.0"),
        Some(hostile_ua),
        Some(b"curl/8.5.1"),
        None,
    ];
    // The requests, then a streak of misses, then repeats again.
    let mut reqs: Vec<(Vec<u8>, Option<&[u8]>)> = targets
        .iter()
        .zip(uas)
        .map(|(t, u)| (t.to_vec(), u))
        .collect();
    reqs.extend((0..8).map(|i| (format!("/t{i}").into_bytes(), Some(hostile_ua))));
    reqs.extend((0..3).map(|_| (b"/a".to_vec(), Some(hostile_ua))));
    for format in FORMATS {
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut cfg = temp_log(&format!("conn-{format:?}"), 1000);
        cfg.format = format;
        let (log, thread) =
            AccessLog::start(&cfg, Arc::clone(&dropped), Duration::from_secs(3600)).expect("open");
        let mut conn = ConnLog::default();
        let mut want = Vec::new();
        for (target, ua) in &reqs {
            let req = RequestFields {
                peer: PEER.parse().unwrap(),
                method: b"GET",
                target,
                protocol: "HTTP/1.1",
                user_agent: *ua,
            };
            let mut r = begun(0, req);
            r.status = 299;
            r.duration = Duration::ZERO;
            r.notes.status = 299;
            r.notes.route = Some(Inline::new(b"api"));
            r.notes.decision = Some("admitted");
            want.push(r.line(format));
            let raw = r.raw();
            let p = log.begin_on(&mut conn, &r.req, &raw);
            p.finish_on(&log, &mut conn, Box::new(r.notes.clone()));
        }
        drop(log);
        thread.join().expect("writer");
        let text = std::fs::read_to_string(&cfg.path).expect("log");
        let _ = std::fs::remove_file(&cfg.path);
        assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
        // The time (before the client's address) and the duration (after the bytes) are
        // the clock's: compared apart from them.
        let masked = |line: &str| -> String {
            let (time_end, dur) = match format {
                AccessLogFormat::Text => (line.find(' ').unwrap(), " 299 0 "),
                AccessLogFormat::Json => (line.find("\",\"client\"").unwrap(), "\"duration\":"),
            };
            let at = line.rfind(dur).unwrap() + dur.len();
            let end = at + line[at..].find([' ', ',']).unwrap();
            format!("{}{}", &line[time_end..at], &line[end..])
        };
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), want.len(), "{format:?}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(masked(g), masked(w.trim_end()), "{format:?} request {i}");
        }
        assert!(
            got.iter()
                .all(|l| !l.contains('\u{1b}') && !l.contains('\r')),
            "escaped"
        );
    }
}
