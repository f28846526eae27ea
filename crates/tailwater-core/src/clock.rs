//! Time as data.
//!
//! Every stateful type in tailwater reads time through a [`Clock`], and every algorithm takes
//! the time it needs as an argument (see [`Sample::now`](crate::algorithm::Sample::now)). That
//! is what lets the simulator run the production code on virtual time and lets tests step
//! time by hand instead of sleeping.
//!
//! A clock returns a [`Duration`] since its own origin. Only differences between two readings
//! of the same clock mean anything.
//!
//! - [`MonotonicClock`] is the default: `std::time::Instant`, which never goes backwards. (A
//!   TSC-based clock can go backwards across cores; see governor issue #299. We do not use one.)
//! - [`ManualClock`] is advanced by hand; its clones share one time, so a test can hand one
//!   clone to a limiter and keep another to move time forward.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time.
///
/// Contract: `now()` never decreases between two calls on the same clock (or on clones that
/// share its time), and is cheap enough to call on every request.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time elapsed since this clock's origin.
    fn now(&self) -> Duration;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// The default clock: `std::time::Instant` relative to when the clock was created.
///
/// ```
/// use tailwater_core::clock::{Clock, MonotonicClock};
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// The `Instant` this clock's readings are measured from.
    pub fn origin(&self) -> Instant {
        self.origin
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// Used by tests and by the simulator, which drive the real limiters on virtual time.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let handle = clock.clone();
/// handle.advance(Duration::from_millis(5));
/// assert_eq!(clock.now(), Duration::from_millis(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock starting at `start`.
    pub fn starting_at(start: Duration) -> Self {
        let clock = Self::new();
        clock.set(start);
        clock
    }

    /// Moves time forward by `by` (saturating at `u64::MAX` nanoseconds, about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = duration_to_nanos(by);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the time to `to` if that is not earlier than the current time.
    ///
    /// Returns `false` (and leaves the time alone) when `to` would move the clock backwards:
    /// a monotonic clock never does.
    pub fn set(&self, to: Duration) -> bool {
        let to = duration_to_nanos(to);
        self.nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (to >= n).then_some(to)
            })
            .is_ok()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

/// A clock backed by `tokio::time::Instant`, so that `tokio::time::pause()` and
/// `tokio::time::advance()` move it too. Use it in async tests of code that takes a clock.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioClock {
    /// A clock whose origin is tokio's now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }

    /// Converts a reading of this clock back into a tokio `Instant` (for timers).
    pub fn instant_at(&self, at: Duration) -> tokio::time::Instant {
        self.origin + at
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX`.
pub fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time_and_never_go_backwards() {
        let clock = ManualClock::starting_at(Duration::from_secs(2));
        let other = clock.clone();
        other.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), Duration::from_millis(2250));
        assert!(!clock.set(Duration::from_secs(1)));
        assert_eq!(clock.now(), Duration::from_millis(2250));
        assert!(clock.set(Duration::from_secs(3)));
        assert_eq!(other.now(), Duration::from_secs(3));
    }

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn monotonic_clock_does_not_decrease() {
        let clock = MonotonicClock::new();
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }
}
