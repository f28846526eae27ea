//! Unary gRPC over HTTP/2 (h2c, or h2 over TLS): the fixed request, and what an answer
//! counts as.
//!
//! A gRPC answer is HTTP 200 whatever happened; what happened is the `grpc-status` field,
//! in the trailers or, for a trailers-only answer (an error without a message), in the
//! headers. Each answer is counted under its [`GrpcOutcome`] and recorded under the HTTP
//! status Envoy maps that outcome to (`RESOURCE_EXHAUSTED` → 429, `UNAVAILABLE` → 503,
//! ... `OK` → 200), so that success, rejection and error counts, thresholds and
//! latencies mean for gRPC what they mean for HTTP. An optional decoder of the response
//! message ([`GrpcCall::over_limit()`]) recognises a denial carried in an `OK` answer (an
//! Envoy rate limit service's `OVER_LIMIT`): counted as `OVER_LIMIT`, recorded as 429.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tailwater_core::ConfigError;

/// Says whether a response message (unframed protobuf) is a denial.
pub type OverLimitFn = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// The unary call of a gRPC run.
#[derive(Clone)]
pub struct GrpcCall {
    /// `/package.Service/Method`.
    pub(crate) path: String,
    /// The request, framed (5-byte gRPC prefix + message).
    pub(crate) framed: Bytes,
    /// Recognises a denial inside an `OK` answer.
    pub(crate) over_limit: Option<OverLimitFn>,
}

impl fmt::Debug for GrpcCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcCall")
            .field("path", &self.path)
            .field("message_len", &(self.framed.len() - 5))
            .field("over_limit", &self.over_limit.is_some())
            .finish()
    }
}

/// The largest request message (bytes): far above any unary test message.
pub const MAX_MESSAGE: usize = 4 << 20;

impl GrpcCall {
    /// A call of `method` (`package.Service/Method`, a leading `/` optional) with the
    /// serialized protobuf `message`. Errors name `grpc` or `grpc_body`.
    pub fn new(method: &str, message: &[u8]) -> Result<Self, ConfigError> {
        let path = if method.starts_with('/') {
            method.to_owned()
        } else {
            format!("/{method}")
        };
        let ok = path
            .strip_prefix('/')
            .and_then(|m| m.split_once('/'))
            .is_some_and(|(svc, m)| {
                !svc.is_empty()
                    && !m.is_empty()
                    && !m.contains('/')
                    && path.bytes().all(|b| b.is_ascii_graphic())
            });
        if !ok {
            return Err(ConfigError::new(
                "grpc",
                format!("`{method}` is not package.Service/Method"),
            ));
        }
        if message.len() > MAX_MESSAGE {
            return Err(ConfigError::new("grpc_body", "message larger than 4 MiB"));
        }
        let mut framed = BytesMut::with_capacity(5 + message.len());
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.put_slice(message);
        Ok(Self {
            path,
            framed: framed.freeze(),
            over_limit: None,
        })
    }

    /// Counts `OK` answers whose message `f` says is a denial as `OVER_LIMIT` (429).
    pub fn over_limit(mut self, f: OverLimitFn) -> Self {
        self.over_limit = Some(f);
        self
    }

    /// `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Parses `--grpc-body`: hex digits (whitespace allowed) into bytes. Errors name
/// `grpc_body`.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, ConfigError> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(ConfigError::new("grpc_body", "odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| ConfigError::new("grpc_body", "not hex (give @FILE for a file)"))
        })
        .collect()
}

/// What one gRPC answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrpcOutcome {
    /// `grpc-status` 0–16 (`OK` … `UNAUTHENTICATED`).
    Status(u8),
    /// Another `grpc-status` value.
    OtherStatus,
    /// No `grpc-status` in the answer (not a gRPC server, or a broken one).
    Missing,
    /// `OK`, but the message is a denial ([`GrpcCall::over_limit()`]).
    OverLimit,
}

const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Envoy's `Grpc::Utility::grpcToHttpStatus`, by code.
const HTTP: [u16; 17] = [
    200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
];

impl GrpcOutcome {
    /// Slots in a fixed counter array.
    pub(crate) const SLOTS: usize = 20;

    /// The outcome of `grpc-status: value`.
    pub(crate) fn of(value: &[u8]) -> Self {
        match std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
        {
            Some(c) if usize::from(c) < NAMES.len() => GrpcOutcome::Status(c),
            _ => GrpcOutcome::OtherStatus,
        }
    }

    /// The stable name in reports and JSON (`OK`, `RESOURCE_EXHAUSTED`, ..., `OVER_LIMIT`,
    /// `other_status`, `missing_status`).
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcOutcome::Status(c) => NAMES.get(usize::from(c)).copied().unwrap_or("UNKNOWN"),
            GrpcOutcome::OtherStatus => "other_status",
            GrpcOutcome::Missing => "missing_status",
            GrpcOutcome::OverLimit => "OVER_LIMIT",
        }
    }

    /// The HTTP status this outcome is recorded as (Envoy's mapping; `OVER_LIMIT` → 429;
    /// no status on an HTTP 200 → 500; otherwise the HTTP status as received).
    pub(crate) fn http_status(self, http: u16) -> u16 {
        match self {
            GrpcOutcome::Status(c) => HTTP.get(usize::from(c)).copied().unwrap_or(500),
            GrpcOutcome::OverLimit => 429,
            GrpcOutcome::OtherStatus => 500,
            GrpcOutcome::Missing if http == 200 => 500,
            GrpcOutcome::Missing => http,
        }
    }

    pub(crate) fn slot(self) -> usize {
        match self {
            GrpcOutcome::Status(c) => usize::from(c).min(16),
            GrpcOutcome::OtherStatus => 17,
            GrpcOutcome::Missing => 18,
            GrpcOutcome::OverLimit => 19,
        }
    }

    pub(crate) fn from_slot(i: usize) -> Self {
        match i {
            0..=16 => GrpcOutcome::Status(i as u8),
            17 => GrpcOutcome::OtherStatus,
            18 => GrpcOutcome::Missing,
            _ => GrpcOutcome::OverLimit,
        }
    }
}

impl fmt::Display for GrpcOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first message of a gRPC response body (unframed), if complete and uncompressed.
pub(crate) fn first_message(body: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = body.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    rest.get(4..4 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_as_envoy_does() {
        let s = |v: &[u8]| GrpcOutcome::of(v);
        assert_eq!(s(b"0").http_status(200), 200);
        assert_eq!(s(b"8").as_str(), "RESOURCE_EXHAUSTED");
        assert_eq!(s(b"8").http_status(200), 429);
        assert_eq!(s(b"14").http_status(200), 503);
        assert_eq!(s(b"99"), GrpcOutcome::OtherStatus);
        assert_eq!(GrpcOutcome::Missing.http_status(200), 500);
        assert_eq!(GrpcOutcome::Missing.http_status(502), 502);
        for i in 0..GrpcOutcome::SLOTS {
            assert_eq!(GrpcOutcome::from_slot(i).slot(), i);
        }
    }

    #[test]
    fn the_request_is_framed_and_the_method_checked() {
        let c = GrpcCall::new("pkg.Svc/Do", &[1, 2, 3]).expect("valid");
        assert_eq!(c.path(), "/pkg.Svc/Do");
        assert_eq!(&c.framed[..], &[0, 0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(first_message(&c.framed), Some(&[1u8, 2, 3][..]));
        for bad in ["pkg.Svc", "/pkg.Svc/", "a/b/c", "a b/c"] {
            assert_eq!(GrpcCall::new(bad, &[]).expect_err(bad).field(), "grpc");
        }
        assert_eq!(parse_hex("0a 03").expect("hex"), [10, 3]);
        assert_eq!(parse_hex("0g").expect_err("bad").field(), "grpc_body");
    }
}
