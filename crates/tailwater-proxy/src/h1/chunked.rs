//! A scanner for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1) that finds where a
//! body ends without decoding it: the lean path forwards chunked bodies byte for byte and
//! only needs to know how many of the bytes it holds belong to the message, and how many
//! data bytes that is (for the request body limit).

/// Longest chunk-size line (size and extensions) or trailer field line accepted.
const MAX_LINE: usize = 4096;

/// Where the scanner is within the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size.
    Size {
        digits: u8,
        value: u64,
    },
    /// After the size: extensions up to CR.
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
    /// Inside the trailer section: a field line of `len` bytes so far.
    Trailer {
        len: usize,
    },
    /// Expecting LF after a trailer line of `len` bytes (0: the final empty line).
    TrailerLf {
        len: usize,
    },
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
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            state: State::Size {
                digits: 0,
                value: 0,
            },
        }
    }
}

impl Scanner {
    /// Scans `input`, the next bytes of the body.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<Progress, Malformed> {
        let mut i = 0;
        let mut data = 0u64;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Size { digits, value } => match hex(b) {
                    Some(d) if digits < 16 => State::Size {
                        digits: digits + 1,
                        value: value << 4 | u64::from(d),
                    },
                    Some(_) => return Err(Malformed),
                    None if digits == 0 => return Err(Malformed),
                    None => match b {
                        b'\r' => State::SizeLf { value },
                        b';' | b' ' | b'\t' => State::Extension { len: 0, value },
                        _ => return Err(Malformed),
                    },
                },
                State::Extension { len, value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(Malformed),
                    _ if len >= MAX_LINE => return Err(Malformed),
                    _ => State::Extension {
                        len: len + 1,
                        value,
                    },
                },
                State::SizeLf { value } => match b {
                    b'\n' if value == 0 => State::Trailer { len: 0 },
                    b'\n' => State::Data { left: value },
                    _ => return Err(Malformed),
                },
                State::Data { left } => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
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
                    b'\n' => State::Size {
                        digits: 0,
                        value: 0,
                    },
                    _ => return Err(Malformed),
                },
                State::Trailer { len } => match b {
                    b'\r' => State::TrailerLf { len },
                    b'\n' => return Err(Malformed),
                    _ if len >= MAX_LINE => return Err(Malformed),
                    _ => State::Trailer { len: len + 1 },
                },
                State::TrailerLf { len } => match b {
                    b'\n' if len == 0 => State::Done,
                    b'\n' => State::Trailer { len: 0 },
                    _ => return Err(Malformed),
                },
                State::Done => break,
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n";

    #[test]
    fn finds_the_end_in_one_piece_and_leaves_what_follows() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let p = Scanner::default().feed(&input).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: BODY.len(),
                data: 21,
                done: true
            }
        );
    }

    #[test]
    fn finds_the_end_byte_by_byte() {
        let mut s = Scanner::default();
        let mut data = 0;
        for (i, b) in BODY.iter().enumerate() {
            let p = s.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(p.consumed, 1);
            data += p.data;
            assert_eq!(p.done, i == BODY.len() - 1, "byte {i}");
        }
        assert_eq!(data, 21);
        assert_eq!(
            s.feed(b"more").unwrap().consumed,
            0,
            "nothing after the end"
        );
    }

    proptest::proptest! {
        /// However the body is cut into reads, the scanner finds the same end and the same
        /// data length.
        #[test]
        fn any_split_finds_the_same_end(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..40), 0..6),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let mut body = Vec::new();
            let mut data = 0u64;
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
                data += c.len() as u64;
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let total = body.len();
            body.extend_from_slice(b"trailing bytes of the next message");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(body.len());
            let mut s = Scanner::default();
            let (mut at, mut seen, mut end) = (0, 0, None);
            for cut in cuts {
                if cut <= at || end.is_some() {
                    continue;
                }
                let p = s.feed(&body[at..cut]).expect("well-formed");
                seen += p.data;
                if p.done {
                    end = Some(at + p.consumed);
                }
                at = cut;
            }
            proptest::prop_assert_eq!(end, Some(total));
            proptest::prop_assert_eq!(seen, data);
        }

        /// Arbitrary bytes never panic and never claim more than they were given.
        #[test]
        fn arbitrary_input_is_handled(input in proptest::collection::vec(0u8..=255, 0..300)) {
            if let Ok(p) = Scanner::default().feed(&input) {
                proptest::prop_assert!(p.consumed <= input.len());
                proptest::prop_assert!(p.data <= p.consumed as u64);
            }
        }
    }

    #[test]
    fn rejects_malformed_bodies() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX",
            b"5\nhello",
            b"11111111111111111\r\n",
            b"0\r\nbad\nline",
        ] {
            assert_eq!(Scanner::default().feed(bad), Err(Malformed), "{bad:?}");
        }
        let long = [b'a'; MAX_LINE + 2];
        let mut s = Scanner::default();
        s.feed(b"1;").unwrap();
        assert_eq!(s.feed(&long), Err(Malformed));
    }
}
