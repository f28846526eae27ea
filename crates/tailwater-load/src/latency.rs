//! Prompt wake-ups for the load generator's own threads.
//!
//! **Why.** A request's send lag is the time from its intended send to the moment it is
//! written. In an h2 run it wakes two sleeping threads on the way: the pacing thread at the
//! release quantum, and a runtime worker that writes the request (HTTP/1.1 runs pace on the
//! thread that writes, see `run::local`, and do not ask for the short slice: those threads
//! do the TLS and HTTP work too). Measured on a 2-vCPU Intel Xeon
//! (Linux 6.18, nginx over TLS as the target on the same cores, 20 000 requests/s), the
//! pacer's own lateness had a p50 of about 170 µs but a p99 of 1.2–2.4 ms: once both CPUs are
//! busy, a thread that wakes waits for the running one to finish its scheduler slice, and
//! Linux's default slice for a 2-CPU machine is 1.4 ms (`se.slice` in `/proc/PID/sched`).
//! `perf sched` put the pacing thread's own scheduling delay at p99.9 1.7–4.2 ms in six runs (0.52–1.55 ms
//! with the short slice below; `scripts/bench-load-sched.sh`), and a late wake-up delays every
//! request that falls due meanwhile, so that tail sets the requests' p99.
//!
//! **What.** Linux's EEVDF scheduler (6.12 and later) lets an ordinary (`SCHED_OTHER`) thread
//! ask for a shorter slice with `sched_setattr(2)`'s `sched_runtime`, with no privilege: such a
//! thread runs for shorter turns but preempts a thread with a longer slice when it wakes
//! (the kernel's `PREEMPT_SHORT`). Its share of the CPU is unchanged (that is the nice value,
//! kept as it is). [`request_short_slice`] asks for [`SHORT_SLICE`] for the calling thread;
//! the pacing thread asks for it itself (it runs a few µs per wake-up, so a short slice costs
//! it nothing). The runtime's worker threads keep the default: given it too, they were
//! preempted every 100 µs when the CPUs were saturated, and the highest achieved rate at
//! 60 000/s over TLS fell by 3–7 % (three alternating rounds, busy 2-vCPU Intel Xeon).
//! [`request_short_slice`] also lowers the thread's timer slack (the leeway the kernel may
//! add to a sleep, 50 µs by default) to 1 µs, so the pacer's sleeps end on time.
//!
//! Older kernels ignore the slice (or refuse it, and nothing changes); other systems have no such knob, and the call
//! reports [`std::io::ErrorKind::Unsupported`]. A real-time or batch thread (e.g. run under
//! `chrt`) is left alone. Either way the run is correct: only the send lag is larger.

use std::time::Duration;

/// The slice [`request_short_slice`] asks for: the shortest Linux accepts (100 µs).
pub const SHORT_SLICE: Duration = Duration::from_micros(100);

/// Asks the scheduler for a [`SHORT_SLICE`] and a 1 µs timer slack for the calling thread,
/// keeping its policy and nice value.
///
/// Meant for threads whose wake-up latency is the product and that run briefly at each
/// wake-up, like the pacing thread. The thread's share of the CPU does not change.
///
/// # Errors
/// [`std::io::ErrorKind::Unsupported`] off Linux, or when the thread is not an ordinary
/// (`SCHED_OTHER`) one; the system call's error otherwise. Nothing is changed then.
pub fn request_short_slice() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        sys::short_slice(SHORT_SLICE)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// The calling thread's scheduler slice as Linux reports it (`se.slice` in
/// `/proc/thread-self/sched`), where the kernel shows it.
pub fn current_slice() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let line = text.lines().find(|l| l.starts_with("se.slice"))?;
    let ns: u64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(Duration::from_nanos(ns))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys {
    //! The three system calls, raw: `getpriority` returns `20 − nice` (never negative on
    //! success, so no `errno` dance), `sched_getscheduler`, `sched_setattr` (glibc has no
    //! wrapper for it) and `prctl`.

    use std::io;
    use std::time::Duration;

    /// `struct sched_attr`, version 0 (48 bytes), from `include/uapi/linux/sched/types.h`.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
    }

    const SCHED_OTHER: libc::c_long = 0;
    const PRIO_PROCESS: libc::c_long = 0;
    const PR_SET_TIMERSLACK: libc::c_long = 29;

    fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    pub(super) fn short_slice(slice: Duration) -> io::Result<()> {
        // SAFETY: `sched_getscheduler(0)` reads the calling thread's policy; no pointers.
        let policy = check(unsafe { libc::syscall(libc::SYS_sched_getscheduler, 0) })?;
        if policy != SCHED_OTHER {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        // SAFETY: `getpriority(PRIO_PROCESS, 0)` reads the calling thread's nice value (as
        // `20 − nice`); no pointers.
        let prio = check(unsafe { libc::syscall(libc::SYS_getpriority, PRIO_PROCESS, 0) })?;
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: 20 - prio as i32,
            sched_priority: 0,
            sched_runtime: slice.as_nanos() as u64,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: `attr` is a valid, initialised `struct sched_attr` whose `size` field says
        // how many bytes the kernel may read; it outlives the call. Pid 0 is the caller.
        check(unsafe {
            libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32)
        })?;
        // SAFETY: `prctl(PR_SET_TIMERSLACK, 1000)` sets the caller's timer slack to 1 µs; the
        // argument is a number, not a pointer.
        check(unsafe { libc::syscall(libc::SYS_prctl, PR_SET_TIMERSLACK, 1000 as libc::c_long) })?;
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn nice() -> io::Result<i32> {
        // SAFETY: as in `short_slice`.
        let prio = check(unsafe { libc::syscall(libc::SYS_getpriority, PRIO_PROCESS, 0) })?;
        Ok(20 - prio as i32)
    }

    /// The caller's timer slack, ns (`prctl(PR_GET_TIMERSLACK)`).
    #[cfg(test)]
    pub(super) fn timer_slack_ns() -> io::Result<libc::c_long> {
        // SAFETY: `prctl(PR_GET_TIMERSLACK)` returns the caller's slack; no pointers.
        check(unsafe { libc::syscall(libc::SYS_prctl, 30 as libc::c_long) })
    }

    /// Switches the caller to `SCHED_BATCH`, nice 0, default slice.
    #[cfg(test)]
    pub(super) fn set_batch() -> io::Result<()> {
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: 3,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: as in `short_slice`.
        check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) })
            .map(|_| ())
    }

    #[cfg(test)]
    pub(super) fn set_nice(nice: i32) -> io::Result<()> {
        // SAFETY: `setpriority(PRIO_PROCESS, 0, nice)` sets the caller's nice value; no
        // pointers.
        check(unsafe {
            libc::syscall(libc::SYS_setpriority, PRIO_PROCESS, 0, nice as libc::c_long)
        })
        .map(|_| ())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_short_slice_keeps_the_nice_value_and_shows_in_proc() {
        // On a thread of its own: the test harness's threads are left as they were.
        std::thread::spawn(|| {
            let before = current_slice();
            // Raising one's own nice value needs no privilege.
            sys::set_nice(7).unwrap();
            request_short_slice().unwrap();
            assert_eq!(sys::nice().unwrap(), 7, "the nice value changed");
            // Kernels that show the slice (EEVDF, Linux 6.6+) show the one asked for from
            // 6.12 on; before, the slice is ignored and stays the default.
            if let (Some(before), Some(after)) = (before, current_slice()) {
                assert!(
                    after == SHORT_SLICE || after == before,
                    "slice {after:?}, was {before:?}"
                );
            }
            assert_eq!(sys::timer_slack_ns().unwrap(), 1000);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_batch_thread_is_left_alone() {
        std::thread::spawn(|| {
            // Switching to SCHED_BATCH needs no privilege.
            sys::set_batch().unwrap();
            let before = current_slice();
            let err = request_short_slice().unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
            assert_eq!(current_slice(), before);
        })
        .join()
        .unwrap();
    }
}
