//! Small deterministic helpers shared by the algorithms: a seeded PRNG, a bounded sample
//! reservoir with percentiles, a windowed minimum, an exponential average and Netflix's
//! integer `log10` root.
//!
//! Everything here is deterministic given its seed, so that the simulator replays a run
//! exactly. None of it reads a clock.

use std::time::Duration;

/// Builder setters that store their one argument in a field of the builder, each with its
/// own doc comment: `name(field: Type);` writes `pub fn name(mut self, v: Type) -> Self`.
/// Validation stays in each builder's `build`.
macro_rules! setters {
    ($($(#[$attr:meta])* $name:ident($field:ident: $ty:ty);)*) => {
        $(
            $(#[$attr])*
            pub fn $name(mut self, v: $ty) -> Self {
                self.$field = v;
                self
            }
        )*
    };
}
pub(crate) use setters;

/// The default seed of every jittering algorithm (any fixed value would do: it only has to be
/// the same from run to run).
pub(crate) const DEFAULT_SEED: u64 = 0x7a11_3a7e_5eed_0001;

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): tiny, fast, and good enough for jitter. Not for anything security-related.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 bits of precision.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform in `[0, n)`; `0` when `n == 0`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// A bounded set of RTT samples: keeps every sample until `cap`, then a uniform random
/// subset of them (reservoir sampling, Vitter's algorithm R), so that memory stays bounded
/// however many requests complete in one window.
#[derive(Debug, Clone)]
pub(crate) struct Reservoir {
    samples: Vec<Duration>,
    seen: u64,
    cap: usize,
    rng: SplitMix64,
}

impl Reservoir {
    pub(crate) fn new(cap: usize, seed: u64) -> Self {
        Self {
            samples: Vec::new(),
            seen: 0,
            cap: cap.max(1),
            rng: SplitMix64::new(seed),
        }
    }

    pub(crate) fn push(&mut self, rtt: Duration) {
        self.seen += 1;
        if self.samples.len() < self.cap {
            self.samples.push(rtt);
        } else {
            let j = self.rng.below(self.seen);
            if let Ok(j) = usize::try_from(j)
                && j < self.cap
            {
                self.samples[j] = rtt;
            }
        }
    }

    /// How many samples were pushed since the last clear (not how many are kept).
    pub(crate) fn count(&self) -> u64 {
        self.seen
    }

    pub(crate) fn clear(&mut self) {
        self.samples.clear();
        self.seen = 0;
    }

    /// The nearest-rank percentile of the kept samples (`p` in `(0, 1]`), or `None` if empty.
    pub(crate) fn percentile(&mut self, p: f64) -> Option<Duration> {
        percentile(&mut self.samples, p)
    }
}

/// Nearest-rank percentile: the smallest sample such that at least `p·n` samples are less
/// than or equal to it (index `ceil(p·n) − 1`). Sorts `samples` in place.
pub(crate) fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank = (p * n as f64).ceil();
    let idx = if rank.is_nan() || rank < 1.0 {
        0
    } else if rank >= n as f64 {
        n - 1
    } else {
        rank as usize - 1
    };
    Some(samples[idx])
}

/// Netflix's `Log10RootIntFunction`: `max(1, floor(log10(n)))` for an integer `n`.
pub(crate) fn log10_root(n: usize) -> usize {
    let mut digits = 0usize;
    let mut v = n;
    while v >= 10 {
        v /= 10;
        digits += 1;
    }
    digits.max(1)
}

/// Netflix's `ExpAvgMeasurement`: a plain average over the first `warmup` values, then an
/// exponential moving average with factor `2 / (window + 1)`.
#[derive(Debug, Clone)]
pub(crate) struct ExpAvg {
    value: f64,
    sum: f64,
    count: usize,
    warmup: usize,
    factor: f64,
}

impl ExpAvg {
    pub(crate) fn new(window: usize, warmup: usize) -> Self {
        Self {
            value: 0.0,
            sum: 0.0,
            count: 0,
            warmup,
            factor: 2.0 / (window as f64 + 1.0),
        }
    }

    pub(crate) fn add(&mut self, x: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += x;
            self.value = self.sum / self.count as f64;
        } else {
            self.value = self.value * (1.0 - self.factor) + x * self.factor;
        }
        self.value
    }

    pub(crate) fn get(&self) -> f64 {
        self.value
    }

    pub(crate) fn scale(&mut self, k: f64) {
        self.value *= k;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The minimum over the last `window` to `2·window` values, kept in two buckets of `window`
/// values each (the current bucket and the one before it). A value therefore influences
/// the minimum for at least `window` and fewer than `2·window` later values: the estimate
/// can rise again after a sustained shift, but only slowly.
#[derive(Debug, Clone)]
pub(crate) struct WindowedMin {
    window: u64,
    in_current: u64,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl WindowedMin {
    pub(crate) fn new(window: u64) -> Self {
        Self {
            window: window.max(1),
            in_current: 0,
            current: None,
            previous: None,
        }
    }

    pub(crate) fn add(&mut self, x: Duration) {
        if self.in_current >= self.window {
            self.previous = self.current.take();
            self.in_current = 0;
        }
        self.in_current += 1;
        self.current = Some(self.current.map_or(x, |c| c.min(x)));
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `a / b` for two durations as `f64`, with `0/0 = 1` (no change) and `x/0 = +inf`.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log10_root_matches_netflix_table() {
        for (n, want) in [
            (0, 1),
            (1, 1),
            (9, 1),
            (10, 1),
            (99, 1),
            (100, 2),
            (999, 2),
            (1000, 3),
        ] {
            assert_eq!(log10_root(n), want, "n = {n}");
        }
    }

    #[test]
    fn nearest_rank_percentile() {
        let ms = Duration::from_millis;
        let mut v = vec![ms(5), ms(1), ms(4), ms(2), ms(3)];
        assert_eq!(percentile(&mut v, 0.5), Some(ms(3)));
        assert_eq!(percentile(&mut v, 1.0), Some(ms(5)));
        assert_eq!(percentile(&mut v, 0.01), Some(ms(1)));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn reservoir_is_bounded() {
        let mut r = Reservoir::new(8, 1);
        for i in 0..1000u64 {
            r.push(Duration::from_micros(i));
        }
        assert_eq!(r.count(), 1000);
        assert_eq!(r.samples.len(), 8);
    }

    #[test]
    fn windowed_min_forgets_after_two_windows() {
        let ms = Duration::from_millis;
        let mut m = WindowedMin::new(3);
        m.add(ms(1));
        for _ in 0..4 {
            m.add(ms(9));
        }
        // Buckets: [1, 9, 9] [9, 9]: the 1 is still remembered.
        assert_eq!(m.get(), Some(ms(1)));
        m.add(ms(9));
        m.add(ms(9));
        // [9, 9, 9] [9]: forgotten.
        assert_eq!(m.get(), Some(ms(9)));
    }

    #[test]
    fn prng_is_deterministic_and_in_range() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            let x = a.range_f64(0.5, 1.0);
            assert_eq!(x, b.range_f64(0.5, 1.0));
            assert!((0.5..1.0).contains(&x));
        }
    }
}
