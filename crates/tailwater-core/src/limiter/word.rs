//! The packed admission word and the values read beside it on every admission.
//!
//! In-flight permits and queued waiters live in one `u64` ([`Shared::word`](super::Shared)),
//! so that a release and an enqueue can never miss each other: each is one read-modify-write
//! of the word and sees the other's effect or has its own seen.

use crate::sync::AtomicUsize;

// The layout of [`Shared::word`]: in-flight permits in bits 0..24, queued waiters in bits
// 24..48, and a wrapping admission sequence number in bits 48..64 that picks the permits
// that measure their RTT (see `RttSampling`).

/// The largest limit (and in-flight count) the word can hold.
pub(crate) const MAX_LIMIT: usize = (1 << 24) - 1;
/// The in-flight count's bits.
pub(super) const IN_FLIGHT: u64 = MAX_LIMIT as u64;
/// One waiter.
pub(super) const WAITER: u64 = 1 << 24;
/// One admission in the sequence number.
pub(super) const SEQ: u64 = 1 << 48;

pub(super) fn in_flight_of(word: u64) -> usize {
    (word & IN_FLIGHT) as usize
}

pub(super) fn waiters_of(word: u64) -> usize {
    ((word >> 24) & IN_FLIGHT) as usize
}

pub(super) fn seq_of(word: u64) -> usize {
    (word >> 48) as usize
}

/// Values read on every admission and rarely written, on a cache line of their own.
pub(super) struct ReadMostly {
    pub(super) limit: AtomicUsize,
    /// `2^shift − 1`: an admission measures its RTT when its sequence number's low bits are
    /// all zero.
    pub(super) sample_mask: AtomicUsize,
}
