//! A Grafana dashboard for the proxy, generated from its configuration (the route names)
//! and, optionally, an SLO spec, in tailwater-core's metric
//! [`tailwater_core::vocabulary`], so the panels never drift from the metrics.
//!
//! Every panel's queries are PromQL over the vocabulary (and over the recording rules of
//! [`rules::generate`](crate::rules::generate) for the SLO row), filtered by the dashboard's
//! `route` variable, whose options are the configured routes. `scripts/check-dashboard.sh`
//! evaluates every query against a real Prometheus scraping a real proxy.
//!
//! ```
//! let d = tailwater_slo::dashboard::proxy(&["api".to_owned()], None);
//! let queries = tailwater_slo::dashboard::queries(&d);
//! assert!(queries.iter().any(|q| q.contains("tailwater_request_duration_seconds_bucket")));
//! ```

use serde_json::{Value, json};
use tailwater_core::vocabulary as v;

use crate::model::SloSet;

/// The dashboard's `uid`.
pub const UID: &str = "tailwater-proxy";

/// One panel: title, unit, description and its queries with their legends.
pub(crate) struct Panel {
    pub(crate) title: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) description: &'static str,
    pub(crate) targets: Vec<(String, &'static str)>,
}

fn panels() -> Vec<Panel> {
    let r = "route=~\"$route\"";
    let req = v::REQUESTS.name;
    let dur = v::REQUEST_DURATION.name;
    vec![
        Panel {
            title: "Requests by outcome",
            unit: "reqps",
            description: "tailwater_requests_total by outcome: success, upstream_error, timeout, shed, rate_limited, cancelled, client_fault, rejected.",
            targets: vec![(
                format!("sum by (outcome) (rate({req}{{{r}}}[$__rate_interval]))"),
                "{{outcome}}",
            )],
        },
        Panel {
            title: "Refused by reason",
            unit: "reqps",
            description: "Requests the proxy answered itself (503 shed, 429 rate-limited), by the limiter's reason.",
            targets: vec![(
                format!(
                    "sum by (route, outcome, reason) (rate({req}{{{r},outcome=~\"shed|rate_limited\"}}[$__rate_interval])) or on() vector(0)"
                ),
                "{{route}} {{outcome}} {{reason}}",
            )],
        },
        Panel {
            title: "Latency of successes (p50, p99)",
            unit: "s",
            description: "From the outcome=\"success\" histogram only: shed answers are not fast successes.",
            targets: vec![
                (
                    format!(
                        "histogram_quantile(0.99, sum by (le, route) (rate({dur}_bucket{{{r},outcome=\"success\"}}[$__rate_interval])))"
                    ),
                    "p99 {{route}}",
                ),
                (
                    format!(
                        "histogram_quantile(0.5, sum by (le, route) (rate({dur}_bucket{{{r},outcome=\"success\"}}[$__rate_interval])))"
                    ),
                    "p50 {{route}}",
                ),
            ],
        },
        Panel {
            title: "Concurrency limit, in flight, queue",
            unit: "short",
            description: "The adaptive limit against the permits held and the requests waiting.",
            targets: vec![
                (
                    format!("{}{{{r}}}", v::LIMITER_LIMIT.name),
                    "limit {{route}}",
                ),
                (
                    format!("{}{{{r}}}", v::LIMITER_IN_FLIGHT.name),
                    "in flight {{route}}",
                ),
                (
                    format!("{}{{{r}}}", v::LIMITER_QUEUE_DEPTH.name),
                    "queued {{route}}",
                ),
            ],
        },
        Panel {
            title: "Algorithm's RTT estimates",
            unit: "s",
            description: "Why the limit is where it is: the no-load (min) RTT against the recent RTT.",
            targets: vec![
                (
                    format!("{}{{{r}}}", v::LIMITER_MIN_RTT.name),
                    "min RTT {{route}}",
                ),
                (format!("{}{{{r}}}", v::LIMITER_RTT.name), "RTT {{route}}"),
            ],
        },
        Panel {
            title: "Samples fed to the algorithm",
            unit: "reqps",
            description: "Permits released by outcome: dropped ones bring the limit down.",
            targets: vec![(
                format!(
                    "sum by (route, outcome) (rate({}{{{r}}}[$__rate_interval]))",
                    v::LIMITER_SAMPLES.name
                ),
                "{{route}} {{outcome}}",
            )],
        },
        Panel {
            title: "Burn rate (in process)",
            unit: "short",
            description: "tailwater_slo_burn_rate: error ratio / budget per window; 14.4 over 1h pages.",
            targets: vec![(
                format!("{}{{{r},window=~\"5m|1h|6h|3d\"}}", v::SLO_BURN_RATE.name),
                "{{route}} {{window}}",
            )],
        },
        Panel {
            title: "Error budget left (in process, 30d)",
            unit: "percentunit",
            description: "1 untouched, 0 spent, negative overspent; the same figure as /status's budget_left.",
            targets: vec![(
                format!("{}{{{r}}}", v::SLO_ERROR_BUDGET_REMAINING.name),
                "{{route}}",
            )],
        },
        Panel {
            title: "Connections",
            unit: "short",
            description: "Client connections open, and accepted per second.",
            targets: vec![
                (v::CONNECTIONS_OPEN.name.to_owned(), "open"),
                (
                    format!("rate({}[$__rate_interval])", v::CONNECTIONS.name),
                    "accepted/s",
                ),
            ],
        },
        Panel {
            title: "Access log lines dropped",
            unit: "short",
            description: "Lines the access log dropped in the last hour (its writer fell behind or a write failed); 0 when the log is off.",
            targets: vec![(
                format!("increase({}[1h])", v::ACCESS_LOG_DROPPED.name),
                "dropped",
            )],
        },
        Panel {
            title: "Config reloads and build",
            unit: "short",
            description: "Reloads by result in the last hour (a failure keeps the old config), and the running version.",
            targets: vec![
                (
                    format!("increase({}[1h])", v::CONFIG_RELOADS.name),
                    "{{result}}",
                ),
                (v::BUILD_INFO.name.to_owned(), "{{component}} {{version}}"),
            ],
        },
    ]
}

/// The SLO row: the recording rules of `tailwater slo generate` for each SLO of `set`.
fn slo_panels(set: &SloSet) -> Vec<Panel> {
    let ids: Vec<String> = set.slos.iter().map(|s| s.id.clone()).collect();
    let sel = format!("sloth_id=~\"{}\"", ids.join("|"));
    vec![
        Panel {
            title: "SLO burn rate (recording rules)",
            unit: "short",
            description: "slo:current_burn_rate:ratio from the generated rules.",
            targets: vec![(
                format!("slo:current_burn_rate:ratio{{{sel}}}"),
                "{{sloth_id}}",
            )],
        },
        Panel {
            title: "SLO error budget left (recording rules, period)",
            unit: "percentunit",
            description: "slo:period_error_budget_remaining:ratio from the generated rules.",
            targets: vec![(
                format!("slo:period_error_budget_remaining:ratio{{{sel}}}"),
                "{{sloth_id}}",
            )],
        },
        Panel {
            title: "SLI error ratio, 5m and 1h",
            unit: "percentunit",
            description: "The page tier's windows.",
            targets: vec![
                (
                    format!("slo:sli_error:ratio_rate5m{{{sel}}}"),
                    "5m {{sloth_id}}",
                ),
                (
                    format!("slo:sli_error:ratio_rate1h{{{sel}}}"),
                    "1h {{sloth_id}}",
                ),
            ],
        },
    ]
}

/// The proxy dashboard for `routes` (the configured route names), with an SLO row when
/// `slos` is given.
pub fn proxy(routes: &[String], slos: Option<&SloSet>) -> Value {
    let mut all = panels();
    if let Some(set) = slos {
        all.extend(slo_panels(set));
    }
    let options: Vec<Value> = routes
        .iter()
        .map(|r| json!({"text": r, "value": r, "selected": false}))
        .collect();
    document(
        UID,
        "tailwater proxy",
        json!({
            "name": "route",
            "type": "custom",
            "query": routes.join(","),
            "multi": true,
            "includeAll": true,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "options": options,
        }),
        &all,
    )
}

/// A tailwater Grafana dashboard: `uid`, `title`, the `datasource` variable (Prometheus)
/// then `variable`, and `panels` (two a row, see [`render_panels`]), with the settings
/// every tailwater dashboard shares (last hour, refreshed every 30 s).
pub(crate) fn document(uid: &str, title: &str, variable: Value, panels: &[Panel]) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "tags": ["tailwater"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {
                "name": "datasource",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
            },
            variable,
        ]},
        "panels": render_panels(panels),
    })
}

/// The panels as Grafana JSON, two a row, every query on the `datasource` variable.
pub(crate) fn render_panels(all: &[Panel]) -> Vec<Value> {
    all.iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "description": p.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": p.targets.iter().enumerate().map(|(k, (expr, legend))| json!({
                    "refId": ((b'A' + k as u8) as char).to_string(),
                    "expr": expr,
                    "legendFormat": legend,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Every query of a dashboard, in panel order.
pub fn queries(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_use_only_vocabulary_metrics_and_the_route_variable() {
        let set = crate::spec::parse(
            "version: tailwater/v1\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli: availability\n",
            "s.yaml",
        )
        .unwrap();
        let d = proxy(&["api".into(), "static".into()], Some(&set));
        assert_eq!(d["templating"]["list"][1]["query"], "api,static");
        let qs = queries(&d);
        assert_eq!(qs.len(), 21);
        for q in &qs {
            let metric = q
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .find(|w| w.starts_with("tailwater_") || w.starts_with("slo:"))
                .unwrap_or_else(|| panic!("no metric in {q}"));
            let base = metric
                .trim_end_matches("_bucket")
                .trim_end_matches("_count");
            assert!(
                base.starts_with("slo:") || v::ALL.iter().any(|m| m.name == base),
                "{metric} in {q} is not in the vocabulary"
            );
        }
        assert!(qs.iter().any(|q| q.contains("shop-availability")));

        // The runbooks name panels of this dashboard: every name they quote exists.
        let titles: Vec<String> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_owned())
            .collect();
        let (_, book) = &crate::runbook::generate(&set)[0];
        let line = book
            .lines()
            .find(|l| l.starts_with("- Dashboard"))
            .expect("a dashboard line");
        let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert!(quoted.len() >= 5, "{line}");
        for q in quoted {
            assert!(titles.iter().any(|t| t == q), "runbook names panel {q:?}");
        }
    }
}
