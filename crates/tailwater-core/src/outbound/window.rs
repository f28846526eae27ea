//! Sliding windows of call outcomes for the circuit breaker.
//!
//! Two kinds, as in resilience4j's `SlidingWindowType`:
//!
//! - [`Window::Count`]: the last `n` calls (resilience4j's default `COUNT_BASED`, 100);
//! - [`Window::Time`]: the calls of the last `size`, in `buckets` equal buckets
//!   (resilience4j's `TIME_BASED`; tailwater's default: 10 s in 1 s buckets, see
//!   `research/outbound.md` §4), so that a burst ages out as time passes even with no calls.
//!
//! Both answer the same three counts ([`Tally`]): calls, failures and slow calls. A call is
//! recorded once, with the time it ended; nothing here reads a clock.

use std::time::Duration;

use crate::error::ConfigError;

/// Which calls the breaker's rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls (`n` ≥ 1).
    Count(u32),
    /// The calls that ended within the last `size`, kept in `buckets` buckets of
    /// `size / buckets` each (the oldest bucket is dropped whole).
    Time {
        /// The window's length.
        size: Duration,
        /// How many buckets it is cut into (1..=600).
        buckets: u32,
    },
}

impl Default for Window {
    /// 10 s in 1 s buckets (`research/outbound.md` §4: a time window trips a low-traffic
    /// service that a count of 100 would take minutes to fill).
    fn default() -> Self {
        Window::Time {
            size: Duration::from_secs(10),
            buckets: 10,
        }
    }
}

impl Window {
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        match self {
            Window::Count(0) => Err(ConfigError::new("window", "a count window needs n >= 1")),
            Window::Count(n) if n > 100_000 => Err(ConfigError::new(
                "window",
                format!("a count window of {n} calls is too large (at most 100000)"),
            )),
            Window::Time { buckets, .. } if buckets == 0 || buckets > 600 => Err(ConfigError::new(
                "window",
                format!("buckets must be in 1..=600, got {buckets}"),
            )),
            Window::Time { size, buckets } if size < Duration::from_millis(u64::from(buckets)) => {
                Err(ConfigError::new(
                    "window",
                    format!("size {size:?} is shorter than 1 ms per bucket ({buckets} buckets)"),
                ))
            }
            w => Ok(w),
        }
    }
}

/// Counts over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls recorded (failures and slow calls included).
    pub calls: u32,
    /// Calls that failed.
    pub failures: u32,
    /// Calls slower than the slow-call threshold (failed or not).
    pub slow: u32,
}

impl Tally {
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u32::from(failed);
        self.slow += u32::from(slow);
    }

    fn sub(&mut self, other: Tally) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }
}

/// The state of a [`Window`].
#[derive(Debug, Clone)]
pub(crate) enum WindowState {
    Count {
        /// Bit 0: failed, bit 1: slow, bit 2: occupied.
        ring: Vec<u8>,
        next: usize,
        total: Tally,
    },
    Time {
        bucket_nanos: u64,
        /// (bucket number, counts); a slot whose number is stale counts as empty.
        ring: Vec<(u64, Tally)>,
    },
}

impl WindowState {
    pub(crate) fn new(w: Window) -> Self {
        match w {
            Window::Count(n) => WindowState::Count {
                ring: vec![0; n as usize],
                next: 0,
                total: Tally::default(),
            },
            Window::Time { size, buckets } => WindowState::Time {
                bucket_nanos: (size.as_nanos() / u128::from(buckets)).max(1) as u64,
                ring: vec![(u64::MAX, Tally::default()); buckets as usize],
            },
        }
    }

    /// Records one call that ended at `now`.
    pub(crate) fn record(&mut self, now: Duration, failed: bool, slow: bool) {
        match self {
            WindowState::Count { ring, next, total } => {
                let old = ring[*next];
                if old & 4 != 0 {
                    total.sub(Tally {
                        calls: 1,
                        failures: u32::from(old & 1),
                        slow: u32::from(old >> 1 & 1),
                    });
                }
                ring[*next] = 4 | u8::from(failed) | u8::from(slow) << 1;
                *next = (*next + 1) % ring.len();
                total.add(failed, slow);
            }
            WindowState::Time { bucket_nanos, ring } => {
                let n = crate::clock::duration_to_nanos(now) / *bucket_nanos;
                let len = ring.len() as u64;
                let slot = &mut ring[(n % len) as usize];
                if slot.0 != n {
                    *slot = (n, Tally::default());
                }
                slot.1.add(failed, slow);
            }
        }
    }

    /// The counts of the calls still in the window at `now`.
    pub(crate) fn tally(&self, now: Duration) -> Tally {
        match self {
            WindowState::Count { total, .. } => *total,
            WindowState::Time { bucket_nanos, ring } => {
                let n = crate::clock::duration_to_nanos(now) / *bucket_nanos;
                let oldest = n.saturating_sub(ring.len() as u64 - 1);
                let mut t = Tally::default();
                for (b, c) in ring {
                    if *b != u64::MAX && *b >= oldest && *b <= n {
                        t.calls += c.calls;
                        t.failures += c.failures;
                        t.slow += c.slow;
                    }
                }
                t
            }
        }
    }

    /// Forgets every call (on a transition to closed).
    pub(crate) fn clear(&mut self) {
        match self {
            WindowState::Count { ring, next, total } => {
                ring.iter_mut().for_each(|b| *b = 0);
                *next = 0;
                *total = Tally::default();
            }
            WindowState::Time { ring, .. } => {
                ring.iter_mut()
                    .for_each(|b| *b = (u64::MAX, Tally::default()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn count_window_keeps_the_last_n() {
        let mut w = WindowState::new(Window::Count(3));
        // (failed, slow) -> expected (calls, failures, slow), computed by hand.
        let rows = [
            ((true, false), (1, 1, 0)),
            ((false, true), (2, 1, 1)),
            ((true, true), (3, 2, 2)),
            ((false, false), (3, 1, 2)), // the first call (failed) left
            ((false, false), (3, 1, 1)), // the second (slow) left
            ((false, false), (3, 0, 0)),
        ];
        for (i, ((f, s), (c, fe, se))) in rows.into_iter().enumerate() {
            w.record(Duration::ZERO, f, s);
            let t = w.tally(Duration::ZERO);
            assert_eq!((t.calls, t.failures, t.slow), (c, fe, se), "row {i}");
        }
    }

    #[test]
    fn time_window_ages_out_whole_buckets() {
        let mut w = WindowState::new(Window::Time {
            size: Duration::from_secs(10),
            buckets: 10,
        });
        w.record(500 * MS, true, false); // bucket 0
        w.record(1500 * MS, false, true); // bucket 1
        w.record(9999 * MS, true, false); // bucket 9
        assert_eq!(w.tally(9999 * MS).calls, 3);
        assert_eq!(w.tally(9999 * MS).failures, 2);
        // At 10.0 s bucket 0 leaves; at 11.0 s bucket 1.
        let t = w.tally(10_000 * MS);
        assert_eq!((t.calls, t.failures, t.slow), (2, 1, 1));
        let t = w.tally(11_000 * MS);
        assert_eq!((t.calls, t.failures, t.slow), (1, 1, 0));
        // A slot reused by a later bucket starts from zero.
        w.record(20_500 * MS, false, false); // bucket 20 reuses slot 0
        let t = w.tally(20_500 * MS);
        assert_eq!((t.calls, t.failures), (1, 0));
        assert_eq!(w.tally(40_000 * MS), Tally::default());
        w.clear();
        assert_eq!(w.tally(20_500 * MS), Tally::default());
    }

    #[test]
    fn bad_windows_name_the_field() {
        assert_eq!(Window::Count(0).validate().unwrap_err().field(), "window");
        let w = Window::Time {
            size: Duration::from_secs(1),
            buckets: 0,
        };
        assert_eq!(w.validate().unwrap_err().field(), "window");
        assert!(Window::default().validate().is_ok());
    }
}
