//! The result of a run: totals, phases, tiers and intervals, with text and JSON renderings.
//!
//! # JSON keys (stable)
//!
//! [`Report::to_json`] produces an object with these keys (latencies in microseconds):
//!
//! | key | meaning |
//! |---|---|
//! | `tailwater` | `{version, started_at, command}`: what produced the report (RFC 3339 UTC start) |
//! | `target` | the URL |
//! | `target_rate` | mean scheduled rate over the part of the schedule that ran (requests/s) |
//! | `achieved_rate` | HTTP responses completed within the schedule's span (or until shutdown), per second of that span |
//! | `elapsed_s` | schedule length (or time to shutdown), extended to the last completion (at most `timeout` later) |
//! | `scheduled` | requests the scheduler dispatched |
//! | `requests` | requests that finished (response or error) |
//! | `responses` | requests that got an HTTP response |
//! | `delayed_by_cap` | requests sent more than 1 ms late because `max_in_flight` was reached |
//! | `abandoned` | requests still outstanding when the run ended |
//! | `status` | status code (string) → count |
//! | `grpc` | gRPC runs only: answer outcome (`OK`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, ..., `OVER_LIMIT`, `missing_status`) → count; `status` then counts the HTTP status each outcome maps to (Envoy's mapping: `RESOURCE_EXHAUSTED` and `OVER_LIMIT` 429, `UNAVAILABLE` 503) |
//! | `errors` | error kind (`connect`, `timeout`, `reset`, `closed`, `protocol`, `body`, `other`) → count |
//! | `latency_us.corrected`, `latency_us.uncorrected`, `latency_us.success`, `latency_us.rejected` | each `{p50, p90, p99, p99_9, p99_99, max, mean, count}`; `success` is 2xx only, `rejected` 429 and 503 |
//! | `send_lag_us` | the same percentiles of actual − intended send time |
//! | `pacer_lag_us`, `conn_wait_us` | the send lag's two parts: the pacer's own lateness, and the wait for a free connection |
//! | `phases[]` | per phase: `index`, `label`, `start_s`, `duration_s`, `target_rate`, `achieved_rate` and `goodput` (responses and 2xx completed *during* the phase, per second), `completed`, `scheduled`, and for the requests sent in the phase `requests`, `status`, `errors`, `latency_us`, `send_lag_us`, `tiers` |
//! | `tiers[]` | per header-mix value: `value`, `requests`, `status`, `errors`, `latency_us`, `send_lag_us` |
//! | `intervals[]` | per interval: `start_s`, `duration_s`, `target_rate`, `achieved_rate`, `responses`, `status`, `errors`, `latency_us` (corrected, uncorrected, success), `send_lag_us` |

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::meta::RunMeta;
use crate::schedule::Segment;
use crate::stats::{ErrorKind, Percentiles, Stats};

/// Per-phase results (one phase per schedule segment; requests belong to the phase of their
/// intended send time).
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Phase index, from 0.
    pub index: usize,
    /// The schedule segment.
    pub segment: Segment,
    /// Start offset of the phase.
    pub start: Duration,
    /// Length of the phase.
    pub duration: Duration,
    /// Mean scheduled rate of the phase.
    pub target_rate: f64,
    /// Requests dispatched in this phase.
    pub scheduled: u64,
    /// Responses (any status) that *completed* within the phase's window, whichever phase
    /// sent them: what the target delivered during the phase.
    pub completed: u64,
    /// 2xx responses that completed within the phase's window.
    pub completed_ok: u64,
    /// Results of the requests *sent* in this phase (their latencies, statuses and errors),
    /// however late they completed.
    pub stats: Stats,
    /// Results per header-mix value (empty without a mix).
    pub tiers: Vec<TierReport>,
}

impl PhaseReport {
    /// Responses per second completed during the phase. A backlog the target drains after the
    /// phase ends does not inflate it (the same rule as [`Report::achieved_rate`]).
    pub fn achieved_rate(&self) -> f64 {
        self.completed as f64 / self.duration.as_secs_f64()
    }

    /// 2xx responses per second completed during the phase.
    pub fn goodput(&self) -> f64 {
        self.completed_ok as f64 / self.duration.as_secs_f64()
    }
}

/// Results for one value of the header mix.
#[derive(Debug, Clone)]
pub struct TierReport {
    /// The header value (e.g. `critical`).
    pub value: String,
    /// Results.
    pub stats: Stats,
}

/// One reporting interval.
#[derive(Debug, Clone)]
pub struct IntervalReport {
    /// Offset of the interval from the start of the run.
    pub start: Duration,
    /// Interval length.
    pub duration: Duration,
    /// Mean scheduled rate over the interval.
    pub target_rate: f64,
    /// Responses per second completed in the interval.
    pub achieved_rate: f64,
    /// Responses completed in the interval.
    pub responses: u64,
    /// Requests sent (written) whose outcome was recorded in the interval.
    pub sent: u64,
    /// Responses by status.
    pub status: BTreeMap<u16, u64>,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Corrected latency percentiles (µs).
    pub corrected: Percentiles,
    /// Uncorrected latency percentiles (µs).
    pub uncorrected: Percentiles,
    /// Corrected latency percentiles of 2xx responses (µs).
    pub success: Percentiles,
    /// Send lag percentiles (µs).
    pub send_lag: Percentiles,
}

/// Everything a run measured. See the module docs for the JSON keys.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target URL.
    pub target: String,
    /// Mean scheduled rate (requests/s) over the part of the schedule that ran.
    pub target_rate: f64,
    /// Responses completed within the schedule's span (or until shutdown), per second of it:
    /// stragglers after the end do not lower it, and backlog drained after it does not raise it.
    pub achieved_rate: f64,
    /// Time the run covered (to the last completion, at most timeout past the schedule).
    pub elapsed: Duration,
    /// The schedule's length.
    pub schedule_duration: Duration,
    /// Whether the shutdown future ended the run before the schedule did.
    pub stopped_early: bool,
    /// Requests dispatched by the scheduler.
    pub scheduled: u64,
    /// Requests sent more than 1 ms late because `max_in_flight` was reached.
    pub delayed_by_cap: u64,
    /// Requests still outstanding when the run ended (not in any count).
    pub abandoned: u64,
    /// Connections used.
    pub connections: usize,
    /// The outstanding-request bound.
    pub max_in_flight: usize,
    /// Whether h2c was used.
    pub http2: bool,
    /// Totals.
    pub total: Stats,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
    /// Per header-mix value, over the whole run.
    pub tiers: Vec<TierReport>,
    /// Per interval, in order.
    pub intervals: Vec<IntervalReport>,
    /// Version, start time and command line.
    pub meta: RunMeta,
}

fn pct_json(p: &Percentiles) -> Value {
    let mut m = Map::new();
    for (k, v) in p.entries() {
        m.insert(k.into(), json!(v));
    }
    m.insert("mean".into(), json!((p.mean * 10.0).round() / 10.0));
    m.insert("count".into(), json!(p.count));
    Value::Object(m)
}

fn status_json(s: &BTreeMap<u16, u64>) -> Value {
    Value::Object(s.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

fn errors_json(e: &BTreeMap<ErrorKind, u64>) -> Value {
    Value::Object(
        e.iter()
            .map(|(k, v)| (k.as_str().to_string(), json!(v)))
            .collect(),
    )
}

fn stats_json(s: &Stats) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("requests".into(), json!(s.requests));
    m.insert("responses".into(), json!(s.responses()));
    m.insert("status".into(), status_json(&s.status));
    m.insert("errors".into(), errors_json(&s.errors));
    if !s.grpc.is_empty() {
        m.insert(
            "grpc".into(),
            Value::Object(
                s.grpc
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                    .collect(),
            ),
        );
    }
    m.insert(
        "latency_us".into(),
        json!({
            "corrected": pct_json(&Percentiles::of(&s.corrected)),
            "uncorrected": pct_json(&Percentiles::of(&s.uncorrected)),
            "success": pct_json(&Percentiles::of(&s.success)),
            "rejected": pct_json(&Percentiles::of(&s.rejected)),
        }),
    );
    m.insert(
        "send_lag_us".into(),
        pct_json(&Percentiles::of(&s.send_lag)),
    );
    m.insert(
        "pacer_lag_us".into(),
        pct_json(&Percentiles::of(&s.pacer_lag)),
    );
    m.insert(
        "conn_wait_us".into(),
        pct_json(&Percentiles::of(&s.conn_wait)),
    );
    m
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn fmt_us(us: u64) -> String {
    let v = us as f64;
    if v >= 1e6 {
        format!("{:.2}s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2}ms", v / 1e3)
    } else {
        format!("{us}us")
    }
}

impl Report {
    /// The report as JSON with the stable keys documented on this module.
    pub fn to_json(&self) -> Value {
        let mut m = stats_json(&self.total);
        m.insert(
            "tailwater".into(),
            json!({
                "version": self.meta.version,
                "started_at": self.meta.started_at_rfc3339(),
                "command": self.meta.command,
            }),
        );
        m.insert("target".into(), json!(self.target));
        m.insert("target_rate".into(), json!(round2(self.target_rate)));
        m.insert("achieved_rate".into(), json!(round2(self.achieved_rate)));
        m.insert("elapsed_s".into(), json!(self.elapsed.as_secs_f64()));
        m.insert("scheduled".into(), json!(self.scheduled));
        m.insert("delayed_by_cap".into(), json!(self.delayed_by_cap));
        m.insert("abandoned".into(), json!(self.abandoned));
        m.insert("connections".into(), json!(self.connections));
        m.insert("max_in_flight".into(), json!(self.max_in_flight));
        m.insert("http2".into(), json!(self.http2));
        let tiers = |t: &[TierReport]| -> Value {
            Value::Array(
                t.iter()
                    .map(|t| {
                        let mut m = stats_json(&t.stats);
                        m.insert("value".into(), json!(t.value));
                        Value::Object(m)
                    })
                    .collect(),
            )
        };
        m.insert(
            "phases".into(),
            Value::Array(
                self.phases
                    .iter()
                    .map(|p| {
                        let mut m = stats_json(&p.stats);
                        m.insert("index".into(), json!(p.index));
                        m.insert("label".into(), json!(p.segment.to_string()));
                        m.insert("start_s".into(), json!(p.start.as_secs_f64()));
                        m.insert("duration_s".into(), json!(p.duration.as_secs_f64()));
                        m.insert("target_rate".into(), json!(round2(p.target_rate)));
                        m.insert("achieved_rate".into(), json!(round2(p.achieved_rate())));
                        m.insert("scheduled".into(), json!(p.scheduled));
                        m.insert("completed".into(), json!(p.completed));
                        m.insert("goodput".into(), json!(round2(p.goodput())));
                        m.insert("tiers".into(), tiers(&p.tiers));
                        Value::Object(m)
                    })
                    .collect(),
            ),
        );
        m.insert("tiers".into(), tiers(&self.tiers));
        m.insert(
            "intervals".into(),
            Value::Array(
                self.intervals
                    .iter()
                    .map(|i| {
                        json!({
                            "start_s": i.start.as_secs_f64(),
                            "duration_s": i.duration.as_secs_f64(),
                            "target_rate": round2(i.target_rate),
                            "achieved_rate": round2(i.achieved_rate),
                            "responses": i.responses,
                            "status": status_json(&i.status),
                            "errors": errors_json(&i.errors),
                            "latency_us": {
                                "corrected": pct_json(&i.corrected),
                                "uncorrected": pct_json(&i.uncorrected),
                                "success": pct_json(&i.success),
                            },
                            "send_lag_us": pct_json(&i.send_lag),
                        })
                    })
                    .collect(),
            ),
        );
        Value::Object(m)
    }

    /// The corrected latency spectrum in wrk2's `.hgrm` format, in milliseconds.
    pub fn hgrm(&self) -> String {
        crate::hgrm::format_hgrm(&self.total.corrected, 5, 1000.0)
    }

    /// The uncorrected latency spectrum in `.hgrm` format, in milliseconds.
    pub fn hgrm_uncorrected(&self) -> String {
        crate::hgrm::format_hgrm(&self.total.uncorrected, 5, 1000.0)
    }
}
