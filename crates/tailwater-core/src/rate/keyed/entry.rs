//! What the keyed limiter stores per key: the GCRA state ([`Tats`]) and the key with its
//! precomputed hash, looked up by a borrowed form without building an owned key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::super::decision::RateDecision;
use super::super::gcra;
use super::super::quota::Quota;

/// GCRA state of one key: one TAT per quota.
///
/// 16 bytes: the several-quota slice sits behind a second (thin) box, so that a map entry
/// (this plus the 16-byte hashed key) is 32 bytes instead of 40, and more keys share a cache
/// line in the common one-quota case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tats {
    One(u64),
    #[allow(clippy::redundant_allocation)] // the outer box makes the pointer thin
    Many(Box<Box<[u64]>>),
}

const _: () = assert!(std::mem::size_of::<Tats>() == 16);

impl Tats {
    pub(super) fn fresh(n: usize) -> Self {
        if n == 1 {
            Tats::One(0)
        } else {
            Tats::Many(Box::new(vec![0; n].into_boxed_slice()))
        }
    }

    /// The time at which every quota's bucket is full again: the key is idle after it.
    #[inline]
    pub(super) fn max_tat(&self) -> u64 {
        match self {
            Tats::One(t) => *t,
            Tats::Many(ts) => ts.iter().copied().max().unwrap_or(0),
        }
    }

    #[inline]
    pub(super) fn step(&mut self, quotas: &[Quota], now: u64, n: u32) -> RateDecision {
        match (&mut *self, quotas) {
            (Tats::One(t), [q]) => {
                let (d, new) = gcra::step(q, now, *t, n);
                *t = new;
                d
            }
            (Tats::Many(ts), qs) if ts.len() == qs.len() => gcra::step_all(qs, now, ts, n),
            (this, qs) => {
                // The quota list changed shape for this key: start it fresh.
                *this = Tats::fresh(qs.len());
                match this {
                    Tats::One(t) => {
                        let (d, new) = gcra::step(&qs[0], now, *t, n);
                        *t = new;
                        d
                    }
                    Tats::Many(ts) => gcra::step_all(qs, now, ts, n),
                }
            }
        }
    }
}

/// A key stored with its hash: the map hashes each key once (with the limiter's
/// `BuildHasher`, which also picks the shard) and the inner map reuses that hash.
pub(super) struct Hashed<K> {
    pub(super) hash: u64,
    pub(super) key: K,
}

impl<K> Hash for Hashed<K> {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

impl<K: Eq> PartialEq for Hashed<K> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

/// Lets the map be searched with a borrowed key and its precomputed hash (the owned
/// `Hashed<K>` borrows as `dyn Lookup<Q>`; so does a `Probe` of a `&Q`).
pub(super) trait Lookup<Q: ?Sized> {
    fn hash(&self) -> u64;
    fn key(&self) -> &Q;
}

impl<K: Borrow<Q>, Q: ?Sized> Lookup<Q> for Hashed<K> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn key(&self) -> &Q {
        self.key.borrow()
    }
}

pub(super) struct Probe<'a, Q: ?Sized> {
    pub(super) hash: u64,
    pub(super) key: &'a Q,
}

impl<Q: ?Sized> Lookup<Q> for Probe<'_, Q> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn key(&self) -> &Q {
        self.key
    }
}

impl<'a, K: Borrow<Q> + 'a, Q: ?Sized + 'a> Borrow<dyn Lookup<Q> + 'a> for Hashed<K> {
    #[inline]
    fn borrow(&self) -> &(dyn Lookup<Q> + 'a) {
        self
    }
}

impl<Q: ?Sized + Eq> PartialEq for dyn Lookup<Q> + '_ {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash() == other.hash() && self.key() == other.key()
    }
}

impl<Q: ?Sized + Eq> Eq for dyn Lookup<Q> + '_ {}

impl<Q: ?Sized> Hash for dyn Lookup<Q> + '_ {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(Lookup::hash(self));
    }
}

/// Passes a precomputed `u64` hash through.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called; fold anything else in rather than panic.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

pub(super) type InnerMap<K> = HashMap<Hashed<K>, Tats, BuildHasherDefault<PassThrough>>;
