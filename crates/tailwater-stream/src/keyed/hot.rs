//! Hot-key tracking: Space-Saving (Metwally, Agrawal, El Abbadi 2005) weighted by busy time.
//!
//! Each worker keeps at most `capacity` keys. A key not tracked replaces the one with the
//! least busy time and inherits that time as its over-estimate, so a key that really
//! takes more than `1 / capacity` of the worker's time is always tracked, in bounded
//! memory whatever the number of keys.

use std::time::Duration;

/// One tracked key of one worker.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<K> {
    pub(crate) key: K,
    pub(crate) busy: Duration,
    pub(crate) items: u64,
}

/// The Space-Saving summary of one worker.
#[derive(Debug)]
pub(crate) struct HotKeys<K> {
    capacity: usize,
    pub(crate) entries: Vec<Tracked<K>>,
}

impl<K: PartialEq + Clone> HotKeys<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Counts one item of `key` that took `busy`.
    pub(crate) fn record(&mut self, key: &K, busy: Duration) {
        if let Some(entry) = self.entries.iter_mut().find(|e| &e.key == key) {
            entry.busy += busy;
            entry.items += 1;
            return;
        }
        if self.entries.len() < self.capacity {
            self.entries.push(Tracked {
                key: key.clone(),
                busy,
                items: 1,
            });
            return;
        }
        if let Some(least) = self.entries.iter_mut().min_by_key(|e| e.busy) {
            least.key = key.clone();
            least.busy += busy;
            least.items += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_key_survives_many_light_ones() {
        let mut hot = HotKeys::new(4);
        let ms = Duration::from_millis(1);
        for i in 0..1000u32 {
            hot.record(&(i % 50), ms);
            if i % 10 == 0 {
                hot.record(&999, ms * 20);
            }
        }
        let top = hot.entries.iter().max_by_key(|e| e.busy).map(|e| e.key);
        assert_eq!(top, Some(999));
        assert_eq!(hot.entries.len(), 4);
    }
}
