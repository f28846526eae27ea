//! The text table: one side-by-side block per phase, then the goodput summary.

use std::fmt::Write as _;

use crate::model::{DrillReport, PhaseResult};

/// Formats microseconds as `850us`, `12.3ms` or `1.25s`.
pub(crate) fn fmt_us(us: u64) -> String {
    let v = us as f64;
    if us == 0 {
        "-".to_string()
    } else if v >= 1e6 {
        format!("{:.2}s", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}ms", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}ms", v / 1e3)
    } else {
        format!("{us}us")
    }
}

pub(crate) use tailwater_core::duration::format as fmt_duration;

pub(crate) fn fmt_multiplier(m: f64) -> String {
    if (m - m.round()).abs() < 1e-9 {
        format!("{m:.0}×")
    } else {
        format!("{m}×")
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// One line per metric: label, unprotected, protected.
fn row(out: &mut String, label: &str, u: String, p: String) {
    let _ = writeln!(out, "  {label:<26} {u:>20} {p:>20}");
}

fn block(out: &mut String, capacity: f64, external: bool, u: &PhaseResult, p: &PhaseResult) {
    row(
        out,
        "goodput",
        format!("{:.1}/s ({})", u.goodput, pct(u.goodput_share(capacity))),
        format!("{:.1}/s ({})", p.goodput, pct(p.goodput_share(capacity))),
    );
    row(
        out,
        "success p50 / p99",
        format!(
            "{} / {}",
            fmt_us(u.success_p50_us),
            fmt_us(u.success_p99_us)
        ),
        format!(
            "{} / {}",
            fmt_us(p.success_p50_us),
            fmt_us(p.success_p99_us)
        ),
    );
    row(
        out,
        "shed (503/429)",
        format!("{} ({:.1}%)", u.shed, 100.0 * u.shed_share()),
        format!("{} ({:.1}%)", p.shed, 100.0 * p.shed_share()),
    );
    row(
        out,
        "client timeouts",
        u.timeouts.to_string(),
        p.timeouts.to_string(),
    );
    if u.errors + u.other_status + p.errors + p.other_status > 0 {
        row(
            out,
            "other errors / statuses",
            format!("{} / {}", u.errors, u.other_status),
            format!("{} / {}", p.errors, p.other_status),
        );
    }
    if !external {
        row(
            out,
            "wasted work (of backend)",
            format!("{} ({})", u.wasted, pct(u.wasted_share())),
            format!("{} ({})", p.wasted, pct(p.wasted_share())),
        );
    }
    for (tu, tp) in u.tiers.iter().zip(&p.tiers) {
        row(
            out,
            &format!("ok {}", tu.tier),
            format!("{}/{} ({})", tu.ok, tu.requests, pct(tu.success_share())),
            format!("{}/{} ({})", tp.ok, tp.requests, pct(tp.success_share())),
        );
    }
}

/// Renders the drill as text: a header, one side-by-side block per phase, and a summary of
/// goodput per phase.
pub fn render_table(report: &DrillReport) -> String {
    let mut out = String::new();
    let cap = report.capacity;
    match &report.target {
        None => {
            let _ = writeln!(
                out,
                "tailwater drill: backend {} workers × {} ({} service times) = {:.0} req/s capacity; clients time out after {}, {} connections",
                report.workers,
                fmt_duration(report.service_time),
                report.service_dist,
                cap,
                fmt_duration(report.timeout),
                report.connections
            );
        }
        Some(url) => {
            let _ = writeln!(
                out,
                "tailwater drill: target {url}, capacity {cap:.0} req/s, {}; clients time out after {}, {} connections (wasted work inside your service is not measured)",
                report.capacity_source,
                fmt_duration(report.timeout),
                report.connections
            );
        }
    }
    let mix: Vec<String> = report
        .mix
        .iter()
        .map(|(t, p)| format!("{t} {p:.0}%"))
        .collect();
    let _ = writeln!(
        out,
        "protected = through the tailwater proxy: {} limit, {} queue, criticality tiers; x-criticality mix: {}",
        report.algorithm,
        report.queue,
        mix.join(", ")
    );
    let phases = report
        .unprotected
        .phases
        .iter()
        .zip(&report.protected.phases);
    for (u, p) in phases {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{} capacity: {:.0} req/s offered for {}",
            fmt_multiplier(u.multiplier),
            u.offered,
            fmt_duration(u.duration)
        );
        let _ = writeln!(
            out,
            "  {:<26} {:>20} {:>20}",
            "", "unprotected", "protected"
        );
        block(&mut out, cap, report.target.is_some(), u, p);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Goodput (2xx within the timeout, over the steady part of each phase), requests/s and % of capacity:"
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>10} {:>18} {:>18}",
        "load", "offered/s", "unprotected", "protected"
    );
    for (u, p) in report
        .unprotected
        .phases
        .iter()
        .zip(&report.protected.phases)
    {
        let _ = writeln!(
            out,
            "  {:<8} {:>10.0} {:>18} {:>18}",
            fmt_multiplier(u.multiplier),
            u.offered,
            format!("{:.1} ({})", u.goodput, pct(u.goodput_share(cap))),
            format!("{:.1} ({})", p.goodput, pct(p.goodput_share(cap))),
        );
    }
    if let Some(px) = &report.protected.proxy {
        let _ = writeln!(
            out,
            "Proxy: limit {}..{} (final {}), peak in flight {}, {} admitted, {} shed.",
            px.min_limit, px.max_limit, px.final_limit, px.peak_in_flight, px.admitted, px.shed
        );
    }
    for side in report.sides() {
        if side.wasted_after_end > 0 || side.abandoned > 0 || side.delayed_by_cap > 0 {
            let _ = writeln!(
                out,
                "{}: {} requests were still in the backend when the load stopped (counted as wasted in the last phase); {} abandoned; {} sent late by the load generator's bound.",
                side.side.as_str(),
                side.wasted_after_end,
                side.abandoned,
                side.delayed_by_cap
            );
        }
    }
    if let Some(mean) = report.protected.backend_service_mean {
        let effective = report.workers as f64 / mean.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "Backend measured: {:.1}ms per request on average, so about {:.0} req/s effective capacity (nominal {:.0}).",
            mean.as_secs_f64() * 1000.0,
            effective,
            cap
        );
    }
    let _ = writeln!(
        out,
        "Shed = answered 503/429 at once: by the proxy (protected) or by the backend's full queue (unprotected)."
    );
    match report.recovery {
        Some(Some(t)) => {
            let _ = writeln!(
                out,
                "After the unprotected side the target took {:.1}s to answer promptly again (probed at 20 req/s); the protected side started then.",
                t.as_secs_f64()
            );
        }
        Some(None) => {
            let _ = writeln!(
                out,
                "After the unprotected side the target had not recovered within {}s; the protected side started anyway and may carry its backlog.",
                crate::knee::RECOVERY_LIMIT.as_secs()
            );
        }
        None => {}
    }
    let balanced = report.sides().iter().all(|s| s.outcomes_balance());
    let _ = writeln!(
        out,
        "Every request has exactly one outcome: {}. Drill wall time {:.1}s.",
        if balanced { "yes" } else { "NO (see JSON)" },
        report.elapsed.as_secs_f64()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(fmt_us(0), "-");
        assert_eq!(fmt_us(850), "850us");
        assert_eq!(fmt_us(1_250), "1.2ms");
        assert_eq!(fmt_us(41_000), "41ms");
        assert_eq!(fmt_us(1_250_000), "1.25s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(fmt_duration(Duration::from_millis(40)), "40ms");
        assert_eq!(fmt_duration(Duration::from_secs(6)), "6s");
        assert_eq!(fmt_multiplier(0.5), "0.5×");
        assert_eq!(fmt_multiplier(10.0), "10×");
    }
}
