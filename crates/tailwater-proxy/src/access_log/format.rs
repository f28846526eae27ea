//! The two line formats, written on the request's thread: the head after the time (the
//! client's fields, when the request's head is read: [`head_rest`], kept in a cache),
//! then the whole line when the request ends, in place in the thread's sink: the time
//! ([`time`]), the head copied, the tail (the proxy's fields: [`tail`]).
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
//! A client's value is quoted and escaped (`cursor::escape`). A value is cut (and marked
//! `...`) when its escaped form would pass [`MAX_FIELD`] bytes, or the line's client
//! values together would pass [`CLIENT_BUDGET`]: a line stays under [`MAX_LINE`].
//!
//! Cost (issue 13): a line is written straight into its sink's buffer through a cursor
//! (`Cursor`) that has [`MAX_LINE`] bytes of room, so no step checks or grows a `Vec`;
//! numbers are written three digits at a time from a table; plain bytes are copied eight
//! at a time as they are checked; the time stamp is formatted once per millisecond per
//! thread ([`Stamp`]), and other repeated parts are copied from caches (`cache`).

use tailwater_core::Criticality;

use super::cache::{HeadCache, TailCache, TailHit};
use super::cursor::{Cursor, escape};
use super::{Inline, Notes, RequestFields};

/// The most bytes one client value (method, target, user agent, route) takes in a line,
/// escaped, before its cut mark.
pub(crate) const MAX_FIELD: usize = 2048;
/// The most bytes the client values of one line take together, escaped.
pub(crate) const CLIENT_BUDGET: usize = 3328;
/// Every line is shorter than this (the budget, four cut marks and their quotes, and
/// the proxy's own fields, which are bounded).
pub(crate) const MAX_LINE: usize = 4096;

/// The proxy's fields of a line, known when the request ends: the request's notes, read
/// where the line needs them (no copy into a record of their own).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome<'a> {
    pub(crate) status: u16,
    /// From the head's arrival to the response's end, in nanoseconds.
    pub(crate) duration: u64,
    pub(crate) n: &'a Notes,
}

impl Outcome<'_> {
    /// Body bytes sent to the client.
    #[inline]
    fn bytes(&self) -> u64 {
        self.n.bytes.saturating_sub(self.n.head)
    }

    /// The route's name, if it was routed.
    #[inline]
    pub(super) fn route(&self) -> Option<&[u8]> {
        self.n.route.as_ref().map(Inline::as_bytes)
    }

    /// The concurrency limit at the decision.
    #[inline]
    pub(super) fn limit(&self) -> Option<u64> {
        self.n.limit.map(|l| l as u64)
    }
}

/// The time stamp of the last millisecond a thread formatted, and the date and time of
/// day of its second (nginx caches its time strings the same way: formatted once, copied
/// by every line of the same time).
#[derive(Debug)]
pub(crate) struct Stamp {
    /// The second of `bytes`, since the epoch.
    second: Option<u64>,
    /// The millisecond of `whole`, since the epoch.
    milli: Option<u64>,
    /// `2026-12-02T18:16:07.123Z` (longer for years past 9999, which `len` says); the
    /// second's part is its first `second_len` bytes.
    whole: [u8; 40],
    second_len: usize,
    len: usize,
}

impl Stamp {
    /// Nothing formatted yet.
    pub(crate) const fn new() -> Self {
        Stamp {
            second: None,
            milli: None,
            whole: [0; 40],
            second_len: 0,
            len: 0,
        }
    }

    /// `unix_nanos` (since the epoch) as RFC 3339 in UTC with milliseconds
    /// (`2026-12-02T18:16:07.123Z`).
    #[inline]
    pub(crate) fn put(&mut self, o: &mut Cursor<'_>, unix_nanos: u64) {
        let milli = unix_nanos / 1_000_000;
        if self.milli != Some(milli) {
            self.format(milli);
        }
        o.put_over(&self.whole, self.len);
    }

    /// Formats millisecond `milli` (since the epoch) into `whole`; its second's date and
    /// time of day only when the second changed.
    #[inline(never)]
    fn format(&mut self, milli: u64) {
        self.milli = Some(milli);
        let secs = milli / 1000;
        if self.second != Some(secs) {
            self.second = Some(secs);
            let (y, m, d) = civil_from_days(secs / 86_400);
            let rem = secs % 86_400;
            let mut c = Cursor::new(&mut self.whole);
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
            self.second_len = c.len();
        }
        let mut c = Cursor::new(&mut self.whole[self.second_len..]);
        c.millis((milli % 1000) as u32);
        c.byte(b'Z');
        self.len = self.second_len + c.len();
    }
}

/// The fixed bytes of a line's head in one format: before the time, after it, after
/// the client's address, the method, the target and the protocol, and for a request
/// without a user agent.
pub(super) struct HeadSyntax {
    open: &'static [u8],
    after_time: &'static [u8],
    after_client: &'static [u8],
    after_method: &'static [u8],
    after_target: &'static [u8],
    after_protocol: &'static [u8],
    no_user_agent: &'static [u8],
}

/// `2026-12-02T18:16:07.123Z 127.0.0.1:50412 "GET /api/x?y=1 HTTP/1.1" "curl/8.5.0"`.
const TEXT_HEAD: HeadSyntax = HeadSyntax {
    open: b"",
    after_time: b" ",
    after_client: b" \"",
    after_method: b" ",
    after_target: b" ",
    after_protocol: b"\" ",
    no_user_agent: b"-",
};

/// `{"time":"...","client":"...","method":"GET","target":"/","protocol":"HTTP/1.1","user_agent":"..."`.
const JSON_HEAD: HeadSyntax = HeadSyntax {
    open: b"{\"time\":\"",
    after_time: b"\",\"client\":\"",
    after_client: b"\",\"method\":\"",
    after_method: b"\",\"target\":\"",
    after_target: b"\",\"protocol\":\"",
    after_protocol: b"\",\"user_agent\":",
    no_user_agent: b"null",
};

/// Writes the start of a line, up to its client's address: the time `unix_nanos` (from
/// `stamp` when it holds its millisecond) and the bytes around it.
#[inline]
pub(crate) fn time(o: &mut Cursor<'_>, stamp: &mut Stamp, json: bool, unix_nanos: u64) {
    // The bytes around the time are constants here (each written in a store or two).
    if json {
        o.put(JSON_HEAD.open);
        stamp.put(o, unix_nanos);
        o.put(JSON_HEAD.after_time);
    } else {
        stamp.put(o, unix_nanos);
        o.put(TEXT_HEAD.after_time);
    }
}

/// The room [`head_rest`] needs for `r` at most: an escaped byte takes up to six bytes
/// (JSON's `\u00HH`), a cut value three more (`...`), the address and the fixed bytes
/// under 160; never more than a line.
pub(crate) fn head_rest_room(r: &RequestFields<'_>) -> usize {
    let values = r.method.len() + r.target.len() + r.user_agent.map_or(0, <[u8]>::len);
    values.saturating_mul(6).saturating_add(160).min(MAX_LINE)
}

/// The head of `r`'s line after its time (client, request line, user agent): the
/// client's address and user agent from `cache` when they are the ones it holds; what is
/// left of the line's [`CLIENT_BUDGET`], for [`tail`]. `o` has [`head_rest_room`] bytes
/// of room. It depends on `r`'s values only (the budget is always whole here), so the
/// caches keep it whole (`HeadCache::rest`).
pub(crate) fn head_rest(
    o: &mut Cursor<'_>,
    cache: &mut HeadCache,
    json: bool,
    r: &RequestFields<'_>,
) -> usize {
    let syntax = if json { &JSON_HEAD } else { &TEXT_HEAD };
    let mut budget = CLIENT_BUDGET;
    cache.peer(o, r.peer);
    o.put(syntax.after_client);
    escaped(o, r.method, json, &mut budget);
    o.put(syntax.after_method);
    escaped(o, r.target, json, &mut budget);
    o.put(syntax.after_target);
    o.put(r.protocol.as_bytes());
    o.put(syntax.after_protocol);
    match r.user_agent {
        Some(ua) => {
            o.byte(b'"');
            cache.user_agent(o, ua, json, &mut budget);
            o.byte(b'"');
        }
        None => o.put(syntax.no_user_agent),
    }
    budget
}

/// Writes the rest of a line whose head is before `o` (and left `budget`), with its
/// newline; `o` has room for what [`MAX_LINE`] leaves after the head. The parts that
/// repeat from request to request (the lead before the duration; the fields from the
/// route to the queue wait's name; the end after them, for a request that did not queue)
/// are copied from `cache` when they are the ones it holds (a thread's last line's).
pub(crate) fn tail(
    o: &mut Cursor<'_>,
    json: bool,
    budget: usize,
    r: &Outcome<'_>,
    cache: &mut TailCache,
) {
    let bytes = r.bytes();
    if !cache.put_lead(o, json, r.status, bytes) {
        let from = o.len();
        lead(o, json, r.status, bytes);
        cache.keep_lead(o.written_since(from), json, r.status, bytes);
    }
    o.secs(r.duration);
    if json {
        o.put(b",\"upstream_time\":");
        json_or_null(o, r.n.upstream, Cursor::secs);
    } else {
        o.byte(b' ');
        match r.n.upstream {
            Some(n) => o.secs(n),
            None => o.byte(b'-'),
        }
    }
    match cache.put(o, json, budget, r) {
        TailHit::Whole => return,
        TailHit::Middle => {}
        TailHit::Miss => {
            let from = o.len();
            let whole = middle(o, json, budget, r);
            cache.keep(o.written_since(from), whole, json, r);
        }
    }
    let from = o.len();
    end(o, json, r);
    cache.keep_end(o.written_since(from), r);
}

/// The tail's lead: the status and the body bytes, up to the duration.
#[inline(never)]
fn lead(o: &mut Cursor<'_>, json: bool, status: u16, bytes: u64) {
    if json {
        o.put(b",\"status\":");
        o.num(u64::from(status));
        o.put(b",\"bytes\":");
        o.num(bytes);
        o.put(b",\"duration\":");
    } else {
        o.byte(b' ');
        o.num(u64::from(status));
        o.byte(b' ');
        o.num(bytes);
        o.byte(b' ');
    }
}

/// The tail's end, after the queue wait's name: its value, the limit, the line's end.
#[inline(never)]
fn end(o: &mut Cursor<'_>, json: bool, r: &Outcome<'_>) {
    if json {
        json_or_null(o, r.n.queue_wait, Cursor::secs);
        o.put(b",\"limit\":");
        json_or_null(o, r.limit(), Cursor::num);
        o.put(b"}\n");
    } else {
        match r.n.queue_wait {
            Some(n) => o.secs(n),
            None => o.byte(b'-'),
        }
        o.put(b" limit=");
        match r.limit() {
            Some(n) => o.num(n),
            None => o.byte(b'-'),
        }
        o.byte(b'\n');
    }
}

/// The names of the tail's middle fields in one format, with how one of the proxy's own
/// words is quoted and what stands for a field that does not apply.
struct MiddleSyntax {
    route: &'static [u8],
    decision: &'static [u8],
    reason: &'static [u8],
    tier: &'static [u8],
    queue_wait: &'static [u8],
    quote: &'static [u8],
    none: &'static [u8],
}

/// ` route="api" decision=admitted reason=- tier=critical queue_wait=`.
const TEXT_MIDDLE: MiddleSyntax = MiddleSyntax {
    route: b" route=",
    decision: b" decision=",
    reason: b" reason=",
    tier: b" tier=",
    queue_wait: b" queue_wait=",
    quote: b"",
    none: b"-",
};

/// `,"route":"api","decision":"admitted","reason":null,"tier":"critical","queue_wait":`.
const JSON_MIDDLE: MiddleSyntax = MiddleSyntax {
    route: b",\"route\":",
    decision: b",\"decision\":",
    reason: b",\"reason\":",
    tier: b",\"tier\":",
    queue_wait: b",\"queue_wait\":",
    quote: b"\"",
    none: b"null",
};

/// The middle of the tail: route, decision, reason, tier, and the queue wait's name;
/// whether the route was written whole (not cut).
#[inline(never)]
fn middle(o: &mut Cursor<'_>, json: bool, mut budget: usize, r: &Outcome<'_>) -> bool {
    let s = if json { &JSON_MIDDLE } else { &TEXT_MIDDLE };
    let mut whole = true;
    o.put(s.route);
    match r.route() {
        Some(route) => whole = quoted(o, route, json, &mut budget),
        None => o.put(s.none),
    }
    o.put(s.decision);
    word(o, s, Some(r.n.decision.unwrap_or("refused")));
    o.put(s.reason);
    word(o, s, (!r.n.reason.is_empty()).then_some(r.n.reason));
    o.put(s.tier);
    word(o, s, r.n.tier.map(Criticality::as_str));
    o.put(s.queue_wait);
    whole
}

/// One of the proxy's own words, quoted as the format quotes them, or the format's
/// mark for none.
fn word(o: &mut Cursor<'_>, s: &MiddleSyntax, w: Option<&str>) {
    match w {
        Some(w) => {
            o.put(s.quote);
            o.put(w.as_bytes());
            o.put(s.quote);
        }
        None => o.put(s.none),
    }
}

/// A client's value, quoted and escaped; whether it was written whole (not cut).
#[inline(always)]
fn quoted(o: &mut Cursor<'_>, raw: &[u8], json: bool, budget: &mut usize) -> bool {
    o.byte(b'"');
    let whole = escaped(o, raw, json, budget);
    o.byte(b'"');
    whole
}

/// `raw`, escaped, within the field's and the line's budgets (inlined into the head and
/// the tail: one call fewer per value); whether it was written whole (not cut).
#[inline(always)]
pub(super) fn escaped(o: &mut Cursor<'_>, raw: &[u8], json: bool, budget: &mut usize) -> bool {
    let from = o.len();
    let used = escape(o, raw, json, (*budget).min(MAX_FIELD));
    *budget -= used;
    o.len() - from == used
}

/// `v` written by `f`, or `null`.
fn json_or_null<'b>(o: &mut Cursor<'b>, v: Option<u64>, f: fn(&mut Cursor<'b>, u64)) {
    match v {
        Some(v) => f(o, v),
        None => o.put(b"null"),
    }
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
