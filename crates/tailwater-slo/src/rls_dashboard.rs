//! A Grafana dashboard for the rate limit service (`tailwater rls`), over the metrics its
//! `/metrics` serves (envoyproxy/ratelimit's per-rule stats plus calls, store fallbacks
//! and config loads; their names are in [`crate::ops`]).
//!
//! Every panel's queries are PromQL filtered by the dashboard's `key` variable (a regex
//! over the rule stat keys, `domain.key_value...`); `scripts/check-dashboard-rls.sh`
//! evaluates every query against a real Prometheus scraping a real `tailwater rls` under
//! load.
//!
//! ```
//! let d = tailwater_slo::rls_dashboard::rls();
//! let queries = tailwater_slo::dashboard::queries(&d);
//! assert!(queries.iter().any(|q| q.contains("tailwater_rls_rule_over_limit")));
//! ```

use serde_json::{Value, json};

use crate::dashboard::{Panel, document};
use crate::ops::{RLS_CALLS, RLS_CONFIG_LOADS, RLS_FALLBACK};

/// The dashboard's `uid`.
pub const UID: &str = "tailwater-rls";

fn panels() -> Vec<Panel> {
    let k = "key=~\"$key\"";
    let rule = |stat: &str| format!("tailwater_rls_rule_{stat}");
    vec![
        Panel {
            title: "Calls by code",
            unit: "reqps",
            description: "ShouldRateLimit calls answered: ok, over_limit, invalid (INVALID_ARGUMENT), unavailable (store failed closed).",
            targets: vec![(
                format!("sum by (code) (rate({RLS_CALLS}[$__rate_interval]))"),
                "{{code}}",
            )],
        },
        Panel {
            title: "Over-limit ratio of calls",
            unit: "percentunit",
            description: "The share of calls answered OVER_LIMIT.",
            targets: vec![(
                format!(
                    "sum(rate({RLS_CALLS}{{code=\"over_limit\"}}[$__rate_interval])) / clamp_min(sum(rate({RLS_CALLS}[$__rate_interval])), 1e-9)"
                ),
                "over limit",
            )],
        },
        Panel {
            title: "Hits by rule: within and over the limit",
            unit: "reqps",
            description: "Per stat key (envoyproxy/ratelimit's within_limit and over_limit).",
            targets: vec![
                (
                    format!(
                        "sum by (key) (rate({}{{{k}}}[$__rate_interval]))",
                        rule("within_limit")
                    ),
                    "within {{key}}",
                ),
                (
                    format!(
                        "sum by (key) (rate({}{{{k}}}[$__rate_interval]))",
                        rule("over_limit")
                    ),
                    "over {{key}}",
                ),
            ],
        },
        Panel {
            title: "Near-limit hits by rule",
            unit: "reqps",
            description: "Admitted hits past 80 % of the limit: the rules about to bind.",
            targets: vec![(
                format!(
                    "sum by (key) (rate({}{{{k}}}[$__rate_interval]))",
                    rule("near_limit")
                ),
                "{{key}}",
            )],
        },
        Panel {
            title: "Top rules by hits",
            unit: "reqps",
            description: "The ten stat keys asked about most.",
            targets: vec![(
                format!(
                    "topk(10, sum by (key) (rate({}{{{k}}}[$__rate_interval])))",
                    rule("total_hits")
                ),
                "{{key}}",
            )],
        },
        Panel {
            title: "Shadow-mode hits",
            unit: "reqps",
            description: "Over-limit hits that shadow mode admitted: what the rule would refuse if enforced.",
            targets: vec![(
                format!(
                    "sum by (key) (rate({}{{{k}}}[$__rate_interval]))",
                    rule("shadow_mode")
                ),
                "{{key}}",
            )],
        },
        Panel {
            title: "Store fallback",
            unit: "reqps",
            description: "Calls decided by the store's failure policy (Redis down or slow): non-zero means the limits are not enforced as configured (TailwaterRlsStoreFallback).",
            targets: vec![(
                format!("sum by (store) (rate({RLS_FALLBACK}[$__rate_interval]))"),
                "{{store}}",
            )],
        },
        Panel {
            title: "Config loads",
            unit: "short",
            description: "Configuration loads in the last hour by result; an error keeps the previous rules (TailwaterRlsConfigLoadFailed).",
            targets: vec![(
                format!("sum by (result) (increase({RLS_CONFIG_LOADS}[1h]))"),
                "{{result}}",
            )],
        },
    ]
}

/// The RLS dashboard.
pub fn rls() -> Value {
    document(
        UID,
        "tailwater rate limit service",
        json!({
            "name": "key",
            "type": "textbox",
            "label": "stat key (regex)",
            "query": ".*",
            "current": {"text": ".*", "value": ".*"},
        }),
        &panels(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_is_over_an_rls_metric() {
        let d = rls();
        let qs = crate::dashboard::queries(&d);
        assert_eq!(qs.len(), 9);
        let known = [RLS_CALLS, RLS_FALLBACK, RLS_CONFIG_LOADS];
        for q in &qs {
            assert!(
                known.iter().any(|m| q.contains(m))
                    || crate::ops::RLS_RULE_STATS.iter().any(|m| q.contains(m)),
                "{q}"
            );
        }
    }
}
