//! HTTP/1.1 pacing without a pacer: each connection task takes the next request itself.
//!
//! A shared [`Cursor`] walks the schedule's arrivals. A connection task that is free claims
//! the next arrival (one short lock), sleeps on its own timer until the arrival is due, sends
//! it, and claims again once the answer is in: no other thread or task is woken per request
//! (a pacing thread handing requests to connection tasks cost about two context switches per
//! request). With `connections` tasks the schedule is served first-come first-served: the
//! `k`-th claim takes the `k`-th arrival.
//!
//! Timing rules, the same as the pacer's (see [`super::pace`]):
//! - a claimed arrival is sent no earlier than its intended time, and at most one release
//!   quantum after it (plus the OS's wake-up slack): the wake-up is its intended time rounded
//!   up to the quantum's grid, so connections with requests due within one quantum wake
//!   together (one reactor wake-up for all of them). Quantum zero wakes at the intended time;
//! - latency is always measured from the intended time (wrk2's rule), so coordinated omission
//!   is corrected whatever the wake-up or the wait;
//! - an arrival that is already due when it is claimed found every connection busy: its
//!   lateness is the wait for a connection (`conn_wait`), not the pacer's (`pacer_lag` 0),
//!   and, when fewer connections pull than are open because of `max_in_flight`, more than
//!   1 ms of it is counted in `delayed_by_cap`.
//!
//! Arrivals never claimed (the run stopped, or its drain ended, with every connection still
//! busy) are counted as scheduled and abandoned by [`Cursor::abandon_due`], never dropped
//! silently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::client::H1Conn;
use crate::config::HeaderMix;
use crate::{Arrivals, Schedule, Spacing};

use super::due::DueTimer;
use super::shared::{Job, NO_TAG, Shared};
use super::worker::send_h1;

/// How far behind its intended time a claim must be to count in `delayed_by_cap`.
const CAP_LATENESS: Duration = Duration::from_millis(1);

/// The schedule's arrivals, claimed one at a time by the connection tasks.
pub(super) struct Cursor {
    state: Mutex<State>,
    start: Instant,
    quantum: Duration,
    max_requests: Option<u64>,
}

struct State {
    arrivals: Arrivals,
    /// Draws the header mix's value per arrival, in arrival order (the pacer's sequence).
    tag_rng: Xoshiro256PlusPlus,
    claimed: u64,
    exhausted: bool,
}

/// An arrival a connection has claimed: when it is due and when to wake for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) index: u64,
    pub(super) intended: Instant,
    pub(super) phase: usize,
    pub(super) tag: u16,
    /// When to wake to send it: the intended time rounded up to the quantum's grid. `None`
    /// when it was already overdue at the claim (every connection was busy until then).
    pub(super) wake: Option<Instant>,
}

impl Claim {
    /// The job as released at `now` (after the wake-up). A claim that was already due is
    /// released at its intended time: all its lateness was the wait for a connection.
    pub(super) fn release(&self, now: Instant) -> Job {
        Job {
            index: self.index,
            intended: self.intended,
            released: match self.wake {
                Some(_) => now.max(self.intended),
                None => self.intended,
            },
            phase: self.phase as u16,
            tag: self.tag,
        }
    }
}

impl Cursor {
    /// A cursor at the first arrival of `schedule`, whose time origin is `start`.
    pub(super) fn new(
        schedule: &Schedule,
        spacing: Spacing,
        seed: u64,
        quantum: Duration,
        max_requests: Option<u64>,
        start: Instant,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                arrivals: schedule.arrivals(spacing, seed),
                tag_rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_7a65),
                claimed: 0,
                exhausted: false,
            }),
            start,
            quantum,
            max_requests,
        }
    }

    /// Claims the next arrival at `now`, or `None` once the schedule (or `max_requests`) is
    /// exhausted.
    pub(super) fn claim(&self, mix: Option<&HeaderMix>, now: Instant) -> Option<Claim> {
        let mut st = self.state.lock().ok()?;
        if st.exhausted {
            return None;
        }
        let next = if self.max_requests.is_some_and(|max| st.claimed >= max) {
            None
        } else {
            st.arrivals.next()
        };
        let Some(a) = next else {
            st.exhausted = true;
            return None;
        };
        st.claimed += 1;
        let tag = match mix {
            Some(mix) => mix.pick(st.tag_rng.random::<f64>()) as u16,
            None => NO_TAG,
        };
        drop(st);
        let intended = self.start + a.offset;
        Some(Claim {
            index: a.index,
            intended,
            phase: a.phase,
            tag,
            wake: (intended >= now).then(|| wake_at(self.start, intended, self.quantum)),
        })
    }

    /// Ends the cursor: the arrivals never claimed that were due by `until` are counted per
    /// phase into `per_phase` and their number returned (they were scheduled and never sent).
    pub(super) fn abandon_due(&self, until: Instant, per_phase: &[AtomicU64]) -> u64 {
        let Ok(mut st) = self.state.lock() else {
            return 0;
        };
        let mut n = 0;
        while !st.exhausted && self.max_requests.is_none_or(|max| st.claimed < max) {
            match st.arrivals.next() {
                Some(a) if self.start + a.offset <= until => {
                    st.claimed += 1;
                    n += 1;
                    if let Some(c) = per_phase.get(a.phase) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => break,
            }
        }
        st.exhausted = true;
        n
    }
}

/// The wake-up for a request due at `intended`: rounded up to the quantum's grid (multiples
/// of `quantum` from `start`), so requests due within one quantum share a wake-up. Never
/// before `intended`, less than one quantum after it.
pub(super) fn wake_at(start: Instant, intended: Instant, quantum: Duration) -> Instant {
    let q = quantum.as_nanos();
    if q == 0 {
        return intended;
    }
    let offset = intended.saturating_duration_since(start).as_nanos();
    let grid = offset.div_ceil(q) * q;
    start + Duration::from_nanos(u64::try_from(grid).unwrap_or(u64::MAX))
}

/// One HTTP/1.1 connection task: claims an arrival, waits for it on its own timer, sends it,
/// and again, until the schedule is exhausted or the run stops.
pub(super) async fn h1_connection(shared: Arc<Shared>, addr: SocketAddr, mut conn: Option<H1Conn>) {
    let Some(cursor) = shared.cursor.as_ref() else {
        return;
    };
    let mut timer = DueTimer::new();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        // Counted as holding a claim before claiming, until the request is outstanding (or
        // dropped): the collector must not take "all claimed, none outstanding" for drained
        // while a connection still waits for a claimed arrival's time.
        shared.holding.fetch_add(1, Ordering::SeqCst);
        let claimed_at = Instant::now();
        let Some(claim) = cursor.claim(shared.mix.as_ref(), claimed_at) else {
            shared.scheduler_done.store(true, Ordering::SeqCst);
            shared.holding.fetch_sub(1, Ordering::SeqCst);
            break;
        };
        let released = match claim.wake {
            None => claim.intended,
            Some(wake) => {
                // Registered before the stop flag is read: a stop after it wakes the wait.
                let stopped = shared.job_ready.notified();
                let mut stopped = std::pin::pin!(stopped);
                stopped.as_mut().enable();
                let woke = if shared.stop.load(Ordering::Acquire) {
                    false
                } else {
                    tokio::select! {
                        biased;
                        () = stopped.as_mut() => false,
                        () = timer.sleep_until(wake) => true,
                    }
                };
                if !woke {
                    // Claimed and due, but the run ended first: never sent, abandoned.
                    if claim.intended <= Instant::now() {
                        shared.unsent.fetch_add(1, Ordering::Relaxed);
                        shared.dispatched.fetch_add(1, Ordering::Relaxed);
                    }
                    shared.holding.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                Instant::now()
            }
        };
        let job = claim.release(released);
        if claim.wake.is_none()
            && shared.capped
            && claimed_at.saturating_duration_since(claim.intended) >= CAP_LATENESS
        {
            shared.delayed_by_cap.fetch_add(1, Ordering::Relaxed);
        }
        shared.begin(&job);
        shared.holding.fetch_sub(1, Ordering::SeqCst);
        send_h1(&shared, addr, &mut conn, job).await;
    }
}

#[cfg(test)]
mod tests;
