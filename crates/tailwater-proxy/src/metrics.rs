//! Request counters and latency histograms per route, and the Prometheus text rendering
//! of them together with each limiter's [`LimiterStats`](tailwater_core::limiter::LimiterStats).
//!
//! Counters are fixed arrays of atomics indexed by (decision, tier), so recording a request
//! takes no lock and allocates nothing. They live outside the route table and are keyed by
//! route name, so they stay monotonic across reloads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tailwater_core::Criticality;
use tailwater_core::limiter::{LimiterStats, RejectReason};

use crate::route::RouteTable;

/// What happened to a request: the `outcome` and `reason` labels of
/// `tailwater_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Forwarded; the upstream answered and the body finished.
    Success,
    /// Forwarded; the upstream answered 5xx or 429 (counts as a drop for the limit).
    UpstreamStatus,
    /// Forwarded; connecting or sending failed (502).
    UpstreamError,
    /// Forwarded; no response head within the request timeout (504).
    UpstreamTimeout,
    /// Forwarded; the response body failed mid-stream.
    BodyError,
    /// Forwarded; the client went away before the response body ended.
    Cancelled,
    /// Admitted; the request body was malformed (400, a client fault).
    BodyInvalid,
    /// Admitted; the request body did not arrive within `server.body_timeout` (408, a
    /// client fault).
    BodyTimeout,
    /// Shed by the limiter (503).
    Shed(RejectReason),
    /// Denied by a local rate limit (429).
    RateLimited,
    /// Request body over the limit (413).
    BodyTooLarge,
    /// The client's own deadline (`grpc-timeout`, the route's `deadline_header`) was spent
    /// on arrival, in the queue, or before the upstream answered (504, gRPC
    /// `DEADLINE_EXCEEDED`); never counted against the upstream.
    DeadlineExceeded,
}

const SHED_BASE: usize = 8;
const N_DECISIONS: usize = SHED_BASE + RejectReason::ALL.len() + 3;

impl Decision {
    fn index(self) -> usize {
        match self {
            Decision::Success => 0,
            Decision::UpstreamStatus => 1,
            Decision::UpstreamError => 2,
            Decision::UpstreamTimeout => 3,
            Decision::BodyError => 4,
            Decision::Cancelled => 5,
            Decision::BodyInvalid => 6,
            Decision::BodyTimeout => 7,
            Decision::Shed(r) => SHED_BASE + r.index(),
            Decision::RateLimited => SHED_BASE + RejectReason::ALL.len(),
            Decision::BodyTooLarge => SHED_BASE + RejectReason::ALL.len() + 1,
            Decision::DeadlineExceeded => SHED_BASE + RejectReason::ALL.len() + 2,
        }
    }

    fn from_index(i: usize) -> Self {
        match i {
            0 => Decision::Success,
            1 => Decision::UpstreamStatus,
            2 => Decision::UpstreamError,
            3 => Decision::UpstreamTimeout,
            4 => Decision::BodyError,
            5 => Decision::Cancelled,
            6 => Decision::BodyInvalid,
            7 => Decision::BodyTimeout,
            i if i < SHED_BASE + RejectReason::ALL.len() => {
                Decision::Shed(RejectReason::ALL[i - SHED_BASE])
            }
            i if i == SHED_BASE + RejectReason::ALL.len() => Decision::RateLimited,
            i if i == SHED_BASE + RejectReason::ALL.len() + 1 => Decision::BodyTooLarge,
            _ => Decision::DeadlineExceeded,
        }
    }

    /// The `outcome` label.
    pub(crate) fn outcome(self) -> &'static str {
        match self {
            Decision::Success => "success",
            Decision::UpstreamStatus
            | Decision::UpstreamError
            | Decision::UpstreamTimeout
            | Decision::BodyError => "dropped",
            Decision::Cancelled => "cancelled",
            Decision::BodyInvalid | Decision::BodyTimeout => "client_fault",
            Decision::Shed(_) => "shed",
            Decision::RateLimited => "rate_limited",
            Decision::BodyTooLarge | Decision::DeadlineExceeded => "rejected",
        }
    }

    /// The `reason` label (`rejection_reason` in traces).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Decision::Success => "",
            Decision::UpstreamStatus => "upstream_status",
            Decision::UpstreamError => "upstream_error",
            Decision::UpstreamTimeout => "upstream_timeout",
            Decision::BodyError => "body_error",
            Decision::Cancelled => "client_gone",
            Decision::BodyInvalid => "body_invalid",
            Decision::BodyTimeout => "body_timeout",
            Decision::Shed(r) => r.as_str(),
            Decision::RateLimited => "rate_exceeded",
            Decision::BodyTooLarge => "body_too_large",
            Decision::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// A gauge rendered from a limiter snapshot: name, help, value.
type Gauge = (&'static str, &'static str, fn(&LimiterStats) -> f64);

/// Upper bounds of the latency histogram buckets, seconds.
pub(crate) const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters of one route on one worker. Aligned to its own cache lines and allocated
/// apart from the other workers' counters, so that recording a request (and cloning the
/// handle the response body keeps) never contends with another worker.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct RouteCounters {
    requests: [[AtomicU64; 4]; N_DECISIONS],
    /// Per-bucket counts (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for RouteCounters {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl RouteCounters {
    /// Counts one finished request and its duration (arrival to end of response body).
    pub(crate) fn record(&self, decision: Decision, tier: Criticality, elapsed: Duration) {
        self.requests[decision.index()][tier.index()].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Counters of one route: one [`RouteCounters`] per worker, summed when read.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    shards: Box<[Arc<RouteCounters>]>,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self::new(1)
    }
}

impl RouteMetrics {
    fn new(workers: usize) -> Self {
        Self {
            shards: (0..workers.max(1)).map(|_| Arc::default()).collect(),
        }
    }

    /// The counters `worker` records into.
    pub(crate) fn shard(&self, worker: usize) -> &Arc<RouteCounters> {
        &self.shards[worker % self.shards.len()]
    }

    /// Total requests with this decision, over all tiers.
    pub(crate) fn count(&self, decision: Decision) -> u64 {
        (0..4).map(|t| self.requests(decision.index(), t)).sum()
    }

    fn sum(&self, f: impl Fn(&RouteCounters) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum()
    }

    fn requests(&self, decision: usize, tier: usize) -> u64 {
        self.sum(|s| &s.requests[decision][tier])
    }

    fn bucket(&self, i: usize) -> u64 {
        self.sum(|s| &s.buckets[i])
    }

    fn sum_nanos(&self) -> u64 {
        self.sum(|s| &s.sum_nanos)
    }
}

/// Counters for every route name ever configured, plus connection-level counters.
#[derive(Debug)]
pub(crate) struct Metrics {
    routes: Mutex<HashMap<String, Arc<RouteMetrics>>>,
    /// Requests that matched no route (404).
    pub(crate) unrouted: AtomicU64,
    /// Requests refused before routing for their framing, `Host` or path (400, 501): the
    /// client's fault, never counted on a route or fed to a limit.
    pub(crate) refused: AtomicU64,
    /// Connections accepted.
    pub(crate) connections_total: AtomicU64,
    /// Connections open now.
    pub(crate) connections_open: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub(crate) tls_handshake_failures: AtomicU64,
    /// Connections accepted, by worker thread.
    accepted_by_worker: Box<[AtomicU64]>,
    /// `Upgrade` tunnels (`crate::tunnel`).
    pub(crate) tunnels: crate::tunnel::TunnelStats,
}

impl Metrics {
    /// Empty counters for a proxy with `workers` worker threads.
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            routes: Mutex::default(),
            unrouted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            accepted_by_worker: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            tunnels: crate::tunnel::TunnelStats::default(),
        }
    }

    /// Counts a connection accepted by `worker`.
    pub(crate) fn accepted_by(&self, worker: usize) {
        let slots = &self.accepted_by_worker;
        slots[worker % slots.len()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of route `name`, created on first use.
    pub(crate) fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let workers = self.accepted_by_worker.len();
        let mut map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            map.entry(name.to_owned())
                .or_insert_with(|| Arc::new(RouteMetrics::new(workers))),
        )
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self, table: &RouteTable) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let routes: Vec<(String, Arc<RouteMetrics>)> = {
            let map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            let mut v: Vec<_> = map
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let gauges: [Gauge; 5] = [
            (
                "tailwater_limiter_limit",
                "Current concurrency limit.",
                |s| s.limit as f64,
            ),
            (
                "tailwater_limiter_in_flight",
                "Requests holding a permit.",
                |s| s.in_flight as f64,
            ),
            (
                "tailwater_limiter_peak_in_flight",
                "Most permits held at once since start.",
                |s| s.peak_in_flight as f64,
            ),
            (
                "tailwater_limiter_queue_depth",
                "Requests waiting for a permit.",
                |s| s.queue_depth as f64,
            ),
            (
                "tailwater_limiter_queue_capacity",
                "Most requests allowed to wait.",
                |s| s.queue_capacity as f64,
            ),
        ];
        let stats: Vec<_> = table
            .routes()
            .iter()
            .map(|r| (r.name.as_str(), r.limiter.stats()))
            .collect();
        for (name, help, f) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (route, s) in &stats {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\",algorithm=\"{}\"}} {}",
                    esc(route),
                    s.algorithm,
                    f(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tailwater_limiter_samples_total Permits released, by outcome fed to the algorithm.\n# TYPE tailwater_limiter_samples_total counter"
        );
        for (route, s) in &stats {
            for (o, v) in [
                ("success", s.counters.success),
                ("dropped", s.counters.dropped),
                ("ignored", s.counters.ignored),
            ] {
                let _ = writeln!(
                    out,
                    "tailwater_limiter_samples_total{{route=\"{}\",outcome=\"{o}\"}} {v}",
                    esc(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tailwater_requests_total Requests by route, outcome, reason and criticality tier.\n# TYPE tailwater_requests_total counter"
        );
        for (route, m) in &routes {
            for d in 0..N_DECISIONS {
                let decision = Decision::from_index(d);
                for t in 0..Criticality::ALL.len() {
                    let v = m.requests(d, t);
                    if v == 0 {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "tailwater_requests_total{{route=\"{}\",outcome=\"{}\",reason=\"{}\",tier=\"{}\"}} {v}",
                        esc(route),
                        decision.outcome(),
                        decision.reason(),
                        Criticality::ALL[t].as_str()
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP tailwater_request_duration_seconds Time from request arrival to the end of the response body.\n# TYPE tailwater_request_duration_seconds histogram"
        );
        for (route, m) in &routes {
            let mut cum = 0u64;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += m.bucket(i);
                let _ = writeln!(
                    out,
                    "tailwater_request_duration_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {cum}",
                    esc(route)
                );
            }
            cum += m.bucket(BUCKETS.len());
            let _ = writeln!(
                out,
                "tailwater_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {cum}",
                esc(route)
            );
            let sum = m.sum_nanos() as f64 / 1e9;
            let _ = writeln!(
                out,
                "tailwater_request_duration_seconds_sum{{route=\"{}\"}} {sum}",
                esc(route)
            );
            let _ = writeln!(
                out,
                "tailwater_request_duration_seconds_count{{route=\"{}\"}} {cum}",
                esc(route)
            );
        }
        render_endpoints(&mut out, table);
        let _ = writeln!(
            out,
            "# HELP tailwater_unrouted_requests_total Requests that matched no route (404).\n# TYPE tailwater_unrouted_requests_total counter\ntailwater_unrouted_requests_total {}",
            self.unrouted.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tailwater_refused_requests_total Requests refused before routing for their framing, Host or path (400/501).\n# TYPE tailwater_refused_requests_total counter\ntailwater_refused_requests_total {}",
            self.refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tailwater_connections_total Client connections accepted.\n# TYPE tailwater_connections_total counter\ntailwater_connections_total {}",
            self.connections_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tailwater_connections_open Client connections open.\n# TYPE tailwater_connections_open gauge\ntailwater_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tailwater_tls_handshake_failures_total TLS handshakes that failed or did not finish within server.header_read_timeout.\n# TYPE tailwater_tls_handshake_failures_total counter\ntailwater_tls_handshake_failures_total {}",
            self.tls_handshake_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tailwater_worker_connections_total Client connections accepted, by worker thread.\n# TYPE tailwater_worker_connections_total counter"
        );
        for (w, c) in self.accepted_by_worker.iter().enumerate() {
            let _ = writeln!(
                out,
                "tailwater_worker_connections_total{{worker=\"{w}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        self.tunnels.render(&mut out);
        out
    }
}

/// The endpoints of balanced routes: requests sent, ejections, whether ejected, requests
/// in progress, and the latency estimate (routes with one endpoint have no balancer).
fn render_endpoints(out: &mut String, table: &RouteTable) {
    type Series = (&'static str, &'static str, &'static str);
    const SERIES: [Series; 5] = [
        (
            "tailwater_endpoint_selected_total",
            "counter",
            "Requests the balancer sent to the endpoint.",
        ),
        (
            "tailwater_endpoint_ejections_total",
            "counter",
            "Times the endpoint was ejected (consecutive 5xx or gateway errors).",
        ),
        (
            "tailwater_endpoint_ejected",
            "gauge",
            "1 while the endpoint is ejected.",
        ),
        (
            "tailwater_endpoint_pending",
            "gauge",
            "Requests in progress on the endpoint.",
        ),
        (
            "tailwater_endpoint_ewma_seconds",
            "gauge",
            "The endpoint's PeakEWMA latency estimate.",
        ),
    ];
    let balanced: Vec<_> = table
        .routes()
        .iter()
        .filter_map(|r| r.balance.as_ref().map(|b| (r, b)))
        .collect();
    if balanced.is_empty() {
        return;
    }
    for (k, (name, kind, help)) in SERIES.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (route, b) in &balanced {
            let now = b.now();
            for (i, e) in route.endpoints.iter().enumerate() {
                let st = b.balancer.stats(i, now);
                let v = match k {
                    0 => st.selected as f64,
                    1 => st.ejections as f64,
                    2 => f64::from(u8::from(st.ejected)),
                    3 => st.pending as f64,
                    _ => st.ewma.as_secs_f64(),
                };
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\",endpoint=\"{}\"}} {v}",
                    esc(&route.name),
                    esc(e.authority.as_str())
                );
            }
        }
    }
}

/// Escapes a label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
