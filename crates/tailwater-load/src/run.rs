//! The run loop: a precise scheduler thread, per-request tasks, and an interval collector.
//!
//! Pacing: a dedicated OS thread walks the [`Arrivals`](crate::Arrivals) and sleeps with
//! `std::thread::sleep` (hrtimer precision, ~50 µs slack on Linux) until each intended send
//! time, then hands due requests in batches to the runtime through a bounded channel. tokio's
//! timer has a 1 ms granularity, which alone would put the send lag p99 near 1 ms; the thread
//! keeps it far lower. Each request runs in its own task, measures its latency from the
//! intended time (corrected) and from the moment it was written (uncorrected), and records
//! into one of a few sharded accumulators. Nothing per request is kept after it completes.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use http::header::{HOST, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::Full;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::collections::VecDeque;

use tokio::sync::{Notify, mpsc};

use crate::client::{H1Conn, Pool};
use crate::config::{Config, HeaderMix, Progress};
use crate::report::{IntervalReport, PhaseReport, Report, TierReport};
use crate::stats::{Acc, Outcome, Percentiles, Stats};
use crate::{LoadError, Schedule};

const SHARDS: usize = 16;
const BATCH: usize = 1024;
const NO_TAG: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct Job {
    index: u64,
    intended: Instant,
    /// When the scheduler released the job: the pacer's lateness is `released − intended`.
    released: Instant,
    phase: u16,
    tag: u16,
}

type Shard = Mutex<HashMap<(u16, u16), Acc>>;

struct Shared {
    pool: Pool,
    /// HTTP/1.1: due jobs wait here (FIFO) for a worker; bounded by `max_in_flight`.
    queue: Mutex<VecDeque<Job>>,
    job_ready: Notify,
    closed: AtomicBool,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    http2: bool,
    mix: Option<HeaderMix>,
    timeout: Duration,
    start: Instant,
    shards: Vec<Shard>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    /// The pacer resumes after hitting the cap once outstanding requests drop to this.
    low_water: usize,
    cap_waiting: AtomicBool,
    cap_lock: Mutex<()>,
    cap_cv: Condvar,
    /// End of the measured window (µs since start): the schedule's end, or the shutdown.
    window_end_us: AtomicU64,
    responses_in_window: AtomicU64,
    stop: AtomicBool,
    scheduler_done: AtomicBool,
    dispatched: AtomicU64,
    /// Stop the schedule after this many requests.
    max_requests: Option<u64>,
    delayed_by_cap: AtomicU64,
    scheduled_per_phase: Vec<AtomicU64>,
    /// End of each phase, µs since start (ascending).
    phase_ends_us: Vec<u64>,
    /// Responses (any status) and 2xx responses *completed* within each phase's window: a
    /// phase's rate counts what the target delivered during it, not its backlog drained later.
    completed_per_phase: Vec<AtomicU64>,
    completed_ok_per_phase: Vec<AtomicU64>,
    last_completion_us: AtomicU64,
}

impl Shared {
    fn new(config: &Config, pool: Pool, uri: Uri, headers: HeaderMap, start: Instant) -> Self {
        let phases = config.schedule.segments().len();
        Self {
            pool,
            queue: Mutex::new(VecDeque::new()),
            job_ready: Notify::new(),
            closed: AtomicBool::new(false),
            method: config.method.clone(),
            uri,
            headers,
            body: config.body.clone(),
            http2: config.http2,
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

    fn build_request(&self, tag: u16) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
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

    fn record(&self, job: &Job, outcome: &Outcome) {
        let shard = &self.shards[(job.index as usize) % SHARDS];
        if let Ok(mut map) = shard.lock() {
            map.entry((job.phase, job.tag))
                .or_insert_with(Acc::new)
                .record(outcome);
        }
    }

    fn finish_one(&self, result: Result<u16, crate::ErrorKind>) {
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

    /// Hands due jobs to the HTTP/1.1 workers.
    fn push_jobs(&self, jobs: Vec<Job>) {
        let n = jobs.len();
        if let Ok(mut q) = self.queue.lock() {
            q.extend(jobs);
        }
        for _ in 0..n {
            self.job_ready.notify_one();
        }
    }

    /// The next due job, or `None` once the run is closed.
    async fn next_job(&self) -> Option<Job> {
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
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
        self.job_ready.notify_waiters();
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Ok(_g) = self.cap_lock.lock() {
            self.cap_cv.notify_all();
        }
    }
}

/// Stops the scheduler thread if the run future is dropped early.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stop();
        self.0.close();
    }
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

async fn request(shared: Arc<Shared>, job: Job) {
    let deadline = job.intended + shared.timeout;
    let mut sent_at: Option<Instant> = None;
    let result = if Instant::now() >= deadline {
        Err(crate::ErrorKind::Timeout)
    } else {
        let attempt = async {
            let mut lease = shared.pool.acquire().await?;
            let req = shared.build_request(job.tag);
            sent_at = Some(Instant::now());
            lease.send(req).await
        };
        match tokio::time::timeout_at(deadline.into(), attempt).await {
            Ok(r) => r,
            Err(_) => Err(crate::ErrorKind::Timeout),
        }
    };
    let done = Instant::now();
    let outcome = Outcome {
        result,
        corrected_us: us(done.saturating_duration_since(job.intended)),
        uncorrected_us: sent_at.map_or(0, |s| us(done.saturating_duration_since(s))),
        send_lag_us: sent_at.map(|s| us(s.saturating_duration_since(job.intended))),
        pacer_lag_us: us(job.released.saturating_duration_since(job.intended)),
    };
    shared.record(&job, &outcome);
    shared.finish_one(outcome.result);
}

/// An HTTP/1.1 worker: one keep-alive connection, one request at a time, jobs in FIFO order.
async fn h1_worker(shared: Arc<Shared>, addr: SocketAddr, mut conn: Option<H1Conn>) {
    while let Some(job) = shared.next_job().await {
        let deadline = job.intended + shared.timeout;
        let mut sent_at: Option<Instant> = None;
        // A job whose deadline passed while it waited is not sent: sending it would only
        // cost the connection (abandoned mid-request) and load the target for nothing.
        let result = if Instant::now() >= deadline {
            Err(crate::ErrorKind::Timeout)
        } else {
            let attempt = async {
                // A kept-alive connection the server has since closed is replaced before the
                // request is sent (that is not a failure of the request).
                if let Some(c) = &mut conn
                    && c.ready().await.is_err()
                {
                    conn = None;
                }
                let c = match &mut conn {
                    Some(c) => c,
                    None => {
                        let c = conn.insert(H1Conn::connect(addr).await?);
                        c.ready().await?;
                        c
                    }
                };
                let req = shared.build_request(job.tag);
                sent_at = Some(Instant::now());
                c.send(req).await
            };
            match tokio::time::timeout_at(deadline.into(), attempt).await {
                Ok(r) => r,
                Err(_) => Err(crate::ErrorKind::Timeout),
            }
        };
        // After a failure once the request was on the wire the connection's state is
        // unknown: start afresh on the next job. A timeout before sending leaves it usable.
        if result.is_err() && (sent_at.is_some() || result != Err(crate::ErrorKind::Timeout)) {
            conn = None;
        }
        let done = Instant::now();
        let outcome = Outcome {
            result,
            corrected_us: us(done.saturating_duration_since(job.intended)),
            uncorrected_us: sent_at.map_or(0, |s| us(done.saturating_duration_since(s))),
            send_lag_us: sent_at.map(|s| us(s.saturating_duration_since(job.intended))),
            pacer_lag_us: us(job.released.saturating_duration_since(job.intended)),
        };
        shared.record(&job, &outcome);
        shared.finish_one(outcome.result);
    }
}

/// The pacing thread's view of time; the OS clock in production, a manual one in tests.
pub(crate) trait PaceClock {
    fn now(&self) -> Instant;
    fn sleep_until(&self, t: Instant);
}

/// `Instant::now` and `std::thread::sleep` (hrtimer-backed on Linux).
struct OsClock;

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
fn schedule_loop(
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

/// Takes everything recorded since the last call, per (phase, tag).
fn drain_shards(shared: &Shared) -> HashMap<(u16, u16), Stats> {
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

struct HdrLog {
    out: BufWriter<File>,
    error: Option<std::io::Error>,
}

impl HdrLog {
    fn create(path: &std::path::Path, start: SystemTime) -> Result<Self, LoadError> {
        let file = File::create(path).map_err(|e| LoadError::Output {
            path: path.display().to_string(),
            source: e,
        })?;
        let mut log = Self {
            out: BufWriter::new(file),
            error: None,
        };
        let mut ser = V2DeflateSerializer::new();
        let result = IntervalLogWriterBuilder::new()
            .add_comment("tailwater load: latency in microseconds")
            .add_comment(
                "untagged = corrected (from intended send time); tags: uncorrected, send_lag",
            )
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut log.out, &mut ser)
            .map(|_| ());
        if let Err(e) = result {
            log.error = Some(e);
        }
        Ok(log)
    }

    fn write(&mut self, offset: Duration, len: Duration, stats: &Stats) {
        if self.error.is_some() {
            return;
        }
        let mut ser = V2DeflateSerializer::new();
        // The builder writes headers only when configured; an empty builder just wraps.
        let mut writer =
            match IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut ser) {
                Ok(w) => w,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            };
        let series: [(&hdrhistogram::Histogram<u64>, Option<&str>); 3] = [
            (&stats.corrected, None),
            (&stats.uncorrected, Some("uncorrected")),
            (&stats.send_lag, Some("send_lag")),
        ];
        for (h, tag) in series {
            let tag = tag.and_then(Tag::new);
            if let Err(e) = writer.write_histogram(h, offset, len, tag) {
                self.error = Some(std::io::Error::other(e.to_string()));
                return;
            }
        }
    }

    fn finish(mut self) -> Result<(), std::io::Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

/// Runs the load described by `config` until its schedule ends or `shutdown` completes, and
/// returns the report.
///
/// Must be called inside a multi-threaded tokio runtime (the request tasks are spawned onto
/// it); the pacing runs on a dedicated OS thread that stops when the run ends or this future
/// is dropped. After the schedule ends, outstanding requests get until their timeout to finish;
/// after `shutdown`, at most one more second.
///
/// # Errors
/// [`LoadError::Config`] for invalid settings, [`LoadError::Resolve`] when the host does not
/// resolve, [`LoadError::Output`] when the HdrHistogram log cannot be written. Request failures
/// are not errors: they are counted in the report.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Report, LoadError> {
    config.validate()?;
    let addr: SocketAddr = tokio::net::lookup_host(config.target.authority())
        .await
        .map_err(|e| LoadError::Resolve {
            host: config.target.authority().to_string(),
            source: e,
        })?
        .next()
        .ok_or_else(|| LoadError::Resolve {
            host: config.target.authority().to_string(),
            source: std::io::Error::other("no address"),
        })?;
    let connections = config.connections.get();
    let pool = Pool::new(addr, if config.http2 { connections } else { 0 });
    let warm_up_deadline = config.timeout.min(Duration::from_secs(5));
    let mut h1_conns: Vec<Option<H1Conn>> = Vec::new();
    if config.http2 {
        let _ = tokio::time::timeout(warm_up_deadline, pool.warm_up()).await;
    } else {
        // Open the HTTP/1.1 connections ahead of the start; failures are retried by the
        // workers (and then counted as connect errors).
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..connections {
            set.spawn(H1Conn::connect(addr));
        }
        let _ = tokio::time::timeout(warm_up_deadline, async {
            while let Some(r) = set.join_next().await {
                h1_conns.push(r.ok().and_then(Result::ok));
            }
        })
        .await;
        set.abort_all();
        h1_conns.resize_with(connections, || None);
    }

    let mut headers = config.headers.clone();
    let uri = if config.http2 {
        config.target.uri.clone()
    } else {
        if !headers.contains_key(HOST)
            && let Ok(v) = HeaderValue::try_from(config.target.authority())
        {
            headers.insert(HOST, v);
        }
        config
            .target
            .path
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"))
    };
    let phases = config.schedule.segments().len();
    let wall_start = SystemTime::now();
    let start = Instant::now() + Duration::from_millis(5);
    let shared = Arc::new(Shared::new(&config, pool, uri, headers, start));
    let _guard = StopGuard(shared.clone());
    for conn in h1_conns {
        tokio::spawn(h1_worker(shared.clone(), addr, conn));
    }
    let mut hdr_log = match &config.hdr_log {
        Some(path) => Some(HdrLog::create(path, wall_start)?),
        None => None,
    };

    // Dispatcher: receives due batches and spawns one task per request.
    let (tx, mut rx) = mpsc::channel::<Vec<Job>>(64);
    let dispatcher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for job in batch {
                    tokio::spawn(request(shared.clone(), job));
                }
            }
        })
    };
    let scheduler = {
        let shared = shared.clone();
        let schedule = config.schedule.clone();
        let (spacing, seed) = (config.spacing, config.seed);
        std::thread::Builder::new()
            .name("tailwater-load-scheduler".into())
            .spawn(move || {
                let sink = if shared.http2 { Some(&tx) } else { None };
                schedule_loop(&OsClock, &shared, &schedule, spacing, seed, sink);
                shared.scheduler_done.store(true, Ordering::Release);
            })
            .map_err(|e| LoadError::Output {
                path: "scheduler thread".into(),
                source: e,
            })?
    };

    // Collector.
    let schedule_len = config.schedule.duration();
    let mut per_key: HashMap<(u16, u16), Stats> = HashMap::new();
    let mut running = crate::stats::new_histogram();
    let mut running_errors = 0u64;
    let mut running_responses = 0u64;
    let mut intervals = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + config.interval),
        config.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = start;
    let mut drain_deadline: Option<Instant> = None;
    let mut drain_started: Option<Instant> = None;
    let mut stopped_at: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shutdown_done = false;
    loop {
        let mut final_tick = false;
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep(Duration::from_millis(10)), if drain_deadline.is_some() => {
                let drained = shared.in_flight.load(Ordering::Acquire) == 0;
                let late = drain_deadline.is_some_and(|d| Instant::now() >= d);
                if !(drained || late) {
                    continue;
                }
                final_tick = true;
            }
            _ = &mut shutdown, if !shutdown_done => {
                shutdown_done = true;
                shared.stop();
                let now = Instant::now();
                stopped_at = Some(now);
                shared.window_end_us.fetch_min(
                    now.saturating_duration_since(start).as_micros() as u64,
                    Ordering::Relaxed,
                );
                drain_deadline = Some(now + config.timeout.min(Duration::from_secs(1)));
                continue;
            }
        }
        if drain_deadline.is_none() && shared.scheduler_done.load(Ordering::Acquire) {
            let now = Instant::now();
            drain_started = Some(now);
            drain_deadline = Some(
                (start + schedule_len).max(now)
                    + config.drain.unwrap_or(config.timeout)
                    + Duration::from_millis(50),
            );
        }
        let now = Instant::now();
        let taken = drain_shards(&shared);
        let mut interval = Stats::default();
        for (key, s) in taken {
            interval.merge(&s);
            match per_key.get_mut(&key) {
                Some(t) => t.merge(&s),
                None => {
                    per_key.insert(key, s);
                }
            }
        }
        let offset = last_tick.saturating_duration_since(start);
        let len = now.saturating_duration_since(last_tick);
        last_tick = now;
        if let Some(log) = hdr_log.as_mut() {
            log.write(offset, len, &interval);
        }
        let _ = running.add(&interval.corrected);
        running_errors += interval.error_count();
        running_responses += interval.responses();
        let secs = len.as_secs_f64().max(1e-9);
        let (a, b) = (offset.as_secs_f64(), (offset + len).as_secs_f64());
        let report = IntervalReport {
            start: offset,
            duration: len,
            target_rate: config.schedule.mass_between(a, b) / secs,
            achieved_rate: interval.responses() as f64 / secs,
            responses: interval.responses(),
            sent: interval.sent,
            status: interval.status.clone(),
            errors: interval.errors.clone(),
            corrected: Percentiles::of(&interval.corrected),
            uncorrected: Percentiles::of(&interval.uncorrected),
            success: Percentiles::of(&interval.success),
            send_lag: Percentiles::of(&interval.send_lag),
        };
        if let Some(cb) = &config.on_progress {
            cb(&Progress {
                elapsed: now.saturating_duration_since(start),
                total: schedule_len,
                target_rate: report.target_rate,
                achieved_rate: report.achieved_rate,
                p99_us: if running.is_empty() {
                    0
                } else {
                    running.value_at_quantile(0.99)
                },
                errors: running_errors,
                responses: running_responses,
                in_flight: shared.in_flight.load(Ordering::Relaxed),
                draining: drain_started.is_some(),
            });
        }
        if len >= Duration::from_millis(1) || report.responses > 0 {
            intervals.push(report);
        }
        if final_tick {
            break;
        }
    }
    shared.stop();
    // The scheduler sleeps at most 20 ms at a time and checks `stop`; the dispatcher ends
    // when the scheduler drops its sender.
    let join_deadline = Instant::now() + Duration::from_secs(1);
    while !scheduler.is_finished() && Instant::now() < join_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if scheduler.is_finished() {
        let _ = scheduler.join();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), dispatcher).await;
    let hdr_result = hdr_log.map(HdrLog::finish);
    if let (Some(Err(e)), Some(path)) = (hdr_result, &config.hdr_log) {
        return Err(LoadError::Output {
            path: path.display().to_string(),
            source: e,
        });
    }

    // Assemble the report.
    let last_completion = Duration::from_micros(shared.last_completion_us.load(Ordering::Relaxed));
    let covered = match stopped_at {
        Some(t) => t.saturating_duration_since(start).min(schedule_len),
        None => schedule_len,
    };
    let elapsed =
        covered.max(last_completion.min(covered + config.drain.unwrap_or(config.timeout)));
    let mut total = Stats::default();
    let mut phase_reports = Vec::with_capacity(phases);
    let tier_names: Vec<String> = config
        .header_mix
        .as_ref()
        .map(|m| m.values().to_vec())
        .unwrap_or_default();
    let mut tiers: Vec<Stats> = tier_names.iter().map(|_| Stats::default()).collect();
    for (i, seg) in config.schedule.segments().iter().enumerate() {
        let mut stats = Stats::default();
        let mut phase_tiers: Vec<Stats> = tier_names.iter().map(|_| Stats::default()).collect();
        for ((p, t), s) in &per_key {
            if usize::from(*p) != i {
                continue;
            }
            stats.merge(s);
            if let Some(ts) = phase_tiers.get_mut(usize::from(*t)) {
                ts.merge(s);
            }
        }
        for (all, one) in tiers.iter_mut().zip(&phase_tiers) {
            all.merge(one);
        }
        total.merge(&stats);
        phase_reports.push(PhaseReport {
            index: i,
            segment: *seg,
            start: config.schedule.phase_start(i),
            duration: seg.duration(),
            target_rate: seg.mass() / seg.duration().as_secs_f64(),
            scheduled: shared.scheduled_per_phase[i].load(Ordering::Relaxed),
            completed: shared.completed_per_phase[i].load(Ordering::Relaxed),
            completed_ok: shared.completed_ok_per_phase[i].load(Ordering::Relaxed),
            stats,
            tiers: tier_names
                .iter()
                .cloned()
                .zip(phase_tiers)
                .map(|(value, stats)| TierReport { value, stats })
                .collect(),
        });
    }
    let target_rate = if covered.is_zero() {
        config.schedule.mean_rate()
    } else {
        config.schedule.cumulative(covered.as_secs_f64()) / covered.as_secs_f64()
    };
    Ok(Report {
        target: config.target.to_string(),
        target_rate,
        achieved_rate: shared.responses_in_window.load(Ordering::Relaxed) as f64
            / covered.as_secs_f64().max(1e-9),
        elapsed,
        schedule_duration: schedule_len,
        stopped_early: stopped_at.is_some(),
        scheduled: shared.dispatched.load(Ordering::Relaxed),
        delayed_by_cap: shared.delayed_by_cap.load(Ordering::Relaxed),
        abandoned: shared.in_flight.load(Ordering::Relaxed) as u64,
        connections,
        max_in_flight: config.max_in_flight.get(),
        http2: config.http2,
        total,
        phases: phase_reports,
        tiers: tier_names
            .into_iter()
            .zip(tiers)
            .map(|(value, stats)| TierReport { value, stats })
            .collect(),
        intervals,
        meta: crate::RunMeta::new(wall_start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Spacing;
    use std::cell::Cell;

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
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), 0);
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

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_future_is_send() {
        let schedule = Schedule::constant(1.0, Duration::from_secs(1)).unwrap();
        let config = Config::new("http://127.0.0.1:1/", schedule).unwrap();
        let fut = run(config, std::future::pending::<()>());
        assert_send(&fut);
    }
}
