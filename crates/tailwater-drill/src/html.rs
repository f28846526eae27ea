//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no network
//! requests) with the side-by-side table, goodput per phase, time series of goodput, success
//! p99, wasted work and the proxy's limit, and goodput per criticality tier.

use std::fmt::Write as _;

use tailwater_chart::{Axis, BarChart, BarSeries, LineChart, Series, escape as esc};

use crate::model::{DrillReport, PhaseResult, SeriesPoint, SideResult};
use crate::table::{fmt_duration, fmt_multiplier, fmt_us, render_table};

const UNPROTECTED: &str = "#d62728";
const PROTECTED: &str = "#1f77b4";
const OFFERED: &str = "#999999";
const TIER_COLOURS: [&str; 4] = ["#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"];

/// One chart as a figure of the page.
fn figure(out: &mut String, svg: String) {
    let _ = writeln!(out, "<figure>{svg}</figure>");
}

/// A time-series chart of one drill side; the y axis reaches at least `y_floor`.
fn line_chart(title: &str, y_label: &str, y_floor: f64, lines: Vec<Series>) -> String {
    LineChart::new(
        title,
        Axis::linear("seconds since the side started"),
        Axis::linear(y_label).at_least(y_floor),
    )
    .size(760.0, 260.0)
    .extend(lines)
    .render()
}

fn pts(series: &[SeriesPoint], f: impl Fn(&SeriesPoint) -> Option<f64>) -> Vec<(f64, f64)> {
    series
        .iter()
        .filter_map(|p| f(p).map(|v| (p.t, v)))
        .collect()
}

fn cell_pair(out: &mut String, u: String, p: String) {
    let _ = write!(
        out,
        "<td class=\"u\">{}</td><td class=\"p\">{}</td>",
        esc(&u),
        esc(&p)
    );
}

fn table(out: &mut String, report: &DrillReport) {
    let _ = writeln!(
        out,
        "<table><thead><tr><th rowspan=\"2\">load</th><th rowspan=\"2\">offered/s</th><th colspan=\"2\">goodput/s (% of capacity)</th><th colspan=\"2\">success p50 / p99</th><th colspan=\"2\">shed</th><th colspan=\"2\">client timeouts</th><th colspan=\"2\">wasted work</th></tr><tr>{}</tr></thead><tbody>",
        "<th class=\"u\">unprotected</th><th class=\"p\">protected</th>".repeat(5)
    );
    let cap = report.capacity;
    for (u, p) in report
        .unprotected
        .phases
        .iter()
        .zip(&report.protected.phases)
    {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.0}</td>",
            esc(&fmt_multiplier(u.multiplier)),
            u.offered
        );
        let gp =
            |x: &PhaseResult| format!("{:.1} ({:.0}%)", x.goodput, 100.0 * x.goodput_share(cap));
        cell_pair(out, gp(u), gp(p));
        let lat = |x: &PhaseResult| {
            format!(
                "{} / {}",
                fmt_us(x.success_p50_us),
                fmt_us(x.success_p99_us)
            )
        };
        cell_pair(out, lat(u), lat(p));
        let shed = |x: &PhaseResult| format!("{} ({:.1}%)", x.shed, 100.0 * x.shed_share());
        cell_pair(out, shed(u), shed(p));
        cell_pair(out, u.timeouts.to_string(), p.timeouts.to_string());
        let wasted = |x: &PhaseResult| format!("{} ({:.0}%)", x.wasted, 100.0 * x.wasted_share());
        cell_pair(out, wasted(u), wasted(p));
        let _ = writeln!(out, "</tr>");
    }
    let _ = writeln!(out, "</tbody></table>");
}

fn tier_table(out: &mut String, side: &SideResult) {
    let Some(first) = side.phases.first() else {
        return;
    };
    let _ = write!(out, "<table><thead><tr><th>load</th>");
    for t in &first.tiers {
        let _ = write!(out, "<th>{}</th>", esc(&t.tier));
    }
    let _ = writeln!(out, "</tr></thead><tbody>");
    for p in &side.phases {
        let _ = write!(out, "<tr><td>{}</td>", esc(&fmt_multiplier(p.multiplier)));
        for t in &p.tiers {
            let _ = write!(
                out,
                "<td>{} / {} ({:.0}%)</td>",
                t.ok,
                t.requests,
                100.0 * t.success_share()
            );
        }
        let _ = writeln!(out, "</tr>");
    }
    let _ = writeln!(out, "</tbody></table>");
}

/// Renders the drill as one self-contained HTML page.
pub fn render_html(report: &DrillReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tailwater drill</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}}\
table{{border-collapse:collapse;margin:8px 0 16px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}}\
th:first-child,td:first-child{{text-align:left}}th.u,td.u{{background:#fbeaea}}th.p,td.p{{background:#e8f0f8}}\
pre{{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}}figure{{margin:12px 0}}figcaption{{font-weight:600;margin-bottom:4px}}\
</style></head><body>"
    );
    let _ = writeln!(out, "<h1>tailwater drill</h1>");
    let _ = writeln!(
        out,
        "<p>{} receives open-loop load at {} of its capacity, {} per phase, first <span style=\"color:{UNPROTECTED}\">straight (unprotected)</span>, then <span style=\"color:{PROTECTED}\">through the tailwater proxy (protected)</span>: {} limit, {} queue, criticality tiers. Clients give up after {}; goodput counts 2xx responses within that timeout. Wasted work is work the backend finished for clients that had already given up.</p>",
        esc(&match &report.target {
            None => format!(
                "A synthetic backend of {} workers × {} ({} service times; capacity {:.0} requests/s)",
                report.workers,
                fmt_duration(report.service_time),
                report.service_dist,
                report.capacity
            ),
            Some(url) => format!(
                "The target {url} (capacity {:.0} requests/s, {}; wasted work inside it is not measured)",
                report.capacity, report.capacity_source
            ),
        }),
        esc(&report
            .unprotected
            .phases
            .iter()
            .map(|p| fmt_multiplier(p.multiplier))
            .collect::<Vec<_>>()
            .join(", ")),
        esc(&report
            .unprotected
            .phases
            .first()
            .map(|p| fmt_duration(p.duration))
            .unwrap_or_default()),
        esc(&report.algorithm),
        esc(&report.queue),
        esc(&fmt_duration(report.timeout)),
    );
    let _ = writeln!(out, "<h2>Per phase</h2>");
    table(&mut out, report);

    let groups: Vec<String> = report
        .unprotected
        .phases
        .iter()
        .map(|p| fmt_multiplier(p.multiplier))
        .collect();
    figure(
        &mut out,
        BarChart::new(
            "Goodput per phase (2xx within the timeout, requests/s)",
            "offered load (× capacity)",
            "requests/s",
            groups.clone(),
        )
        .series(
            BarSeries::new(
                "unprotected",
                report
                    .unprotected
                    .phases
                    .iter()
                    .map(|p| p.goodput)
                    .collect(),
            )
            .colour(UNPROTECTED),
        )
        .series(
            BarSeries::new(
                "protected",
                report.protected.phases.iter().map(|p| p.goodput).collect(),
            )
            .colour(PROTECTED),
        )
        .reference(report.capacity, "capacity")
        .render(),
    );
    let _ = writeln!(out, "<h2>Over time</h2>");
    for side in report.sides() {
        let colour = match side.side {
            crate::Side::Unprotected => UNPROTECTED,
            crate::Side::Protected => PROTECTED,
        };
        figure(
            &mut out,
            line_chart(
                &format!(
                    "{}: offered load and goodput (requests/s)",
                    side.side.as_str()
                ),
                "requests/s",
                report.capacity,
                vec![
                    Series::new("offered", pts(&side.series, |p| Some(p.offered)))
                        .colour(OFFERED)
                        .dashed(true),
                    Series::new("goodput", pts(&side.series, |p| Some(p.goodput))).colour(colour),
                    Series::new("wasted work/s", pts(&side.series, |p| Some(p.wasted)))
                        .colour("#8c564b"),
                ],
            ),
        );
    }
    let p99 = |series: &[SeriesPoint]| {
        pts(series, |p| {
            (p.success_p99_ms > 0.0).then_some(p.success_p99_ms)
        })
    };
    figure(
        &mut out,
        line_chart(
            "Success latency p99 per interval (ms, from the intended send time)",
            "ms",
            report.timeout.as_secs_f64() * 1000.0,
            vec![
                Series::new("unprotected", p99(&report.unprotected.series)).colour(UNPROTECTED),
                Series::new("protected", p99(&report.protected.series)).colour(PROTECTED),
            ],
        ),
    );
    figure(
        &mut out,
        line_chart(
            "The proxy's adaptive concurrency limit",
            "limit",
            report.workers as f64,
            vec![
                Series::new(
                    "limit",
                    pts(&report.protected.series, |p| p.limit.map(|l| l as f64)),
                )
                .colour(PROTECTED),
            ],
        ),
    );
    let _ = writeln!(
        out,
        "<h2>Per criticality tier</h2><p>Requests answered 2xx within the timeout / requests sent, per tier (by send time).</p>"
    );
    for side in report.sides() {
        let names: Vec<String> = side
            .phases
            .first()
            .map(|p| p.tiers.iter().map(|t| t.tier.clone()).collect())
            .unwrap_or_default();
        let mut chart = BarChart::new(
            format!(
                "{}: share of each tier's requests answered 2xx within the timeout (%)",
                side.side.as_str()
            ),
            "offered load (× capacity)",
            "%",
            groups.clone(),
        );
        for (i, n) in names.iter().enumerate() {
            chart = chart.series(
                BarSeries::new(
                    n.as_str(),
                    side.phases
                        .iter()
                        .map(|p| p.tiers.get(i).map_or(0.0, |t| 100.0 * t.success_share()))
                        .collect(),
                )
                .colour(TIER_COLOURS[i % TIER_COLOURS.len()]),
            );
        }
        figure(&mut out, chart.render());
        tier_table(&mut out, side);
    }
    let _ = writeln!(
        out,
        "<h2>The table as printed</h2><pre>{}</pre>",
        esc(&render_table(report))
    );
    let _ = writeln!(out, "</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
