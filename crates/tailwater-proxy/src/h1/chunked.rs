//! A re-encoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1): it finds where a
//! body ends, counts its data bytes (for the request body limit), and writes the body out
//! again framed by the proxy: one chunk per chunk received, its size in lowercase hex
//! without extensions, and a last chunk without trailer fields (as nginx does). Nothing the
//! sender put in a size line or a trailer reaches the next hop, so the next hop cannot read
//! an extension, a size or a trailer line differently from the proxy.
//!
//! Refused (the message is malformed): a size that is not 1–16 hex digits or is 2^63 or
//! more (a size some recipients would read as negative), anything but whitespace and `;`
//! extensions after it, control characters in an extension, a line not ended by CRLF, a
//! trailer line without a colon or with a name that is not a token, and size lines or a
//! trailer section over their bounds.

/// Longest chunk-size line (size and extensions) or trailer field line accepted.
const MAX_LINE: usize = 4096;

/// Largest trailer section accepted (its lines are dropped, but they must be read).
const MAX_TRAILERS: usize = 16 * 1024;

/// Largest chunk size (2^63 - 1): what a signed 64-bit parser on the next hop can read.
const MAX_SIZE: u64 = i64::MAX as u64;

/// Where the scanner is within the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size.
    Size {
        digits: u8,
        value: u64,
    },
    /// Whitespace after the size (RFC 9112 §7.1.1 BWS before `;`).
    SizeWs {
        value: u64,
    },
    /// After `;`: extensions up to CR (dropped).
    Extension {
        len: usize,
        value: u64,
    },
    /// Expecting LF after the size line.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data.
    Data {
        left: u64,
    },
    /// Expecting CR, then LF after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    /// Inside a trailer field name of `len` bytes.
    TrailerName {
        len: usize,
    },
    /// Inside a trailer field value (the line is `len` bytes so far).
    TrailerValue {
        len: usize,
    },
    /// Expecting LF after a trailer line.
    TrailerLf,
    /// Expecting LF after the final CR.
    FinalLf,
    /// The body ended.
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body")]
pub(crate) struct Malformed;

/// What one call to [`Scanner::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Bytes of the input that belong to this body.
    pub(crate) consumed: usize,
    /// Chunk data bytes among them.
    pub(crate) data: u64,
    /// The body ended within them.
    pub(crate) done: bool,
}

/// Tracks one chunked body across reads.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    state: State,
    /// Trailer bytes read so far.
    trailers: usize,
    /// A `grpc-status` trailer, read while the trailers are dropped.
    grpc: GrpcTrailer,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            state: State::Size {
                digits: 0,
                value: 0,
            },
            trailers: 0,
            grpc: GrpcTrailer::default(),
        }
    }
}

/// Reads a `grpc-status` trailer byte by byte (the trailers are dropped, not forwarded,
/// but gRPC's status is how the upstream says it is overloaded).
#[derive(Debug, Clone, Default)]
struct GrpcTrailer {
    /// Bytes of the current trailer name that match `grpc-status`; `NO_MATCH` if not.
    matched: u8,
    /// The value so far (decimal), and whether it was malformed.
    code: u32,
    bad: bool,
    /// The last `grpc-status` trailer: its code, or `None` if malformed.
    status: Option<Option<u32>>,
}

const GRPC_STATUS: &[u8] = b"grpc-status";
const NO_MATCH: u8 = u8::MAX;

impl GrpcTrailer {
    /// One byte of a trailer line, in `state` after it.
    fn byte(&mut self, state: State, b: u8) {
        let full = GRPC_STATUS.len() as u8;
        match state {
            State::TrailerName { len: 1 } => {
                self.matched = u8::from(b.eq_ignore_ascii_case(&GRPC_STATUS[0]));
                if self.matched == 0 {
                    self.matched = NO_MATCH;
                }
            }
            State::TrailerName { .. } => {
                let at = usize::from(self.matched);
                self.matched = match GRPC_STATUS.get(at) {
                    Some(want) if self.matched != NO_MATCH && b.eq_ignore_ascii_case(want) => {
                        self.matched + 1
                    }
                    _ => NO_MATCH,
                };
            }
            // The colon after the name.
            State::TrailerValue { len } if len == GRPC_STATUS.len() + 1 => {}
            State::TrailerValue { .. } if self.matched == full => match b {
                b'0'..=b'9' => {
                    self.code = self
                        .code
                        .saturating_mul(10)
                        .saturating_add(u32::from(b - b'0'));
                }
                b' ' | b'\t' => {}
                _ => self.bad = true,
            },
            State::TrailerLf => {
                if self.matched == full {
                    self.status = Some((!self.bad).then_some(self.code));
                }
                self.matched = NO_MATCH;
                self.code = 0;
                self.bad = false;
            }
            _ => {}
        }
    }
}

impl Scanner {
    /// The outcome a `grpc-status` trailer implies, once the body has ended with one
    /// (tailwater-tower's table: a malformed value is a drop).
    pub(crate) fn grpc_outcome(&self) -> Option<tailwater_tower::classify::Outcome> {
        use tailwater_tower::classify::{Outcome, grpc_code_outcome};
        self.grpc.status.map(|code| match code {
            Some(code) => grpc_code_outcome(code),
            None => Outcome::Dropped,
        })
    }

    /// Scans `input`, the next bytes of the body, and appends the re-encoded body to
    /// `out`. On an error, what was appended is a prefix of a valid body: the caller must
    /// not let the next hop reuse the connection.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, Malformed> {
        let mut i = 0;
        let mut data = 0u64;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Size { digits, value } => match hex(b) {
                    Some(d) if digits < 16 && value <= (MAX_SIZE - u64::from(d)) / 16 => {
                        State::Size {
                            digits: digits + 1,
                            value: value << 4 | u64::from(d),
                        }
                    }
                    Some(_) => return Err(Malformed),
                    None if digits == 0 => return Err(Malformed),
                    None => match b {
                        b'\r' => State::SizeLf { value },
                        b';' => State::Extension { len: 0, value },
                        b' ' | b'\t' => State::SizeWs { value },
                        _ => return Err(Malformed),
                    },
                },
                State::SizeWs { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b';' => State::Extension { len: 0, value },
                    b' ' | b'\t' => State::SizeWs { value },
                    _ => return Err(Malformed),
                },
                State::Extension { len, value } => match b {
                    b'\r' => State::SizeLf { value },
                    _ if len >= MAX_LINE || !field_byte(b) => return Err(Malformed),
                    _ => State::Extension {
                        len: len + 1,
                        value,
                    },
                },
                State::SizeLf { value } => match b {
                    b'\n' if value == 0 => State::TrailerStart,
                    b'\n' => {
                        crate::framing::push_hex(out, value);
                        out.extend_from_slice(b"\r\n");
                        State::Data { left: value }
                    }
                    _ => return Err(Malformed),
                },
                State::Data { left } => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    data += take as u64;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(Malformed),
                },
                State::DataLf => match b {
                    b'\n' => {
                        out.extend_from_slice(b"\r\n");
                        State::Size {
                            digits: 0,
                            value: 0,
                        }
                    }
                    _ => return Err(Malformed),
                },
                State::TrailerStart => match b {
                    b'\r' => State::FinalLf,
                    _ if tchar(b) => State::TrailerName { len: 1 },
                    _ => return Err(Malformed),
                },
                State::TrailerName { len } => match b {
                    b':' => State::TrailerValue { len: len + 1 },
                    _ if tchar(b) && len < MAX_LINE => State::TrailerName { len: len + 1 },
                    _ => return Err(Malformed),
                },
                State::TrailerValue { len } => match b {
                    b'\r' => State::TrailerLf,
                    _ if len >= MAX_LINE || !field_byte(b) => return Err(Malformed),
                    _ => State::TrailerValue { len: len + 1 },
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(Malformed),
                },
                State::FinalLf => match b {
                    b'\n' => {
                        out.extend_from_slice(b"0\r\n\r\n");
                        State::Done
                    }
                    _ => return Err(Malformed),
                },
                State::Done => break,
            };
            if matches!(
                self.state,
                State::TrailerName { .. } | State::TrailerValue { .. } | State::TrailerLf
            ) {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(Malformed);
                }
                self.grpc.byte(self.state, b);
            }
            i += 1;
            if self.state == State::Done {
                break;
            }
        }
        Ok(Progress {
            consumed: i,
            data,
            done: self.state == State::Done,
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A `tchar` of RFC 9110 §5.6.2 (field names, extension names).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte allowed in a field value or an extension (RFC 9110 §5.5): visible ASCII,
/// space, tab, obs-text; never a control character.
fn field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n";
    /// `BODY` as the proxy writes it: no extension, no trailer.
    const REENCODED: &[u8] = b"5\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";

    fn feed(s: &mut Scanner, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, Malformed> {
        s.feed(input, out)
    }

    #[test]
    fn finds_the_end_in_one_piece_and_leaves_what_follows() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut out = Vec::new();
        let p = Scanner::default().feed(&input, &mut out).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: BODY.len(),
                data: 21,
                done: true
            }
        );
        assert_eq!(out, REENCODED);
    }

    #[test]
    fn finds_the_end_byte_by_byte() {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        let mut data = 0;
        for (i, b) in BODY.iter().enumerate() {
            let p = feed(&mut s, std::slice::from_ref(b), &mut out).unwrap();
            assert_eq!(p.consumed, 1);
            data += p.data;
            assert_eq!(p.done, i == BODY.len() - 1, "byte {i}");
        }
        assert_eq!(data, 21);
        assert_eq!(out, REENCODED);
        assert_eq!(
            feed(&mut s, b"more", &mut out).unwrap().consumed,
            0,
            "nothing after the end"
        );
    }

    proptest::proptest! {
        /// However the body is cut into reads, the scanner finds the same end and the same
        /// data length, and writes the same canonical body.
        #[test]
        fn any_split_finds_the_same_end(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..40), 0..6),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            ext in proptest::bool::ANY,
        ) {
            let mut body = Vec::new();
            let mut canonical = Vec::new();
            let mut data = 0u64;
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                let size = format!("{:X}", c.len());
                body.extend_from_slice(size.as_bytes());
                if ext {
                    body.extend_from_slice(b" ; a=\"b;c\"");
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
                canonical.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                canonical.extend_from_slice(c);
                canonical.extend_from_slice(b"\r\n");
                data += c.len() as u64;
            }
            body.extend_from_slice(b"0\r\n\r\n");
            canonical.extend_from_slice(b"0\r\n\r\n");
            let total = body.len();
            body.extend_from_slice(b"trailing bytes of the next message");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(body.len());
            let mut s = Scanner::default();
            let mut out = Vec::new();
            let (mut at, mut seen, mut end) = (0, 0, None);
            for cut in cuts {
                if cut <= at || end.is_some() {
                    continue;
                }
                let p = s.feed(&body[at..cut], &mut out).expect("well-formed");
                seen += p.data;
                if p.done {
                    end = Some(at + p.consumed);
                }
                at = cut;
            }
            proptest::prop_assert_eq!(end, Some(total));
            proptest::prop_assert_eq!(seen, data);
            proptest::prop_assert_eq!(out, canonical);
        }

        /// Arbitrary bytes never panic and never claim more than they were given.
        #[test]
        fn arbitrary_input_is_handled(input in proptest::collection::vec(0u8..=255, 0..300)) {
            let mut out = Vec::new();
            if let Ok(p) = Scanner::default().feed(&input, &mut out) {
                proptest::prop_assert!(p.consumed <= input.len());
                proptest::prop_assert!(p.data <= p.consumed as u64);
            }
        }
    }

    /// Each row: a malformed body and the rule it breaks (RFC 9112 §7.1 unless stated).
    #[test]
    fn rejects_malformed_bodies() {
        for (bad, why) in [
            (&b"x\r\n"[..], "chunk-size = 1*HEXDIG"),
            (b"\r\n", "chunk-size = 1*HEXDIG"),
            (b"5\r\nhelloX", "CRLF after the data"),
            (b"5\nhello", "bare LF"),
            (b"11111111111111111\r\n", "17 digits"),
            (
                b"8000000000000000\r\n",
                "2^63: negative for a signed reader",
            ),
            (b"ffffffffffffffff\r\n", "2^64 - 1"),
            (b"5 x\r\n", "§7.1.1: only `;` extensions after BWS"),
            (b"5;a\x00b\r\n", "§7.1.1: no control characters"),
            (b"5;a\nb\r\n", "§7.1.1: bare LF inside an extension"),
            (
                b"0\r\nbad\r\n\r\n",
                "§7.1.2: a trailer line without a colon",
            ),
            (b"0\r\nbad\nline", "bare LF in the trailer section"),
            (b"0\r\n: v\r\n\r\n", "RFC 9110 §5.1: empty field name"),
            (b"0\r\na b: v\r\n\r\n", "RFC 9110 §5.1: name is a token"),
            (
                b"0\r\na: \x01\r\n\r\n",
                "RFC 9110 §5.5: no control characters",
            ),
            (b"0\r\n\rX", "CRLF at the end"),
        ] {
            let mut out = Vec::new();
            assert_eq!(
                Scanner::default().feed(bad, &mut out),
                Err(Malformed),
                "{bad:?}: {why}"
            );
        }
        let mut out = Vec::new();
        let max = b"7fffffffffffffff\r\n";
        assert!(
            Scanner::default().feed(max, &mut out).is_ok(),
            "2^63 - 1 is a size"
        );
        let long = [b'a'; MAX_LINE + 2];
        let mut s = Scanner::default();
        s.feed(b"1;", &mut out).unwrap();
        assert_eq!(s.feed(&long, &mut out), Err(Malformed));
        let mut s = Scanner::default();
        s.feed(b"0\r\n", &mut out).unwrap();
        let line = b"x-a: 0123456789012345678901234567890123456789\r\n";
        let lines = line.repeat(2 * MAX_TRAILERS / line.len());
        assert_eq!(
            s.feed(&lines, &mut out),
            Err(Malformed),
            "trailer section bound"
        );
    }
}
