//! State shared by the pacer, the request tasks and the collector of one run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::Full;
use std::collections::VecDeque;

use tokio::sync::Notify;

use crate::client::Pool;
use crate::config::{Config, HeaderMix};
use crate::stats::{Acc, Outcome, Stats};

pub(super) const SHARDS: usize = 16;
pub(super) const BATCH: usize = 1024;
pub(super) const NO_TAG: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
pub(super) struct Job {
    pub(super) index: u64,
    pub(super) intended: Instant,
    /// When the scheduler released the job: the pacer's lateness is `released − intended`.
    pub(super) released: Instant,
    pub(super) phase: u16,
    pub(super) tag: u16,
}

pub(super) type Shard = Mutex<HashMap<(u16, u16), Acc>>;

pub(super) struct Shared {
    pub(super) pool: Pool,
    /// HTTP/1.1: due jobs wait here (FIFO) for a worker; bounded by `max_in_flight`.
    pub(super) queue: Mutex<VecDeque<Job>>,
    pub(super) job_ready: Notify,
    pub(super) closed: AtomicBool,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) http2: bool,
    /// gRPC runs: the call (POST of its framed message, `grpc-status` read).
    pub(super) grpc: Option<crate::grpc::GrpcCall>,
    pub(super) mix: Option<HeaderMix>,
    pub(super) timeout: Duration,
    pub(super) start: Instant,
    pub(super) shards: Vec<Shard>,
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: usize,
    /// The pacer resumes after hitting the cap once outstanding requests drop to this.
    pub(super) low_water: usize,
    pub(super) cap_waiting: AtomicBool,
    pub(super) cap_lock: Mutex<()>,
    pub(super) cap_cv: Condvar,
    /// End of the measured window (µs since start): the schedule's end, or the shutdown.
    pub(super) window_end_us: AtomicU64,
    pub(super) responses_in_window: AtomicU64,
    pub(super) stop: AtomicBool,
    pub(super) scheduler_done: AtomicBool,
    pub(super) dispatched: AtomicU64,
    /// Stop the schedule after this many requests.
    pub(super) max_requests: Option<u64>,
    pub(super) delayed_by_cap: AtomicU64,
    pub(super) scheduled_per_phase: Vec<AtomicU64>,
    /// End of each phase, µs since start (ascending).
    pub(super) phase_ends_us: Vec<u64>,
    /// Responses (any status) and 2xx responses *completed* within each phase's window: a
    /// phase's rate counts what the target delivered during it, not its backlog drained later.
    pub(super) completed_per_phase: Vec<AtomicU64>,
    pub(super) completed_ok_per_phase: Vec<AtomicU64>,
    pub(super) last_completion_us: AtomicU64,
}

impl Shared {
    pub(super) fn new(
        config: &Config,
        pool: Pool,
        uri: Uri,
        headers: HeaderMap,
        start: Instant,
    ) -> Self {
        let phases = config.schedule.segments().len();
        Self {
            pool,
            queue: Mutex::new(VecDeque::new()),
            job_ready: Notify::new(),
            closed: AtomicBool::new(false),
            method: if config.grpc.is_some() {
                Method::POST
            } else {
                config.method.clone()
            },
            uri,
            headers,
            body: config.body.clone(),
            http2: config.http2,
            grpc: config.grpc.clone(),
            mix: config.header_mix.clone(),
            timeout: config.timeout,
            start,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: config.max_in_flight.get(),
            low_water: config.max_in_flight.get()
                - (config.max_in_flight.get() / 8).clamp(1, config.max_in_flight.get()),
            cap_waiting: AtomicBool::new(false),
            cap_lock: Mutex::new(()),
            cap_cv: Condvar::new(),
            window_end_us: AtomicU64::new(config.schedule.duration().as_micros() as u64),
            responses_in_window: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            scheduler_done: AtomicBool::new(false),
            dispatched: AtomicU64::new(0),
            max_requests: config.max_requests,
            delayed_by_cap: AtomicU64::new(0),
            scheduled_per_phase: (0..phases).map(|_| AtomicU64::new(0)).collect(),
            phase_ends_us: (0..phases)
                .map(|i| {
                    let end =
                        config.schedule.phase_start(i) + config.schedule.segments()[i].duration();
                    us(end)
                })
                .collect(),
            completed_per_phase: (0..phases).map(|_| AtomicU64::new(0)).collect(),
            completed_ok_per_phase: (0..phases).map(|_| AtomicU64::new(0)).collect(),
            last_completion_us: AtomicU64::new(0),
        }
    }

    pub(super) fn build_request(&self, tag: u16) -> Request<Full<Bytes>> {
        let body = match &self.grpc {
            Some(call) => call.framed.clone(),
            None => self.body.clone(),
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if self.http2 {
            *req.version_mut() = Version::HTTP_2;
        }
        if let Some(mix) = &self.mix
            && let Some(v) = mix.values.get(usize::from(tag))
        {
            req.headers_mut().insert(mix.name.clone(), v.clone());
        }
        req
    }

    pub(super) fn record(&self, job: &Job, outcome: &Outcome) {
        let shard = &self.shards[(job.index as usize) % SHARDS];
        if let Ok(mut map) = shard.lock() {
            map.entry((job.phase, job.tag))
                .or_insert_with(Acc::new)
                .record(outcome);
        }
    }

    pub(super) fn finish_one(&self, result: Result<u16, crate::ErrorKind>) {
        let done = self.start.elapsed().as_micros() as u64;
        self.last_completion_us.fetch_max(done, Ordering::Relaxed);
        if let Ok(code) = result
            && done <= self.window_end_us.load(Ordering::Relaxed)
        {
            self.responses_in_window.fetch_add(1, Ordering::Relaxed);
            let phase = self.phase_ends_us.partition_point(|end| *end <= done);
            if let Some(n) = self.completed_per_phase.get(phase) {
                n.fetch_add(1, Ordering::Relaxed);
                if (200..300).contains(&code) {
                    self.completed_ok_per_phase[phase].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let prev = self.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Wake the pacer only when it waits at the cap and we crossed the low-water mark:
        // one wake-up per burst instead of one per completion.
        if prev - 1 <= self.low_water
            && self.cap_waiting.load(Ordering::SeqCst)
            && let Ok(_g) = self.cap_lock.lock()
        {
            self.cap_cv.notify_one();
        }
    }

    /// Hands due jobs to the HTTP/1.1 workers, leaving `jobs` empty (its buffer is reused).
    pub(super) fn push_jobs(&self, jobs: &mut Vec<Job>) {
        let n = jobs.len();
        if let Ok(mut q) = self.queue.lock() {
            q.extend(jobs.drain(..));
        }
        jobs.clear();
        for _ in 0..n {
            self.job_ready.notify_one();
        }
    }

    /// The next due job, or `None` once the run is closed.
    pub(super) async fn next_job(&self) -> Option<Job> {
        // Fast path under load: a job is waiting, no need to register with the notifier.
        if let Some(job) = self.queue.lock().ok().and_then(|mut q| q.pop_front()) {
            return Some(job);
        }
        loop {
            let notified = self.job_ready.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = self.queue.lock().ok().and_then(|mut q| q.pop_front()) {
                return Some(job);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// Ends the workers: drops queued jobs (they stay counted as outstanding) and wakes all.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
        self.job_ready.notify_waiters();
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Ok(_g) = self.cap_lock.lock() {
            self.cap_cv.notify_all();
        }
    }
}

/// Stops the scheduler thread if the run future is dropped early.
pub(super) struct StopGuard(pub(super) Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stop();
        self.0.close();
    }
}

pub(super) fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Takes everything recorded since the last call, per (phase, tag).
pub(super) fn drain_shards(shared: &Shared) -> HashMap<(u16, u16), Stats> {
    let mut out: HashMap<(u16, u16), Stats> = HashMap::new();
    for shard in &shared.shards {
        let taken = match shard.lock() {
            Ok(mut map) => std::mem::take(&mut *map),
            Err(_) => continue,
        };
        for (key, acc) in taken {
            let stats = acc.into_stats();
            match out.get_mut(&key) {
                Some(s) => s.merge(&stats),
                None => {
                    out.insert(key, stats);
                }
            }
        }
    }
    out
}
