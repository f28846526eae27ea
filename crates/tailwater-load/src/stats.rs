//! Constant-memory accumulators: HdrHistograms (µs, 3 significant figures) and counters.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;

use crate::grpc::GrpcOutcome;

/// Why a request failed without an HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection (or the HTTP handshake) could not be established.
    Connect,
    /// The TLS handshake failed (an untrusted certificate, a name mismatch, no common
    /// protocol or ALPN).
    Tls,
    /// No response before `timeout` (counted from the intended send time).
    Timeout,
    /// The connection was reset by the peer.
    Reset,
    /// The connection closed before a complete response arrived.
    Closed,
    /// The peer spoke invalid HTTP.
    Protocol,
    /// The response body failed mid-stream.
    Body,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Body,
        ErrorKind::Other,
    ];

    /// Stable name used in reports and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Body => "body",
            ErrorKind::Other => "other",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant figures: memory follows the largest value seen.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
}

/// Counts and latency histograms for a set of requests (a run, a phase, an interval or a tier).
///
/// All latencies are in microseconds. `corrected` is measured from the intended send time
/// (the schedule), `uncorrected` from the moment the request was written to a connection
/// (the service time a closed-loop tool would report), `send_lag` is actual − intended
/// send time and `success` is `corrected` restricted to 2xx responses, `rejected` to the
/// answers of an overload control (429 and 503). The send lag splits in two: `pacer_lag`
/// (intended → released by the pacer: the load generator's own machine) and
/// `conn_wait` (released → written: waiting for a free connection). Only requests that got
/// an HTTP response are in the latency histograms; failures are counted in `errors`.
#[derive(Clone)]
pub struct Stats {
    /// Requests that finished (a response or an error).
    pub requests: u64,
    /// Requests that were written to a connection.
    pub sent: u64,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// gRPC runs: answers by outcome (`status` then holds the HTTP status each outcome
    /// maps to, see [`GrpcOutcome`]). Empty for HTTP runs.
    pub grpc: BTreeMap<GrpcOutcome, u64>,
    /// Latency from the intended send time (coordinated-omission corrected), µs.
    pub corrected: Histogram<u64>,
    /// Latency from the actual send time, µs.
    pub uncorrected: Histogram<u64>,
    /// Corrected latency of 2xx responses only, µs.
    pub success: Histogram<u64>,
    /// Corrected latency of 429 and 503 answers (shed or rate-limited), µs.
    pub rejected: Histogram<u64>,
    /// Actual − intended send time, µs.
    pub send_lag: Histogram<u64>,
    /// Released by the pacer − intended send time, µs (the generator's own lateness).
    pub pacer_lag: Histogram<u64>,
    /// Written − released, µs (time spent waiting for a free connection).
    pub conn_wait: Histogram<u64>,
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("requests", &self.requests)
            .field("sent", &self.sent)
            .field("status", &self.status)
            .field("errors", &self.errors)
            .field("grpc", &self.grpc)
            .field("corrected", &Percentiles::of(&self.corrected))
            .field("uncorrected", &Percentiles::of(&self.uncorrected))
            .field("send_lag", &Percentiles::of(&self.send_lag))
            .field("conn_wait", &Percentiles::of(&self.conn_wait))
            .finish()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests: 0,
            sent: 0,
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            grpc: BTreeMap::new(),
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            success: new_histogram(),
            rejected: new_histogram(),
            send_lag: new_histogram(),
            pacer_lag: new_histogram(),
            conn_wait: new_histogram(),
        }
    }
}

impl Stats {
    /// Number of HTTP responses (any status).
    pub fn responses(&self) -> u64 {
        self.status.values().sum()
    }

    /// Number of 2xx responses.
    pub fn successes(&self) -> u64 {
        self.status.range(200..300).map(|(_, n)| n).sum()
    }

    /// Number of 429 and 503 answers: requests an overload control refused.
    pub fn rejections(&self) -> u64 {
        self.status_count(429) + self.status_count(503)
    }

    /// Number of failures without a response.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Count of responses with `code`.
    pub fn status_count(&self, code: u16) -> u64 {
        self.status.get(&code).copied().unwrap_or(0)
    }

    /// Count of failures of `kind`.
    pub fn error_kind_count(&self, kind: ErrorKind) -> u64 {
        self.errors.get(&kind).copied().unwrap_or(0)
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.sent += other.sent;
        for (k, v) in &other.status {
            *self.status.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.grpc {
            *self.grpc.entry(*k).or_insert(0) += v;
        }
        add(&mut self.corrected, &other.corrected);
        add(&mut self.uncorrected, &other.uncorrected);
        add(&mut self.success, &other.success);
        add(&mut self.rejected, &other.rejected);
        add(&mut self.send_lag, &other.send_lag);
        add(&mut self.pacer_lag, &other.pacer_lag);
        add(&mut self.conn_wait, &other.conn_wait);
    }
}

fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if !from.is_empty() {
        // Auto-resizing histograms accept any value, so `add` cannot fail here.
        let _ = into.add(from);
    }
}

/// The fixed percentile summary used in tables and JSON (µs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// 50th percentile.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// 99.99th percentile.
    pub p99_99: u64,
    /// Maximum.
    pub max: u64,
}

impl Percentiles {
    /// Summarises `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |q: f64| h.highest_equivalent(h.value_at_quantile(q));
        Self {
            count: h.len(),
            mean: h.mean(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: h.highest_equivalent(h.max()),
        }
    }

    /// The values with their JSON key names, in order.
    pub fn entries(&self) -> [(&'static str, u64); 6] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99_9", self.p99_9),
            ("p99_99", self.p99_99),
            ("max", self.max),
        ]
    }
}

/// Hot-path accumulator: fixed arrays instead of maps for the counts; the histograms and
/// totals are recorded straight into the [`Stats`] it becomes.
pub(crate) struct Acc {
    status: Box<[u64; 600]>,
    errors: [u64; 8],
    grpc: [u64; GrpcOutcome::SLOTS],
    /// Totals and histograms; its maps stay empty until [`Acc::into_stats`] (but for
    /// status codes outside the array, which go there directly).
    out: Stats,
}

impl Acc {
    pub(crate) fn new() -> Self {
        Self {
            status: Box::new([0; 600]),
            errors: [0; 8],
            grpc: [0; GrpcOutcome::SLOTS],
            out: Stats::default(),
        }
    }

    pub(crate) fn record(&mut self, outcome: &Outcome) {
        let out = &mut self.out;
        out.requests += 1;
        let _ = out.pacer_lag.record(outcome.pacer_lag_us);
        if let Some(lag) = outcome.send_lag_us {
            out.sent += 1;
            let _ = out.send_lag.record(lag);
            let _ = out
                .conn_wait
                .record(lag.saturating_sub(outcome.pacer_lag_us));
        }
        if let Some(g) = outcome.grpc {
            self.grpc[g.slot()] += 1;
        }
        match outcome.result {
            Ok(code) => {
                match self.status.get_mut(usize::from(code)) {
                    Some(slot) => *slot += 1,
                    None => *out.status.entry(code).or_insert(0) += 1,
                }
                let _ = out.corrected.record(outcome.corrected_us);
                let _ = out.uncorrected.record(outcome.uncorrected_us);
                if (200..300).contains(&code) {
                    let _ = out.success.record(outcome.corrected_us);
                } else if code == 429 || code == 503 {
                    let _ = out.rejected.record(outcome.corrected_us);
                }
            }
            Err(kind) => self.errors[kind.index()] += 1,
        }
    }

    pub(crate) fn into_stats(self) -> Stats {
        let mut out = self.out;
        for (code, n) in self.status.iter().enumerate() {
            if *n > 0 {
                *out.status.entry(code as u16).or_insert(0) += n;
            }
        }
        out.errors = ErrorKind::ALL
            .iter()
            .filter(|k| self.errors[k.index()] > 0)
            .map(|k| (*k, self.errors[k.index()]))
            .collect();
        out.grpc = (0..GrpcOutcome::SLOTS)
            .filter(|i| self.grpc[*i] > 0)
            .map(|i| (GrpcOutcome::from_slot(i), self.grpc[i]))
            .collect();
        out
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// The HTTP status (for gRPC, the one its outcome maps to), or the failure.
    pub(crate) result: Result<u16, ErrorKind>,
    /// gRPC runs: what the answer was.
    pub(crate) grpc: Option<GrpcOutcome>,
    pub(crate) corrected_us: u64,
    pub(crate) uncorrected_us: u64,
    pub(crate) send_lag_us: Option<u64>,
    /// Released by the pacer − intended, µs.
    pub(crate) pacer_lag_us: u64,
}
