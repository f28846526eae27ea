//! The native spec, `version: tailwater/v1`: SLOs over the proxy's own metrics, so a user
//! names a route and an objective instead of writing PromQL.
//!
//! ```yaml
//! version: tailwater/v1
//! service: shop
//! labels: {team: payments}
//! period: 30d                  # optional; 30d default (28d etc. keep the workbook's budget shares)
//! selector: 'job="tailwater"'  # optional extra matchers on every query
//! traffic_guard: auto          # auto (default) | off | N events in the long window
//! slos:
//!   - name: availability
//!     objective: 99.9
//!     route: api               # optional; all routes when absent
//!     sli: availability        # errors = `dropped` (upstream 5xx/429, connect error, timeout, body error)
//!     shed: error              # error (default) | exclude: how shed (503) requests count
//!     rate_limited: exclude    # exclude (default) | error: how local rate-limit 429s count
//!   - name: latency
//!     objective: 99
//!     sli: latency
//!     threshold: 0.25          # seconds; one of the proxy's histogram bucket bounds
//!     alerting:                # optional; defaults: name ShopLatency, no extra labels
//!       page_alert: {labels: {severity: critical}}
//!       ticket_alert: {disable: true}
//! ```
//!
//! Availability counts requests from `tailwater_requests_total` by `outcome`: `success` and
//! `dropped` always; `shed` and `rate_limited` when their policy is `error` (a shed request is
//! a 503 the user saw; a rate-limited one is usually the client's own quota). Client faults
//! (`client_fault`, `cancelled`, `rejected`) never count. Latency counts
//! `tailwater_request_duration_seconds`: bad = `_count − _bucket{le=threshold}`. That
//! histogram has no outcome label yet, so it includes shed requests (issue 13, item 4).

use std::path::Path;

use serde::Deserialize;

use super::sloth::{AlertSpec, check_service, check_slo_basics};
use super::{Labels, first_bad_label, from_yaml, locate};
use crate::duration::PromDuration;
use crate::error::SloError;
use crate::model::{Alerting, Guard, MinEvents, NativeContext, Sli, Slo, SloSet, SpecFormat};
use crate::tier::Tier;

/// The `version` value of native specs.
pub const VERSION: &str = "tailwater/v1";

/// The proxy's request counter (labels `route`, `outcome`, `reason`, `tier`).
pub const REQUESTS_TOTAL: &str = "tailwater_requests_total";
/// The proxy's latency histogram (labels `route`, `le`).
pub const DURATION_SECONDS: &str = "tailwater_request_duration_seconds";
/// Upper bounds of the proxy's latency buckets, seconds (the proxy's `metrics::BUCKETS`;
/// a latency threshold must be one of them, since the SLI reads that bucket).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[allow(dead_code)]
    version: String,
    service: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    traffic_guard: Option<serde_norway::Value>,
    slos: Vec<SloSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloSpec {
    name: String,
    #[serde(default)]
    description: Option<String>,
    objective: f64,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    route: Option<String>,
    sli: Kind,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    shed: Option<Policy>,
    #[serde(default)]
    rate_limited: Option<Policy>,
    #[serde(default)]
    alerting: Option<AlertingSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Availability,
    Latency,
}

/// How a class of refused requests counts toward the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Policy {
    /// In the total and among the errors.
    Error,
    /// In neither.
    Exclude,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertingSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(default)]
    page_alert: AlertSpec,
    #[serde(default)]
    ticket_alert: AlertSpec,
}

/// Parses a native `tailwater/v1` spec.
pub fn parse(text: &str, file: &Path) -> Result<SloSet, SloError> {
    let spec: Spec = from_yaml(text, file)?;
    check_service(text, file, &spec.service, &spec.labels)?;
    let top = |key: &str| locate::key_line(text, key).unwrap_or(1);

    let period_days = match &spec.period {
        None => 30,
        Some(p) => {
            let d: PromDuration = p.parse().map_err(|e: crate::duration::DurationError| {
                SloError::invalid(file, top("period"), "period", e.to_string())
            })?;
            if !d.secs().is_multiple_of(86_400) || !(7..=366).contains(&(d.secs() / 86_400)) {
                return Err(SloError::invalid(
                    file,
                    top("period"),
                    "period",
                    "must be whole days between 7d and 366d, e.g. 30d or 28d",
                ));
            }
            (d.secs() / 86_400) as u32
        }
    };
    let selector = match &spec.selector {
        None => String::new(),
        Some(s) => {
            check_selector(s)
                .map_err(|m| SloError::invalid(file, top("selector"), "selector", m))?;
            s.trim().to_owned()
        }
    };
    let guard = match &spec.traffic_guard {
        None => Some(MinEvents::Auto),
        Some(serde_norway::Value::String(s)) if s == "auto" => Some(MinEvents::Auto),
        Some(serde_norway::Value::String(s)) if s == "off" => None,
        Some(serde_norway::Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
            n.as_u64().map(MinEvents::Fixed)
        }
        Some(_) => {
            return Err(SloError::invalid(
                file,
                top("traffic_guard"),
                "traffic_guard",
                "expected `auto`, `off` or a positive number of events",
            ));
        }
    };

    let mut slos = Vec::with_capacity(spec.slos.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in spec.slos.into_iter().enumerate() {
        let line = |path: &[&str]| locate::item_line(text, "slos", i, path);
        check_slo_basics(text, file, i, &s.name, s.objective, &s.labels)?;
        if !seen.insert(s.name.clone()) {
            return Err(SloError::invalid(
                file,
                line(&["name"]),
                format!("slos[{i}].name"),
                format!("`{}` is used by an earlier SLO", s.name),
            ));
        }
        if let Some(r) = &s.route
            && (r.is_empty() || r.contains(['"', '\\', '\n']))
        {
            return Err(SloError::invalid(
                file,
                line(&["route"]),
                format!("slos[{i}].route"),
                "must be a route name from the proxy's config (no quotes or backslashes)",
            ));
        }
        let mut matchers: Vec<String> = Vec::new();
        if !selector.is_empty() {
            matchers.push(selector.clone());
        }
        if let Some(r) = &s.route {
            matchers.push(format!("route=\"{r}\""));
        }
        let (sli, kind) = match s.sli {
            Kind::Availability => {
                if s.threshold.is_some() {
                    return Err(SloError::invalid(
                        file,
                        line(&["threshold"]),
                        format!("slos[{i}].threshold"),
                        "only latency SLOs take a threshold",
                    ));
                }
                let mut total = vec!["success", "dropped"];
                let mut bad = vec!["dropped"];
                if s.shed.unwrap_or(Policy::Error) == Policy::Error {
                    total.push("shed");
                    bad.push("shed");
                }
                if s.rate_limited.unwrap_or(Policy::Exclude) == Policy::Error {
                    total.push("rate_limited");
                    bad.push("rate_limited");
                }
                let q = |outcomes: &[&str]| {
                    let mut m = matchers.clone();
                    m.push(format!("outcome=~\"{}\"", outcomes.join("|")));
                    format!(
                        "sum(rate({REQUESTS_TOTAL}{{{}}}[{{{{.window}}}}]))",
                        m.join(",")
                    )
                };
                (
                    Sli::Events {
                        error_query: q(&bad),
                        total_query: q(&total),
                    },
                    "availability",
                )
            }
            Kind::Latency => {
                if s.shed.is_some() || s.rate_limited.is_some() {
                    return Err(SloError::invalid(
                        file,
                        line(&[if s.shed.is_some() {
                            "shed"
                        } else {
                            "rate_limited"
                        }]),
                        format!("slos[{i}].shed"),
                        "the latency histogram has no outcome label yet: shed/rate_limited apply to availability SLOs only",
                    ));
                }
                let Some(t) = s.threshold else {
                    return Err(SloError::invalid(
                        file,
                        line(&["sli"]),
                        format!("slos[{i}].threshold"),
                        "latency SLOs need a threshold in seconds",
                    ));
                };
                if !BUCKETS.contains(&t) {
                    return Err(SloError::invalid(
                        file,
                        line(&["threshold"]),
                        format!("slos[{i}].threshold"),
                        format!(
                            "{t} is not a bucket bound of {DURATION_SECONDS}; use one of {BUCKETS:?}"
                        ),
                    ));
                }
                let sel = matchers.join(",");
                let mut with_le = matchers.clone();
                // The proxy prints bounds with Rust's shortest formatting (`1`, `0.25`).
                with_le.push(format!("le=\"{t}\""));
                let count =
                    format!("sum(rate({DURATION_SECONDS}_count{{{sel}}}[{{{{.window}}}}]))");
                (
                    Sli::Events {
                        error_query: format!(
                            "({count}\n-\nsum(rate({DURATION_SECONDS}_bucket{{{}}}[{{{{.window}}}}])))",
                            with_le.join(",")
                        ),
                        total_query: count,
                    },
                    "latency",
                )
            }
        };
        let total_rate_query = match &sli {
            Sli::Events { total_query, .. } => total_query.clone(),
            Sli::Raw { .. } => String::new(),
        };
        let al = s.alerting.unwrap_or_default();
        let page =
            al.page_alert
                .into_config(file, &format!("slos[{i}].alerting.page_alert"), |k| {
                    line(&["alerting", "page_alert", k])
                })?;
        let ticket = al.ticket_alert.into_config(
            file,
            &format!("slos[{i}].alerting.ticket_alert"),
            |k| line(&["alerting", "ticket_alert", k]),
        )?;
        if let Some(bad) = first_bad_label(&al.labels.0) {
            return Err(SloError::invalid(
                file,
                line(&["alerting", "labels"]),
                format!("slos[{i}].alerting.labels"),
                format!("`{bad}` is not a Prometheus label name"),
            ));
        }
        let name = al
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| camel(&[&spec.service, &s.name]));
        let mut labels = spec.labels.0.clone();
        labels.extend(s.labels.0);
        slos.push(Slo {
            id: format!("{}-{}", spec.service, s.name),
            service: spec.service.clone(),
            name: s.name,
            description: s.description,
            objective: s.objective,
            labels,
            sli,
            alerting: Alerting {
                name,
                labels: al.labels.0,
                annotations: al.annotations.0,
                page,
                ticket,
            },
            guard: guard.map(|min_events| Guard {
                total_rate_query,
                min_events,
            }),
            context: Some(NativeContext {
                route: s.route,
                kind,
                threshold: s.threshold,
            }),
        });
    }
    Ok(SloSet {
        source: file.to_owned(),
        format: SpecFormat::Native,
        period: PromDuration::from_secs(u64::from(period_days) * 86_400),
        tiers: Tier::workbook(period_days),
        slos,
        ignored_plugins: Vec::new(),
    })
}

/// `shop` + `availability-v2` → `ShopAvailabilityV2`.
fn camel(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A selector is a comma-separated list of `label op "value"` matchers.
fn check_selector(s: &str) -> Result<(), String> {
    let bad =
        || format!("`{s}` is not a list of matchers like job=\"tailwater\",env=~\"prod|canary\"");
    let mut rest = s.trim();
    if rest.is_empty() || rest.contains(['{', '}']) {
        return Err(bad());
    }
    while !rest.is_empty() {
        let name_end = rest.find(['=', '!']).ok_or_else(bad)?;
        if !super::valid_label_name(rest[..name_end].trim()) {
            return Err(bad());
        }
        rest = &rest[name_end..];
        let op = ["=~", "!~", "!=", "="]
            .iter()
            .find(|op| rest.starts_with(*op))
            .ok_or_else(bad)?;
        rest = rest[op.len()..].trim_start();
        let body = rest.strip_prefix('"').ok_or_else(bad)?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.ok_or_else(bad)?;
        rest = body[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err(bad());
            }
        } else if !rest.is_empty() {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: tailwater/v1\nservice: shop\nselector: 'job=\"tw\"'\nslos:\n  - name: availability\n    objective: 99.9\n    route: api\n    sli: availability\n  - name: latency\n    objective: 99\n    sli: latency\n    threshold: 0.25\n";

    fn parse_ok(text: &str) -> SloSet {
        parse(text, Path::new("n.yaml")).unwrap()
    }

    #[test]
    fn availability_counts_shed_as_errors_and_rate_limits_not() {
        let set = parse_ok(GOOD);
        let Sli::Events {
            error_query,
            total_query,
        } = &set.slos[0].sli
        else {
            panic!("events")
        };
        assert_eq!(
            error_query,
            "sum(rate(tailwater_requests_total{job=\"tw\",route=\"api\",outcome=~\"dropped|shed\"}[{{.window}}]))"
        );
        assert_eq!(
            total_query,
            "sum(rate(tailwater_requests_total{job=\"tw\",route=\"api\",outcome=~\"success|dropped|shed\"}[{{.window}}]))"
        );
        assert_eq!(set.slos[0].alerting.name, "ShopAvailability");
        assert_eq!(
            set.slos[0].guard.as_ref().map(|g| g.min_events),
            Some(MinEvents::Auto)
        );

        let flipped = parse_ok(&GOOD.replace(
            "sli: availability",
            "sli: availability\n    shed: exclude\n    rate_limited: error",
        ));
        let Sli::Events { error_query, .. } = &flipped.slos[0].sli else {
            panic!("events")
        };
        assert!(
            error_query.contains("outcome=~\"dropped|rate_limited\""),
            "{error_query}"
        );
    }

    #[test]
    fn latency_reads_the_threshold_bucket() {
        let set = parse_ok(GOOD);
        let Sli::Events {
            error_query,
            total_query,
        } = &set.slos[1].sli
        else {
            panic!("events")
        };
        assert_eq!(
            total_query,
            "sum(rate(tailwater_request_duration_seconds_count{job=\"tw\"}[{{.window}}]))"
        );
        assert!(
            error_query.contains(
                "tailwater_request_duration_seconds_bucket{job=\"tw\",le=\"0.25\"}[{{.window}}]"
            ),
            "{error_query}"
        );
        let one = parse_ok(&GOOD.replace("threshold: 0.25", "threshold: 1"));
        let Sli::Events { error_query, .. } = &one.slos[1].sli else {
            panic!("events")
        };
        assert!(error_query.contains("le=\"1\""), "{error_query}");
    }

    #[test]
    fn period_and_guard_settings() {
        let set = parse_ok(&GOOD.replace("slos:", "period: 28d\ntraffic_guard: 500\nslos:"));
        assert_eq!(set.period.secs(), 28 * 86_400);
        assert_eq!(set.tiers[0].factor, 13.44);
        assert_eq!(
            set.slos[0].guard.as_ref().map(|g| g.min_events),
            Some(MinEvents::Fixed(500))
        );
        let off = parse_ok(&GOOD.replace("slos:", "traffic_guard: off\nslos:"));
        assert!(off.slos[0].guard.is_none());
    }

    #[test]
    fn every_bad_field_is_named_with_its_line() {
        let cases: Vec<(String, &str)> = vec![
            (
                GOOD.replace("threshold: 0.25", "threshold: 0.3"),
                "n.yaml:12: `slos[1].threshold`: 0.3 is not a bucket bound",
            ),
            (
                GOOD.replace("    threshold: 0.25\n", ""),
                "`slos[1].threshold`: latency SLOs need",
            ),
            (
                GOOD.replace("route: api", "route: api\n    threshold: 0.25"),
                "`slos[0].threshold`: only latency",
            ),
            (
                GOOD.replace("sli: latency", "sli: latency\n    shed: error"),
                "`slos[1].shed`",
            ),
            (GOOD.replace("sli: latency", "sli: speed"), "n.yaml:11:"),
            (
                GOOD.replace("route: api", "route: 'a\"b'"),
                "n.yaml:7: `slos[0].route`",
            ),
            (
                GOOD.replace("slos:", "period: 1h\nslos:"),
                "n.yaml:4: `period`: must be whole days",
            ),
            (
                GOOD.replace("slos:", "period: soon\nslos:"),
                "n.yaml:4: `period`",
            ),
            (
                GOOD.replace("slos:", "traffic_guard: 0\nslos:"),
                "n.yaml:4: `traffic_guard`",
            ),
            (
                GOOD.replace("slos:", "traffic_guard: sometimes\nslos:"),
                "`traffic_guard`",
            ),
            (
                GOOD.replace("'job=\"tw\"'", "'job=tw'"),
                "n.yaml:3: `selector`",
            ),
            (GOOD.replace("'job=\"tw\"'", "'{job=\"tw\"}'"), "`selector`"),
            (GOOD.replace("'job=\"tw\"'", "'job=\"tw\",'"), "`selector`"),
            (
                GOOD.replace("objective: 99\n", "objective: 0\n"),
                "n.yaml:10: `slos[1].objective`",
            ),
            (
                GOOD.replace("    route: api\n", "    route: api\n    colour: red\n"),
                "n.yaml:8:",
            ),
        ];
        for (text, want) in cases {
            let got = match parse(&text, Path::new("n.yaml")) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e.to_string(),
            };
            assert!(got.contains(want), "want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn selectors() {
        for ok in ["job=\"a\"", "job=\"a\", env=~\"p|q\"", "x!=\"a\\\"b\""] {
            assert!(check_selector(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "job",
            "job=a",
            "job=\"a",
            "1x=\"a\"",
            "job=\"a\" env=\"b\"",
        ] {
            assert!(check_selector(bad).is_err(), "{bad}");
        }
    }
}
