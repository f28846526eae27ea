//! The Prometheus text exposition (version 0.0.4) of `/metrics`, in tailwater-core's
//! [`vocabulary`]: the counters of `crate::metrics`, each route's limiter and configured
//! knobs, its endpoints and burn rates. Above the route table it reads, so that the
//! counters below it depend on no route.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use tailwater_core::Criticality;
use tailwater_core::limiter::LimiterStats;
use tailwater_core::vocabulary::{self, Metric, outcome};

use crate::config::Config;
use crate::decision::{Decision, N_DECISIONS};
use crate::metrics::{BUCKETS, Metrics, RouteMetrics, esc, unix_secs};
use crate::route::RouteTable;

/// A gauge rendered from a limiter snapshot: the metric and its value, if it has one.
type Gauge = (Metric, fn(&LimiterStats) -> Option<f64>);

impl Metrics {
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
        write_labelled(
            &mut out,
            vocabulary::WORKER_CONNECTIONS,
            "worker",
            self.accepted_by_worker.iter().enumerate(),
        );
        write_labelled(
            &mut out,
            vocabulary::CONFIG_RELOADS,
            "result",
            [
                ("success", &self.reloads_ok),
                ("failure", &self.reloads_failed),
            ],
        );
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

/// The configured floor and ceiling of each route's limit, where set.
fn render_knobs(out: &mut String, stats: &[(&str, LimiterStats)], config: &Config) {
    type Knob = (Metric, fn(&crate::config::LimitConfig) -> Option<usize>);
    let knobs: [Knob; 2] = [
        (vocabulary::LIMITER_MIN_LIMIT, |l| l.min_limit()),
        (vocabulary::LIMITER_MAX_LIMIT, |l| l.max_limit()),
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

/// Writes `metric`'s header and one sample per `(label value, counter)`, with the one label
/// `label`.
fn write_labelled<'a, V: std::fmt::Display>(
    out: &mut String,
    metric: Metric,
    label: &str,
    samples: impl IntoIterator<Item = (V, &'a AtomicU64)>,
) {
    metric.write_header(out);
    for (value, c) in samples {
        let _ = writeln!(
            out,
            "{}{{{label}=\"{value}\"}} {}",
            metric.name,
            c.load(Ordering::Relaxed)
        );
    }
}
