//! Bytes of a request's notes kept without an allocation on the request's thread (the
//! route's name), cut where a line would cut them.

use super::format;

/// Bytes of a record, kept inline when they fit in `N` (no allocation on the request's
/// thread: the common case), on the heap when they do not.
#[derive(Clone)]
pub(crate) struct Inline<const N: usize> {
    len: u16,
    inline: [u8; N],
    heap: Option<Box<[u8]>>,
}

impl<const N: usize> Inline<N> {
    /// `raw`, cut at [`format::MAX_FIELD`] + 1 bytes (one more than a line shows, so that
    /// the formatter knows it was cut).
    #[inline]
    pub(crate) fn new(raw: &[u8]) -> Self {
        let raw = capped(raw);
        let mut s = Inline {
            len: 0,
            inline: [0; N],
            heap: None,
        };
        match s.inline.get_mut(..raw.len()) {
            Some(to) => {
                to.copy_from_slice(raw);
                s.len = raw.len() as u16;
            }
            None => s.heap = Some(raw.into()),
        }
        s
    }

    /// The bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(h) => h,
            None => &self.inline[..usize::from(self.len)],
        }
    }
}

impl<const N: usize> std::fmt::Debug for Inline<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// `raw`, cut at [`format::MAX_FIELD`] + 1 bytes: more than a line shows of it.
fn capped(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().min(format::MAX_FIELD + 1)]
}

/// Route names up to this many bytes are kept inline.
pub(crate) const ROUTE_INLINE: usize = 32;
