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
//!     sli: availability        # errors = `upstream_error` (5xx/429, connect error, body error) and `timeout`
//!     shed: error              # error (default) | exclude: how shed (503) requests count
//!     rate_limited: exclude    # exclude (default) | error: how local rate-limit 429s count
//!   - name: latency
//!     objective: 99
//!     sli: latency
//!     threshold: 0.25          # seconds; one of the proxy's histogram bucket bounds
//!     shed: exclude            # exclude (default for latency) | error: count shed 503s as slow
//!     alerting:                # optional; defaults: name ShopLatency, no extra labels
//!       page_alert: {labels: {severity: critical}}
//!       ticket_alert: {disable: true}
//! ```
//!
//! The metric names and `outcome` values are tailwater-core's
//! [`tailwater_core::vocabulary`], shared by the proxy and the tower layers.
//! Availability counts requests from `tailwater_requests_total` by `outcome`: `success`,
//! `upstream_error` and `timeout` always; `shed` and `rate_limited` when their policy is
//! `error` (a shed request is a 503 the user saw; a rate-limited one is usually the client's
//! own quota). Client faults (`client_fault`, `cancelled`, `rejected`) never count. Latency
//! reads `tailwater_request_duration_seconds` by `outcome`: the total is `success` and
//! `timeout` (plus `shed`/`rate_limited` when their policy is `error`), good is
//! `_bucket{outcome="success",le=threshold}`, bad = total − good. So a shed 503, answered
//! in microseconds, never counts as a fast success.

use std::path::Path;

use serde::Deserialize;
use tailwater_core::vocabulary::{self, outcome};

use super::sloth::{AlertingSpec, check_service, check_slo_basics};
use super::{Entry, Labels, from_yaml, locate};
use crate::duration::PromDuration;
use crate::error::SloError;
use crate::model::{Guard, MinEvents, NativeContext, Sli, Slo, SloSet, SpecFormat};

/// The `version` value of native specs.
pub const VERSION: &str = "tailwater/v1";

/// The request counter (labels `route`, `outcome`, `reason`, `tier`).
pub const REQUESTS_TOTAL: &str = vocabulary::REQUESTS.name;
/// The latency histogram (labels `route`, `outcome`, `le`).
pub const DURATION_SECONDS: &str = vocabulary::REQUEST_DURATION.name;
/// Upper bounds of the latency buckets, seconds (a latency threshold must be one of them,
/// since the SLI reads that bucket).
pub const BUCKETS: [f64; 14] = vocabulary::LATENCY_BUCKETS;

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
        check_slo_basics(text, file, i, &s.name, s.objective, &s.labels, &mut seen)?;
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
                let mut total = vec![outcome::SUCCESS];
                total.extend(outcome::UPSTREAM_FAILURES);
                let mut bad = outcome::UPSTREAM_FAILURES.to_vec();
                if s.shed.unwrap_or(Policy::Error) == Policy::Error {
                    total.push(outcome::SHED);
                    bad.push(outcome::SHED);
                }
                if s.rate_limited.unwrap_or(Policy::Exclude) == Policy::Error {
                    total.push(outcome::RATE_LIMITED);
                    bad.push(outcome::RATE_LIMITED);
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
                // Total: answers that reached the upstream (a timeout is slow by
                // definition), plus the refusals whose policy is `error` (counted slow).
                let mut counted = vec![outcome::SUCCESS, outcome::TIMEOUT];
                if s.shed.unwrap_or(Policy::Exclude) == Policy::Error {
                    counted.push(outcome::SHED);
                }
                if s.rate_limited.unwrap_or(Policy::Exclude) == Policy::Error {
                    counted.push(outcome::RATE_LIMITED);
                }
                let mut total_m = matchers.clone();
                total_m.push(format!("outcome=~\"{}\"", counted.join("|")));
                let sel = total_m.join(",");
                let mut with_le = matchers.clone();
                with_le.push(format!("outcome=\"{}\"", outcome::SUCCESS));
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
        let default_name = camel(&[&spec.service, &s.name]);
        let alerting =
            s.alerting
                .unwrap_or_default()
                .into_alerting(file, i, line, Some(default_name))?;
        let entry = Entry {
            name: s.name,
            description: s.description,
            objective: s.objective,
            labels: s.labels,
        };
        slos.push(Slo {
            guard: guard.map(|min_events| Guard {
                total_rate_query,
                min_events,
            }),
            context: Some(NativeContext {
                route: s.route,
                kind,
                threshold: s.threshold,
            }),
            ..entry.into_slo(&spec.service, &spec.labels, sli, alerting)
        });
    }
    Ok(SloSet::new(
        file,
        SpecFormat::Native,
        period_days,
        slos,
        Vec::new(),
    ))
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
            "sum(rate(tailwater_requests_total{job=\"tw\",route=\"api\",outcome=~\"upstream_error|timeout|shed\"}[{{.window}}]))"
        );
        assert_eq!(
            total_query,
            "sum(rate(tailwater_requests_total{job=\"tw\",route=\"api\",outcome=~\"success|upstream_error|timeout|shed\"}[{{.window}}]))"
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
            error_query.contains("outcome=~\"upstream_error|timeout|rate_limited\""),
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
            "sum(rate(tailwater_request_duration_seconds_count{job=\"tw\",outcome=~\"success|timeout\"}[{{.window}}]))"
        );
        // Good = successes within the threshold: a shed 503 is never a fast success.
        assert!(
            error_query.contains(
                "tailwater_request_duration_seconds_bucket{job=\"tw\",outcome=\"success\",le=\"0.25\"}[{{.window}}]"
            ),
            "{error_query}"
        );
        let strict = parse_ok(&GOOD.replace("threshold: 0.25", "threshold: 0.25\n    shed: error"));
        let Sli::Events { total_query, .. } = &strict.slos[1].sli else {
            panic!("events")
        };
        assert!(
            total_query.contains("outcome=~\"success|timeout|shed\""),
            "{total_query}"
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
