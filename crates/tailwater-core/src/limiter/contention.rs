//! The headroom a tier leaves free for more important tiers while they contend.
//!
//! Tier thresholds reserve capacity only under contention (see
//! [`criticality`](crate::criticality)): above its threshold a tier may borrow up to
//! `limit − headroom`, where the headroom grows by one slot each time a more important
//! request is refused and shrinks by one slot per contention window without such a refusal,
//! never beyond the threshold's reservation (`limit − capacity`). Only admissions that find
//! the limiter at or above their tier's threshold, and refusals, touch this state: the
//! admission fast path below the threshold does not.

use std::time::Duration;

use crate::criticality::{Criticality, TierThresholds};
use crate::sync::{AtomicU64, Ordering};

/// Headroom slots in the low bits of a tier's word.
const SLOTS: u64 = 24;
const SLOTS_MASK: u64 = (1 << SLOTS) - 1;
/// The millisecond of the last refusal that grew the headroom, in the high 40 bits.
const MS_MASK: u64 = (1 << (64 - SLOTS)) - 1;

pub(super) struct Contention {
    tiers: TierThresholds,
    /// Per tier, by [`Criticality::index`] (the most important tier's word is unused: it
    /// borrows from no one).
    words: [AtomicU64; 4],
    window_ms: u64,
}

impl Contention {
    pub(super) fn new(tiers: TierThresholds) -> Self {
        Self {
            tiers,
            words: std::array::from_fn(|_| AtomicU64::new(0)),
            window_ms: (tiers.contention_window().as_millis() as u64).max(1),
        }
    }

    /// The headroom a word holds at `now_ms`, after its decay.
    fn headroom_of(&self, word: u64, now_ms: u64) -> usize {
        let slots = word & SLOTS_MASK;
        let at = word >> SLOTS;
        let decayed = (now_ms & MS_MASK).saturating_sub(at) / self.window_ms;
        slots.saturating_sub(decayed) as usize
    }

    /// The most that may be in flight when a request of `tier` is admitted at `limit`:
    /// between the tier's reserved capacity and `limit`, depending on how much more important
    /// tiers have contended lately.
    pub(super) fn capacity(&self, tier: Criticality, limit: usize, now: Duration) -> usize {
        let reserved = self.tiers.capacity(tier, limit);
        let word = self.words[tier.index()].load(Ordering::Acquire);
        let headroom = self.headroom_of(word, millis(now));
        (limit - headroom.min(limit - reserved)).max(reserved)
    }

    /// A request of `tier` was refused (or could not be granted from the queue) at `limit`:
    /// every less important tier leaves one more slot free, up to its reservation.
    pub(super) fn refused(&self, tier: Criticality, limit: usize, now: Duration) {
        let now_ms = millis(now);
        for lower in &Criticality::ALL[tier.index() + 1..] {
            let max = limit - self.tiers.capacity(*lower, limit).min(limit);
            let cell = &self.words[lower.index()];
            let mut word = cell.load(Ordering::Acquire);
            loop {
                let slots = (self.headroom_of(word, now_ms) + 1).min(max) as u64;
                match cell.compare_exchange_weak(
                    word,
                    (now_ms << SLOTS) | slots,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => word = actual,
                }
            }
        }
    }
}

fn millis(now: Duration) -> u64 {
    (now.as_millis() as u64) & MS_MASK
}
