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
//! - [`MonotonicClock`] is the default: the CPU's time-stamp counter (TSC, read through the
//!   [`quanta`](https://docs.rs/quanta) crate) where the operating system itself has
//!   validated the TSC as its monotonic clock, and `std::time::Instant` everywhere else.
//!   [`MonotonicClock::os`] always uses `Instant`. See [below](#the-default-clock-tsc-or-os).
//! - [`ManualClock`] is advanced by hand; its clones share one time, so a test can hand one
//!   clone to a limiter and keep another to move time forward.
//!
//! # The default clock: TSC or OS
//!
//! A rate-limit check costs a few nanoseconds plus one clock read, so the clock decides the
//! price: `Instant::now()` (`clock_gettime(CLOCK_MONOTONIC)` through the vDSO) costs about
//! 24 ns on the 2-vCPU cloud VM this was measured on, a TSC read through quanta about 9 ns.
//!
//! governor reads the TSC through quanta by default, and that default is wrong on some
//! machines (governor issue #299, quanta issue #111): quanta trusts the CPU's "invariant TSC"
//! flag, but on some machines (Ryzen laptops with buggy firmware, some multi-socket hosts)
//! the cores' counters are not synchronised — one core was seen 1.6 s behind the others —
//! so a thread that moves between cores sees time jump backwards, and the limiter rejects
//! requests before the burst is used.
//!
//! Whether the counters agree across cores is exactly what the Linux kernel checks before it
//! uses the TSC as *its* clock: at boot and at CPU hotplug it runs a cross-CPU warp test
//! (`check_tsc_sync_source`, correcting offsets through `TSC_ADJUST` where it can), and at
//! run time a clocksource watchdog compares the TSC with an independent timer (HPET, ACPI
//! PM). On any failure it marks the TSC unstable and switches `CLOCK_MONOTONIC` to another
//! clocksource. So [`MonotonicClock::new`] uses the TSC only when, once per process:
//!
//! 1. the environment variable `TAILWATER_CLOCK` is unset, empty or `auto`;
//! 2. the target is Linux on x86-64;
//! 3. `/sys/devices/system/clocksource/clocksource0/current_clocksource` reads `tsc`: the
//!    kernel validated the TSC and still uses it for `CLOCK_MONOTONIC`;
//! 4. the kernel reports the TSC invariant (`constant_tsc` and `nonstop_tsc` in
//!    `/proc/cpuinfo`) and `rdtscp` present: the same CPUID bits quanta checks before it
//!    reads the counter (otherwise quanta itself falls back to `clock_gettime`).
//!
//! Otherwise — other systems, containers without `/sys`, a kernel on `hpet`, `kvm-clock` or
//! `acpi_pm` — it uses `Instant`. The machines of governor #299 fail check 3: that is where
//! the kernel found the warp. `quanta`'s calibration (TSC ticks to nanoseconds against
//! `CLOCK_MONOTONIC`) runs once per process on the first [`MonotonicClock::new`]: about
//! 0.6 ms, plus about 60 µs to read the two kernel files (quanta bounds its calibration at
//! 200 ms). Later clocks cost one `Instant::now()` and one counter read (about 27 ns).
//!
//! **What "monotonic" means on the TSC.** Within a thread, readings never decrease (the
//! kernel keeps the cores' counters in step, and a migration between cores passes through
//! the kernel). Across threads there is one difference from `Instant`: quanta reads the
//! counter with `rdtsc`, which the CPU may execute before earlier loads have completed (the
//! kernel's own read fences it with `lfence`, which costs about as much as the read; a fence
//! needs `unsafe`, which this crate forbids). A reading handed to another thread through
//! memory can therefore be ahead of that thread's next reading by the CPU's out-of-order
//! window: up to 0.65 µs measured on a loaded 2-vCPU VM (the tests allow 20 µs); a handover
//! through a channel that parks the receiver showed none. That is the same as a
//! thread being delayed between reading the clock and updating a limiter, which every
//! limiter already meets and GCRA handles (`TAT = max(TAT, now)`): an earlier `now` never
//! admits more, it can only deny a request that arrives within that window of a full
//! bucket's last cell. It is nothing like the milliseconds to seconds of governor #299.
//! Durations computed from readings taken on different threads must saturate
//! ([`Duration::saturating_sub`]).
//!
//! The TSC is not slewed by NTP; quanta's calibrated rate agreed with `Instant` within
//! 20 parts per million over 2–500 ms in our measurements, far below what a quota notices.
//! The decision is taken once per process: if the kernel demotes the TSC later (its
//! watchdog found drift), clocks already created keep reading it.
//!
//! **Forcing the OS clock:** construct clocks with [`MonotonicClock::os`] (or pass one to a
//! builder's `clock(..)`), or set `TAILWATER_CLOCK=os` in the environment, which makes every
//! [`MonotonicClock::new`] in the process use `Instant`. Any value other than empty or
//! `auto` forces the OS clock.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time.
///
/// Contract: `now()` never decreases between two calls on the same clock (or on clones that
/// share its time) in one thread, and is cheap enough to call on every request. Across
/// threads, [`MonotonicClock`] on the TSC may lag a reading handed over from another thread
/// by the CPU's reordering window (see the [module docs](self)); compute durations with
/// saturating arithmetic.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time elapsed since this clock's origin.
    fn now(&self) -> Duration;

    /// [`now`](Self::now) in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
    ///
    /// Hot paths that work in nanoseconds (the rate limiters) call this; clocks that count
    /// nanoseconds natively override it to skip the round trip through [`Duration`].
    #[inline]
    fn now_nanos(&self) -> u64 {
        duration_to_nanos(self.now())
    }
}

/// A clock behind a smart pointer is the clock it points to.
macro_rules! forward_clock {
    ($($pointer:ident),*) => {$(
        impl<C: Clock + ?Sized> Clock for $pointer<C> {
            #[inline]
            fn now(&self) -> Duration {
                (**self).now()
            }

            #[inline]
            fn now_nanos(&self) -> u64 {
                (**self).now_nanos()
            }
        }
    )*};
}

forward_clock!(Arc, Box);

/// Where a [`MonotonicClock`] reads the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClockSource {
    /// The CPU's time-stamp counter through quanta: chosen only where the kernel validated
    /// it as its own monotonic clock (see the [module docs](self)).
    Tsc,
    /// `std::time::Instant`: the operating system's monotonic clock.
    Os,
}

impl ClockSource {
    /// The snake-case name, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClockSource::Tsc => "tsc",
            ClockSource::Os => "os",
        }
    }
}

impl fmt::Display for ClockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone)]
enum Source {
    Os,
    /// The process's calibrated quanta clock, copied in: read on every check, it should sit
    /// in the limiter's own cache lines rather than behind a pointer to a static.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    Tsc {
        clock: quanta::Clock,
        /// The raw counter value at this clock's origin.
        origin: u64,
    },
}

/// The default clock: monotonic time since the clock was created, from the TSC where the
/// kernel vouches for it and from `std::time::Instant` otherwise (see the
/// [module docs](self) for the rule, governor #299, and how to force the OS clock).
///
/// About 70 bytes (it carries quanta's calibration, so a read touches no shared state);
/// creating one costs one `Instant::now()` plus a counter read (the one-time detection and
/// calibration happen on the first [`new`](Self::new) in the process).
///
/// ```
/// use tailwater_core::clock::{Clock, ClockSource, MonotonicClock};
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
///
/// // Always the OS clock, whatever the machine:
/// let os = MonotonicClock::os();
/// assert_eq!(os.source(), ClockSource::Os);
/// ```
#[derive(Clone)]
pub struct MonotonicClock {
    origin: Instant,
    source: Source,
}

impl MonotonicClock {
    /// A clock whose origin is now, on the process's default source
    /// ([`default_source`](Self::default_source)).
    pub fn new() -> Self {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        if let Some(clock) = tsc::clock() {
            return Self {
                // The counter first: readings are measured from it, and `origin()` is then
                // at most one `Instant::now()` later.
                source: Source::Tsc {
                    origin: clock.raw(),
                    clock: clock.clone(),
                },
                origin: Instant::now(),
            };
        }
        Self::os()
    }

    /// A clock whose origin is now, always on `std::time::Instant` (the operating system's
    /// monotonic clock), whatever [`new`](Self::new) would choose.
    pub fn os() -> Self {
        Self {
            origin: Instant::now(),
            source: Source::Os,
        }
    }

    /// The source [`new`](Self::new) uses in this process: [`ClockSource::Tsc`] when the
    /// kernel validated the TSC (see the [module docs](self)), [`ClockSource::Os`]
    /// otherwise. The first call runs the detection (and quanta's calibration).
    pub fn default_source() -> ClockSource {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        if tsc::clock().is_some() {
            return ClockSource::Tsc;
        }
        ClockSource::Os
    }

    /// Where this clock reads the time.
    pub fn source(&self) -> ClockSource {
        match &self.source {
            Source::Os => ClockSource::Os,
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Source::Tsc { .. } => ClockSource::Tsc,
        }
    }

    /// The `Instant` this clock's readings are measured from: `origin() + now()` is an
    /// `Instant` (for timers). Exact on [`ClockSource::Os`]; on the TSC it differs from
    /// `Instant::now()` by quanta's calibration error and NTP's slewing of `Instant` (parts
    /// per million: microseconds after seconds).
    pub fn origin(&self) -> Instant {
        self.origin
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MonotonicClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonotonicClock")
            .field("source", &self.source())
            .field("origin", &self.origin)
            .finish()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Duration {
        match &self.source {
            Source::Os => self.origin.elapsed(),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Source::Tsc { clock, origin } => {
                Duration::from_nanos(clock.delta_as_nanos(*origin, clock.raw()))
            }
        }
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        match &self.source {
            Source::Os => duration_to_nanos(self.origin.elapsed()),
            // `delta_as_nanos` is 0 for a reading at or before the origin (saturating).
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Source::Tsc { clock, origin } => clock.delta_as_nanos(*origin, clock.raw()),
        }
    }
}

/// The process-wide decision: whether [`MonotonicClock::new`] may read the TSC.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod tsc {
    use super::OnceLock;

    const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

    /// Calibrated once; every `MonotonicClock::new` copies it (a fresh `quanta::Clock::new`
    /// would cost ~16 µs of CPUID under a hypervisor even after calibration).
    static CLOCK: OnceLock<Option<quanta::Clock>> = OnceLock::new();

    /// quanta's calibrated TSC clock, if the TSC is safe to read on this machine.
    pub(super) fn clock() -> Option<&'static quanta::Clock> {
        CLOCK
            .get_or_init(|| {
                let wanted =
                    super::env_allows_tsc(std::env::var("TAILWATER_CLOCK").ok().as_deref());
                let safe = wanted
                    && super::kernel_validated_tsc(
                        std::fs::read_to_string(CLOCKSOURCE).ok().as_deref(),
                        first_cpu_flags().as_deref(),
                    );
                // Calibration (about 0.6 ms) only when the TSC will be used.
                safe.then(quanta::Clock::new)
            })
            .as_ref()
    }

    /// The `flags` line of the first processor in `/proc/cpuinfo` (the kernel's view of the
    /// CPU features; every core has the same ones).
    fn first_cpu_flags() -> Option<String> {
        use std::io::BufRead;
        let file = std::fs::File::open("/proc/cpuinfo").ok()?;
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "flags").then(|| value.to_owned())
            })
    }
}

/// `TAILWATER_CLOCK`: unset, empty or `auto` lets [`MonotonicClock::new`] choose; anything
/// else (e.g. `os`) forces the OS clock.
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)]
fn env_allows_tsc(value: Option<&str>) -> bool {
    matches!(value.map(str::trim), None | Some("" | "auto"))
}

/// Whether the kernel validated the TSC as its monotonic clocksource and reports it
/// invariant (see the [module docs](self)). Inputs: the contents of `current_clocksource`
/// and the `flags` of `/proc/cpuinfo` (`None` when unreadable).
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)]
fn kernel_validated_tsc(clocksource: Option<&str>, cpu_flags: Option<&str>) -> bool {
    let (Some(clocksource), Some(flags)) = (clocksource, cpu_flags) else {
        return false;
    };
    let has = |flag: &str| flags.split_ascii_whitespace().any(|f| f == flag);
    clocksource.trim() == "tsc" && has("constant_tsc") && has("nonstop_tsc") && has("rdtscp")
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

    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
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
mod tests;
