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
use tailwater_core::limiter::LimiterStats;
use tailwater_core::vocabulary::{self, Metric, outcome};

use crate::config::Config;
use crate::decision::Decision;
use crate::decision::N_DECISIONS;
use crate::route::RouteTable;

/// A gauge rendered from a limiter snapshot: the metric and its value, if it has one.
type Gauge = (Metric, fn(&LimiterStats) -> Option<f64>);

/// Upper bounds of the latency histogram buckets, seconds.
pub(crate) const BUCKETS: [f64; 14] = vocabulary::LATENCY_BUCKETS;
const N_OUTCOMES: usize = outcome::ALL.len();

/// Counters of one route on one worker. Aligned to its own cache lines and allocated
/// apart from the other workers' counters, so that recording a request (and cloning the
/// handle the response body keeps) never contends with another worker.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct RouteCounters {
    requests: [[AtomicU64; 4]; N_DECISIONS],
    /// Per-bucket counts (not cumulative) by outcome; the last slot is +Inf.
    buckets: [[AtomicU64; BUCKETS.len() + 1]; N_OUTCOMES],
    sum_nanos: [AtomicU64; N_OUTCOMES],
}

impl Default for RouteCounters {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            sum_nanos: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RouteCounters {
    /// Counts one finished request and its duration (arrival to end of response body).
    pub(crate) fn record(&self, decision: Decision, tier: Criticality, elapsed: Duration) {
        crate::access_log::note_decision(decision, tier);
        self.requests[decision.index()][tier.index()].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        let o = decision.outcome_index();
        self.buckets[o][i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos[o].fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Counters of one route: one [`RouteCounters`] per worker, summed when read.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    shards: Box<[Arc<RouteCounters>]>,
    /// The route's in-process burn rates, fed from these counters.
    pub(crate) burn: crate::burn::RouteBurn,
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
            burn: crate::burn::RouteBurn::default(),
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

    /// Total requests by outcome (indexed as [`outcome::ALL`]), over all tiers.
    pub(crate) fn by_outcome(&self) -> [u64; N_OUTCOMES] {
        let mut by = [0; N_OUTCOMES];
        for d in 0..N_DECISIONS {
            let o = Decision::from_index(d).outcome_index();
            by[o] += (0..4).map(|t| self.requests(d, t)).sum::<u64>();
        }
        by
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

    fn bucket(&self, outcome: usize, i: usize) -> u64 {
        self.sum(|s| &s.buckets[outcome][i])
    }

    fn sum_nanos(&self, outcome: usize) -> u64 {
        self.sum(|s| &s.sum_nanos[outcome])
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
    /// Reloads that took effect.
    reloads_ok: AtomicU64,
    /// Reloads refused (bad file or config); the old configuration stayed.
    reloads_failed: AtomicU64,
    /// Unix seconds when the configuration in force was loaded.
    loaded_at: AtomicU64,
    /// `Upgrade` tunnels (`crate::tunnel`).
    pub(crate) tunnels: crate::tunnel::TunnelStats,
    /// Access log lines dropped (`crate::access_log`), across reloads.
    pub(crate) access_log_dropped: Arc<AtomicU64>,
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
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            loaded_at: AtomicU64::new(unix_secs()),
            tunnels: crate::tunnel::TunnelStats::default(),
            access_log_dropped: Arc::default(),
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

    /// Counts a configuration reload: `ok` or refused (the old configuration stays).
    pub(crate) fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.loaded_at.store(unix_secs(), Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders the Prometheus text exposition format (version 0.0.4), in tailwater-core's
    /// [`vocabulary`]; `config` gives the configured knobs.
    pub(crate) fn render(&self, table: &RouteTable, config: &Config) -> String {
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
        let gauges: [Gauge; 9] = [
            (vocabulary::LIMITER_LIMIT, |s| Some(s.limit as f64)),
            (vocabulary::LIMITER_IN_FLIGHT, |s| Some(s.in_flight as f64)),
            (vocabulary::LIMITER_PEAK_IN_FLIGHT, |s| {
                Some(s.peak_in_flight as f64)
            }),
            (vocabulary::LIMITER_QUEUE_DEPTH, |s| {
                Some(s.queue_depth as f64)
            }),
            (vocabulary::LIMITER_QUEUE_CAPACITY, |s| {
                Some(s.queue_capacity as f64)
            }),
            (vocabulary::LIMITER_MIN_RTT, |s| {
                s.estimates.min_rtt.map(|d| d.as_secs_f64())
            }),
            (vocabulary::LIMITER_RTT, |s| {
                s.estimates.short_rtt.map(|d| d.as_secs_f64())
            }),
            (vocabulary::LIMITER_GRADIENT, |s| s.estimates.gradient),
            (vocabulary::LIMITER_ESTIMATED_QUEUE, |s| s.estimates.queue),
        ];
        let stats: Vec<_> = table
            .routes()
            .iter()
            .map(|r| (r.name.as_str(), r.admission.limiter().stats()))
            .collect();
        for (metric, f) in gauges {
            let values: Vec<_> = stats
                .iter()
                .filter_map(|(route, s)| f(s).map(|v| (route, s.algorithm, v)))
                .collect();
            if values.is_empty() {
                continue;
            }
            metric.write_header(&mut out);
            for (route, algorithm, v) in values {
                let _ = writeln!(
                    out,
                    "{}{{route=\"{}\",algorithm=\"{algorithm}\"}} {v}",
                    metric.name,
                    esc(route),
                );
            }
        }
        render_knobs(&mut out, &stats, config);
        let samples = vocabulary::LIMITER_SAMPLES;
        samples.write_header(&mut out);
        for (route, s) in &stats {
            for (o, v) in [
                ("success", s.counters.success),
                ("dropped", s.counters.dropped),
                ("ignored", s.counters.ignored),
            ] {
                let _ = writeln!(
                    out,
                    "{}{{route=\"{}\",outcome=\"{o}\"}} {v}",
                    samples.name,
                    esc(route)
                );
            }
        }
        let requests = vocabulary::REQUESTS;
        requests.write_header(&mut out);
        for (route, m) in &routes {
            for d in 0..N_DECISIONS {
                let decision = Decision::from_index(d);
                for t in 0..Criticality::ALL.len() {
                    let v = m.requests(d, t);
                    // Every outcome and reason exists from the start in the default tier,
                    // so that an error ratio is 0, not absent, before the first error (an
                    // SLO's recording rules divide by sums over these series).
                    if v == 0 && Criticality::ALL[t] != Criticality::default() {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "{}{{route=\"{}\",outcome=\"{}\",reason=\"{}\",tier=\"{}\"}} {v}",
                        requests.name,
                        esc(route),
                        decision.outcome(),
                        decision.reason(),
                        Criticality::ALL[t].as_str()
                    );
                }
            }
        }
        let duration = vocabulary::REQUEST_DURATION;
        duration.write_header(&mut out);
        let name = duration.name;
        for (route, m) in &routes {
            for (o, outcome) in outcome::ALL.iter().enumerate() {
                let total: u64 = (0..=BUCKETS.len()).map(|i| m.bucket(o, i)).sum();
                // Outcomes never seen stay absent (as the request counter's), except
                // `success`, which a latency SLI divides by.
                if total == 0 && o != 0 {
                    continue;
                }
                let labels = format!("route=\"{}\",outcome=\"{outcome}\"", esc(route));
                let mut cum = 0u64;
                for (i, b) in BUCKETS.iter().enumerate() {
                    cum += m.bucket(o, i);
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
                }
                cum += m.bucket(o, BUCKETS.len());
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
                let sum = m.sum_nanos(o) as f64 / 1e9;
                let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
                let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
            }
        }
        crate::burn::render(&mut out, &routes, table, unix_secs());
        render_endpoints(&mut out, table);
        for (metric, value) in [
            (vocabulary::UNROUTED, &self.unrouted),
            (vocabulary::REFUSED, &self.refused),
            (vocabulary::CONNECTIONS, &self.connections_total),
            (vocabulary::CONNECTIONS_OPEN, &self.connections_open),
            (
                vocabulary::TLS_HANDSHAKE_FAILURES,
                &self.tls_handshake_failures,
            ),
            (vocabulary::ACCESS_LOG_DROPPED, &*self.access_log_dropped),
        ] {
            metric.write_header(&mut out);
            let _ = writeln!(out, "{} {}", metric.name, value.load(Ordering::Relaxed));
        }
        let workers = vocabulary::WORKER_CONNECTIONS;
        workers.write_header(&mut out);
        for (w, c) in self.accepted_by_worker.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{worker=\"{w}\"}} {}",
                workers.name,
                c.load(Ordering::Relaxed)
            );
        }
        let reloads = vocabulary::CONFIG_RELOADS;
        reloads.write_header(&mut out);
        for (result, c) in [
            ("success", &self.reloads_ok),
            ("failure", &self.reloads_failed),
        ] {
            let _ = writeln!(
                out,
                "{}{{result=\"{result}\"}} {}",
                reloads.name,
                c.load(Ordering::Relaxed)
            );
        }
        let loaded = vocabulary::CONFIG_LAST_RELOAD_SUCCESS;
        loaded.write_header(&mut out);
        let _ = writeln!(
            out,
            "{} {}",
            loaded.name,
            self.loaded_at.load(Ordering::Relaxed)
        );
        let build = vocabulary::BUILD_INFO;
        build.write_header(&mut out);
        let _ = writeln!(
            out,
            "{}{{version=\"{}\",component=\"proxy\"}} 1",
            build.name,
            env!("CARGO_PKG_VERSION")
        );
        self.tunnels.render(&mut out);
        out
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The configured floor and ceiling of each route's limit, where set.
fn render_knobs(out: &mut String, stats: &[(&str, LimiterStats)], config: &Config) {
    type Knob = (Metric, fn(&crate::config::LimitConfig) -> Option<usize>);
    let knobs: [Knob; 2] = [
        (vocabulary::LIMITER_MIN_LIMIT, |l| l.min_limit),
        (vocabulary::LIMITER_MAX_LIMIT, |l| l.max_limit),
    ];
    for (metric, f) in knobs {
        let values: Vec<_> = stats
            .iter()
            .filter_map(|(route, s)| {
                let rc = config.routes.iter().find(|r| r.name == *route)?;
                f(&rc.limit).map(|v| (route, s.algorithm, v))
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        metric.write_header(out);
        for (route, algorithm, v) in values {
            let _ = writeln!(
                out,
                "{}{{route=\"{}\",algorithm=\"{algorithm}\"}} {v}",
                metric.name,
                esc(route)
            );
        }
    }
}

/// The endpoints of balanced routes: requests sent, ejections, whether ejected, requests
/// in progress, and the latency estimate (routes with one endpoint have no balancer).
fn render_endpoints(out: &mut String, table: &RouteTable) {
    const SERIES: [Metric; 5] = [
        vocabulary::ENDPOINT_SELECTED,
        vocabulary::ENDPOINT_EJECTIONS,
        vocabulary::ENDPOINT_EJECTED,
        vocabulary::ENDPOINT_PENDING,
        vocabulary::ENDPOINT_EWMA,
    ];
    let balanced: Vec<_> = table
        .routes()
        .iter()
        .filter_map(|r| r.balance.as_ref().map(|b| (r, b)))
        .collect();
    if balanced.is_empty() {
        return;
    }
    for (k, metric) in SERIES.iter().enumerate() {
        metric.write_header(out);
        let name = metric.name;
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
pub(crate) fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
