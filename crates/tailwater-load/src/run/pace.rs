//! The pacer: dispatches each request at its intended time, in release quanta.
//!
//! A pacer runs on a thread of its own (h2, feeding the runtime) or shares a runtime thread
//! with the HTTP/1.1 connections it feeds (see [`super::local`]). It wakes at most once per [`Config::pace_quantum`](crate::Config::pace_quantum)
//! and releases, at each wake-up, every request whose intended time has come. A request is
//! never released early and at most one quantum (plus the OS's wake-up slack) late; its
//! intended time is kept exactly, and latency is measured from it (wrk2's rule), so the
//! quantum trades send-lag precision for wake-ups, never coordinated-omission correctness.
//! Releasing each request on its own (quantum zero) costs a sleep, a wake-up of a runtime
//! thread and a cross-thread hand-off per request: at 20 000/s over TLS that was about half
//! of the load generator's CPU time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use tokio::sync::mpsc;

use crate::Schedule;

use super::shared::{BATCH, Job, NO_TAG, Shared};

/// The pacer's view of time: the OS clock on a thread of its own, a `timerfd` on a runtime
/// thread, a manual clock in tests.
pub(super) trait PaceClock {
    fn now(&self) -> Instant;
    /// Returns at `t` or later.
    async fn sleep_until(&mut self, t: Instant);
}

/// `Instant::now` and a blocking `std::thread::sleep` (hrtimer-backed on Linux): for a
/// pacer that has an OS thread to itself.
pub(super) struct OsClock;

impl PaceClock for OsClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    async fn sleep_until(&mut self, t: Instant) {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

/// `Instant::now` and a `timerfd`: for a pacer that shares its runtime thread with the
/// connections it feeds (the thread serves them while the pacer sleeps).
pub(super) struct LocalClock(pub(super) super::timer::PreciseTimer);

impl PaceClock for LocalClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    async fn sleep_until(&mut self, t: Instant) {
        self.0.sleep_until(t).await;
    }
}

/// How the pacer walks a schedule: its spacing, seed and release quantum, and which share of
/// the arrivals it releases (those whose index is `share.0` modulo `share.1`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacing {
    pub(super) spacing: crate::Spacing,
    pub(super) seed: u64,
    pub(super) quantum: Duration,
    pub(super) share: (u64, u64),
}

/// Where released jobs go.
#[derive(Clone, Copy)]
pub(super) enum Sink<'a> {
    /// h2: to the dispatcher, which spawns a task per request.
    Channel(&'a mpsc::Sender<Vec<Job>>),
    /// HTTP/1.1: to the FIFO queue of the pacer's own workers (same thread: the hand-off
    /// is a queue push, and the workers run when the pacer sleeps or yields).
    Queue(usize),
}

impl Sink<'_> {
    /// Hands `batch` over (leaving it empty); `false` once the receiver is gone.
    async fn flush(self, shared: &Shared, batch: &mut Vec<Job>) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self {
            Sink::Channel(tx) => {
                let jobs = std::mem::replace(batch, Vec::with_capacity(BATCH));
                tx.send(jobs).await.is_ok()
            }
            // The batch's buffer is kept: no allocation per release.
            Sink::Queue(q) => {
                shared.push_jobs(q, batch);
                // Let the workers write what was just released. The deferred yield also
                // makes the runtime poll its I/O driver (a non-blocking `epoll_wait`) before
                // the pacer sleeps again, and that poll matters: without it (the pacer going
                // straight to its timer) the time from a request's write to its response's
                // reading rose from 0.46–1.75 ms to 2.3–5.4 ms (p50) at 20 000/s over TLS on a
                // busy 2-vCPU machine, and the connections it held made later requests wait
                // (session 21, README). It costs about 0.3 `epoll_wait` per response.
                tokio::task::yield_now().await;
                true
            }
        }
    }
}

/// Waits until outstanding requests drop to the low-water mark (or the run stops).
async fn wait_below_cap(shared: &Shared) {
    shared.cap_waiting.fetch_add(1, Ordering::SeqCst);
    while shared.in_flight.load(Ordering::SeqCst) > shared.low_water
        && !shared.stop.load(Ordering::Acquire)
    {
        let notified = shared.cap_ready.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if shared.in_flight.load(Ordering::SeqCst) <= shared.low_water
            || shared.stop.load(Ordering::Acquire)
        {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
    }
    shared.cap_waiting.fetch_sub(1, Ordering::SeqCst);
}

/// The pacer: walks its share of the arrivals and releases each once its intended time has
/// come, waking at most once per `pacing.quantum`.
pub(super) async fn schedule_loop(
    clock: &mut impl PaceClock,
    shared: &Shared,
    schedule: &Schedule,
    pacing: Pacing,
    sink: Sink<'_>,
) {
    let Pacing {
        spacing,
        seed,
        quantum,
        share: (k, n),
    } = pacing;
    // The last wake-up: the next one is at least a quantum later.
    let mut last_wake: Option<Instant> = None;
    let mut tag_rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_7a65 ^ k);
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut behind_because_of_cap = false;
    let n = n.max(1);
    for a in schedule
        .arrivals(spacing, seed)
        .filter(|a| a.index % n == k)
    {
        // A count is the schedule's first `max` arrivals, whichever pacer releases them.
        if shared.max_requests.is_some_and(|max| a.index >= max) {
            break;
        }
        let intended = shared.start + a.offset;
        loop {
            if shared.stop.load(Ordering::Acquire) {
                let _ = sink.flush(shared, &mut batch).await;
                return;
            }
            let now = clock.now();
            if now >= intended {
                break;
            }
            if !batch.is_empty() {
                if !sink.flush(shared, &mut batch).await {
                    return;
                }
                continue;
            }
            // Requests falling due before the next quantum boundary wait for it and are
            // released together; a request due later is woken for at its own time.
            let wake = match last_wake {
                Some(w) => intended.max(w + quantum),
                None => intended,
            };
            clock
                .sleep_until(wake.min(now + Duration::from_millis(20)))
                .await;
            last_wake = Some(clock.now());
        }
        if shared.in_flight.load(Ordering::Acquire) >= shared.max_in_flight {
            if !sink.flush(shared, &mut batch).await {
                return;
            }
            behind_because_of_cap = true;
            wait_below_cap(shared).await;
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
        if batch.len() >= BATCH && !sink.flush(shared, &mut batch).await {
            return;
        }
    }
    let _ = sink.flush(shared, &mut batch).await;
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
        async fn sleep_until(&mut self, t: Instant) {
            self.sleeps.set(self.sleeps.get() + 1);
            self.now.set(self.now.get().max(t + self.oversleep));
        }
    }

    /// A run's shared state for `config` (against a port nobody listens on: the pacing
    /// loop never connects) and a manual clock that starts with it and oversleeps by
    /// `oversleep` at every wait.
    fn manual_run(config: &Config, oversleep: Duration) -> (Shared, ManualClock) {
        let start = Instant::now();
        let addr = "127.0.0.1:9".parse().expect("a socket address");
        let pool = Pool::new(addr, 0, None);
        let shared = Shared::new(
            config,
            pool,
            Uri::from_static("/"),
            HeaderMap::new(),
            start,
            1,
        );
        let clock = ManualClock {
            now: Cell::new(start),
            oversleep,
            sleeps: Cell::new(0),
        };
        (shared, clock)
    }

    /// Runs the real pacing loop on a manual clock and returns the released jobs in order.
    fn pace(config: &Config, oversleep: Duration) -> (Vec<Job>, Vec<usize>, u64) {
        pace_share(config, oversleep, (0, 1))
    }

    /// [`pace`] for one pacer's share of the arrivals.
    fn pace_share(
        config: &Config,
        oversleep: Duration,
        share: (u64, u64),
    ) -> (Vec<Job>, Vec<usize>, u64) {
        let (shared, mut clock) = manual_run(config, oversleep);
        // Large enough for the whole test schedule, so the loop never blocks.
        let (tx, mut rx) = mpsc::channel(100_000);
        let pacing = Pacing {
            spacing: config.spacing,
            seed: config.seed,
            quantum: config.pace_quantum,
            share,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime for the pacing loop");
        rt.block_on(schedule_loop(
            &mut clock,
            &shared,
            &config.schedule,
            pacing,
            Sink::Channel(&tx),
        ));
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
    fn below_the_quantum_rate_releases_each_request_exactly_at_its_intended_time() {
        // Up to 3 000/s the requests are at least 333 µs apart, more than the default 250 µs
        // quantum: each is woken for and released on its own, exactly on time.
        let schedule = Schedule::parse("1000:1s,ramp:1000..3000:1s").unwrap();
        let config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
        assert_eq!(config.pace_quantum, crate::DEFAULT_PACE_QUANTUM);
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
        // Quantum zero: the wake-up slack alone decides the batching.
        let schedule = Schedule::constant(10_000.0, Duration::from_millis(100)).unwrap();
        let mut config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
        config.pace_quantum = Duration::ZERO;
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
        let want: Vec<_> = schedule.arrivals(Spacing::Poisson, 42).collect();
        // Quantum zero: each request exactly at its time. Default quantum: close arrivals
        // share a wake-up, each still released within the quantum and never early.
        for quantum in [Duration::ZERO, crate::DEFAULT_PACE_QUANTUM] {
            config.pace_quantum = quantum;
            let (jobs, _, _) = pace(&config, Duration::ZERO);
            assert_eq!(jobs.len(), want.len());
            let origin = jobs[0].intended - want[0].offset;
            let mut late = 0;
            for (job, a) in jobs.iter().zip(&want) {
                assert_eq!(job.intended - origin, a.offset);
                assert!(job.released >= job.intended, "released early");
                assert!(job.released - job.intended <= quantum, "{quantum:?}");
                late += usize::from(job.released > job.intended);
            }
            // Poisson gaps below 250 µs at 2 000/s: about 1 - e^-0.5, 39 % of them.
            if quantum.is_zero() {
                assert_eq!(late, 0);
            } else {
                assert!((500..1100).contains(&late), "{late} of 2000 batched");
            }
        }
    }

    #[test]
    fn above_the_quantum_rate_releases_due_requests_together_never_early_at_most_a_quantum_late() {
        // 20 000/s (50 µs apart), 250 µs quantum, 40 µs wake-up slack: about five requests per
        // wake-up, each released no earlier than its time and within quantum + slack of it;
        // intended times unchanged (latency is measured from them).
        let schedule = Schedule::constant(20_000.0, Duration::from_millis(100)).unwrap();
        let mut config = Config::new("http://127.0.0.1:9/", schedule.clone()).unwrap();
        let slack = Duration::from_micros(40);
        let quantum = Duration::from_micros(250);
        config.pace_quantum = quantum;
        let (jobs, batches, sleeps) = pace(&config, slack);
        assert_eq!(jobs.len(), 2000);
        let start = jobs[0].intended;
        let mut max_lag = Duration::ZERO;
        for (n, job) in jobs.iter().enumerate() {
            assert_eq!(job.intended - start, Duration::from_micros(50 * n as u64));
            assert!(job.released >= job.intended, "job {n} released early");
            let lag = job.released - job.intended;
            assert!(lag <= quantum + slack, "job {n} lag {lag:?}");
            max_lag = max_lag.max(lag);
        }
        // The quantum is used, not just bounded: some request waits most of it.
        assert!(
            max_lag >= quantum - Duration::from_micros(50),
            "{max_lag:?}"
        );
        // At most one wake-up per quantum (400 in 100 ms), against 2 000 with quantum zero.
        assert!(sleeps <= 100_000 / 250 + 1, "{sleeps} wake-ups");
        let mean = jobs.len() as f64 / batches.len() as f64;
        assert!(mean >= 4.0, "mean batch {mean}");
        config.pace_quantum = Duration::ZERO;
        let (exact, batches, sleeps) = pace(&config, Duration::ZERO);
        assert!(exact.iter().all(|j| j.released == j.intended));
        assert!(batches.iter().all(|b| *b == 1));
        assert_eq!(sleeps, 2000 - 1);
    }

    #[test]
    fn pacers_sharing_a_schedule_release_every_arrival_once_on_time() {
        // Three pacers (one per runtime thread) take arrivals 0, 3, 6, … / 1, 4, 7, … /
        // 2, 5, 8, …: together exactly the schedule, each at its own intended time.
        let schedule =
            Schedule::parse("3000:200ms,ramp:3000..9000:200ms").expect("a valid schedule");
        let mut config =
            Config::new("http://127.0.0.1:9/", schedule.clone()).expect("a valid config");
        config.spacing = Spacing::Poisson;
        config.seed = 7;
        config.pace_quantum = Duration::ZERO;
        let want: Vec<_> = schedule.arrivals(Spacing::Poisson, 7).collect();
        let mut seen = vec![0u32; want.len()];
        for k in 0..3 {
            let (jobs, _, _) = pace_share(&config, Duration::ZERO, (k, 3));
            assert!(!jobs.is_empty());
            let origin = jobs[0].intended - want[jobs[0].index as usize].offset;
            for job in &jobs {
                assert_eq!(job.index % 3, k, "pacer {k} took arrival {}", job.index);
                let a = &want[job.index as usize];
                assert_eq!(job.intended - origin, a.offset);
                assert_eq!(job.released, job.intended);
                seen[job.index as usize] += 1;
            }
        }
        assert!(seen.iter().all(|n| *n == 1), "every arrival exactly once");
    }

    #[test]
    fn a_pacer_feeding_its_own_workers_lets_them_run_after_every_release() {
        // HTTP/1.1: the pacer shares its thread with its workers. After each release it
        // yields, so the workers write and the runtime polls its I/O driver (reading the
        // responses that arrived) before the pacer goes on. Going straight to the timer
        // instead saved 0.3 `epoll_wait` per response but tripled the write-to-response
        // time on a busy machine (session 21, README). Here the clock never waits (every
        // 250 µs quantum is released at once, about 800 releases): a probe task on the same
        // thread must run after each of them, not once per full batch.
        use std::sync::atomic::{AtomicBool, AtomicU64};
        let schedule =
            Schedule::constant(20_000.0, Duration::from_millis(200)).expect("a valid schedule");
        let config = Config::new("http://127.0.0.1:9/", schedule.clone()).expect("a valid config");
        let (shared, mut clock) = manual_run(&config, Duration::ZERO);
        let pacing = Pacing {
            spacing: config.spacing,
            seed: config.seed,
            quantum: config.pace_quantum,
            share: (0, 1),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime for the pacing loop");
        let runs = std::sync::Arc::new(AtomicU64::new(0));
        let done = std::sync::Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            let probe = tokio::spawn({
                let (runs, done) = (runs.clone(), done.clone());
                async move {
                    while !done.load(Ordering::Relaxed) {
                        runs.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            });
            // Let the probe start, then count from zero.
            tokio::task::yield_now().await;
            runs.store(0, Ordering::Relaxed);
            schedule_loop(
                &mut clock,
                &shared,
                &config.schedule,
                pacing,
                Sink::Queue(0),
            )
            .await;
            let ran = runs.load(Ordering::Relaxed);
            done.store(true, Ordering::Relaxed);
            let _ = probe.await;
            let jobs = shared.dispatched.load(Ordering::Relaxed);
            assert_eq!(jobs, 4000);
            let releases = clock.sleeps.get();
            assert!(releases >= 700, "{releases} releases");
            assert!(
                ran >= releases,
                "the workers' thread ran {ran} times for {releases} releases"
            );
        });
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
