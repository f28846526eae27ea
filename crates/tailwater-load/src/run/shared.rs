//! State shared by the pacer, the request tasks and the collector of one run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// Due HTTP/1.1 jobs of one pacing thread, waiting for one of its workers.
#[derive(Default)]
pub(super) struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Notify,
}

impl JobQueue {
    fn pop(&self) -> Option<Job> {
        self.jobs.lock().ok().and_then(|mut q| q.pop_front())
    }
}

pub(super) type Shard = Mutex<HashMap<(u16, u16), Acc>>;

pub(super) struct Shared {
    pub(super) pool: Pool,
    /// HTTP/1.1: due jobs wait (FIFO) for a worker of their pacing thread, one queue per
    /// thread; bounded by `max_in_flight`.
    pub(super) queues: Vec<JobQueue>,
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
    /// How many pacers wait at the cap for outstanding requests to drop to `low_water`.
    pub(super) cap_waiting: AtomicUsize,
    pub(super) cap_ready: Notify,
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
        threads: usize,
    ) -> Self {
        let phases = config.schedule.segments().len();
        Self {
            pool,
            queues: (0..threads.max(1)).map(|_| JobQueue::default()).collect(),
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
            cap_waiting: AtomicUsize::new(0),
            cap_ready: Notify::new(),
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
        if prev - 1 <= self.low_water && self.cap_waiting.load(Ordering::SeqCst) > 0 {
            self.cap_ready.notify_waiters();
        }
    }

    /// Hands due jobs to the HTTP/1.1 workers of queue `q`, leaving `jobs` empty (its
    /// buffer is reused).
    pub(super) fn push_jobs(&self, q: usize, jobs: &mut Vec<Job>) {
        let queue = &self.queues[q];
        let n = jobs.len();
        if let Ok(mut jq) = queue.jobs.lock() {
            jq.extend(jobs.drain(..));
        }
        jobs.clear();
        for _ in 0..n {
            queue.ready.notify_one();
        }
    }

    /// The next due job of queue `q`, or `None` once the run is closed.
    pub(super) async fn next_job(&self, q: usize) -> Option<Job> {
        let queue = &self.queues[q];
        // Fast path under load: a job is waiting, no need to register with the notifier.
        if let Some(job) = queue.pop() {
            return Some(job);
        }
        loop {
            let notified = queue.ready.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = queue.pop() {
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
        for queue in &self.queues {
            if let Ok(mut q) = queue.jobs.lock() {
                q.clear();
            }
            queue.ready.notify_waiters();
        }
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.cap_ready.notify_waiters();
    }
}

/// Stops the pacing threads if the run future is dropped early.
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
