//! The framing decision of a message (RFC 9112 §6): how its body is delimited, decided
//! once from its `Content-Length` and `Transfer-Encoding` fields by the same rules on both
//! engines.
//!
//! # Why one decision
//!
//! Request smuggling is two parties delimiting the same bytes differently. So the proxy
//! decides each message's framing once, here, and the forwarded message never carries the
//! framing fields it received: its framing is written from this decision (the lean path
//! writes heads itself; on the hyper path the fields are replaced before hyper serialises
//! the head). Removing hop-by-hop fields (`Connection: content-length`) can then never
//! change how the next hop delimits the body, and an ambiguous message is refused rather
//! than forwarded in a form the next hop might read otherwise.
//!
//! # Rules (stricter than RFC 9112 §6.3 where it allows a choice, as nginx)
//!
//! - Requests: `Transfer-Encoding` must be exactly one `chunked` (another coding: 501; chunked
//!   twice or not last: 400) and never next to `Content-Length` (400); `Content-Length` must
//!   be digits, repeated values equal (RFC 9110 §8.6); neither means no body.
//! - Responses: no body for HEAD, 1xx, 204, 304; else `Transfer-Encoding` exactly `chunked`
//!   (it overrides `Content-Length`, which is dropped), else a valid `Content-Length`, else
//!   the body ends when the upstream closes. Anything else is the upstream's fault (502).

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body, and no framing field is sent (a request without one, a response that has
    /// no body by its status or method).
    Empty,
    /// `Content-Length` bytes (0 included: `Content-Length: 0` is restated).
    Length(u64),
    /// `Transfer-Encoding: chunked`, re-encoded by the proxy.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

impl Framing {
    /// Whether body bytes follow the head.
    pub(crate) fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// Why a message's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    /// A `Content-Length` that is not digits, or several that differ.
    #[error("invalid Content-Length")]
    BadLength,
    /// `Content-Length` and `Transfer-Encoding` together (RFC 9112 §6.1: a smuggling sign).
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndCoding,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding")]
    UnknownCoding,
    /// `chunked` twice, not last, or an empty `Transfer-Encoding` (RFC 9112 §6.1, §6.3).
    #[error("invalid chunked transfer coding")]
    BadChunked,
}

impl FramingError {
    /// The status a client gets for a request with this framing.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            FramingError::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The local response body.
    pub(crate) fn text(self) -> &'static str {
        match self {
            FramingError::BadLength => "invalid content-length\n",
            FramingError::LengthAndCoding => "content-length with transfer-encoding\n",
            FramingError::UnknownCoding => "unsupported transfer-encoding\n",
            FramingError::BadChunked => "invalid transfer-encoding\n",
        }
    }
}

/// The framing fields of one message, fed field line by field line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FramingFields {
    length: Option<u64>,
    bad_length: bool,
    /// A `Transfer-Encoding` field was present.
    coded: bool,
    /// `chunked` codings seen, and whether the last coding seen was one.
    chunked: u8,
    chunked_last: bool,
    other_coding: bool,
}

impl FramingFields {
    /// Records one `Content-Length` field line (a list of equal values counts as one).
    pub(crate) fn length(&mut self, value: &[u8]) {
        for v in value.split(|&b| b == b',') {
            match parse_length(v) {
                Some(n) if self.length.is_none_or(|m| m == n) => self.length = Some(n),
                _ => self.bad_length = true,
            }
        }
    }

    /// Records one `Transfer-Encoding` field line.
    pub(crate) fn coding(&mut self, value: &[u8]) {
        self.coded = true;
        for coding in value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked = self.chunked.saturating_add(u8::from(chunked));
            self.other_coding |= !chunked;
            self.chunked_last = chunked;
        }
    }

    /// The fields of a parsed `HeaderMap` (the hyper path).
    pub(crate) fn of_headers(headers: &HeaderMap) -> Self {
        let mut f = Self::default();
        for v in headers.get_all(header::CONTENT_LENGTH) {
            f.length(v.as_bytes());
        }
        for v in headers.get_all(header::TRANSFER_ENCODING) {
            f.coding(v.as_bytes());
        }
        f
    }

    /// The valid `Content-Length`, if one was sent.
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.length.filter(|_| !self.bad_length)
    }

    /// Whether both a length and a coding were sent (a response forwarded by its coding
    /// must not reuse the upstream connection).
    pub(crate) fn length_and_coding(&self) -> bool {
        self.coded && (self.length.is_some() || self.bad_length)
    }

    /// Why the coding is not exactly one `chunked`, if it is not.
    fn coding_error(&self) -> Option<FramingError> {
        match (self.chunked, self.other_coding) {
            (0, true) => Some(FramingError::UnknownCoding),
            (0, false) => Some(FramingError::BadChunked),
            (n, _) if n > 1 || !self.chunked_last => Some(FramingError::BadChunked),
            (_, true) => Some(FramingError::UnknownCoding),
            _ => None,
        }
    }

    /// The framing of a request with these fields.
    pub(crate) fn request(&self) -> Result<Framing, FramingError> {
        if self.coded {
            if let Some(e) = self.coding_error() {
                return Err(e);
            }
            if self.length.is_some() || self.bad_length {
                return Err(FramingError::LengthAndCoding);
            }
            return Ok(Framing::Chunked);
        }
        if self.bad_length {
            return Err(FramingError::BadLength);
        }
        Ok(self.length.map_or(Framing::Empty, Framing::Length))
    }

    /// The framing of a response with these fields and `status` to a request that was
    /// (`head_request`) or was not a HEAD.
    pub(crate) fn response(
        &self,
        status: u16,
        head_request: bool,
    ) -> Result<Framing, FramingError> {
        if head_request || status < 200 || status == 204 || status == 304 {
            return Ok(Framing::Empty);
        }
        if self.coded {
            return match self.coding_error() {
                Some(e) => Err(e),
                None => Ok(Framing::Chunked),
            };
        }
        if self.bad_length {
            return Err(FramingError::BadLength);
        }
        Ok(self.length.map_or(Framing::Close, Framing::Length))
    }
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), without overflow.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Replaces the framing fields of a request about to be sent by hyper's client with ones
/// written from `framing` (`chunked_ok`: the upstream speaks HTTP/1.1; HTTP/2 frames
/// bodies itself).
pub(crate) fn set_request_fields(headers: &mut HeaderMap, framing: Framing, chunked_ok: bool) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    match framing {
        Framing::Length(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        Framing::Chunked if chunked_ok => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        Framing::Chunked | Framing::Empty | Framing::Close => {}
    }
}

/// Replaces the framing fields of a response about to be sent by hyper's server: the
/// length of a `Length` body, the length a bodiless response (HEAD, 304) announces
/// (`announced`), and nothing for chunked or close-delimited bodies (hyper chunks them).
pub(crate) fn set_response_fields(
    headers: &mut HeaderMap,
    framing: Framing,
    announced: Option<u64>,
) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let length = match framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => announced,
        Framing::Chunked | Framing::Close => None,
    };
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

/// Writes `n` in lowercase hex (a chunk size) into `out`.
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((n >> (i * 4)) & 0xf) as usize]);
    }
}

/// Writes `n` in decimal (a `Content-Length`) into `out`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The framing fields of `lines`: `("cl", value)` or `("te", value)`.
    fn fields(lines: &[(&str, &str)]) -> FramingFields {
        let mut f = FramingFields::default();
        for (name, value) in lines {
            match *name {
                "cl" => f.length(value.as_bytes()),
                _ => f.coding(value.as_bytes()),
            }
        }
        f
    }

    /// Each row: the framing fields of a request, and the decision (RFC section).
    #[test]
    fn request_framing_table() {
        use Framing::*;
        use FramingError::*;
        type Row<'a> = (
            &'a [(&'a str, &'a str)],
            Result<Framing, FramingError>,
            &'a str,
        );
        let rows: &[Row<'_>] = &[
            (
                &[],
                Ok(Empty),
                "RFC 9112 §6.3 (7): no length, no coding: no body",
            ),
            (&[("cl", "0")], Ok(Length(0)), "RFC 9112 §6.3 (6)"),
            (&[("cl", "12")], Ok(Length(12)), "RFC 9112 §6.3 (6)"),
            (
                &[("cl", "5"), ("cl", "5")],
                Ok(Length(5)),
                "RFC 9110 §8.6: equal repeats",
            ),
            (
                &[("cl", "5, 5")],
                Ok(Length(5)),
                "RFC 9110 §8.6: equal list",
            ),
            (
                &[("cl", "5"), ("cl", "6")],
                Err(BadLength),
                "RFC 9112 §6.3 (5)",
            ),
            (&[("cl", "+5")], Err(BadLength), "RFC 9110 §8.6: 1*DIGIT"),
            (&[("cl", "")], Err(BadLength), "RFC 9110 §8.6: 1*DIGIT"),
            (
                &[("cl", "99999999999999999999")],
                Err(BadLength),
                "RFC 9112 §6.3 (5): overflow",
            ),
            (&[("te", "chunked")], Ok(Chunked), "RFC 9112 §6.3 (4)"),
            (
                &[("te", "Chunked")],
                Ok(Chunked),
                "RFC 9112 §7: case-insensitive",
            ),
            (
                &[("te", "chunked, chunked")],
                Err(BadChunked),
                "RFC 9112 §6.1: not twice",
            ),
            (
                &[("te", "chunked"), ("te", "chunked")],
                Err(BadChunked),
                "RFC 9112 §6.1",
            ),
            (
                &[("te", "chunked, gzip")],
                Err(BadChunked),
                "RFC 9112 §6.3 (4): not last",
            ),
            (
                &[("te", "gzip, chunked")],
                Err(UnknownCoding),
                "RFC 9112 §6.1: 501",
            ),
            (&[("te", "gzip")], Err(UnknownCoding), "RFC 9112 §6.1: 501"),
            (
                &[("te", "")],
                Err(BadChunked),
                "RFC 9112 §6.1: 1#transfer-coding",
            ),
            (
                &[("te", "chunked"), ("cl", "3")],
                Err(LengthAndCoding),
                "RFC 9112 §6.1",
            ),
            (
                &[("cl", "3"), ("te", "chunked")],
                Err(LengthAndCoding),
                "RFC 9112 §6.1",
            ),
        ];
        for (lines, want, why) in rows {
            assert_eq!(fields(lines).request(), *want, "{lines:?} ({why})");
        }
    }

    #[test]
    fn response_framing_table() {
        use Framing::*;
        type Row<'a> = (
            &'a [(&'a str, &'a str)],
            u16,
            bool,
            Result<Framing, FramingError>,
            &'a str,
        );
        let rows: &[Row<'_>] = &[
            (
                &[("cl", "5")],
                200,
                true,
                Ok(Empty),
                "RFC 9112 §6.3 (1): HEAD",
            ),
            (&[("cl", "5")], 304, false, Ok(Empty), "RFC 9112 §6.3 (1)"),
            (&[], 204, false, Ok(Empty), "RFC 9112 §6.3 (1)"),
            (&[], 103, false, Ok(Empty), "RFC 9112 §6.3 (1)"),
            (
                &[("cl", "0")],
                200,
                false,
                Ok(Length(0)),
                "RFC 9112 §6.3 (6)",
            ),
            (
                &[("te", "chunked"), ("cl", "9")],
                200,
                false,
                Ok(Chunked),
                "RFC 9112 §6.3 (3)",
            ),
            (
                &[("te", "chunked, chunked")],
                200,
                false,
                Err(FramingError::BadChunked),
                "§6.1",
            ),
            (
                &[("te", "gzip")],
                200,
                false,
                Err(FramingError::UnknownCoding),
                "nginx: 502",
            ),
            (
                &[("cl", "1, 2")],
                200,
                false,
                Err(FramingError::BadLength),
                "§6.3 (5)",
            ),
            (&[], 200, false, Ok(Close), "RFC 9112 §6.3 (8)"),
        ];
        for (lines, status, head, want, why) in rows {
            assert_eq!(
                fields(lines).response(*status, *head),
                *want,
                "{lines:?} {status} ({why})"
            );
        }
    }

    #[test]
    fn numbers_are_written_without_allocation() {
        let mut out = Vec::new();
        for (n, want) in [
            (0u64, "0"),
            (10, "a"),
            (0x1f, "1f"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            out.clear();
            push_hex(&mut out, n);
            assert_eq!(out, want.as_bytes());
        }
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
