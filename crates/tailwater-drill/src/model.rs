//! The drill's results, independent of how they were measured: what the table, the JSON and
//! the HTML report are rendered from.
//!
//! Every request the load generator scheduled ends in exactly one outcome: a 2xx response
//! (goodput), a fast rejection (`503`/`429`: shed), another status, a client timeout, or
//! another client-side error. [`PhaseResult::outcomes_balance`] checks that.

use std::time::Duration;

/// Which side of the drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Load straight at the backend.
    Unprotected,
    /// Load through the tailwater proxy.
    Protected,
}

impl Side {
    /// `unprotected` or `protected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected",
            Self::Protected => "protected",
        }
    }
}

/// One tier's share of a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct TierResult {
    /// The `x-criticality` value.
    pub tier: String,
    /// Requests of this tier that finished.
    pub requests: u64,
    /// 2xx responses within the timeout.
    pub ok: u64,
}

impl TierResult {
    /// Share of this tier's requests that got a 2xx within the timeout.
    pub fn success_share(&self) -> f64 {
        ratio(self.ok, self.requests)
    }
}

/// One phase of one side.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    /// Offered load as a multiple of the backend's capacity.
    pub multiplier: f64,
    /// Offered rate, requests/s.
    pub offered: f64,
    /// Phase length.
    pub duration: Duration,
    /// Requests the load generator dispatched in this phase.
    pub scheduled: u64,
    /// Requests that finished (exactly one outcome each).
    pub requests: u64,
    /// 2xx responses within the timeout, of the requests sent in this phase.
    pub ok: u64,
    /// `503`/`429` responses (rejected at once, by the proxy or the backend's full queue).
    pub shed: u64,
    /// Other non-2xx responses (`500`, `502`, `504`, ...).
    pub other_status: u64,
    /// Client timeouts: no response within the timeout.
    pub timeouts: u64,
    /// Other client-side failures (connect, reset, closed, protocol).
    pub errors: u64,
    /// Goodput, requests/s: 2xx responses within the timeout that *arrived* during the
    /// phase's steady part, from one client timeout after its start to its end (so each was
    /// sent in this phase), per second. Unlike `ok / duration`, it cannot exceed what the
    /// backend delivered while the phase ran, and the previous phase's backlog does not leak
    /// into it.
    pub goodput: f64,
    /// Median latency of 2xx responses, µs, from the intended send time.
    pub success_p50_us: u64,
    /// 99th percentile latency of 2xx responses, µs, from the intended send time.
    pub success_p99_us: u64,
    /// Requests the backend finished whose client had already given up (wasted work),
    /// counted when the worker finished them.
    pub wasted: u64,
    /// Requests the backend finished for a client still waiting.
    pub backend_completed: u64,
    /// Per criticality tier, in mix order.
    pub tiers: Vec<TierResult>,
}

impl PhaseResult {
    /// Goodput as a fraction of the backend's capacity.
    pub fn goodput_share(&self, capacity: f64) -> f64 {
        if capacity > 0.0 {
            self.goodput / capacity
        } else {
            0.0
        }
    }

    /// Share of finished requests that were shed.
    pub fn shed_share(&self) -> f64 {
        ratio(self.shed, self.requests)
    }

    /// Share of the backend's finished work that nobody was waiting for.
    pub fn wasted_share(&self) -> f64 {
        ratio(self.wasted, self.wasted + self.backend_completed)
    }

    /// Whether every scheduled request has exactly one outcome, and the tiers add up.
    pub fn outcomes_balance(&self) -> bool {
        let outcomes = self.ok + self.shed + self.other_status + self.timeouts + self.errors;
        let tier_requests: u64 = self.tiers.iter().map(|t| t.requests).sum();
        let tier_ok: u64 = self.tiers.iter().map(|t| t.ok).sum();
        self.scheduled == self.requests
            && outcomes == self.requests
            && (self.tiers.is_empty() || (tier_requests == self.requests && tier_ok == self.ok))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// One point of a side's time series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// Seconds since the side's start (end of the interval).
    pub t: f64,
    /// Offered rate over the interval, requests/s.
    pub offered: f64,
    /// 2xx responses per second completed in the interval.
    pub goodput: f64,
    /// 99th percentile of 2xx latency in the interval, ms.
    pub success_p99_ms: f64,
    /// The proxy's concurrency limit at the end of the interval (protected side only).
    pub limit: Option<usize>,
    /// Wasted backend work per second over the interval.
    pub wasted: f64,
}

/// What the proxy reported at the end of the protected run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyTotals {
    /// Limit at the end.
    pub final_limit: usize,
    /// Lowest limit seen in the samples.
    pub min_limit: usize,
    /// Highest limit seen in the samples.
    pub max_limit: usize,
    /// Most permits held at once.
    pub peak_in_flight: usize,
    /// Requests admitted.
    pub admitted: u64,
    /// Requests shed with 503.
    pub shed: u64,
}

/// One side of the drill.
#[derive(Debug, Clone, PartialEq)]
pub struct SideResult {
    /// Which side.
    pub side: Side,
    /// Per phase, in order.
    pub phases: Vec<PhaseResult>,
    /// Time series for the report.
    pub series: Vec<SeriesPoint>,
    /// Requests still outstanding when the load generator stopped (should be 0).
    pub abandoned: u64,
    /// Requests the load generator could not send on time because its outstanding bound was
    /// reached (counted, never dropped).
    pub delayed_by_cap: u64,
    /// Requests still inside the backend when the side ended, whose clients are gone: work
    /// that will be wasted too (included in the last phase's `wasted`).
    pub wasted_after_end: u64,
    /// The backend's mean measured service time (worker busy time per finished request);
    /// above the nominal service time by the timer's granularity.
    pub backend_service_mean: Option<Duration>,
    /// The proxy's counters (protected side).
    pub proxy: Option<ProxyTotals>,
    /// Wall time of the side.
    pub elapsed: Duration,
}

impl SideResult {
    /// Every phase balances and nothing was abandoned.
    pub fn outcomes_balance(&self) -> bool {
        self.abandoned == 0 && self.phases.iter().all(PhaseResult::outcomes_balance)
    }
}

/// The whole drill: both sides, phase by phase.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillReport {
    /// Backend capacity, requests/s.
    pub capacity: f64,
    /// Backend workers.
    pub workers: usize,
    /// Backend mean service time.
    pub service_time: Duration,
    /// How the backend's service times vary around the mean (e.g. `exponential (CV 1)`).
    pub service_dist: String,
    /// Client timeout.
    pub timeout: Duration,
    /// Client connections.
    pub connections: usize,
    /// The proxy's limit algorithm.
    pub algorithm: String,
    /// The proxy's queue discipline.
    pub queue: String,
    /// The mix, as `(tier, percent)`.
    pub mix: Vec<(String, f64)>,
    /// Straight at the backend.
    pub unprotected: SideResult,
    /// Through the proxy.
    pub protected: SideResult,
    /// Wall time of the whole drill.
    pub elapsed: Duration,
    /// The external target's URL (`--target`), or `None` for the synthetic backend. With a
    /// target, wasted work is not measured (the drill cannot see inside your service).
    pub target: Option<String>,
    /// Where `capacity` came from: the synthetic backend, `--capacity`, or the ramp.
    pub capacity_source: String,
    /// External target only: how long it took to recover after the unprotected side
    /// (`Some(None)`: not within [`crate::RECOVERY_LIMIT`]; `None`: synthetic backend).
    pub recovery: Option<Option<Duration>>,
}

impl DrillReport {
    /// Both sides, unprotected first.
    pub fn sides(&self) -> [&SideResult; 2] {
        [&self.unprotected, &self.protected]
    }

    /// The phase at `multiplier` on both sides, if the drill ran it.
    pub fn phase_at(&self, multiplier: f64) -> Option<(&PhaseResult, &PhaseResult)> {
        let find = |s: &SideResult| {
            s.phases
                .iter()
                .position(|p| (p.multiplier - multiplier).abs() < 1e-9)
        };
        let u = find(&self.unprotected)?;
        let p = find(&self.protected)?;
        Some((&self.unprotected.phases[u], &self.protected.phases[p]))
    }
}
