//! Request counters and latency histograms per route, and the Prometheus text rendering
//! of them together with each limiter's [`LimiterStats`](tailwater_core::limiter::LimiterStats).
//!
//! Counters are fixed arrays of atomics indexed by (decision, tier), so recording a request
//! takes no lock and allocates nothing. They live outside the route table and are keyed by
//! route name, so they stay monotonic across reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tailwater_core::Criticality;
use tailwater_core::vocabulary::{self, outcome};

use tailwater_tower::burn::{BurnRates, BurnSnapshot};

use crate::config::DEFAULT_OBJECTIVE;
use crate::decision::Decision;
use crate::decision::N_DECISIONS;

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
    pub(crate) burn: RouteBurn,
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
            burn: RouteBurn::default(),
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

    pub(crate) fn requests(&self, decision: usize, tier: usize) -> u64 {
        self.sum(|s| &s.requests[decision][tier])
    }

    pub(crate) fn bucket(&self, outcome: usize, i: usize) -> u64 {
        self.sum(|s| &s.buckets[outcome][i])
    }

    pub(crate) fn sum_nanos(&self, outcome: usize) -> u64 {
        self.sum(|s| &s.sum_nanos[outcome])
    }
}

struct Feed {
    rates: BurnRates,
    /// Counter values already recorded: (events, bad events).
    seen: (u64, u64),
}

/// A route's burn rates and what of its counters they have seen. Lives with the route's
/// counters, so it survives reloads; a new objective starts a new history.
pub(crate) struct RouteBurn {
    feed: Mutex<Feed>,
}

impl Default for RouteBurn {
    fn default() -> Self {
        Self {
            feed: Mutex::new(Feed {
                rates: new_rates(DEFAULT_OBJECTIVE),
                seen: (0, 0),
            }),
        }
    }
}

impl std::fmt::Debug for RouteBurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteBurn").finish_non_exhaustive()
    }
}

fn new_rates(objective: f64) -> BurnRates {
    BurnRates::new(objective)
        .or_else(|_| BurnRates::new(DEFAULT_OBJECTIVE))
        .unwrap_or_else(|_| unreachable!("99.9 is a valid objective"))
}

/// (events, bad events) of a route so far, from its counters by outcome.
fn events(m: &RouteMetrics) -> (u64, u64) {
    let by = m.by_outcome();
    let count = |name: &str| {
        outcome::ALL
            .iter()
            .position(|o| *o == name)
            .map_or(0, |i| by[i])
    };
    let bad = count(outcome::UPSTREAM_ERROR) + count(outcome::TIMEOUT) + count(outcome::SHED);
    (count(outcome::SUCCESS) + bad, bad)
}

impl RouteBurn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
        // Plain counters: consistent even if a holder panicked.
        self.feed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Uses `objective` from now on; a changed objective starts from an empty history
    /// (counting from the counters' current values).
    pub(crate) fn set_objective(&self, objective: f64, m: &RouteMetrics) {
        let mut g = self.lock();
        if g.rates.objective() != objective {
            g.rates = new_rates(objective);
            g.seen = events(m);
        }
    }

    /// Records what the counters gained since the last call at `now` (seconds since the
    /// Unix epoch), then returns the burn rates.
    pub(crate) fn update(&self, m: &RouteMetrics, now: u64) -> (f64, BurnSnapshot) {
        let (total, bad) = events(m);
        let now = Duration::from_secs(now);
        let mut g = self.lock();
        let (seen_total, seen_bad) = g.seen;
        g.rates.record_many(
            now,
            total.saturating_sub(seen_total),
            bad.saturating_sub(seen_bad),
        );
        g.seen = (total, bad);
        (g.rates.objective(), g.rates.snapshot(now))
    }
}

/// Counters for every route name ever configured, plus connection-level counters.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) routes: Mutex<HashMap<String, Arc<RouteMetrics>>>,
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
    pub(crate) accepted_by_worker: Box<[AtomicU64]>,
    /// Reloads that took effect.
    pub(crate) reloads_ok: AtomicU64,
    /// Reloads refused (bad file or config); the old configuration stayed.
    pub(crate) reloads_failed: AtomicU64,
    /// Unix seconds when the configuration in force was loaded.
    pub(crate) loaded_at: AtomicU64,
    /// `Upgrade` tunnels (`crate::tunnel`).
    pub(crate) tunnels: crate::tunnel_stats::TunnelStats,
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
            tunnels: crate::tunnel_stats::TunnelStats::default(),
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
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Escapes a label value (the one escaper of the workspace, in `tailwater-core`).
pub(crate) use tailwater_core::vocabulary::escape_label_value as esc;
