//! One shard of the keyed limiter: its map, its counters and the idle sweep that keeps it
//! within its share of `max_keys`.

use super::MIN_SWEEP;
use super::entry::{InnerMap, Tats};

/// `repr(C)` keeps what every check touches (the map's header and the two counters) in the
/// first cache line of the slot, beside the mutex word: one line per check, not two.
#[repr(C)]
pub(super) struct Shard<K> {
    pub(super) map: InnerMap<K>,
    pub(super) allowed: u64,
    pub(super) denied: u64,
    pub(super) cap: usize,
    /// Try an idle sweep when `map.len()` reaches this (doubles with the live set).
    pub(super) sweep_at: usize,
    /// Do not sweep before this time. Normally the earliest time a key can go idle (a lower
    /// bound, so no sweep is wasted); when the shard is nearly full, the time by which 1/8
    /// of its keys are idle, so that every O(len) sweep frees at least len/8 entries.
    pub(super) earliest_idle: u64,
    pub(super) evicted_idle: u64,
    pub(super) evicted_active: u64,
    pub(super) rejected: u64,
}

impl<K: Eq> Shard<K> {
    pub(super) fn sweep_idle(&mut self, now: u64) {
        let before = self.map.len();
        let mut earliest = u64::MAX;
        self.map.retain(|_, t| {
            let m = t.max_tat();
            let keep = m > now;
            if keep {
                earliest = earliest.min(m);
            }
            keep
        });
        let len = self.map.len();
        self.evicted_idle += (before - len) as u64;
        self.earliest_idle = if self.nearly_full() && len >= 8 {
            // Amortise sweeps at capacity: wait until 1/8 of the keys are idle.
            let mut tats: Vec<u64> = self.map.values().map(Tats::max_tat).collect();
            let (_, eighth, _) = tats.select_nth_unstable(len / 8 - 1);
            *eighth
        } else {
            earliest
        };
        self.sweep_at = (len * 2).max(MIN_SWEEP).min(self.cap);
    }

    #[inline]
    pub(super) fn nearly_full(&self) -> bool {
        self.map.len() >= self.cap - self.cap / 8
    }

    pub(super) fn evict_oldest(&mut self, now: u64) {
        let k = (self.map.len() / 8).max(1);
        let mut tats: Vec<u64> = self.map.values().map(Tats::max_tat).collect();
        if tats.is_empty() {
            return;
        }
        let k = k.min(tats.len());
        let (_, threshold, _) = tats.select_nth_unstable(k - 1);
        let threshold = *threshold;
        let mut removed = 0;
        let mut earliest = u64::MAX;
        let (mut idle, mut active) = (0u64, 0u64);
        self.map.retain(|_, t| {
            let m = t.max_tat();
            if removed < k && m <= threshold {
                removed += 1;
                if m <= now {
                    idle += 1;
                } else {
                    active += 1;
                }
                false
            } else {
                earliest = earliest.min(m);
                true
            }
        });
        self.evicted_idle += idle;
        self.evicted_active += active;
        self.earliest_idle = earliest;
    }
}
