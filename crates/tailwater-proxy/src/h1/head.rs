//! Message heads of the lean HTTP/1.1 path, parsed with `httparse` and kept as byte ranges
//! into the connection's read buffer, so a forwarded head is copied once, field by field,
//! into the outgoing buffer and never into a `HeaderMap`.

use std::mem::MaybeUninit;
use std::ops::Range;

pub(crate) use crate::framing::Framing;
use crate::framing::{FramingError, FramingFields};
use crate::target::TargetError;
use tailwater_tower::classify::{Outcome, grpc_value_outcome};

/// Headers parsed at most per message on this path; a request with more (and a
/// `server.max_headers` above this) is left to hyper, which enforces the configured limit.
pub(crate) const MAX_HEADERS: usize = 128;

/// What a field means to a forwarding proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Forwarded as is.
    Plain,
    /// Hop-by-hop (RFC 9110 §7.6.1, plus `Keep-Alive`, `Proxy-Connection` and the proxy
    /// authentication fields, as the hyper path): never forwarded.
    HopByHop,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    XForwardedFor,
    Forwarded,
    Criticality,
    ContentType,
    /// `grpc-timeout`: the client's deadline (`crate::deadline`).
    GrpcTimeout,
    /// `grpc-status` in a response head (gRPC's trailers-only answer): its outcome.
    GrpcStatus,
    /// Forwarded as is; its first value is kept for the access log
    /// ([`Fields::user_agent`]), so the log does not search the fields again.
    UserAgent,
}

impl Kind {
    fn of(name: &[u8]) -> Self {
        // Dispatch on length first: most names are compared against one candidate.
        let is = |want: &str| name.eq_ignore_ascii_case(want.as_bytes());
        match name.len() {
            2 if is("te") => Kind::HopByHop,
            4 if is("host") => Kind::Host,
            6 if is("expect") => Kind::Expect,
            7 if is("upgrade") => Kind::Upgrade,
            7 if is("trailer") => Kind::HopByHop,
            9 if is("forwarded") => Kind::Forwarded,
            10 if is("connection") => Kind::Connection,
            10 if is("keep-alive") => Kind::HopByHop,
            11 if is("grpc-status") => Kind::GrpcStatus,
            10 if is("user-agent") => Kind::UserAgent,
            12 if is("content-type") => Kind::ContentType,
            12 if is("grpc-timeout") => Kind::GrpcTimeout,
            13 if is("x-criticality") => Kind::Criticality,
            14 if is("content-length") => Kind::ContentLength,
            15 if is("x-forwarded-for") => Kind::XForwardedFor,
            16 if is("proxy-connection") => Kind::HopByHop,
            17 if is("transfer-encoding") => Kind::TransferEncoding,
            18 if is("proxy-authenticate") => Kind::HopByHop,
            19 if is("proxy-authorization") => Kind::HopByHop,
            _ => Kind::Plain,
        }
    }
}

/// One field: name and value ranges into the buffer, and its kind.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) name: Range<usize>,
    pub(crate) value: Range<usize>,
    pub(crate) kind: Kind,
}

/// The parts of a head both directions need.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) list: Vec<Field>,
    /// `Connection: close` was sent.
    pub(crate) close: bool,
    /// Names listed in `Connection` (other than `close` / `keep-alive` and the fields
    /// [`crate::headers::protected`] keeps): not forwarded.
    pub(crate) connection_named: Vec<Range<usize>>,
    /// `Content-Length` and `Transfer-Encoding`, for the framing decision.
    pub(crate) framing: FramingFields,
    /// A `grpc-timeout` was sent (so a request without one costs no look-up for it).
    pub(crate) grpc_timeout: bool,
    /// A `grpc-status` was sent (likewise).
    pub(crate) grpc_status: bool,
    /// The value of the first `User-Agent`, found while the fields are collected (the
    /// access log's, which would otherwise search the fields a second time).
    pub(crate) user_agent_at: Option<Range<usize>>,
    /// The value of the first `Host`, and how many `Host` fields there were (2 for two or
    /// more), found while the fields are collected: the `Host` checks, routing and the
    /// `Forwarded` element then search no field (issue 18).
    pub(crate) host_at: Option<Range<usize>>,
    pub(crate) hosts: u8,
}

impl Fields {
    fn clear(&mut self) {
        self.list.clear();
        self.close = false;
        self.grpc_timeout = false;
        self.grpc_status = false;
        self.user_agent_at = None;
        self.host_at = None;
        self.hosts = 0;
        self.connection_named.clear();
        self.framing = FramingFields::default();
    }

    /// Records the fields `headers` of a message parsed from `buf`.
    fn collect(&mut self, buf: &[u8], headers: &[httparse::Header<'_>]) {
        self.clear();
        let base = buf.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        for h in headers {
            let kind = Kind::of(h.name.as_bytes());
            let value = h.value;
            match kind {
                Kind::Connection => {
                    for token in value.split(|&b| b == b',') {
                        let token = token.trim_ascii();
                        if token.eq_ignore_ascii_case(b"close") {
                            self.close = true;
                        } else if !token.is_empty()
                            && !token.eq_ignore_ascii_case(b"keep-alive")
                            && !crate::headers::protected(token)
                        {
                            self.connection_named.push(range(token));
                        }
                    }
                }
                Kind::TransferEncoding => self.framing.coding(value),
                Kind::ContentLength => self.framing.length(value),
                Kind::GrpcTimeout => self.grpc_timeout = true,
                Kind::GrpcStatus => self.grpc_status = true,
                Kind::UserAgent if self.user_agent_at.is_none() => {
                    self.user_agent_at = Some(range(value));
                }
                Kind::Host => {
                    if self.hosts == 0 {
                        self.host_at = Some(range(value));
                    }
                    self.hosts = self.hosts.saturating_add(1).min(2);
                }
                _ => {}
            }
            self.list.push(Field {
                name: range(h.name.as_bytes()),
                value: range(value),
                kind,
            });
        }
    }

    /// Whether `field` is named in `Connection` (and so hop-by-hop).
    pub(crate) fn named_in_connection(&self, buf: &[u8], field: &Field) -> bool {
        !self.connection_named.is_empty()
            && self
                .connection_named
                .iter()
                .any(|n| buf[n.clone()].eq_ignore_ascii_case(&buf[field.name.clone()]))
    }

    /// The first `User-Agent`'s value, as sent.
    pub(crate) fn user_agent<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.user_agent_at.clone().map(|r| &buf[r])
    }

    /// The first value of the field of `kind`.
    pub(crate) fn first<'b>(&self, buf: &'b [u8], kind: Kind) -> Option<&'b [u8]> {
        self.list
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| &buf[f.value.clone()])
    }
}

/// Why a request head cannot take the lean path (hyper serves the connection instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusual {
    Http10,
    Upgrade,
    Expect,
    Connect,
    NotOriginForm,
}

/// A parsed request head.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    /// Bytes of the head, final CRLF included.
    pub(crate) len: usize,
    pub(crate) method: Range<usize>,
    pub(crate) target: Range<usize>,
    pub(crate) fields: Fields,
    /// HTTP/1.1 (HTTP/1.0 has other keep-alive and framing rules: hyper serves it).
    pub(crate) http11: bool,
}

/// The result of trying to parse a request head from the buffer.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A complete head.
    Complete,
    /// More bytes are needed.
    Partial,
    /// Too many fields for this path: hyper decides.
    TooManyFields,
    /// Not HTTP/1.x.
    Invalid,
}

impl RequestHead {
    /// Parses a head from the start of `buf` into `self`.
    pub(crate) fn parse(&mut self, buf: &[u8], max_headers: usize) -> Parsed {
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let storage = &mut storage[..max_headers.clamp(1, MAX_HEADERS)];
        match req.parse_with_uninit_headers(buf, storage) {
            Ok(httparse::Status::Complete(len)) => {
                let base = buf.as_ptr() as usize;
                let range = |s: &str| {
                    let start = s.as_ptr() as usize - base;
                    start..start + s.len()
                };
                self.len = len;
                self.method = req.method.map(range).unwrap_or_default();
                self.target = req.path.map(range).unwrap_or_default();
                self.fields.collect(buf, req.headers);
                self.http11 = req.version == Some(1);
                Parsed::Complete
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => Parsed::TooManyFields,
            Err(_) => Parsed::Invalid,
        }
    }

    /// Whether hyper must serve this request (and the rest of the connection), and why.
    pub(crate) fn unusual(&self, buf: &[u8]) -> Option<Unusual> {
        if !self.http11 {
            return Some(Unusual::Http10);
        }
        let f = &self.fields;
        if f.list.iter().any(|x| x.kind == Kind::Upgrade) {
            return Some(Unusual::Upgrade);
        }
        if f.list.iter().any(|x| x.kind == Kind::Expect) {
            return Some(Unusual::Expect);
        }
        if &buf[self.method.clone()] == b"CONNECT" {
            return Some(Unusual::Connect);
        }
        if !buf[self.target.clone()].starts_with(b"/") {
            return Some(Unusual::NotOriginForm);
        }
        None
    }

    /// The request body's framing: the decision both engines share (`framing`).
    pub(crate) fn body(&self) -> Result<Framing, FramingError> {
        self.fields.framing.request()
    }

    /// The request path as sent (without the query or a fragment), as bytes: it is
    /// routed on and forwarded as is (`target::normalise_path` works on bytes), so it is
    /// never validated as UTF-8 again (httparse did, issue 18).
    pub(crate) fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let target = &buf[self.target.clone()];
        let end = target
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(target.len());
        &target[..end]
    }

    /// The query as sent (from `?`, without a fragment), or empty.
    pub(crate) fn query<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let target = &buf[self.target.clone()];
        let target = target.split(|&b| b == b'#').next().unwrap_or(target);
        target
            .iter()
            .position(|&b| b == b'?')
            .map_or(&[][..], |q| &target[q..])
    }

    /// The request's one valid `Host` without its port, as the hyper path routes on it
    /// (RFC 9112 §3.2: the lean path takes HTTP/1.1 in origin form only, so exactly one is
    /// required), or why it is refused: the decisions of `target::request_host`, on the
    /// field the parser found (no search, no UTF-8 decoding: a valid host is ASCII).
    pub(crate) fn checked_host<'b>(&self, buf: &'b [u8]) -> Result<&'b [u8], TargetError> {
        let raw = match (&self.fields.host_at, self.fields.hosts) {
            (_, 2..) => return Err(TargetError::DuplicateHost),
            (Some(at), _) => &buf[at.clone()],
            (None, _) => return Err(TargetError::MissingHost),
        };
        if !crate::target::valid_host(raw) {
            return Err(TargetError::InvalidHost);
        }
        Ok(host_name(raw))
    }

    /// The first `Host` without its port (unchecked: [`RequestHead::checked_host`]
    /// decides whether the request is served).
    pub(crate) fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.fields.host_at.clone().map(|at| host_name(&buf[at]))
    }
}

/// `target::host_without_port` on the bytes (`[`, `]` and `:` are ASCII).
fn host_name(raw: &[u8]) -> &[u8] {
    match raw.strip_prefix(b"[") {
        Some(_) => {
            let end = raw.iter().position(|&b| b == b']').unwrap_or(raw.len());
            let mut h = &raw[..end];
            while let Some(rest) = h.strip_prefix(b"[") {
                h = rest;
            }
            h
        }
        None => raw
            .iter()
            .rposition(|&b| b == b':')
            .map_or(raw, |i| &raw[..i]),
    }
}

/// A parsed response head.
#[derive(Debug, Default)]
pub(crate) struct ResponseHead {
    pub(crate) len: usize,
    pub(crate) status: u16,
    /// The status line's reason phrase.
    pub(crate) reason: Range<usize>,
    pub(crate) fields: Fields,
}

impl ResponseHead {
    /// Parses a head from the start of `buf`: `Ok(true)` when complete, `Ok(false)` when
    /// more bytes are needed, `Err` when it is not a valid HTTP/1.x response.
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<bool, httparse::Error> {
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut storage,
        )? {
            httparse::Status::Complete(len) => {
                let base = buf.as_ptr() as usize;
                self.len = len;
                self.status = resp.code.unwrap_or(0);
                self.reason = resp.reason.map_or(0..0, |r| {
                    let start = r.as_ptr() as usize - base;
                    start..start + r.len()
                });
                self.fields.collect(buf, resp.headers);
                if resp.version == Some(0) {
                    // An HTTP/1.0 upstream closes after each response unless told otherwise.
                    let keep = self
                        .fields
                        .first(buf, Kind::Connection)
                        .is_some_and(|v| v.eq_ignore_ascii_case(b"keep-alive"));
                    self.fields.close |= !keep;
                }
                Ok(true)
            }
            httparse::Status::Partial => Ok(false),
        }
    }

    /// The response body's framing for a request with method `head_request`: the
    /// decision both engines share (`framing`); an error is the upstream's fault (502).
    pub(crate) fn body(&self, head_request: bool) -> Result<Framing, FramingError> {
        self.fields.framing.response(self.status, head_request)
    }

    /// The outcome a `grpc-status` in the head implies (gRPC's trailers-only answer).
    pub(crate) fn grpc_outcome(&self, buf: &[u8]) -> Option<Outcome> {
        if !self.fields.grpc_status {
            return None;
        }
        self.fields
            .first(buf, Kind::GrpcStatus)
            .map(grpc_value_outcome)
    }
}

#[cfg(test)]
mod tests;
