//! The one metric vocabulary of tailwater: every metric name, its kind, unit, labels and
//! help text, and the closed sets of label values, for the proxy, the tower layers and the
//! artefacts generated from them (`tailwater slo`'s native spec, the Grafana dashboard, the
//! runbooks).
//!
//! The proxy renders its Prometheus text from these [`Metric`]s and the tower layers emit
//! them through the `metrics` facade under the same names and labels, so one dashboard and
//! one set of SLO rules serve both. A name used by only one of them says so in
//! [`Metric::emitters`]. Names follow Prometheus conventions: the `tailwater_` prefix, base
//! units in the name (`_seconds`, `_ratio`), `_total` on counters, `_info` on constant-1
//! gauges that carry labels.
//!
//! The latency histogram carries the [`outcome`] label, so a latency SLI can leave out (or
//! count as bad) requests the proxy answered itself: a shed 503 is fast, and without the
//! label it would make the latency SLO look better while shedding.
//!
//! ```
//! use tailwater_core::vocabulary::{self, Kind};
//! assert_eq!(vocabulary::REQUEST_DURATION.name, "tailwater_request_duration_seconds");
//! assert_eq!(vocabulary::REQUEST_DURATION.kind, Kind::Histogram);
//! assert!(vocabulary::REQUEST_DURATION.labels.contains(&"outcome"));
//! assert!(vocabulary::ALL.iter().all(|m| m.name.starts_with("tailwater_")));
//! ```

mod broker;
mod escape;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; the name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets (`_bucket{le}`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The `# TYPE` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Which component emits a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitters {
    /// The proxy and the tower layers, with the same labels.
    Both,
    /// The proxy only (connection-level, balancer, build and reload metrics).
    Proxy,
    /// The tower layers only.
    Tower,
    /// The broker consumers of `tailwater-stream` (Redis Streams, NATS JetStream, RabbitMQ).
    Stream,
}

/// One metric of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The full name (for a histogram, without `_bucket`/`_sum`/`_count`).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its unit, as in the name's suffix (`seconds`, `ratio`, `requests`, ...); for docs.
    pub unit: &'static str,
    /// Its labels, in the order they are written (`le` of histograms not included).
    pub labels: &'static [&'static str],
    /// The `# HELP` text: one line, what it counts and when.
    pub help: &'static str,
    /// Who emits it.
    pub emitters: Emitters,
}

impl Metric {
    /// Appends the `# HELP` and `# TYPE` lines of the text exposition format.
    pub fn write_header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            self.name,
            self.help,
            self.name,
            self.kind.as_str()
        );
    }
}

const fn m(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    emitters: Emitters,
) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels,
        help,
        emitters,
    }
}

use Emitters::{Both, Proxy, Stream, Tower};
use Kind::{Counter, Gauge, Histogram};

pub use escape::escape_label_value;

pub use broker::{
    BROKER_ACKED, BROKER_DELIVERED, BROKER_FAILED, BROKER_FETCH_LIMIT, BROKER_IN_FLIGHT,
    BROKER_LAG, BROKER_LAG_GROWTH, BROKER_PENDING, BROKER_REDELIVERED,
};

/// The values of the `outcome` label of [`REQUESTS`] and [`REQUEST_DURATION`]: how a request
/// that reached a route ended. A closed set: dashboards and SLO rules match on these.
pub mod outcome;

/// Values of the `reason` label shared by the proxy and the tower layers beyond the
/// limiter's own rejection reasons (`RejectReason::as_str`).
pub mod reason {
    /// The client's own deadline (`grpc-timeout` or the configured deadline header) was
    /// spent on arrival or in the queue: refused with `504` / gRPC `DEADLINE_EXCEEDED`
    /// before reaching the service, with outcome [`REJECTED`](super::outcome::REJECTED).
    pub const DEADLINE_EXCEEDED: &str = "deadline_exceeded";
}

/// Upper bounds of the latency histogram buckets, seconds (proxy and tower alike; a latency
/// SLO threshold must be one of them).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests that reached a route, by how they ended.
pub const REQUESTS: Metric = m(
    "tailwater_requests_total",
    Counter,
    "requests",
    &["route", "outcome", "reason", "tier"],
    "Requests by route, outcome, reason and criticality tier.",
    Both,
);
/// Latency by outcome: arrival (or admission, in the tower layers) to the end of the body.
pub const REQUEST_DURATION: Metric = m(
    "tailwater_request_duration_seconds",
    Histogram,
    "seconds",
    &["route", "outcome"],
    "Time from request arrival to the end of the response body, by outcome.",
    Both,
);
/// Admission decisions of the tower layers.
pub const DECISIONS: Metric = m(
    "tailwater_decisions_total",
    Counter,
    "requests",
    &["mechanism", "decision", "reason", "tier", "route"],
    "Admission decisions by mechanism (concurrency, rate_limit), decision and reason.",
    Tower,
);
/// Permits released, by the outcome fed to the algorithm.
pub const LIMITER_SAMPLES: Metric = m(
    "tailwater_limiter_samples_total",
    Counter,
    "requests",
    &["route", "outcome"],
    "Permits released, by outcome fed to the algorithm (success, dropped, ignored).",
    Both,
);
/// The current concurrency limit.
pub const LIMITER_LIMIT: Metric = m(
    "tailwater_limiter_limit",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Current concurrency limit.",
    Both,
);
/// Permits held.
pub const LIMITER_IN_FLIGHT: Metric = m(
    "tailwater_limiter_in_flight",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Requests holding a permit.",
    Both,
);
/// The most permits held at once.
pub const LIMITER_PEAK_IN_FLIGHT: Metric = m(
    "tailwater_limiter_peak_in_flight",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Most permits held at once since start.",
    Proxy,
);
/// Requests waiting for a permit.
pub const LIMITER_QUEUE_DEPTH: Metric = m(
    "tailwater_limiter_queue_depth",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Requests waiting for a permit.",
    Both,
);
/// The queue's capacity (a configured knob).
pub const LIMITER_QUEUE_CAPACITY: Metric = m(
    "tailwater_limiter_queue_capacity",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Most requests allowed to wait (configured).",
    Proxy,
);
/// The algorithm's no-load RTT estimate.
pub const LIMITER_MIN_RTT: Metric = m(
    "tailwater_limiter_min_rtt_seconds",
    Gauge,
    "seconds",
    &["route", "algorithm"],
    "The algorithm's no-load (minimum) RTT estimate; absent until it has one.",
    Proxy,
);
/// The algorithm's recent RTT estimate.
pub const LIMITER_RTT: Metric = m(
    "tailwater_limiter_rtt_seconds",
    Gauge,
    "seconds",
    &["route", "algorithm"],
    "The algorithm's recent (short-window) RTT estimate; absent until it has one.",
    Proxy,
);
/// The last gradient applied to the limit.
pub const LIMITER_GRADIENT: Metric = m(
    "tailwater_limiter_gradient",
    Gauge,
    "ratio",
    &["route", "algorithm"],
    "The last gradient the algorithm applied (1 = no change); absent for algorithms without one.",
    Both,
);
/// The algorithm's estimated queue.
pub const LIMITER_ESTIMATED_QUEUE: Metric = m(
    "tailwater_limiter_estimated_queue",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "The algorithm's queue estimate (Vegas' queue, Gradient's headroom); absent for others.",
    Both,
);
/// The configured floor of the limit.
pub const LIMITER_MIN_LIMIT: Metric = m(
    "tailwater_limiter_min_limit",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Configured floor of the concurrency limit (absent when the algorithm's default applies).",
    Proxy,
);
/// The configured ceiling of the limit.
pub const LIMITER_MAX_LIMIT: Metric = m(
    "tailwater_limiter_max_limit",
    Gauge,
    "requests",
    &["route", "algorithm"],
    "Configured ceiling of the concurrency limit (absent when the algorithm's default applies).",
    Proxy,
);
/// Time spent waiting for a permit.
pub const QUEUE_WAIT: Metric = m(
    "tailwater_queue_wait_seconds",
    Histogram,
    "seconds",
    &["decision", "route"],
    "Time spent waiting in the queue, by decision (admitted, rejected).",
    Tower,
);
/// Multi-window burn rates.
pub const SLO_BURN_RATE: Metric = m(
    "tailwater_slo_burn_rate",
    Gauge,
    "ratio",
    &["route", "window"],
    "Error ratio over the window divided by the error budget (1 - objective).",
    Both,
);
/// Budget left in the period.
pub const SLO_ERROR_BUDGET_REMAINING: Metric = m(
    "tailwater_slo_error_budget_remaining",
    Gauge,
    "ratio",
    &["route"],
    "1 - the 30-day burn rate: 1 untouched, 0 spent, negative overspent.",
    Both,
);
/// The objective the burn rates are measured against.
pub const SLO_OBJECTIVE: Metric = m(
    "tailwater_slo_objective_ratio",
    Gauge,
    "ratio",
    &["route"],
    "Availability objective of the in-process burn rates (0.999 for 99.9 %).",
    Proxy,
);
/// Build information.
pub const BUILD_INFO: Metric = m(
    "tailwater_build_info",
    Gauge,
    "info",
    &["version", "component"],
    "Constant 1, labelled with the version and the component (proxy, rls).",
    Proxy,
);
/// Configuration reloads.
pub const CONFIG_RELOADS: Metric = m(
    "tailwater_config_reloads_total",
    Counter,
    "reloads",
    &["result"],
    "Configuration reloads, by result (success, failure); a failure keeps the old config.",
    Proxy,
);
/// When the configuration last loaded.
pub const CONFIG_LAST_RELOAD_SUCCESS: Metric = m(
    "tailwater_config_last_reload_success_timestamp_seconds",
    Gauge,
    "seconds",
    &[],
    "Unix time the configuration in force was loaded.",
    Proxy,
);
/// Requests that matched no route.
pub const UNROUTED: Metric = m(
    "tailwater_unrouted_requests_total",
    Counter,
    "requests",
    &[],
    "Requests that matched no route (404).",
    Proxy,
);
/// Requests refused before routing.
pub const REFUSED: Metric = m(
    "tailwater_refused_requests_total",
    Counter,
    "requests",
    &[],
    "Requests refused before routing for their framing, Host or path (400/501).",
    Proxy,
);
/// Access log lines dropped.
pub const ACCESS_LOG_DROPPED: Metric = m(
    "tailwater_access_log_dropped_total",
    Counter,
    "lines",
    &[],
    "Access log lines dropped because the writer fell behind (queue full) or a write failed.",
    Proxy,
);
/// Connections accepted.
pub const CONNECTIONS: Metric = m(
    "tailwater_connections_total",
    Counter,
    "connections",
    &[],
    "Client connections accepted.",
    Proxy,
);
/// Connections open.
pub const CONNECTIONS_OPEN: Metric = m(
    "tailwater_connections_open",
    Gauge,
    "connections",
    &[],
    "Client connections open.",
    Proxy,
);
/// TLS handshakes that failed.
pub const TLS_HANDSHAKE_FAILURES: Metric = m(
    "tailwater_tls_handshake_failures_total",
    Counter,
    "handshakes",
    &[],
    "TLS handshakes that failed or did not finish within server.header_read_timeout.",
    Proxy,
);
/// `Upgrade` (WebSocket) tunnels open.
pub const TUNNELS_OPEN: Metric = m(
    "tailwater_tunnels_open",
    Gauge,
    "tunnels",
    &[],
    "Upgrade (WebSocket) tunnels open.",
    Proxy,
);
/// Copy-buffer memory the open tunnels hold.
pub const TUNNEL_BUFFER_BYTES: Metric = m(
    "tailwater_tunnel_buffer_bytes",
    Gauge,
    "bytes",
    &[],
    "Copy buffer memory held by the open tunnels.",
    Proxy,
);
/// Tunnels started.
pub const TUNNELS: Metric = m(
    "tailwater_tunnels_total",
    Counter,
    "tunnels",
    &[],
    "Upgrade tunnels started.",
    Proxy,
);
/// Upgrades refused at the tunnel cap.
pub const TUNNELS_REFUSED: Metric = m(
    "tailwater_tunnels_refused_total",
    Counter,
    "requests",
    &[],
    "Upgrade requests refused because server.max_tunnels were open (503).",
    Proxy,
);
/// Tunnels closed, by reason.
pub const TUNNELS_CLOSED: Metric = m(
    "tailwater_tunnels_closed_total",
    Counter,
    "tunnels",
    &["reason"],
    "Upgrade tunnels closed, by reason.",
    Proxy,
);
/// Tied requests (Tail at Scale), by what happened to the copy.
pub const TIES: Metric = m(
    "tailwater_ties_total",
    Counter,
    "requests",
    &["outcome"],
    "Tied request copies: started, dropped_on_arrival (the peer started first), cancelled_queued.",
    Tower,
);
/// Connections by worker.
pub const WORKER_CONNECTIONS: Metric = m(
    "tailwater_worker_connections_total",
    Counter,
    "connections",
    &["worker"],
    "Client connections accepted, by worker thread.",
    Proxy,
);
/// Requests sent to a balanced endpoint.
pub const ENDPOINT_SELECTED: Metric = m(
    "tailwater_endpoint_selected_total",
    Counter,
    "requests",
    &["route", "endpoint"],
    "Requests the balancer sent to the endpoint.",
    Proxy,
);
/// Endpoint ejections.
pub const ENDPOINT_EJECTIONS: Metric = m(
    "tailwater_endpoint_ejections_total",
    Counter,
    "ejections",
    &["route", "endpoint"],
    "Times the endpoint was ejected (consecutive 5xx or gateway errors).",
    Proxy,
);
/// Whether an endpoint is ejected.
pub const ENDPOINT_EJECTED: Metric = m(
    "tailwater_endpoint_ejected",
    Gauge,
    "bool",
    &["route", "endpoint"],
    "1 while the endpoint is ejected.",
    Proxy,
);
/// Requests in progress on an endpoint.
pub const ENDPOINT_PENDING: Metric = m(
    "tailwater_endpoint_pending",
    Gauge,
    "requests",
    &["route", "endpoint"],
    "Requests in progress on the endpoint.",
    Proxy,
);
/// An endpoint's latency estimate.
pub const ENDPOINT_EWMA: Metric = m(
    "tailwater_endpoint_ewma_seconds",
    Gauge,
    "seconds",
    &["route", "endpoint"],
    "The endpoint's PeakEWMA latency estimate.",
    Proxy,
);

/// Every metric of the vocabulary (the outbound layers' breaker, retry, hedge and throttle
/// metrics are documented in `tailwater_tower::observe`).
pub const ALL: &[Metric] = &[
    REQUESTS,
    REQUEST_DURATION,
    DECISIONS,
    LIMITER_SAMPLES,
    LIMITER_LIMIT,
    LIMITER_IN_FLIGHT,
    LIMITER_PEAK_IN_FLIGHT,
    LIMITER_QUEUE_DEPTH,
    LIMITER_QUEUE_CAPACITY,
    LIMITER_MIN_RTT,
    LIMITER_RTT,
    LIMITER_GRADIENT,
    LIMITER_ESTIMATED_QUEUE,
    LIMITER_MIN_LIMIT,
    LIMITER_MAX_LIMIT,
    QUEUE_WAIT,
    SLO_BURN_RATE,
    SLO_ERROR_BUDGET_REMAINING,
    SLO_OBJECTIVE,
    BUILD_INFO,
    CONFIG_RELOADS,
    CONFIG_LAST_RELOAD_SUCCESS,
    UNROUTED,
    REFUSED,
    ACCESS_LOG_DROPPED,
    CONNECTIONS,
    CONNECTIONS_OPEN,
    TLS_HANDSHAKE_FAILURES,
    WORKER_CONNECTIONS,
    TIES,
    TUNNELS_OPEN,
    TUNNEL_BUFFER_BYTES,
    TUNNELS,
    TUNNELS_REFUSED,
    TUNNELS_CLOSED,
    ENDPOINT_SELECTED,
    ENDPOINT_EJECTIONS,
    ENDPOINT_EJECTED,
    ENDPOINT_PENDING,
    ENDPOINT_EWMA,
    BROKER_LAG,
    BROKER_LAG_GROWTH,
    BROKER_PENDING,
    BROKER_IN_FLIGHT,
    BROKER_FETCH_LIMIT,
    BROKER_DELIVERED,
    BROKER_REDELIVERED,
    BROKER_ACKED,
    BROKER_FAILED,
];

/// The vocabulary as a Markdown table (for the README and the generated reference).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| name | type | unit | labels | emitted by | meaning |\n|---|---|---|---|---|---|\n",
    );
    for m in ALL {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            m.name,
            m.kind.as_str(),
            m.unit,
            m.labels.join(", "),
            match m.emitters {
                Both => "proxy, tower",
                Proxy => "proxy",
                Tower => "tower",
                Stream => "tailwater-stream",
            },
            m.help
        );
    }
    out
}
