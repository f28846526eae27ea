//! The two line formats, written by the writer thread from a [`Line`], and the escaping
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
//! Escaping (`escape`): in text, a client's value is quoted, and every byte outside
//! printable ASCII, `"` and `\` is written `\xHH` (`\"`, `\\` for the two), as nginx does;
//! in JSON, those bytes are written `\u00HH` (the byte's value, so bytes that are not
//! UTF-8 survive as their value). No client byte can end a line or a quoted value. A value
//! is cut (and marked `...`) when its escaped form would pass [`MAX_FIELD`] bytes, or the
//! line's client values together would pass [`CLIENT_BUDGET`]: a line stays under
//! [`MAX_LINE`].
//!
//! Cost (issue 13): a line is written straight into the writer's batch buffer through a
//! cursor ([`Cursor`]) that the caller guarantees [`MAX_LINE`] bytes of room, so no step
//! checks or grows a `Vec`; numbers are written two digits at a time from a table; the
//! escaper finds runs of safe bytes through a 256-entry class table and copies each run
//! whole; the date and time of day are formatted once per second.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tailwater_core::Criticality;

use crate::config::AccessLogFormat;

/// The most bytes one client value (method, target, user agent, route) takes in a line,
/// escaped, before its cut mark.
pub(crate) const MAX_FIELD: usize = 2048;
/// The most bytes the client values of one line take together, escaped.
pub(crate) const CLIENT_BUDGET: usize = 3328;
/// Every line is shorter than this (the budget, four cut marks and their quotes, and
/// the proxy's own fields, which are bounded).
pub(crate) const MAX_LINE: usize = 4096;

/// One line's fields, borrowed from wherever the writer keeps them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// When the request's head was read.
    pub(crate) time: SystemTime,
    pub(crate) peer: SocketAddr,
    pub(crate) method: &'a [u8],
    pub(crate) target: &'a [u8],
    pub(crate) protocol: &'static str,
    pub(crate) user_agent: Option<&'a [u8]>,
    pub(crate) status: u16,
    /// Body bytes sent to the client.
    pub(crate) bytes: u64,
    /// From the head's arrival to the response's end, in nanoseconds.
    pub(crate) duration: u64,
    /// From admission to the upstream's response head, in nanoseconds.
    pub(crate) upstream: Option<u64>,
    pub(crate) route: Option<&'a [u8]>,
    /// `None`: refused before any decision.
    pub(crate) decision: Option<&'static str>,
    /// Empty: none.
    pub(crate) reason: &'static str,
    pub(crate) tier: Option<Criticality>,
    /// In nanoseconds.
    pub(crate) queue_wait: Option<u64>,
    pub(crate) limit: Option<u64>,
}

/// A write position in a buffer that the caller has checked has room for what is
/// written (a line is at most [`MAX_LINE`] bytes); every write is still bounds-checked
/// by the slice, so a wrong bound panics rather than corrupts.
pub(crate) struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Writes from the start of `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Cursor { buf, at: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.at
    }

    #[inline]
    fn put(&mut self, s: &[u8]) {
        self.buf[self.at..self.at + s.len()].copy_from_slice(s);
        self.at += s.len();
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf[self.at] = b;
        self.at += 1;
    }

    /// `n` in decimal.
    #[inline]
    fn num(&mut self, n: u64) {
        if n < 10 {
            self.byte(b'0' + n as u8);
        } else if n < 100 {
            self.pair(n as usize);
        } else {
            self.padded(n, 3);
        }
    }

    /// Two digits of `n` (below 100).
    #[inline]
    fn pair(&mut self, n: usize) {
        self.put(&PAIRS[n * 2..n * 2 + 2]);
    }

    /// `n` in decimal, with leading zeros to at least `width` digits.
    fn padded(&mut self, mut n: u64, width: usize) {
        let len = (n.checked_ilog10().unwrap_or(0) as usize + 1).max(width);
        let out = &mut self.buf[self.at..self.at + len];
        let mut i = len;
        while i >= 2 {
            let pair = (n % 100) as usize * 2;
            out[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
            n /= 100;
            i -= 2;
        }
        if i == 1 {
            out[0] = b'0' + (n % 10) as u8;
        }
        self.at += len;
    }

    /// `n` (below `10^W`) in exactly `W` digits, `W` even (unrolled: the width is known).
    #[inline]
    fn fixed<const W: usize>(&mut self, mut n: u64) {
        let out = &mut self.buf[self.at..self.at + W];
        let mut i = W;
        while i >= 2 {
            let pair = (n % 100) as usize * 2;
            out[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
            n /= 100;
            i -= 2;
        }
        self.at += W;
    }

    /// Milliseconds, three digits.
    #[inline]
    fn millis(&mut self, ms: u32) {
        self.byte(b'0' + (ms / 100 % 10) as u8);
        self.pair((ms % 100) as usize);
    }

    /// Nanoseconds as seconds with microseconds (`0.000412`).
    fn secs(&mut self, nanos: u64) {
        self.num(nanos / 1_000_000_000);
        self.byte(b'.');
        self.fixed::<6>(nanos % 1_000_000_000 / 1000);
    }

    /// The client's address: IPv4 by hand, IPv6 (rare) through `Display`.
    fn peer(&mut self, p: SocketAddr) {
        match p {
            SocketAddr::V4(v4) => {
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    let (digits, len) = OCTETS[usize::from(octet)];
                    self.buf[self.at..self.at + 3].copy_from_slice(&digits);
                    self.at += usize::from(len);
                    self.byte(if i == 3 { b':' } else { b'.' });
                }
                self.num(u64::from(v4.port()));
            }
            SocketAddr::V6(v6) => {
                let mut rest = &mut self.buf[self.at..];
                let room = rest.len();
                // At most 58 bytes (`[`, 39, `%`, 10, `]:`, 5): the line's bound has room.
                let _ = write!(rest, "{v6}");
                self.at += room - rest.len();
            }
        }
    }
}

/// `00` to `99`, for writing two digits at a time.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                            2021222324252627282930313233343536373839\
                            4041424344454647484950515253545556575859\
                            6061626364656667686970717273747576777879\
                            8081828384858687888990919293949596979899";

/// `0` to `255` in decimal (padded to three bytes, then how many are the number's).
static OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0; 3], 0); 256];
    let mut n = 0;
    while n < 256 {
        let d = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ];
        t[n] = if n >= 100 {
            (d, 3)
        } else if n >= 10 {
            ([d[1], d[2], 0], 2)
        } else {
            ([d[2], 0, 0], 1)
        };
        n += 1;
    }
    t
};

/// Formats lines; keeps the formatted date and time of the last second.
#[derive(Debug)]
pub(crate) struct Formatter {
    json: bool,
    /// The second of `stamp`, since the epoch.
    second: Option<u64>,
    /// `2026-12-02T18:16:07.`: the time up to its milliseconds (longer for years past
    /// 9999, which `len` says).
    stamp: [u8; 32],
    stamp_len: usize,
    /// What is left of the line's [`CLIENT_BUDGET`].
    budget: usize,
}

impl Formatter {
    /// A formatter of `format` lines.
    pub(crate) fn new(format: AccessLogFormat) -> Self {
        Formatter {
            json: format == AccessLogFormat::Json,
            second: None,
            stamp: [0; 32],
            stamp_len: 0,
            budget: 0,
        }
    }

    /// Writes `r`'s line (with its newline) at `out`, which must have [`MAX_LINE`] bytes
    /// of room.
    pub(crate) fn line(&mut self, out: &mut Cursor<'_>, r: &Line<'_>) {
        self.budget = CLIENT_BUDGET;
        if self.json {
            self.json_line(out, r);
        } else {
            self.text_line(out, r);
        }
    }

    fn text_line(&mut self, o: &mut Cursor<'_>, r: &Line<'_>) {
        self.time(o, r.time);
        o.byte(b' ');
        o.peer(r.peer);
        o.put(b" \"");
        self.escaped(o, r.method, false);
        o.byte(b' ');
        self.escaped(o, r.target, false);
        o.byte(b' ');
        o.put(r.protocol.as_bytes());
        o.put(b"\" ");
        match r.user_agent {
            Some(ua) => self.quoted(o, ua, false),
            None => o.byte(b'-'),
        }
        o.byte(b' ');
        o.num(u64::from(r.status));
        o.byte(b' ');
        o.num(r.bytes);
        o.byte(b' ');
        o.secs(r.duration);
        o.byte(b' ');
        match r.upstream {
            Some(n) => o.secs(n),
            None => o.byte(b'-'),
        }
        o.put(b" route=");
        match r.route {
            Some(route) => self.quoted(o, route, false),
            None => o.byte(b'-'),
        }
        o.put(b" decision=");
        o.put(r.decision.unwrap_or("refused").as_bytes());
        o.put(b" reason=");
        o.put(if r.reason.is_empty() { "-" } else { r.reason }.as_bytes());
        o.put(b" tier=");
        o.put(r.tier.map_or("-", Criticality::as_str).as_bytes());
        o.put(b" queue_wait=");
        match r.queue_wait {
            Some(n) => o.secs(n),
            None => o.byte(b'-'),
        }
        o.put(b" limit=");
        match r.limit {
            Some(n) => o.num(n),
            None => o.byte(b'-'),
        }
        o.byte(b'\n');
    }

    fn json_line(&mut self, o: &mut Cursor<'_>, r: &Line<'_>) {
        o.put(b"{\"time\":\"");
        self.time(o, r.time);
        o.put(b"\",\"client\":\"");
        o.peer(r.peer);
        o.put(b"\",\"method\":");
        self.quoted(o, r.method, true);
        o.put(b",\"target\":");
        self.quoted(o, r.target, true);
        o.put(b",\"protocol\":\"");
        o.put(r.protocol.as_bytes());
        o.put(b"\",\"user_agent\":");
        match r.user_agent {
            Some(ua) => self.quoted(o, ua, true),
            None => o.put(b"null"),
        }
        o.put(b",\"status\":");
        o.num(u64::from(r.status));
        o.put(b",\"bytes\":");
        o.num(r.bytes);
        o.put(b",\"duration\":");
        o.secs(r.duration);
        o.put(b",\"upstream_time\":");
        json_or_null(o, r.upstream, Cursor::secs);
        o.put(b",\"route\":");
        match r.route {
            Some(route) => self.quoted(o, route, true),
            None => o.put(b"null"),
        }
        o.put(b",\"decision\":\"");
        o.put(r.decision.unwrap_or("refused").as_bytes());
        o.put(b"\",\"reason\":");
        json_word(o, (!r.reason.is_empty()).then_some(r.reason));
        o.put(b",\"tier\":");
        json_word(o, r.tier.map(Criticality::as_str));
        o.put(b",\"queue_wait\":");
        json_or_null(o, r.queue_wait, Cursor::secs);
        o.put(b",\"limit\":");
        json_or_null(o, r.limit, Cursor::num);
        o.put(b"}\n");
    }

    /// A client's value, quoted and escaped.
    fn quoted(&mut self, o: &mut Cursor<'_>, raw: &[u8], json: bool) {
        o.byte(b'"');
        self.escaped(o, raw, json);
        o.byte(b'"');
    }

    /// `raw`, escaped, within the field's and the line's budgets.
    fn escaped(&mut self, o: &mut Cursor<'_>, raw: &[u8], json: bool) {
        let used = escape(o, raw, json, self.budget.min(MAX_FIELD));
        self.budget -= used;
    }

    /// `time` as RFC 3339 in UTC with milliseconds (`2026-12-02T18:16:07.123Z`).
    pub(super) fn time(&mut self, o: &mut Cursor<'_>, time: SystemTime) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        if self.second != Some(secs) {
            self.second = Some(secs);
            let (y, m, d) = civil_from_days(secs / 86_400);
            let rem = secs % 86_400;
            let mut c = Cursor::new(&mut self.stamp);
            c.padded(y, 4);
            c.byte(b'-');
            c.padded(m, 2);
            c.byte(b'-');
            c.padded(d, 2);
            c.byte(b'T');
            c.padded(rem / 3600, 2);
            c.byte(b':');
            c.padded(rem / 60 % 60, 2);
            c.byte(b':');
            c.padded(rem % 60, 2);
            c.byte(b'.');
            self.stamp_len = c.len();
        }
        o.put(&self.stamp[..self.stamp_len]);
        o.millis(since.subsec_millis());
        o.byte(b'Z');
    }
}

/// One of the proxy's own words, quoted, or `null`.
fn json_word(o: &mut Cursor<'_>, w: Option<&str>) {
    match w {
        Some(w) => {
            o.byte(b'"');
            o.put(w.as_bytes());
            o.byte(b'"');
        }
        None => o.put(b"null"),
    }
}

/// `v` written by `f`, or `null`.
fn json_or_null<'b>(o: &mut Cursor<'b>, v: Option<u64>, f: fn(&mut Cursor<'b>, u64)) {
    match v {
        Some(v) => f(o, v),
        None => o.put(b"null"),
    }
}

/// How a byte of a client's value is written: as is, backslashed (`"` and `\`), or by
/// its value (every byte outside printable ASCII).
const PLAIN: u8 = 0;
const BACKSLASHED: u8 = 1;
const BY_VALUE: u8 = 2;

/// The class of every byte value.
static CLASS: [u8; 256] = {
    let mut t = [BY_VALUE; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        t[b] = PLAIN;
        b += 1;
    }
    t[b'"' as usize] = BACKSLASHED;
    t[b'\\' as usize] = BACKSLASHED;
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `raw` for a quoted value: printable ASCII as is, `"` and `\` backslashed, any
/// other byte `\xHH` (text) or `\u00HH` (JSON); at most `cap` bytes, then `...` if `raw`
/// did not fit (`o` must have room for `cap` + 3 bytes). Returns the bytes written
/// before the mark.
///
/// The run of plain bytes up to the next special one is found eight bytes at a time
/// ([`plain_run`], [`CLASS`] for the tail) and copied whole: a typical target or user
/// agent is one run.
pub(crate) fn escape(o: &mut Cursor<'_>, raw: &[u8], json: bool, cap: usize) -> usize {
    let start = o.len();
    let mut rest = raw;
    loop {
        let room = cap - (o.len() - start);
        let run = plain_run(rest);
        if run > room {
            o.put(&rest[..room]);
            break;
        }
        o.put(&rest[..run]);
        let Some((&b, after)) = rest[run..].split_first() else {
            return o.len() - start;
        };
        let left = room - run;
        if CLASS[usize::from(b)] == BACKSLASHED {
            if left < 2 {
                break;
            }
            o.byte(b'\\');
            o.byte(b);
        } else if json {
            if left < 6 {
                break;
            }
            o.put(b"\\u00");
            o.byte(HEX[usize::from(b >> 4)]);
            o.byte(HEX[usize::from(b & 0xf)]);
        } else {
            if left < 4 {
                break;
            }
            o.put(b"\\x");
            o.byte(HEX[usize::from(b >> 4)]);
            o.byte(HEX[usize::from(b & 0xf)]);
        }
        rest = after;
    }
    let used = o.len() - start;
    o.put(b"...");
    used
}

/// How many bytes at the start of `s` are [`PLAIN`]: eight at a time while they last (a
/// word has a special byte if any byte is below 0x20, has its high bit, or equals 0x7f,
/// `"` or `\`; the lowest flagged byte is always a true one, as a false flag comes only
/// from a borrow out of a true one below it), then through [`CLASS`].
pub(crate) fn plain_run(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = 0;
    while let Some(Ok(word)) = s.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let x = u64::from_le_bytes(word);
        let special = (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
            | (x & HIGH)
            | zero(x ^ (ONES * 0x7f))
            | zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + s[i..]
        .iter()
        .position(|&b| CLASS[usize::from(b)] != PLAIN)
        .unwrap_or(s.len() - i)
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
