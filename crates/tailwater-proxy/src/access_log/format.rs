//! The two line formats, written by the writer thread from a [`Record`], and the escaping
//! that keeps a client's bytes from forging or splitting a line.
//!
//! Text, nginx-like (the combined log's order for the client's fields, then the proxy's
//! as `key=value`):
//!
//! ```text
//! 2026-12-02T18:16:07.123Z 127.0.0.1:50412 "GET /api/x?y=1 HTTP/1.1" "curl/8.5.0" 200 13 0.000412 0.000301 route="api" decision=admitted reason=- tier=critical queue_wait=0.000000 limit=20
//! ```
//!
//! Fields: time (RFC 3339, UTC, ms), client address, request line, user agent, status,
//! body bytes sent, duration and upstream time (seconds, µs resolution), then route,
//! decision, reason, tier, queue wait (seconds) and the limit at the decision; `-` when a
//! field does not apply. JSON has the same fields by name (`null` when they do not apply).
//!
//! Escaping: in text, a client's value is quoted, and every byte outside printable ASCII,
//! `"` and `\` is written `\xHH` (`\"`, `\\` for the two), as nginx does; in JSON, those
//! bytes are written `\u00HH` (the byte's value, so bytes that are not UTF-8 survive as
//! their value). No client byte can end a line or a quoted value. A value is cut (and
//! marked `...`) when its escaped form would pass [`MAX_FIELD`] bytes, or the line's
//! client values together would pass [`CLIENT_BUDGET`]: a line stays under [`MAX_LINE`].
//!
//! Cost: the writer formats by hand into one reused buffer (no `fmt` machinery on the
//! common path), and formats the date and time of day once per second.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Record;
use crate::config::AccessLogFormat;

/// The most bytes one client value (method, target, user agent, route) takes in a line,
/// escaped, before its cut mark.
pub(crate) const MAX_FIELD: usize = 2048;
/// The most bytes the client values of one line take together, escaped.
pub(crate) const CLIENT_BUDGET: usize = 3328;
/// Every line is shorter than this (the budget, four cut marks and their quotes, and
/// the proxy's own fields, which are bounded).
pub(crate) const MAX_LINE: usize = 4096;

/// One field's value, as either format writes it.
enum Val<'a> {
    /// Does not apply: `-` in text, `null` in JSON.
    Null,
    /// A client's bytes (or a configured name): quoted and escaped.
    Client(&'a [u8]),
    /// One of the proxy's own words (known printable ASCII, no quote): bare in text.
    Word(&'a str),
    Num(u64),
    /// Seconds with microseconds.
    Secs(Duration),
    Time(SystemTime),
    Peer(SocketAddr),
    /// The text format's request line: method, target, protocol, in one quoted value.
    Request(&'a [u8], &'a [u8], &'a str),
}

impl<'a> Val<'a> {
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> Val<'a>) -> Val<'a> {
        v.map_or(Val::Null, f)
    }
}

/// Formats records into lines; keeps the formatted date and time of the last second.
#[derive(Debug)]
pub(crate) struct Formatter {
    json: bool,
    /// The second of `stamp`, since the epoch.
    second: Option<u64>,
    /// `2026-12-02T18:16:07.`: the time up to its milliseconds.
    stamp: Vec<u8>,
    /// What is left of the line's [`CLIENT_BUDGET`].
    budget: usize,
}

impl Formatter {
    /// A formatter of `format` lines.
    pub(crate) fn new(format: AccessLogFormat) -> Self {
        Formatter {
            json: format == AccessLogFormat::Json,
            second: None,
            stamp: Vec::with_capacity(24),
            budget: 0,
        }
    }

    /// Appends `r`'s line (with its newline) to `out`.
    pub(crate) fn line(&mut self, out: &mut Vec<u8>, r: &Record) {
        let n = &r.notes;
        let tail = [
            (
                "route",
                Val::or_null(n.route.as_ref(), |x| Val::Client(x.as_bytes())),
            ),
            ("decision", Val::Word(n.decision.unwrap_or("refused"))),
            (
                "reason",
                Val::or_null((!n.reason.is_empty()).then_some(n.reason), Val::Word),
            ),
            ("tier", Val::or_null(n.tier, |t| Val::Word(t.as_str()))),
            ("queue_wait", Val::or_null(n.queue_wait, Val::Secs)),
            ("limit", Val::or_null(n.limit, |l| Val::Num(l as u64))),
        ];
        let ua = Val::or_null(r.user_agent(), Val::Client);
        let status = Val::Num(u64::from(r.status));
        let upstream = Val::or_null(n.upstream, Val::Secs);
        self.budget = CLIENT_BUDGET;
        if self.json {
            let head = [
                ("time", Val::Time(r.time)),
                ("client", Val::Peer(r.peer)),
                ("method", Val::Client(r.method())),
                ("target", Val::Client(r.target())),
                ("protocol", Val::Word(r.protocol)),
                ("user_agent", ua),
                ("status", status),
                ("bytes", Val::Num(n.bytes)),
                ("duration", Val::Secs(r.duration)),
                ("upstream_time", upstream),
            ];
            for (i, (key, v)) in head.into_iter().chain(tail).enumerate() {
                out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                self.json_value(out, v);
            }
            out.extend_from_slice(b"}\n");
        } else {
            let head = [
                Val::Time(r.time),
                Val::Peer(r.peer),
                Val::Request(r.method(), r.target(), r.protocol),
                ua,
                status,
                Val::Num(n.bytes),
                Val::Secs(r.duration),
                upstream,
            ];
            for (i, v) in head.into_iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                self.text_value(out, v);
            }
            for (key, v) in tail {
                out.push(b' ');
                out.extend_from_slice(key.as_bytes());
                out.push(b'=');
                self.text_value(out, v);
            }
            out.push(b'\n');
        }
    }

    fn text_value(&mut self, out: &mut Vec<u8>, v: Val<'_>) {
        match v {
            Val::Null => out.push(b'-'),
            Val::Request(method, target, protocol) => {
                out.push(b'"');
                self.escaped(out, method, false);
                out.push(b' ');
                self.escaped(out, target, false);
                out.push(b' ');
                out.extend_from_slice(protocol.as_bytes());
                out.push(b'"');
            }
            v => self.value(out, v, false),
        }
    }

    fn json_value(&mut self, out: &mut Vec<u8>, v: Val<'_>) {
        match v {
            Val::Null => out.extend_from_slice(b"null"),
            Val::Word(_) | Val::Time(_) | Val::Peer(_) => {
                out.push(b'"');
                self.value(out, v, true);
                out.push(b'"');
            }
            v => self.value(out, v, true),
        }
    }

    /// What both formats write alike (JSON's quotes around words aside).
    fn value(&mut self, out: &mut Vec<u8>, v: Val<'_>, json: bool) {
        match v {
            Val::Client(raw) => {
                out.push(b'"');
                self.escaped(out, raw, json);
                out.push(b'"');
            }
            Val::Word(w) => out.extend_from_slice(w.as_bytes()),
            Val::Num(n) => decimal(out, n),
            Val::Secs(d) => secs(out, d),
            Val::Time(t) => self.time(out, t),
            Val::Peer(p) => peer(out, p),
            Val::Null | Val::Request(..) => {}
        }
    }

    /// `raw`, escaped, within the field's and the line's budgets.
    fn escaped(&mut self, out: &mut Vec<u8>, raw: &[u8], json: bool) {
        let used = escape(out, raw, json, self.budget.min(MAX_FIELD));
        self.budget -= used;
    }

    /// `time` as RFC 3339 in UTC with milliseconds (`2026-12-02T18:16:07.123Z`).
    pub(super) fn time(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        if self.second != Some(secs) {
            self.second = Some(secs);
            let (y, m, d) = civil_from_days(secs / 86_400);
            let rem = secs % 86_400;
            self.stamp.clear();
            let _ = write!(
                self.stamp,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
                rem / 3600,
                rem / 60 % 60,
                rem % 60,
            );
        }
        out.extend_from_slice(&self.stamp);
        padded(out, u64::from(since.subsec_millis()), 3);
        out.push(b'Z');
    }
}

/// `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: u64) {
    padded(out, n, 1);
}

/// `n` in decimal, with leading zeros to `width` digits.
fn padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    while n > 0 || digits.len() - at < width {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[at..]);
}

/// Seconds with microseconds (`0.000412`).
fn secs(out: &mut Vec<u8>, d: Duration) {
    decimal(out, d.as_secs());
    out.push(b'.');
    padded(out, u64::from(d.subsec_micros()), 6);
}

/// The client's address: IPv4 by hand, IPv6 (rare) through `Display`.
fn peer(out: &mut Vec<u8>, p: SocketAddr) {
    match p {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, u64::from(octet));
            }
            out.push(b':');
            decimal(out, u64::from(v4.port()));
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Whether byte `b` of a client's value is written escaped.
fn special(b: u8) -> bool {
    !(0x20..=0x7e).contains(&b) || b == b'"' || b == b'\\'
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `raw` for a quoted value: printable ASCII as is, `"` and `\` backslashed, any
/// other byte `\xHH` (text) or `\u00HH` (JSON); at most `cap` bytes, then `...` if `raw`
/// did not fit. Returns the bytes written before the mark.
pub(crate) fn escape(out: &mut Vec<u8>, raw: &[u8], json: bool, cap: usize) -> usize {
    let start = out.len();
    let mut rest = raw;
    loop {
        let room = cap - (out.len() - start);
        let run = rest.iter().position(|&b| special(b)).unwrap_or(rest.len());
        if run > room {
            out.extend_from_slice(&rest[..room]);
            break;
        }
        out.extend_from_slice(&rest[..run]);
        rest = &rest[run..];
        let Some((&b, after)) = rest.split_first() else {
            return out.len() - start;
        };
        let mut esc = [b'\\', b, 0, 0, 0, 0];
        let len = match b {
            b'"' | b'\\' => 2,
            _ if json => {
                esc[1..6].copy_from_slice(&[
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
                6
            }
            _ => {
                esc[1..4].copy_from_slice(&[
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
                4
            }
        };
        if len > room - run {
            break;
        }
        out.extend_from_slice(&esc[..len]);
        rest = after;
    }
    let used = out.len() - start;
    out.extend_from_slice(b"...");
    used
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The status of a response head at the start of `buf` (`HTTP/1.1 200 ...`).
pub(super) fn status_of(buf: &[u8]) -> Option<u16> {
    let digits = buf.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    digits.iter().try_fold(0u16, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
    })
}

/// The length of the response head at the start of `buf`, blank line included.
pub(super) fn head_len(buf: &[u8]) -> Option<usize> {
    // Look at each line feed only (a head has a few dozen bytes per line).
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == b'\n') {
        let at = from + i;
        if at >= 3 && &buf[at - 3..=at] == b"\r\n\r\n" {
            return Some(at + 1);
        }
        from = at + 1;
    }
    None
}
