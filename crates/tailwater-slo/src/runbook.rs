//! A markdown runbook per generated alert: what it means (its tiers, thresholds and the
//! budget spent when it fires), what to look at, the knobs to turn and how to rehearse it.

use std::fmt::Write as _;

use crate::duration::PromDuration;
use crate::model::{Sli, Slo, SloSet, expand};
use crate::rules::{sli_record, tier_condition};
use crate::tier::Severity;

/// The runbook's file name: `<alert>-<sloth_id>-<severity>.md` ([`Slo::runbook_file`],
/// which the rules name in their `runbook_url`).
pub fn file_name(slo: &Slo, sev: Severity) -> String {
    slo.runbook_file(sev)
}

/// Every runbook of the set as `(file name, markdown)`, one per enabled alert.
pub fn generate(set: &SloSet) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for slo in &set.slos {
        for sev in [Severity::Page, Severity::Ticket] {
            if slo.alert(sev).disable || !set.tiers.iter().any(|t| t.severity == sev) {
                continue;
            }
            out.push((file_name(slo, sev), render(set, slo, sev)));
        }
    }
    out
}

fn hours(secs: f64) -> String {
    if secs >= 2.0 * 86_400.0 {
        format!("{:.1} days", secs / 86_400.0)
    } else {
        format!("{:.1} hours", secs / 3600.0)
    }
}

/// A query over the last 5 minutes, on one line, for pasting into a graph.
fn one_line(query: &str) -> String {
    let q = expand(query.trim(), PromDuration::from_secs(300));
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One runbook.
pub fn render(set: &SloSet, slo: &Slo, sev: Severity) -> String {
    let mut s = String::new();
    let budget = slo.budget();
    let days = set.period.secs() / 86_400;
    let _ = writeln!(
        s,
        "# {} ({sev}) — {} / {}\n",
        slo.alerting.name, slo.service, slo.name
    );
    if let Some(d) = &slo.description {
        let _ = writeln!(s, "{d}\n");
    }
    let _ = writeln!(s, "## What it means\n");
    let _ = writeln!(
        s,
        "The SLO is {}% over {days} days: an error budget of {budget} of events ({:.1} minutes of total outage). \
This alert fires when the error ratio is above `factor × {budget}` over **both** windows of one of these tiers:\n",
        slo.objective,
        budget * set.period.as_f64() / 60.0
    );
    let _ = writeln!(
        s,
        "| Long window | Short window | Burn factor | Error ratio above | Budget spent when it fires | Budget gone at this rate in |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for t in set.tiers.iter().filter(|t| t.severity == sev) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4}% | {:.1}% | {} |",
            t.long,
            t.short,
            t.factor,
            t.factor * budget * 100.0,
            t.budget_consumed(set.period) * 100.0,
            hours(t.exhaustion_secs(set.period))
        );
    }
    let _ = writeln!(
        s,
        "\nThe short window makes it resolve within about one short window after errors stop. {}",
        match sev {
            Severity::Page =>
                "A page means the budget is going fast: act now. While it fires, the ticket alert of this SLO is inhibited if Alertmanager has the generated inhibition rule (`tailwater slo generate --inhibit FILE`).",
            Severity::Ticket =>
                "A ticket means a slow, steady burn: it will exhaust the budget within days, not hours. Fix it this week.",
        }
    );
    if let Some(g) = &slo.guard {
        let _ = writeln!(
            s,
            "\nLow-traffic guard: a tier fires only when its long window holds at least {} events \
(`slo:sli_total:rate<long> × long`), so a few errors on a quiet service do not page.",
            match g.min_events {
                crate::model::MinEvents::Auto => "`ceil(1 / (factor × budget))`".to_owned(),
                crate::model::MinEvents::Fixed(n) => n.to_string(),
            },
        );
    }
    let _ = writeln!(s, "\n## Look at\n");
    let _ = writeln!(
        s,
        "- The SLI per window: `{}{{sloth_id=\"{}\"}}` (and the 1h/6h/1d/3d windows); burn rate now: `slo:current_burn_rate:ratio{{sloth_id=\"{}\"}}`; budget left this period: `slo:period_error_budget_remaining:ratio{{sloth_id=\"{}\"}}`.",
        sli_record(
            set.tiers
                .iter()
                .map(|t| t.short)
                .min()
                .unwrap_or(set.period)
        ),
        slo.id,
        slo.id,
        slo.id
    );
    match &slo.sli {
        Sli::Events {
            error_query,
            total_query,
        } => {
            let _ = writeln!(s, "- Bad events: `{}`", one_line(error_query));
            let _ = writeln!(s, "- All events: `{}`", one_line(total_query));
        }
        Sli::Raw { error_ratio_query } => {
            let _ = writeln!(
                s,
                "- Error ratio: `{}`",
                error_ratio_query.replace('\n', " ")
            );
        }
    }
    if let Some(ctx) = &slo.context {
        let route = ctx
            .route
            .as_deref()
            .map(|r| format!("{{route=\"{r}\"}}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- Proxy: `sum by (outcome, reason) (rate(tailwater_requests_total{route}[5m]))` tells upstream failures (`upstream_error`: upstream_status, upstream_error, body_error; `timeout`) from shedding (`shed`: the limiter's reason) and rate limiting.\n\
- Limiter: `tailwater_limiter_limit{route}`, `tailwater_limiter_in_flight{route}`, `tailwater_limiter_queue_depth{route}`; the proxy's `/status` page shows the same, and each route's `budget.budget_left` (the in-process burn rates).\n\
- Dashboard (`tailwater slo dashboard --proxy-config FILE --spec SPEC`): panels \"Requests by outcome\", \"Refused by reason\", \"Latency of successes (p50, p99)\", \"Concurrency limit, in flight, queue\", \"Burn rate (in process)\" and the SLO row."
        );
        let _ = writeln!(s, "\n## Knobs\n");
        if ctx.kind == "latency" {
            let _ = writeln!(
                s,
                "- Latency above {}s: check the upstream first; if the limit rose while latency grew, lower `[route.limit]` bounds or shorten the queue (`queue` capacity / timeout) so excess load is shed rather than queued.",
                ctx.threshold.unwrap_or_default()
            );
        } else {
            let _ = writeln!(
                s,
                "- Mostly `upstream_error` or `timeout`: the upstream is failing. Roll back or fail over; the proxy cannot fix it, but a lower limit keeps a struggling upstream from collapse.\n\
- Mostly `shed`: the proxy protects a saturated upstream. Add capacity, or reserve it for critical tiers (tier policy), or accept shedding by setting `shed: exclude` in the SLO if shed load is not this SLO's concern.\n\
- Reload a changed config with SIGHUP (`tailwater proxy --config FILE --check` first)."
            );
        }
    } else {
        let _ = writeln!(
            s,
            "\n## Knobs\n\n- Find which dependency or release moved the bad events, and roll back or fail over."
        );
    }
    let _ = writeln!(s, "\n## Rehearse\n");
    let first = set.tiers.iter().find(|t| t.severity == sev);
    if let Some(t) = first {
        let r = crate::tier::round_sig((t.factor * budget * 2.0).min(1.0));
        let _ = writeln!(
            s,
            "- Offline: `tailwater slo eval --objective {} --error-rate {r} --duration {}` prints when each tier fires and resets and the budget spent.",
            slo.objective, t.long
        );
    }
    let _ = writeln!(
        s,
        "- Live: `tailwater drill` drives the proxy from 0.5× to 10× capacity; watch this alert's windows move.\n\n## Condition\n\n```promql\n{}\n```",
        set.tiers
            .iter()
            .filter(|t| t.severity == sev)
            .map(|t| tier_condition(slo, t))
            .collect::<Vec<_>>()
            .join("\nor ignoring (sloth_window)\n")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    #[test]
    fn one_runbook_per_enabled_alert_with_the_tier_table() {
        let text = "version: tailwater/v1\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli: availability\n  - name: latency\n    objective: 99\n    sli: latency\n    threshold: 0.5\n    alerting: {ticket_alert: {disable: true}}\n";
        let set = spec::parse(text, "n.yaml").unwrap();
        let books = generate(&set);
        let names: Vec<&str> = books.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ShopAvailability-shop-availability-page.md",
                "ShopAvailability-shop-availability-ticket.md",
                "ShopLatency-shop-latency-page.md"
            ]
        );
        let page = &books[0].1;
        assert!(
            page.contains("| 1h | 5m | 14.4 | 1.4400% | 2.0% | 2.1 days |"),
            "{page}"
        );
        assert!(
            page.contains("| 6h | 30m | 6 | 0.6000% | 5.0% | 5.0 days |"),
            "{page}"
        );
        assert!(page.contains("43.2 minutes of total outage"), "{page}");
        assert!(books[2].1.contains("Latency above 0.5s"));
        assert!(
            page.contains(
                "- Bad events: `sum(rate(tailwater_requests_total{outcome=~\"upstream_error|timeout|shed\"}[5m]))`"
            ),
            "{page}"
        );
        assert!(page.contains("--error-rate 0.0288 --duration 1h"), "{page}");
    }
}
