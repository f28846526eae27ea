//! Operational alerts that are not SLOs: the failures an SLO would see late or never,
//! each with a runbook, over tailwater-core's [`vocabulary`](tailwater_core::vocabulary)
//! and the rate limit service's own metrics (`tailwater_rls_*`).
//!
//! | alert | fires when | severity |
//! |---|---|---|
//! | `TailwaterProxyConfigReloadFailed` | a proxy reload was refused in the last 15 min | ticket |
//! | `TailwaterRlsConfigLoadFailed` | an RLS config load failed in the last 15 min | ticket |
//! | `TailwaterAccessLogDropping` | the proxy dropped access log lines in the last 10 min | ticket |
//! | `TailwaterRlsStoreFallback` | the RLS decided calls by its store's failure policy for 2 min | page |
//!
//! Why these: a refused reload keeps the old configuration, so nothing breaks until the
//! change that was meant to land is needed (Envoy and nginx both keep serving on a bad
//! reload; only a counter says so). Dropped access log lines are a hole in the audit trail
//! that no request notices. A store fallback means the rate limits are not enforced as
//! configured (fail open) or are enforced per instance (degraded): the limits protect
//! someone else, who sees it first.
//!
//! ```
//! let rules = tailwater_slo::ops::rules(None);
//! let yaml = rules.to_yaml().unwrap();
//! assert!(yaml.contains("TailwaterRlsStoreFallback"));
//! assert_eq!(tailwater_slo::ops::runbooks().len(), 4);
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tailwater_core::vocabulary as v;

use crate::rules::{Group, Rule, RuleFile};

/// The RLS's calls counter (by `code`).
pub const RLS_CALLS: &str = "tailwater_rls_calls_total";
/// The RLS's calls decided by the store's failure policy (by `store`).
pub const RLS_FALLBACK: &str = "tailwater_rls_fallback_calls_total";
/// The RLS's configuration loads (by `result`: `success`, `error`).
pub const RLS_CONFIG_LOADS: &str = "tailwater_rls_config_loads_total";
/// The RLS's per-rule counters (by `key`), `tailwater_rls_rule_<stat>`.
pub const RLS_RULE_STATS: [&str; 5] = [
    "tailwater_rls_rule_total_hits",
    "tailwater_rls_rule_over_limit",
    "tailwater_rls_rule_near_limit",
    "tailwater_rls_rule_within_limit",
    "tailwater_rls_rule_shadow_mode",
];

/// One operational alert and what its runbook says.
struct OpsAlert {
    name: &'static str,
    component: &'static str,
    severity: &'static str,
    expr: String,
    for_: Option<&'static str>,
    summary: &'static str,
    means: &'static str,
    look: &'static str,
    knobs: &'static str,
    rehearse: &'static str,
}

fn alerts() -> Vec<OpsAlert> {
    vec![
        OpsAlert {
            name: "TailwaterProxyConfigReloadFailed",
            component: "proxy",
            severity: "ticket",
            expr: format!(
                "sum by (instance) (increase({}{{result=\"failure\"}}[15m])) > 0",
                v::CONFIG_RELOADS.name
            ),
            for_: None,
            summary: "The proxy refused a configuration reload; it still runs the previous configuration.",
            means: "A reload (SIGHUP or `Proxy::reload_from_file`) found the file unreadable or invalid. The proxy kept the configuration it had: nothing is down, but the change that was meant to land did not. The proxy's log names the file, line and field.",
            look: "The proxy dashboard's \"Config reloads and build\" panel (reloads by result); `tailwater_config_last_reload_success_timestamp_seconds` says since when the running configuration is in force.",
            knobs: "Fix the file (`tailwater proxy --config FILE --check` prints file:line: field: message) and reload again.",
            rehearse: "Write a bad key into a copy of the config, point a test proxy at it and send SIGHUP: the counter `tailwater_config_reloads_total{result=\"failure\"}` goes up and this alert fires.",
        },
        OpsAlert {
            name: "TailwaterRlsConfigLoadFailed",
            component: "rls",
            severity: "ticket",
            expr: format!(
                "sum by (instance) (increase({RLS_CONFIG_LOADS}{{result=\"error\"}}[15m])) > 0"
            ),
            for_: None,
            summary: "The rate limit service refused a configuration load; it still enforces the previous rules.",
            means: "`tailwater rls` watches its YAML directory and reloads on change; a file that does not parse, or a rule that is invalid, is refused and the previous rules stay. New or changed limits are not in force.",
            look: "The RLS dashboard's \"Config loads\" panel; the RLS's log names the file and the error; `/rlconfig` on its HTTP listener shows the rules in force.",
            knobs: "Fix the YAML (envoyproxy/ratelimit's format) and save it again; the watcher picks it up at the next `--reload-interval`.",
            rehearse: "Save a YAML with a bad `unit` into the watched directory of a test `tailwater rls`: `tailwater_rls_config_loads_total{result=\"error\"}` goes up.",
        },
        OpsAlert {
            name: "TailwaterAccessLogDropping",
            component: "proxy",
            severity: "ticket",
            expr: format!(
                "sum by (instance) (increase({}[10m])) > 0",
                v::ACCESS_LOG_DROPPED.name
            ),
            for_: None,
            summary: "The proxy is dropping access log lines: its log writer cannot keep up, or writes fail.",
            means: "Access log lines go through a bounded queue to a writer thread so that a request never waits for the disk. When the writer falls behind (slow or full disk, a blocked stdout pipe) or a write fails, lines are dropped and counted. Requests are served as before; the log has holes.",
            look: "`rate(tailwater_access_log_dropped_total[5m])` against the request rate (the proxy dashboard's \"Requests by outcome\"); the disk of `[access_log] path` (space, latency); the proxy's log for `access log: write failed`.",
            knobs: "`[access_log] buffer_lines` and `buffer_bytes` (the queue holds at most both: a deeper queue rides out short stalls; long lines fill `buffer_bytes` first), a faster disk or a file instead of a piped stdout; the `text` format is shorter than `json`.",
            rehearse: "Point `[access_log] path` of a test proxy at a full filesystem (or `/dev/full`) and send load: the counter rises and this alert fires.",
        },
        OpsAlert {
            name: "TailwaterRlsStoreFallback",
            component: "rls",
            severity: "page",
            expr: format!("sum by (instance, store) (rate({RLS_FALLBACK}[5m])) > 0"),
            for_: Some("2m"),
            summary: "The rate limit service cannot reach its store and decides by its failure policy.",
            means: "Calls are being decided by `--failure-policy`: `open` admits them (the limits are not enforced), `degraded` enforces each instance's share locally (limits are approximate), `closed` refuses them (`UNAVAILABLE`, and the proxies answer by their own `[route.rls] failure_policy`). The store (Redis) is down, slow past `--redis-timeout`, or unreachable.",
            look: "The RLS dashboard's \"Store fallback\" and \"Calls by code\" panels; Redis's own health (`redis-cli ping`, latency); the proxies' 429/503 rates on routes with `[route.rls]`.",
            knobs: "Restore the store; `--redis-timeout` if Redis is only slow; `--failure-policy degraded` keeps approximate limits while Redis is away.",
            rehearse: "Stop the Redis of a test `tailwater rls --redis ...` under load (`tailwater drill` or `tailwater load` through a proxy route with `[route.rls]`): this alert fires after 2 minutes.",
        },
    ]
}

/// The operational alert rules; `runbook_url`, if given, prefixes each alert's runbook
/// file name ([`runbooks`]) in a `runbook_url` annotation.
pub fn rules(runbook_url: Option<&str>) -> RuleFile {
    let rules = alerts()
        .into_iter()
        .map(|a| {
            let mut labels = BTreeMap::new();
            labels.insert("severity".to_owned(), a.severity.to_owned());
            labels.insert("component".to_owned(), a.component.to_owned());
            let mut annotations = BTreeMap::new();
            annotations.insert("summary".to_owned(), a.summary.to_owned());
            if let Some(base) = runbook_url {
                annotations.insert(
                    "runbook_url".to_owned(),
                    format!("{base}{}", file_name(a.name)),
                );
            }
            Rule::Alert {
                alert: a.name.to_owned(),
                expr: a.expr,
                for_: a.for_.map(str::to_owned),
                labels,
                annotations,
            }
        })
        .collect();
    RuleFile {
        command: "tailwater slo ops",
        groups: vec![Group {
            name: "tailwater-ops".to_owned(),
            rules,
        }],
    }
}

/// The runbook file name of alert `name`.
pub fn file_name(name: &str) -> String {
    format!("{name}.md")
}

/// Every operational alert's runbook, as `(file name, markdown)`.
pub fn runbooks() -> Vec<(String, String)> {
    alerts()
        .into_iter()
        .map(|a| {
            let mut s = String::new();
            let _ = writeln!(s, "# {} ({}, {})\n", a.name, a.severity, a.component);
            let _ = writeln!(s, "{}\n", a.summary);
            let _ = writeln!(s, "## What it means\n\n{}\n", a.means);
            let _ = writeln!(s, "Fires on:\n\n```promql\n{}\n```\n", a.expr);
            if let Some(f) = a.for_ {
                let _ = writeln!(s, "for {f}.\n");
            }
            let _ = writeln!(s, "## What to look at\n\n{}\n", a.look);
            let _ = writeln!(s, "## Knobs\n\n{}\n", a.knobs);
            let _ = writeln!(s, "## Rehearse it\n\n{}", a.rehearse);
            (file_name(a.name), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alert_has_a_runbook_and_a_routing_label() {
        let file = rules(Some("https://runbooks/"));
        let books = runbooks();
        let Rule::Alert { .. } = &file.groups[0].rules[0] else {
            panic!("alerts only")
        };
        for r in &file.groups[0].rules {
            let Rule::Alert {
                alert,
                labels,
                annotations,
                ..
            } = r
            else {
                panic!("alerts only")
            };
            assert!(["page", "ticket"].contains(&labels["severity"].as_str()));
            let url = &annotations["runbook_url"];
            assert!(
                books.iter().any(|(n, _)| url.ends_with(n.as_str())),
                "{alert}"
            );
        }
        assert_eq!(books.len(), file.groups[0].rules.len());
    }

    #[test]
    fn the_header_names_the_command_that_generated_the_file() {
        let yaml = rules(None).to_yaml().expect("yaml");
        let header = yaml.lines().next().expect("a header");
        assert!(
            header.starts_with("# Generated by `tailwater slo ops` "),
            "{header}"
        );
        assert!(!yaml.contains("slo generate"), "{header}");
    }
}
