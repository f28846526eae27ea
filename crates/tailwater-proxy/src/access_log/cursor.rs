//! The byte-level writing of a line: a cursor over a buffer with room, numbers three
//! digits at a time from a table, and the escaping that keeps a client's bytes from
//! forging or splitting a line (see `format` for what is written where).
//!
//! Escaping: in text, every byte outside printable ASCII, `"` and `\` is written `\xHH`
//! (`\"`, `\\` for the two), as nginx does; in JSON, those bytes are written `\u00HH`
//! (the byte's value, so bytes that are not UTF-8 survive as their value). No client byte
//! can end a line or a quoted value.

use std::io::Write as _;
use std::net::SocketAddr;

/// A write position in a buffer that the caller has checked has room for what is
/// written (a line is at most `format::MAX_LINE` bytes); every write is still bounds-checked
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

    /// The bytes written since position `from`.
    pub(super) fn written_since(&self, from: usize) -> &[u8] {
        &self.buf[from..self.at]
    }

    /// Writes the first `len` bytes of `src` (`len <= N`). When the buffer has room for
    /// all `N`, all are copied (a copy of a known size: a few moves, no call to
    /// `memcpy`) and the bytes past `len` are overwritten by what follows, or lie past
    /// the line's end.
    #[inline]
    pub(super) fn put_over<const N: usize>(&mut self, src: &[u8; N], len: usize) {
        match self.buf.get_mut(self.at..self.at + N) {
            Some(to) => to.copy_from_slice(src),
            None => self.buf[self.at..self.at + len].copy_from_slice(&src[..len]),
        }
        self.at += len;
    }

    #[inline]
    pub(super) fn put(&mut self, s: &[u8]) {
        self.buf[self.at..self.at + s.len()].copy_from_slice(s);
        self.at += s.len();
    }

    #[inline]
    pub(super) fn byte(&mut self, b: u8) {
        self.buf[self.at] = b;
        self.at += 1;
    }

    /// `n` in decimal: below 1000 (statuses, most sizes and limits) from the three-digit
    /// table ([`DIGITS3`]) inline, larger numbers out of line.
    #[inline]
    pub(super) fn num(&mut self, n: u64) {
        if n < 1000 {
            self.short(n as usize);
        } else {
            self.long(n);
        }
    }

    /// [`Self::num`] of `n` from 1000 up: below a million (ports, sizes) in two table
    /// lookups.
    #[inline(never)]
    fn long(&mut self, n: u64) {
        if n < 1_000_000 {
            self.short(n as usize / 1000);
            self.put_over(&digits3(n as usize % 1000), 3);
        } else {
            self.padded(n, 6);
        }
    }

    /// `n` (below 1000) in decimal, without leading zeros: its three digits shifted so
    /// that the first is the number's, written as one word.
    #[inline]
    fn short(&mut self, n: usize) {
        let len = 1 + usize::from(n >= 10) + usize::from(n >= 100);
        let word = DIGITS3[n] >> (8 * (3 - len));
        self.put_over(&word.to_le_bytes(), len);
    }

    /// `n` in decimal, with leading zeros to at least `width` digits.
    pub(super) fn padded(&mut self, mut n: u64, width: usize) {
        let len = (n.checked_ilog10().unwrap_or(0) as usize + 1).max(width);
        let out = &mut self.buf[self.at..self.at + len];
        n = pairs_from_right(out, n);
        if len % 2 == 1 {
            out[0] = b'0' + (n % 10) as u8;
        }
        self.at += len;
    }

    /// Milliseconds, three digits.
    #[inline]
    pub(super) fn millis(&mut self, ms: u32) {
        self.put_over(&digits3(ms as usize % 1000), 3);
    }

    /// Nanoseconds as seconds with microseconds (`0.000412`).
    #[inline]
    pub(super) fn secs(&mut self, nanos: u64) {
        if nanos < 1_000_000_000 {
            // Under a second (most requests): `0.` and six digits, one word.
            self.put(&micros(
                nanos / 1000,
                u64::from_le_bytes(*b"0.\0\0\0\0\0\0"),
            ));
        } else {
            self.long_secs(nanos);
        }
    }

    /// [`Self::secs`] from a second up (out of line: the common case stays small).
    #[inline(never)]
    fn long_secs(&mut self, nanos: u64) {
        self.num(nanos / 1_000_000_000);
        let [_, fraction @ ..] = micros(nanos % 1_000_000_000 / 1000, u64::from(b'.') << 8);
        self.put(&fraction);
    }

    /// The client's address: IPv4 by hand, IPv6 (rare) through `Display`.
    pub(super) fn peer(&mut self, p: SocketAddr) {
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

/// Fills `out` from its right end with `n`'s decimal digits two at a time (leading zeros
/// when `n` is short), stopping with one byte left when `out`'s length is odd; returns what
/// is left of `n` for that byte. Inlined so a caller with a constant length gets the loop
/// unrolled.
#[inline(always)]
fn pairs_from_right(out: &mut [u8], mut n: u64) -> u64 {
    let mut i = out.len();
    while i >= 2 {
        let pair = (n % 100) as usize * 2;
        out[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
        n /= 100;
        i -= 2;
    }
    n
}

/// `us` (below a million) as six digits in bytes 2 to 7 of `word` (whose first two
/// bytes are kept): two lookups in [`DIGITS3`], no loop.
#[inline]
fn micros(us: u64, word: u64) -> [u8; 8] {
    let (hi, lo) = ((us / 1000) as usize, (us % 1000) as usize);
    (word | u64::from(DIGITS3[hi]) << 16 | u64::from(DIGITS3[lo]) << 40).to_le_bytes()
}

/// Whether `a` and `b` hold the same bytes: values up to 16 bytes (methods, most targets
/// and routes) compared in at most two overlapping loads of each, with no call.
#[inline(always)]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| -> u64 {
        <[u8; 8]>::try_from(&s[at..at + 8]).map_or(0, u64::from_le_bytes)
    };
    let half = |s: &[u8], at: usize| -> u32 {
        <[u8; 4]>::try_from(&s[at..at + 4]).map_or(0, u32::from_le_bytes)
    };
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// `n` (below 1000) as three digits, with leading zeros.
#[inline]
fn digits3(n: usize) -> [u8; 4] {
    DIGITS3[n].to_le_bytes()
}

/// `000` to `999`: each number's three digits in the low three bytes (little-endian:
/// the hundreds first), for writing three digits with one load.
static DIGITS3: [u32; 1000] = {
    let mut t = [0; 1000];
    let mut n = 0;
    while n < 1000 {
        t[n] = (b'0' + (n / 100) as u8) as u32
            | ((b'0' + (n / 10 % 10) as u8) as u32) << 8
            | ((b'0' + (n % 10) as u8) as u32) << 16;
        n += 1;
    }
    t
};

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
/// The plain bytes at the start (a typical value is all plain) are copied as they are
/// checked ([`copy_plain`]); after the first special byte, each run of plain bytes up to
/// the next special one is found eight bytes at a time ([`plain_run`]) and copied whole.
#[inline]
pub(crate) fn escape(o: &mut Cursor<'_>, raw: &[u8], json: bool, cap: usize) -> usize {
    let copied = copy_plain(o, raw, cap);
    if copied == raw.len() {
        return copied;
    }
    escape_rest(o, raw, copied, json, cap)
}

/// [`escape`] after its first `copied` bytes (plain, and written).
#[inline(never)]
fn escape_rest(o: &mut Cursor<'_>, raw: &[u8], copied: usize, json: bool, cap: usize) -> usize {
    let start = o.len() - copied;
    let mut rest = &raw[copied..];
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

/// Copies the [`PLAIN`] bytes at the start of `raw`, at most `cap` of them, to `o` (which
/// has room for `cap`); how many (0 when a value under eight bytes has a special byte:
/// [`escape_rest`] then takes it from its start).
///
/// Each word is stored as it is checked, and the cursor moves past its plain bytes only.
/// The last bytes of a value of eight or more are one more word, overlapping the one
/// before; a shorter value is checked whole with two overlapping loads (four bytes, or
/// the first, middle and last) and stored the same way: no loop over single bytes.
#[inline]
fn copy_plain(o: &mut Cursor<'_>, raw: &[u8], cap: usize) -> usize {
    let n = raw.len().min(cap);
    let src = &raw[..n];
    let out = &mut o.buf[o.at..o.at + n];
    if n < 8 {
        let word = match n {
            0 => return 0,
            1..=3 => {
                let (a, b, c) = (src[0], src[n / 2], src[n - 1]);
                u64::from_le_bytes([a, b, c, b' ', b' ', b' ', b' ', b' '])
            }
            _ => {
                let lo = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
                let hi = u32::from_le_bytes([src[n - 4], src[n - 3], src[n - 2], src[n - 1]]);
                u64::from(lo) | (u64::from(hi) << 32)
            }
        };
        if special_bytes(word) != 0 {
            return 0;
        }
        if n >= 4 {
            out[..4].copy_from_slice(&src[..4]);
            out[n - 4..].copy_from_slice(&src[n - 4..]);
        } else {
            out[0] = src[0];
            out[n / 2] = src[n / 2];
            out[n - 1] = src[n - 1];
        }
        o.at += n;
        return n;
    }
    let mut i = 0;
    loop {
        // The last word ends at `n`, overlapping its predecessor (whose bytes are plain).
        let at = i.min(n - 8);
        let (Ok(word), Some(to)) = (
            <[u8; 8]>::try_from(&src[at..at + 8]),
            out.get_mut(at..at + 8),
        ) else {
            // Unreachable (`at + 8 <= n`): nothing is counted as copied.
            return 0;
        };
        to.copy_from_slice(&word);
        let special = special_bytes(u64::from_le_bytes(word));
        if special != 0 {
            let plain = at + (special.trailing_zeros() / 8) as usize;
            o.at += plain;
            return plain;
        }
        if at + 8 == n {
            break;
        }
        i += 8;
    }
    o.at += n;
    n
}

/// The high bit of every byte of `x` (little-endian) that is special (below 0x20, with
/// its high bit, 0x7f, `"` or `\`), and possibly of bytes above the lowest special one
/// (a borrow out of it); zero when every byte is plain.
#[inline]
fn special_bytes(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
        | (x & HIGH)
        | zero(x ^ (ONES * 0x7f))
        | zero(x ^ (ONES * u64::from(b'"')))
        | zero(x ^ (ONES * u64::from(b'\\')))
}

/// How many bytes at the start of `s` are [`PLAIN`]: eight at a time while they last (a
/// word has a special byte if any byte is below 0x20, has its high bit, or equals 0x7f,
/// `"` or `\`; the lowest flagged byte is always a true one, as a false flag comes only
/// from a borrow out of a true one below it), then through [`CLASS`].
pub(crate) fn plain_run(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(Ok(word)) = s.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let special = special_bytes(u64::from_le_bytes(word));
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
