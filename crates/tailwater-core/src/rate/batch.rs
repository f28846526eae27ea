//! Several keys decided together: the semantics of one Envoy RLS call (several descriptors,
//! each its own key, quota and hit count), all charged or none.
//!
//! The same pure function runs in memory (under the shard locks) and after the Redis batch
//! script (on the state the script read), exactly as [`step_all`](super::gcra::step_all)
//! does for several quotas of one key.

use super::decision::RateDecision;
use super::gcra;
use super::quota::Quota;

/// How an item's denial affects the whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchClass {
    /// A denial denies the whole batch (the usual limit).
    Enforce,
    /// Evaluated and reported, never denies the batch (envoyproxy/ratelimit's
    /// `shadow_mode`); it is charged when the batch is and it admits.
    Shadow,
    /// Denies the batch only when *every* `Quota`-class item of the batch denies
    /// (envoyproxy/ratelimit's `quota_mode`).
    Quota,
}

impl BatchClass {
    /// The small integer the Redis batch script receives (0, 1, 2).
    pub fn code(self) -> u8 {
        match self {
            BatchClass::Enforce => 0,
            BatchClass::Shadow => 1,
            BatchClass::Quota => 2,
        }
    }
}

/// One item of a batch: `n` cells under `quota`, on the state in slot `slot`.
///
/// Items that share a key share a slot: they are applied in order, so the second sees the
/// first's charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    /// The quota of this item.
    pub quota: Quota,
    /// Cells asked for; 0 is a query (never charged, always admitted).
    pub n: u32,
    /// How a denial affects the batch.
    pub class: BatchClass,
    /// Index of this item's stored TAT in the `tats` slice.
    pub slot: usize,
}

/// What [`step_batch`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One decision per item, in order. When the batch is committed, admitted items report
    /// the state after their charge; when it is not, admitted items report the state
    /// without any charge (`allowed` stays `true`: *this* item was within its limit).
    pub decisions: Vec<RateDecision>,
    /// Whether the batch was admitted (and the admitted items charged).
    pub committed: bool,
}

/// Decides a batch at `now` on the stored states `tats` (indexed by [`BatchItem::slot`]).
///
/// Every item is stepped with [`gcra::step`] in order on a scratch copy of the states. The
/// batch is denied when an `Enforce` item denies, or when there are `Quota` items and all
/// of them deny. Only when it is admitted are the admitted items' charges written back to
/// `tats`; denied items are never charged (denied hits are not counted).
///
/// # Panics
///
/// If a slot is out of range of `tats` (a programming error).
///
/// ```
/// use tailwater_core::rate::{BatchClass, BatchItem, Quota, step_batch};
///
/// let small = Quota::per_second(1)?;
/// let big = Quota::per_second(100)?;
/// let items = [
///     BatchItem { quota: big, n: 1, class: BatchClass::Enforce, slot: 0 },
///     BatchItem { quota: small, n: 1, class: BatchClass::Enforce, slot: 1 },
/// ];
/// let mut tats = [0, 0];
/// assert!(step_batch(&items, 0, &mut tats).committed);
/// let before = tats;
/// let out = step_batch(&items, 0, &mut tats);
/// assert!(!out.committed);              // `small` is used up ...
/// assert!(out.decisions[0].allowed);    // ... `big` alone would admit,
/// assert_eq!(tats, before);             // but nothing was charged.
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub fn step_batch(items: &[BatchItem], now: u64, tats: &mut [u64]) -> BatchOutcome {
    let mut scratch = tats.to_vec();
    let mut decisions = Vec::with_capacity(items.len());
    let mut enforce_denied = false;
    let (mut quota_items, mut quota_denied) = (0usize, 0usize);
    for item in items {
        let (d, new_tat) = gcra::step(&item.quota, now, scratch[item.slot], item.n);
        if d.allowed {
            scratch[item.slot] = new_tat;
        }
        match item.class {
            BatchClass::Enforce => enforce_denied |= !d.allowed,
            BatchClass::Shadow => {}
            BatchClass::Quota => {
                quota_items += 1;
                quota_denied += usize::from(!d.allowed);
            }
        }
        decisions.push(d);
    }
    let committed = !enforce_denied && (quota_items == 0 || quota_denied < quota_items);
    if committed {
        tats.copy_from_slice(&scratch);
    } else {
        // Nothing is charged: report admitted items as they stand.
        for (item, d) in items.iter().zip(decisions.iter_mut()) {
            if d.allowed {
                *d = gcra::step(&item.quota, now, tats[item.slot], 0).0;
            }
        }
    }
    BatchOutcome {
        decisions,
        committed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(quota: Quota, n: u32, class: BatchClass, slot: usize) -> BatchItem {
        BatchItem {
            quota,
            n,
            class,
            slot,
        }
    }

    #[test]
    fn shadow_denial_does_not_deny_and_is_not_charged() {
        let q = Quota::per_second(1).expect("valid");
        let mut tats = [0, 0];
        let items = [
            item(q, 1, BatchClass::Enforce, 0),
            item(q, 1, BatchClass::Shadow, 1),
        ];
        assert!(step_batch(&items, 0, &mut tats).committed);
        let out = step_batch(&[item(q, 1, BatchClass::Shadow, 1)], 0, &mut tats);
        assert!(out.committed);
        assert!(!out.decisions[0].allowed);
    }

    #[test]
    fn quota_items_deny_only_when_all_deny() {
        let one = Quota::per_second(1).expect("valid");
        let two = Quota::per_second(2).expect("valid");
        let items = [
            item(one, 1, BatchClass::Quota, 0),
            item(two, 1, BatchClass::Quota, 1),
        ];
        let mut tats = [0, 0];
        assert!(step_batch(&items, 0, &mut tats).committed); // both admit
        assert!(step_batch(&items, 0, &mut tats).committed); // `two` still admits
        assert!(!step_batch(&items, 0, &mut tats).committed); // both used up
    }

    #[test]
    fn shared_slot_sees_the_earlier_charge() {
        let q = Quota::per_second(3).expect("valid");
        let items = [
            item(q, 2, BatchClass::Enforce, 0),
            item(q, 2, BatchClass::Enforce, 0),
        ];
        let mut tats = [0];
        let out = step_batch(&items, 0, &mut tats);
        assert!(!out.committed);
        assert!(out.decisions[0].allowed);
        assert_eq!(out.decisions[0].remaining, 3); // reported uncharged
        assert!(!out.decisions[1].allowed);
        assert_eq!(tats, [0]);
    }
}
