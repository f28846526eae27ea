//! A lock-free source of uniform random numbers for jitter.
//!
//! SplitMix64 (Steele, Lea and Flood, OOPSLA 2014) is a counter passed through a mixing
//! function, so many threads can draw from one [`Jitter`] with a single `fetch_add` and
//! still get a deterministic sequence for a given seed (the simulator relies on that).
//! Not for anything security-related.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::algorithm::util::DEFAULT_SEED;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Uniform numbers in `[0, 1)`, shareable between threads.
///
/// ```
/// use tailwater_core::outbound::Jitter;
/// let j = Jitter::new(7);
/// let u = j.next_f64();
/// assert!((0.0..1.0).contains(&u));
/// ```
#[derive(Debug)]
pub struct Jitter {
    state: AtomicU64,
}

impl Default for Jitter {
    /// Seeded with the crate's fixed default seed: runs repeat.
    fn default() -> Self {
        Self::new(DEFAULT_SEED)
    }
}

impl Jitter {
    /// A sequence determined by `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_roughly_uniform() {
        let (a, b) = (Jitter::new(1), Jitter::new(1));
        let xs: Vec<f64> = (0..1000).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.next_f64()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
