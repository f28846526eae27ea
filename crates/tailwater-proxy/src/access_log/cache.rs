//! The parts of a line that repeat from request to request, formatted once and copied
//! after (issue 13: the log's cost per request). nginx caches its time strings this way;
//! the same holds for a connection's client address and user agent (and its whole head
//! after the time, when a keep-alive client repeats its request: polling, health checks,
//! the same call), and for the proxy's fields from the route to the queue wait's name,
//! which a route's admitted requests share.
//!
//! Every cache is checked against the values it was made from (compared, not trusted),
//! and holds only values written whole: a value that was cut depends on the budget its
//! line had left, so it is formatted afresh. A hit writes exactly the bytes a miss would.

use std::net::SocketAddr;

use tailwater_core::Criticality;

use super::RequestFields;
use super::cursor::{Cursor, plain_run, same_bytes};
use super::format::{self, MAX_FIELD, Outcome, escaped};

/// User agents up to this many bytes are cached (a connection's cache stays small).
const UA_CACHED: usize = 256;
/// A head is cached whole when its method, target and user agent take up to this many
/// bytes together.
const REST_CACHED: usize = 512;
/// A connection's head is cached by the request's whole head as read (one comparison,
/// rather than one per value) when that is up to this many bytes.
const RAW_CACHED: usize = 1024;
/// After this many misses in a row, a head is kept only at every [`REST_RETRY`]th miss:
/// a client that does not repeat its requests pays almost nothing for the cache (keeping
/// a head costs a few copies), and one that starts repeating is cached again soon.
const REST_STREAK: u32 = 2;
const REST_RETRY: u32 = 16;

/// A client's address and user agent as last formatted: a connection's (the lean path
/// keeps one per connection), or a thread's last.
#[derive(Debug)]
pub(crate) struct HeadCache {
    /// A connection's: its client's address does not change once formatted.
    conn: bool,
    /// The address of `peer_text`.
    peer: Option<SocketAddr>,
    /// At most 58 bytes (`[`, 39, `%`, 10, `]:`, 5).
    peer_text: [u8; 64],
    peer_len: usize,
    /// Whether `ua_text` holds `ua_raw` escaped, for JSON if `ua_json`.
    ua_held: bool,
    ua_json: bool,
    ua_raw: Vec<u8>,
    ua_text: Vec<u8>,
    /// The head after the time, for the values it was made from.
    rest: RestCache,
}

/// A line's head after its time (`format::head_rest`: client, request line, user agent),
/// with the budget it left: always the last request's (a connection's request reads it
/// when it ends), and, if `held`, the values it was made from, for the next request.
#[derive(Debug)]
struct RestCache {
    /// Whether the values below are the ones `text` was made from.
    held: bool,
    json: bool,
    peer: Option<SocketAddr>,
    protocol: &'static str,
    /// Whether `key` is the request's whole head as read (a connection's cache, on the
    /// lean path): the same bytes parse to the same method, target and user agent.
    raw: bool,
    /// The method, the target and the user agent, back to back (or the whole head).
    key: Vec<u8>,
    method_len: usize,
    target_len: usize,
    ua_len: Option<usize>,
    /// The head, `len` bytes; the bytes after are room (zeroed when it grows, not per
    /// request).
    text: Vec<u8>,
    len: usize,
    budget: usize,
    /// Misses since the last hit.
    misses: u32,
}

impl HeadCache {
    /// A thread's: holds nothing yet.
    pub(crate) const fn new() -> Self {
        Self::of(false)
    }

    /// A connection's: holds nothing yet.
    pub(crate) const fn for_conn() -> Self {
        Self::of(true)
    }

    const fn of(conn: bool) -> Self {
        HeadCache {
            conn,
            peer: None,
            peer_text: [0; 64],
            peer_len: 0,
            ua_held: false,
            ua_json: false,
            ua_raw: Vec::new(),
            ua_text: Vec::new(),
            rest: RestCache {
                held: false,
                json: false,
                peer: None,
                protocol: "",
                raw: false,
                key: Vec::new(),
                method_len: 0,
                target_len: 0,
                ua_len: None,
                text: Vec::new(),
                len: 0,
                budget: 0,
                misses: 0,
            },
        }
    }

    /// Makes [`Self::rest_text`] the head after the time of `r` (whose whole head as read
    /// is `raw`, or empty): as it is if this cache holds it for `r`'s values (compared,
    /// nothing written), else formatted afresh; what it leaves of the line's budget.
    #[inline]
    pub(super) fn rest(&mut self, json: bool, r: &RequestFields<'_>, raw: &[u8]) -> usize {
        let c = &self.rest;
        let hit = c.held
            && c.json == json
            && if c.raw {
                same(c.protocol, r.protocol) && c.key == raw
            } else {
                self.same_fields(r)
            };
        if !hit {
            return self.new_rest(json, r, raw);
        }
        self.rest.misses = 0;
        self.rest.budget
    }

    /// The head after the time made by the last [`Self::rest`].
    #[inline]
    pub(super) fn rest_text(&self) -> &[u8] {
        &self.rest.text[..self.rest.len]
    }

    /// [`Self::rest`] for a head this cache does not hold: formatted in place, and its
    /// values kept (unless misses come in a streak: [`REST_STREAK`]).
    #[inline(never)]
    fn new_rest(&mut self, json: bool, r: &RequestFields<'_>, raw: &[u8]) -> usize {
        // Taken out while the address and user agent caches are used.
        let mut text = std::mem::take(&mut self.rest.text);
        let room = format::head_rest_room(r);
        if text.len() < room {
            text.resize(room, 0);
        }
        let mut c = Cursor::new(&mut text);
        let budget = format::head_rest(&mut c, self, json, r);
        self.rest.len = c.len();
        self.rest.text = text;
        self.rest.budget = budget;
        self.keep_rest(json, r, raw);
        budget
    }

    /// Whether the head held was made from `r`'s values (compared one by one).
    #[inline]
    fn same_fields(&self, r: &RequestFields<'_>) -> bool {
        let c = &self.rest;
        let (m, t) = (c.method_len, c.target_len);
        r.method.len() == m
            && r.target.len() == t
            && r.user_agent.map(<[u8]>::len) == c.ua_len
            // A connection's client does not change.
            && (self.conn || c.peer == Some(r.peer))
            && same(c.protocol, r.protocol)
            && same_bytes(&c.key[..m], r.method)
            && same_bytes(&c.key[m..m + t], r.target)
            && match r.user_agent {
                Some(ua) => same_bytes(&c.key[m + t..], ua),
                None => true,
            }
    }

    /// Keeps the values of `r` (a miss; its whole head as read is `raw`, or empty), which
    /// the head just formatted was made from, unless misses come in a streak (see
    /// [`REST_STREAK`]). A connection's cache keeps them as `raw` when it has one.
    fn keep_rest(&mut self, json: bool, r: &RequestFields<'_>, raw: &[u8]) {
        let ua = r.user_agent.unwrap_or_default();
        let by_raw = self.conn && !raw.is_empty() && raw.len() <= RAW_CACHED;
        let c = &mut self.rest;
        c.misses = c.misses.saturating_add(1);
        c.held = (by_raw || r.method.len() + r.target.len() + ua.len() <= REST_CACHED)
            && (c.misses <= REST_STREAK || c.misses.is_multiple_of(REST_RETRY));
        if c.held {
            c.json = json;
            c.peer = Some(r.peer);
            c.protocol = r.protocol;
            c.raw = by_raw;
            c.key.clear();
            if by_raw {
                c.key.extend_from_slice(raw);
            } else {
                c.key.extend_from_slice(r.method);
                c.key.extend_from_slice(r.target);
                c.key.extend_from_slice(ua);
            }
            c.method_len = r.method.len();
            c.target_len = r.target.len();
            c.ua_len = r.user_agent.map(<[u8]>::len);
        }
    }

    /// Whether it holds a whole head after the time.
    #[cfg(test)]
    pub(super) fn holds_rest(&self) -> bool {
        self.rest.held
    }

    /// Writes the client's address `p`.
    #[inline]
    pub(super) fn peer(&mut self, o: &mut Cursor<'_>, p: SocketAddr) {
        if !(self.conn && self.peer_len != 0) && self.peer != Some(p) {
            let mut c = Cursor::new(&mut self.peer_text);
            c.peer(p);
            self.peer_len = c.len();
            self.peer = Some(p);
        }
        o.put_over(&self.peer_text, self.peer_len);
    }

    /// Writes user agent `ua`, escaped within `budget` (as `format::escaped` does).
    #[inline]
    pub(super) fn user_agent(
        &mut self,
        o: &mut Cursor<'_>,
        ua: &[u8],
        json: bool,
        budget: &mut usize,
    ) {
        if self.ua_held
            && self.ua_json == json
            && self.ua_text.len() <= (*budget).min(MAX_FIELD)
            && self.ua_raw == ua
        {
            o.put(&self.ua_text);
            *budget -= self.ua_text.len();
        } else {
            self.new_user_agent(o, ua, json, budget);
        }
    }

    /// [`Self::user_agent`] for a user agent the cache does not hold: formatted, and
    /// kept if it was written whole and is short enough.
    #[inline(never)]
    fn new_user_agent(&mut self, o: &mut Cursor<'_>, ua: &[u8], json: bool, budget: &mut usize) {
        let from = o.len();
        let whole = escaped(o, ua, json, budget);
        self.ua_held = whole && ua.len() <= UA_CACHED;
        if self.ua_held {
            self.ua_json = json;
            self.ua_raw.clear();
            self.ua_raw.extend_from_slice(ua);
            self.ua_text.clear();
            self.ua_text.extend_from_slice(o.written_since(from));
        }
    }
}

/// The parts of a thread's last line's tail that repeat from request to request, and the
/// values they were made from: its lead (status and body bytes, up to the duration), its
/// middle (`format::tail`: from the route to the queue wait's name) and, for a request
/// that did not queue, its end after the middle (the queue wait's mark, the limit and the
/// line's end; `text` holds the middle and the end back to back).
#[derive(Debug)]
pub(crate) struct TailCache {
    /// The lead's values (format, status, body bytes), if it holds one.
    lead_key: Option<(bool, u16, u64)>,
    lead: [u8; LEAD_CACHED],
    lead_len: usize,
    held: bool,
    json: bool,
    /// The route's name, if the line had a route (`has_route`).
    has_route: bool,
    route: Vec<u8>,
    decision: Option<&'static str>,
    reason: &'static str,
    tier: Option<Criticality>,
    /// The middle, `len` bytes, then the end, to `end_len` (copied whole: see
    /// `Cursor::put_over`).
    text: [u8; TAIL_CACHED],
    len: usize,
    /// The limit of the end held after the middle, if it holds one.
    end_limit: Option<Option<u64>>,
    end_len: usize,
}

/// What [`TailCache::put`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailHit {
    /// Nothing: the middle is not the one it holds.
    Miss,
    /// The middle; the end is still to write.
    Middle,
    /// The middle and the end: the line is complete.
    Whole,
}

/// Middles and ends up to this many bytes together are cached (a route name of up to
/// about 90 bytes).
const TAIL_CACHED: usize = 192;
/// A lead is at most 56 bytes (JSON's names, a status and 20 digits of bytes).
const LEAD_CACHED: usize = 64;

/// The same static string (a match is certain to be equal; a miss only costs a format).
fn same(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b)
}

impl TailCache {
    /// Holds nothing yet.
    pub(crate) const fn new() -> Self {
        TailCache {
            lead_key: None,
            lead: [0; LEAD_CACHED],
            lead_len: 0,
            held: false,
            json: false,
            has_route: false,
            route: Vec::new(),
            decision: None,
            reason: "",
            tier: None,
            text: [0; TAIL_CACHED],
            len: 0,
            end_limit: None,
            end_len: 0,
        }
    }

    /// Writes the lead of a line with `status` and `bytes` if this cache holds it;
    /// whether it did.
    #[inline]
    pub(super) fn put_lead(&self, o: &mut Cursor<'_>, json: bool, status: u16, bytes: u64) -> bool {
        let hit = self.lead_key == Some((json, status, bytes));
        if hit {
            o.put_over(&self.lead, self.lead_len);
        }
        hit
    }

    /// Keeps `text`, the lead just written for `status` and `bytes`.
    pub(super) fn keep_lead(&mut self, text: &[u8], json: bool, status: u16, bytes: u64) {
        if let Some(to) = self.lead.get_mut(..text.len()) {
            to.copy_from_slice(text);
            self.lead_len = text.len();
            self.lead_key = Some((json, status, bytes));
        } else {
            self.lead_key = None;
        }
    }

    /// Writes the middle of `r`'s tail if this cache holds it, and its end too when it
    /// holds that (a request that did not queue, at the same limit); what it wrote.
    #[inline]
    pub(super) fn put(
        &self,
        o: &mut Cursor<'_>,
        json: bool,
        budget: usize,
        r: &Outcome<'_>,
    ) -> TailHit {
        let hit = self.held
            && self.json == json
            && self.tier == r.n.tier
            && same(self.reason, r.n.reason)
            && match (self.decision, r.n.decision) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
            && match r.route() {
                Some(route) => {
                    self.has_route
                        && route.len() <= budget.min(MAX_FIELD)
                        && same_bytes(&self.route, route)
                }
                None => !self.has_route,
            };
        if !hit {
            return TailHit::Miss;
        }
        if r.n.queue_wait.is_none() && self.end_limit == Some(r.limit()) {
            o.put_over(&self.text, self.end_len);
            TailHit::Whole
        } else {
            o.put_over(&self.text, self.len);
            TailHit::Middle
        }
    }

    /// Keeps `text`, the middle just written for `r` (`whole`: its route was not cut).
    pub(super) fn keep(&mut self, text: &[u8], whole: bool, json: bool, r: &Outcome<'_>) {
        self.end_limit = None;
        // A plain route's escaped form is its name: whether it fits a later line's budget
        // is its length's question (`put`).
        self.held = whole
            && text.len() <= TAIL_CACHED
            && r.route()
                .is_none_or(|route| route.len() <= UA_CACHED && plain_run(route) == route.len());
        if self.held {
            self.json = json;
            self.has_route = r.route().is_some();
            self.route.clear();
            self.route.extend_from_slice(r.route().unwrap_or_default());
            self.decision = r.n.decision;
            self.reason = r.n.reason;
            self.tier = r.n.tier;
            self.text[..text.len()].copy_from_slice(text);
            self.len = text.len();
        }
    }

    /// Keeps `text`, the end just written after the middle this cache holds for `r`
    /// (only for a request that did not queue: a queue wait rarely repeats).
    pub(super) fn keep_end(&mut self, text: &[u8], r: &Outcome<'_>) {
        self.end_limit = None;
        if self.held
            && r.n.queue_wait.is_none()
            && let Some(to) = self.text.get_mut(self.len..self.len + text.len())
        {
            to.copy_from_slice(text);
            self.end_len = self.len + text.len();
            self.end_limit = Some(r.limit());
        }
    }
}
