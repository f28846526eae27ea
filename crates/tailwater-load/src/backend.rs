//! A synthetic HTTP service of known capacity: N workers behind a bounded FIFO queue.
//!
//! Each request joins a FIFO queue (tokio's fair semaphore) in front of `workers` simulated
//! workers; a worker holds it for a service time drawn from the configured distribution, then
//! answers `200`. When `workers + queue` requests are already in the system, the request is
//! answered at once with `overflow_status` (503 by default). Work continues when the client
//! disconnects (as in a naive server), and that is counted as *wasted*: the worker finished a
//! request nobody was waiting for. Optional stalls freeze all responses, like wrk2's `^Z` demo.
//!
//! Service time is simulated with tokio timers (1 ms granularity), not CPU burn; a zero service
//! time without stalls answers inline (the fast path used as a benchmark target).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Bernoulli, Distribution as _, Exp, LogNormal};
use tailwater_core::ConfigError;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::parse::parse_duration;

/// Default queue capacity in front of the workers.
pub const DEFAULT_QUEUE: usize = 1024;

/// How long connections get to finish in-flight requests after shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Service-time distribution (all with the configured mean).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ServiceDistribution {
    /// Exactly the mean.
    #[default]
    Constant,
    /// Exponential (coefficient of variation 1).
    Exponential,
    /// Log-normal with the given coefficient of variation.
    LogNormal {
        /// Coefficient of variation (standard deviation / mean).
        cv: f64,
    },
    /// Two modes: a fraction `slow_fraction` of requests takes `slow_factor` times as long
    /// as the others (a cache miss, a slow dependency), scaled so the mean is the configured
    /// one.
    Bimodal {
        /// Fraction of slow requests, in `(0, 1)`.
        slow_fraction: f64,
        /// How many times slower a slow request is, > 1.
        slow_factor: f64,
    },
}

impl ServiceDistribution {
    /// [`Bimodal`](Self::Bimodal) as `bimodal` alone means it: 5 % of requests 10× slower
    /// (CV about 1.35).
    pub const BIMODAL: Self = Self::Bimodal {
        slow_fraction: 0.05,
        slow_factor: 10.0,
    };

    /// Parses `constant` (`const`), `exponential` (`exp`), `lognormal:CV` or `bimodal`
    /// (`bimodal:P:K`: a fraction P of requests K times slower). Errors name `distribution`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |other: &str| {
            ConfigError::new(
                "distribution",
                format!("`{other}` is not constant, exponential, lognormal:CV or bimodal[:P:K]"),
            )
        };
        match text.trim() {
            "const" | "constant" => Ok(Self::Constant),
            "exp" | "exponential" => Ok(Self::Exponential),
            "bimodal" => Ok(Self::BIMODAL),
            other => {
                if let Some(rest) = other.strip_prefix("bimodal:") {
                    let (p, k) = rest.split_once(':').ok_or_else(|| bad(other))?;
                    let p: f64 = p.parse().map_err(|_| bad(other))?;
                    let k: f64 = k.parse().map_err(|_| bad(other))?;
                    return Self::bimodal(p, k);
                }
                let cv = other
                    .strip_prefix("lognormal:")
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| bad(other))?;
                Self::lognormal(cv)
            }
        }
    }

    /// Log-normal with coefficient of variation `cv` (> 0). Errors name `distribution`.
    pub fn lognormal(cv: f64) -> Result<Self, ConfigError> {
        if !cv.is_finite() || cv <= 0.0 || cv > 100.0 {
            return Err(ConfigError::new(
                "distribution",
                "lognormal CV must be in (0, 100]",
            ));
        }
        Ok(Self::LogNormal { cv })
    }

    /// A fraction `slow_fraction` in `(0, 1)` of requests `slow_factor` (> 1, at most 1000)
    /// times slower. Errors name `distribution`.
    pub fn bimodal(slow_fraction: f64, slow_factor: f64) -> Result<Self, ConfigError> {
        let fraction_ok = slow_fraction > 0.0 && slow_fraction < 1.0;
        let factor_ok = slow_factor > 1.0 && slow_factor <= 1000.0;
        if !(fraction_ok && factor_ok) {
            return Err(ConfigError::new(
                "distribution",
                "bimodal needs a slow fraction in (0, 1) and a factor in (1, 1000]",
            ));
        }
        Ok(Self::Bimodal {
            slow_fraction,
            slow_factor,
        })
    }

    /// The coefficient of variation (standard deviation / mean).
    pub fn cv(&self) -> f64 {
        match *self {
            Self::Constant => 0.0,
            Self::Exponential => 1.0,
            Self::LogNormal { cv } => cv,
            Self::Bimodal {
                slow_fraction: p,
                slow_factor: k,
            } => {
                // Fast value f, slow k·f, mean 1: f = 1 / (1 + p(k − 1)).
                let f = 1.0 / (1.0 + p * (k - 1.0));
                let m2 = f * f * ((1.0 - p) + p * k * k);
                (m2 - 1.0).max(0.0).sqrt()
            }
        }
    }

    /// A short description for reports, e.g. `lognormal (CV 0.5)`.
    pub fn describe(&self) -> String {
        match *self {
            Self::Constant => "constant".into(),
            Self::Exponential => "exponential (CV 1)".into(),
            Self::LogNormal { cv } => format!("lognormal (CV {cv})"),
            Self::Bimodal {
                slow_fraction,
                slow_factor,
            } => format!(
                "bimodal ({}% {}× slower, CV {:.1})",
                slow_fraction * 100.0,
                slow_factor,
                self.cv()
            ),
        }
    }
}

/// A stall: every response is held from `at` for `duration` (and again every `every`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Length of each stall.
    pub duration: Duration,
    /// Offset of the first stall from the server's start.
    pub at: Duration,
    /// Period of repetition, if any (must exceed `duration`).
    pub every: Option<Duration>,
}

impl Stall {
    /// Parses `DUR@AT` optionally followed by ` every PERIOD` (or `/PERIOD`), e.g. `1s@5s`,
    /// `500ms@2s every 10s`. Errors name `stall`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let t = text.trim();
        let (main, every) = if let Some((a, b)) = t.split_once(" every ") {
            (a, Some(b))
        } else if let Some((a, b)) = t.split_once('/') {
            (a, Some(b))
        } else {
            (t, None)
        };
        let (dur, at) = main
            .split_once('@')
            .ok_or_else(|| ConfigError::new("stall", format!("`{t}` is not DURATION@START")))?;
        let stall = Self {
            duration: parse_duration("stall", dur)?,
            at: parse_duration("stall", at)?,
            every: every.map(|e| parse_duration("stall", e)).transpose()?,
        };
        if stall.duration.is_zero() {
            return Err(ConfigError::new("stall", "duration must be greater than 0"));
        }
        if let Some(e) = stall.every
            && e <= stall.duration
        {
            return Err(ConfigError::new(
                "stall",
                "period must exceed the stall duration",
            ));
        }
        Ok(stall)
    }

    /// If `t` (since start) falls in a stall, when that stall ends.
    pub fn end_if_stalled(&self, t: Duration) -> Option<Duration> {
        if t < self.at {
            return None;
        }
        let since = t - self.at;
        let k = match self.every {
            Some(p) => since.as_nanos() / p.as_nanos(),
            None => 0,
        };
        let start = self.at + self.every.unwrap_or_default() * (k as u32);
        let end = start + self.duration;
        (t >= start && t < end).then_some(end)
    }
}

/// Backend configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Concurrent workers.
    pub workers: NonZeroUsize,
    /// Requests that may wait for a worker (FIFO); beyond, `overflow_status` is answered.
    pub queue: usize,
    /// Mean service time.
    pub service_time: Duration,
    /// Service-time distribution.
    pub distribution: ServiceDistribution,
    /// Stalls.
    pub stalls: Vec<Stall>,
    /// Status answered when the queue is full.
    pub overflow_status: StatusCode,
    /// Seed for the service-time RNG.
    pub seed: u64,
}

impl BackendConfig {
    /// `workers` workers with `service_time` each, queue [`DEFAULT_QUEUE`], constant service
    /// time, no stalls, 503 on overflow.
    pub fn new(workers: NonZeroUsize, service_time: Duration) -> Self {
        Self {
            workers,
            queue: DEFAULT_QUEUE,
            service_time,
            distribution: ServiceDistribution::Constant,
            stalls: Vec::new(),
            overflow_status: StatusCode::SERVICE_UNAVAILABLE,
            seed: 1,
        }
    }

    /// Capacity in requests per second (`workers / service_time`), infinite for 0 service time.
    pub fn capacity(&self) -> f64 {
        self.workers.get() as f64 / self.service_time.as_secs_f64()
    }
}

/// A snapshot of the backend's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendStats {
    /// Requests received.
    pub received: u64,
    /// Requests answered with `overflow_status` because the queue was full.
    pub rejected: u64,
    /// Requests a worker finished and answered.
    pub completed: u64,
    /// Requests a worker finished after the client had gone (wasted work).
    pub wasted: u64,
    /// Total worker time spent serving (including wasted work and stalls).
    pub busy: Duration,
    /// Requests in the system now (queued or being served).
    pub in_system: usize,
    /// Connections accepted.
    pub connections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    wasted: AtomicU64,
    busy_ns: AtomicU64,
    in_system: AtomicUsize,
    connections: AtomicU64,
}

struct State {
    config: BackendConfig,
    counters: Counters,
    workers: Semaphore,
    rng: Mutex<Xoshiro256PlusPlus>,
    start: Instant,
}

impl State {
    fn sample(&self) -> Duration {
        let mean = self.config.service_time.as_secs_f64();
        if mean == 0.0 {
            return Duration::ZERO;
        }
        let mut rng = match self.rng.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let secs = match self.config.distribution {
            ServiceDistribution::Constant => mean,
            ServiceDistribution::Exponential => Exp::new(1.0 / mean)
                .map(|d| d.sample(&mut *rng))
                .unwrap_or(mean),
            ServiceDistribution::LogNormal { cv } => {
                let sigma2 = (1.0 + cv * cv).ln();
                LogNormal::new(mean.ln() - sigma2 / 2.0, sigma2.sqrt())
                    .map(|d| d.sample(&mut *rng))
                    .unwrap_or(mean)
            }
            ServiceDistribution::Bimodal {
                slow_fraction,
                slow_factor,
            } => {
                let fast = mean / (1.0 + slow_fraction * (slow_factor - 1.0));
                if Bernoulli::new(slow_fraction).is_ok_and(|d| d.sample(&mut *rng)) {
                    fast * slow_factor
                } else {
                    fast
                }
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
    }

    /// Waits out any stall covering now.
    async fn wait_stalls(&self) {
        loop {
            let t = self.start.elapsed();
            let end = self
                .config
                .stalls
                .iter()
                .filter_map(|s| s.end_if_stalled(t))
                .max();
            match end {
                Some(end) => tokio::time::sleep(end.saturating_sub(t)).await,
                None => return,
            }
        }
    }
}

/// The synthetic backend; clone-free handle that exposes live [`stats`](Backend::stats).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use tailwater_load::backend::{Backend, BackendConfig};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let backend = Backend::new(BackendConfig::new(NonZeroUsize::new(4).unwrap(), Duration::from_millis(10)));
/// let stats = backend.serve(listener, async { /* shutdown signal */ }).await?;
/// println!("{} completed, {} wasted", stats.completed, stats.wasted);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Backend {
    state: Arc<State>,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("config", &self.state.config)
            .field("stats", &self.stats())
            .finish()
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(
    state: Arc<State>,
    _req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let c = &state.counters;
    c.received.fetch_add(1, Ordering::Relaxed);
    let limit = state.config.workers.get() + state.config.queue;
    if c.in_system.fetch_add(1, Ordering::AcqRel) >= limit {
        c.in_system.fetch_sub(1, Ordering::AcqRel);
        c.rejected.fetch_add(1, Ordering::Relaxed);
        let mut r = text(state.config.overflow_status, "busy\n");
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        return Ok(r);
    }
    if state.config.service_time.is_zero() && state.config.stalls.is_empty() {
        c.completed.fetch_add(1, Ordering::Relaxed);
        c.in_system.fetch_sub(1, Ordering::AcqRel);
        return Ok(text(StatusCode::OK, "ok\n"));
    }
    let (tx, rx) = oneshot::channel::<()>();
    let worker_state = state.clone();
    // The work runs in its own task so that it continues (and is counted as wasted) when the
    // client goes away and hyper drops this handler.
    tokio::spawn(async move {
        let s = worker_state;
        if let Ok(_permit) = s.workers.acquire().await {
            let began = Instant::now();
            let service = s.sample();
            if !service.is_zero() {
                tokio::time::sleep(service).await;
            }
            s.wait_stalls().await;
            s.counters
                .busy_ns
                .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if tx.send(()).is_ok() {
                s.counters.completed.fetch_add(1, Ordering::Relaxed);
            } else {
                s.counters.wasted.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.counters.in_system.fetch_sub(1, Ordering::AcqRel);
    });
    match rx.await {
        Ok(()) => Ok(text(StatusCode::OK, "ok\n")),
        Err(_) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "worker lost\n")),
    }
}

impl Backend {
    /// A backend with `config`.
    pub fn new(config: BackendConfig) -> Self {
        let workers = config.workers.get().min(Semaphore::MAX_PERMITS);
        let seed = config.seed;
        Self {
            state: Arc::new(State {
                config,
                counters: Counters::default(),
                workers: Semaphore::new(workers),
                rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(seed)),
                start: Instant::now(),
            }),
        }
    }

    /// A live snapshot of the counters.
    pub fn stats(&self) -> BackendStats {
        let c = &self.state.counters;
        BackendStats {
            received: c.received.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            wasted: c.wasted.load(Ordering::Relaxed),
            busy: Duration::from_nanos(c.busy_ns.load(Ordering::Relaxed)),
            in_system: c.in_system.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }

    /// Serves HTTP/1.1 and h2c on `listener` until `shutdown` completes, then stops accepting,
    /// lets open connections finish their requests for up to [`DRAIN_TIMEOUT`], and returns the
    /// final counters. Stall times count from when this backend was created.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<BackendStats> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(a) => a,
                        Err(_) => {
                            // Out of descriptors or similar: back off briefly, keep serving.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    self.state.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let state = self.state.clone();
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
        Ok(self.stats())
    }
}

/// Serves a new [`Backend`] with `config` on `listener` until `shutdown`; returns its final
/// counters. Use [`Backend::new`] + [`Backend::serve`] to read live stats during the run.
pub async fn serve(
    listener: TcpListener,
    config: BackendConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<BackendStats> {
    Backend::new(config).serve(listener, shutdown).await
}

#[cfg(test)]
mod tests;
