//! Waiting on the runtime until an instant, with sub-millisecond precision.
//!
//! tokio's timer has a 1 ms granularity, which alone would put the send lag p99 near 1 ms.
//! On Linux each HTTP/1.1 connection task owns a `timerfd` (an hrtimer with nanosecond
//! resolution, no timer slack) registered with the runtime's reactor: the task sleeps until its
//! next request is due without any other thread or task being involved, and timers that expire
//! together (on the release quantum's grid) cost one reactor wake-up between them.
//! Elsewhere, or if the timerfd cannot be created, it falls back to tokio's timer.

use std::time::Instant;

/// A per-task timer: [`DueTimer::sleep_until`] returns at `t` or shortly after, never before.
pub(super) enum DueTimer {
    #[cfg(target_os = "linux")]
    Fd(linux::FdTimer),
    Tokio,
}

impl DueTimer {
    /// A timerfd where available, tokio's timer otherwise.
    pub(super) fn new() -> Self {
        #[cfg(target_os = "linux")]
        if let Ok(t) = linux::FdTimer::new() {
            return DueTimer::Fd(t);
        }
        DueTimer::Tokio
    }

    /// Sleeps until `t` (returns at once when `t` has passed). Never returns before `t`.
    pub(super) async fn sleep_until(&mut self, t: Instant) {
        if Instant::now() >= t {
            return;
        }
        #[cfg(target_os = "linux")]
        if let DueTimer::Fd(fd) = self {
            if fd.sleep_until(t).await.is_ok() {
                return;
            }
            // The timer failed (it should not): tokio's, for this and every later wait.
            *self = DueTimer::Tokio;
        }
        tokio::time::sleep_until(t.into()).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::OwnedFd;
    use std::time::Instant;

    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
        timerfd_settime,
    };
    use tokio::io::unix::AsyncFd;

    pub(in crate::run) struct FdTimer {
        fd: AsyncFd<OwnedFd>,
    }

    impl FdTimer {
        pub(super) fn new() -> io::Result<Self> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // `AsyncFd::new` is deprecated because an arbitrary `AsRawFd` may close its fd while
            // registered; an `OwnedFd` moved into the `AsyncFd` cannot, which is exactly the
            // contract of the (unsafe) replacement, `AsyncFd::register`, and this crate forbids
            // `unsafe`.
            #[allow(deprecated)]
            let fd = AsyncFd::new(fd)?;
            Ok(Self { fd })
        }

        /// Arms the timer for `t` and waits for it to expire. Arming resets the expiration
        /// count, so an earlier expiry is never taken for this one; the count is read
        /// (cleared) before returning.
        ///
        /// The timer is relative (`t − now`, rounded up to the next µs, which errs late, never
        /// early): an absolute one would need the monotonic clock's reading, and rustix's
        /// vDSO `clock_gettime` does not run under valgrind, which the profiles use.
        pub(super) async fn sleep_until(&mut self, t: Instant) -> io::Result<()> {
            let left = t.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let nanos = left.as_nanos().div_ceil(1000) * 1000;
            let value = Itimerspec {
                it_interval: Timespec::default(),
                it_value: Timespec {
                    tv_sec: (nanos / 1_000_000_000) as i64,
                    tv_nsec: (nanos % 1_000_000_000) as _,
                },
            };
            timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &value)?;
            let mut buf = [0u8; 8];
            loop {
                let mut guard = self.fd.readable().await?;
                match guard
                    .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(io::Error::from))
                {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => return Err(e),
                    // Not expired yet (a stale readiness): wait again.
                    Err(_would_block) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timer_never_returns_before_its_instant() {
        let mut timer = DueTimer::new();
        #[cfg(target_os = "linux")]
        assert!(matches!(timer, DueTimer::Fd(_)), "no timerfd on Linux");
        for n in 0..200u64 {
            let t = Instant::now() + Duration::from_micros(20 + (n * 37) % 300);
            timer.sleep_until(t).await;
            assert!(Instant::now() >= t, "wait {n} returned early");
        }
        // An instant already past returns at once; a cancelled wait leaves the timer usable.
        timer.sleep_until(Instant::now()).await;
        let far = Instant::now() + Duration::from_secs(3600);
        assert!(
            tokio::time::timeout(Duration::from_millis(5), timer.sleep_until(far))
                .await
                .is_err()
        );
        let t = Instant::now() + Duration::from_micros(200);
        timer.sleep_until(t).await;
        assert!(Instant::now() >= t);
    }
}
