//! The pacing thread: dispatches each request at its intended time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use tokio::sync::mpsc;

use crate::Schedule;

use super::shared::{BATCH, Job, NO_TAG, Shared};

/// The pacing thread's view of time; the OS clock in production, a manual one in tests.
pub(super) trait PaceClock {
    fn now(&self) -> Instant;
    fn sleep_until(&self, t: Instant);
}

/// `Instant::now` and `std::thread::sleep` (hrtimer-backed on Linux).
pub(super) struct OsClock;

impl PaceClock for OsClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, t: Instant) {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

/// The scheduler thread: walks the arrivals and dispatches each at its intended time.
pub(super) fn schedule_loop(
    clock: &impl PaceClock,
    shared: &Shared,
    schedule: &Schedule,
    spacing: crate::Spacing,
    seed: u64,
    tx: Option<&mpsc::Sender<Vec<Job>>>,
) {
    let mut tag_rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_7a65);
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut behind_because_of_cap = false;
    // HTTP/1.1 jobs go straight to the workers' queue; h2 jobs through the dispatcher.
    let flush = |batch: &mut Vec<Job>| -> bool {
        if batch.is_empty() {
            return true;
        }
        let jobs = std::mem::replace(batch, Vec::with_capacity(BATCH));
        match tx {
            Some(tx) => tx.blocking_send(jobs).is_ok(),
            None => {
                shared.push_jobs(jobs);
                true
            }
        }
    };
    for a in schedule.arrivals(spacing, seed) {
        if shared
            .max_requests
            .is_some_and(|max| shared.dispatched.load(Ordering::Relaxed) >= max)
        {
            break;
        }
        let intended = shared.start + a.offset;
        loop {
            if shared.stop.load(Ordering::Acquire) {
                let _ = flush(&mut batch);
                return;
            }
            let now = clock.now();
            if now >= intended {
                break;
            }
            if !batch.is_empty() {
                if !flush(&mut batch) {
                    return;
                }
                continue;
            }
            clock.sleep_until(intended.min(now + Duration::from_millis(20)));
        }
        if shared.in_flight.load(Ordering::Acquire) >= shared.max_in_flight {
            if !flush(&mut batch) {
                return;
            }
            behind_because_of_cap = true;
            if let Ok(mut guard) = shared.cap_lock.lock() {
                shared.cap_waiting.store(true, Ordering::SeqCst);
                while shared.in_flight.load(Ordering::SeqCst) > shared.low_water
                    && !shared.stop.load(Ordering::Acquire)
                {
                    match shared.cap_cv.wait_timeout(guard, Duration::from_millis(5)) {
                        Ok((g, _)) => guard = g,
                        Err(_) => return,
                    }
                }
                shared.cap_waiting.store(false, Ordering::SeqCst);
            }
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
        }
        let released = clock.now();
        if behind_because_of_cap {
            if released.saturating_duration_since(intended) > Duration::from_millis(1) {
                shared.delayed_by_cap.fetch_add(1, Ordering::Relaxed);
            } else {
                behind_because_of_cap = false;
            }
        }
        let tag = match &shared.mix {
            Some(mix) => mix.pick(tag_rng.random::<f64>()) as u16,
            None => NO_TAG,
        };
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        shared.dispatched.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = shared.scheduled_per_phase.get(a.phase) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        batch.push(Job {
            index: a.index,
            intended,
            released,
            phase: a.phase as u16,
            tag,
        });
        if batch.len() >= BATCH && !flush(&mut batch) {
            return;
        }
    }
    let _ = flush(&mut batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Spacing;
    use crate::client::Pool;
    use crate::config::{Config, HeaderMix};
    use http::{HeaderMap, Uri};
    use std::cell::Cell;
    use tokio::sync::mpsc;

    /// A manual clock: `sleep_until(t)` jumps to `t` plus a fixed oversleep (the OS's wake-up
    /// slack), and records how often it slept.
    struct ManualClock {
        now: Cell<Instant>,
        oversleep: Duration,
        sleeps: Cell<u64>,
    }

    impl PaceClock for ManualClock {
        fn now(&self) -> Instant {
            self.now.get()
        }
        fn sleep_until(&self, t: Instant) {
            self.sleeps.set(self.sleeps.get() + 1);
            self.now.set(self.now.get().max(t + self.oversleep));
        }
    }

    /// Runs the real pacing loop on a manual clock and returns the released jobs in order.
    fn pace(config: &Config, oversleep: Duration) -> (Vec<Job>, Vec<usize>, u64) {
        let start = Instant::now();
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), 0, None);
        let shared = Shared::new(config, pool, Uri::from_static("/"), HeaderMap::new(), start);
        let clock = ManualClock {
            now: Cell::new(start),
            oversleep,
            sleeps: Cell::new(0),
        };
        // Large enough for the whole test schedule, so the loop never blocks.
        let (tx, mut rx) = mpsc::channel(100_000);
        schedule_loop(
            &clock,
            &shared,
            &config.schedule,
            config.spacing,
            config.seed,
            Some(&tx),
        );
        drop(tx);
        let mut jobs = Vec::new();
        let mut batches = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            batches.push(batch.len());
            jobs.extend(batch);
        }
        (jobs, batches, clock.sleeps.get())
    }

    #[test]
    fn releases_each_request_exactly_at_its_intended_time() {
        let schedule = Schedule::parse("1000:1s,ramp:1000..3000:1s").unwrap();
        let config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
        let (jobs, batches, _) = pace(&config, Duration::ZERO);
        let want: Vec<_> = schedule.arrivals(Spacing::Uniform, 1).collect();
        assert_eq!(jobs.len(), want.len());
        assert_eq!(jobs.len(), 3000);
        let start = jobs[0].intended;
        for (job, a) in jobs.iter().zip(&want) {
            assert_eq!(job.intended - start, a.offset);
            assert_eq!(
                job.released, job.intended,
                "released late at {:?}",
                a.offset
            );
            assert_eq!(usize::from(job.phase), a.phase);
        }
        // On time, each request is handed over on its own: no bursts.
        assert!(batches.iter().all(|b| *b == 1));
    }

    #[test]
    fn a_late_wakeup_releases_due_requests_together_and_keeps_intended_times() {
        // 10 000/s (100 µs apart) with a 250 µs wake-up slack: the lag stays under the slack
        // and the intended times never move (so latency is still measured from them).
        let schedule = Schedule::constant(10_000.0, Duration::from_millis(100)).unwrap();
        let config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
        let slack = Duration::from_micros(250);
        let (jobs, batches, _) = pace(&config, slack);
        assert_eq!(jobs.len(), 1000);
        let start = jobs[0].intended;
        for (n, job) in jobs.iter().enumerate() {
            assert_eq!(job.intended - start, Duration::from_micros(100 * n as u64));
            let lag = job.released - job.intended;
            assert!(lag <= slack, "job {n} lag {lag:?}");
        }
        assert!(batches.iter().any(|b| *b > 1));
    }

    #[test]
    fn poisson_pacing_follows_the_seeded_arrivals() {
        let schedule = Schedule::constant(2000.0, Duration::from_secs(1)).unwrap();
        let mut config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
        config.spacing = Spacing::Poisson;
        config.seed = 42;
        let (jobs, _, _) = pace(&config, Duration::ZERO);
        let want: Vec<_> = schedule.arrivals(Spacing::Poisson, 42).collect();
        assert_eq!(jobs.len(), want.len());
        let origin = jobs[0].intended - want[0].offset;
        for (job, a) in jobs.iter().zip(&want) {
            assert_eq!(job.intended - origin, a.offset);
            assert_eq!(job.released, job.intended);
        }
    }

    #[test]
    fn header_mix_is_seeded_and_weighted() {
        let schedule = Schedule::constant(10_000.0, Duration::from_secs(1)).unwrap();
        let mut config = Config::new("http://127.0.0.1:9/", schedule).unwrap();
        config.header_mix =
            Some(HeaderMix::parse("x-criticality: critical=75,sheddable=25").unwrap());
        let (jobs, _, _) = pace(&config, Duration::ZERO);
        let sheddable = jobs.iter().filter(|j| j.tag == 1).count();
        assert!((2300..2700).contains(&sheddable), "{sheddable}");
        let (again, _, _) = pace(&config, Duration::ZERO);
        assert!(jobs.iter().zip(&again).all(|(a, b)| a.tag == b.tag));
    }
}
