//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no network
//! requests) with the side-by-side table, goodput per phase, time series of goodput, success
//! p99, wasted work and the proxy's limit, and goodput per criticality tier.

use std::fmt::Write as _;

use crate::model::{DrillReport, PhaseResult, SeriesPoint, SideResult};
use crate::table::{fmt_duration, fmt_multiplier, fmt_us, render_table};

const UNPROTECTED: &str = "#d62728";
const PROTECTED: &str = "#1f77b4";
const OFFERED: &str = "#999999";
const TIER_COLOURS: [&str; 4] = ["#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line series for [`line_chart`].
struct Line<'a> {
    name: &'a str,
    colour: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const L: f64 = 60.0;
const R: f64 = 150.0;
const T: f64 = 20.0;
const B: f64 = 40.0;

fn axes(out: &mut String, title: &str, y_label: &str, x_max: f64, y_max: f64, x_label: &str) {
    let _ = writeln!(
        out,
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">",
        esc(title)
    );
    let (pw, ph) = (W - L - R, H - T - B);
    // Five divisions of a 1, 2, 2.5 or 5 × 10^k maximum are round numbers.
    for i in 0..=5 {
        let y = T + ph - ph * f64::from(i) / 5.0;
        let v = y_max * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            L + pw,
            L - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    if x_max > 0.0 {
        let step = x_step(x_max);
        let ticks = (x_max / step).round() as u32;
        for i in 0..=ticks {
            let v = step * f64::from(i);
            let x = L + pw * v / x_max;
            let _ = writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                T + ph + 16.0,
                trim(v)
            );
        }
    }
    let _ = writeln!(
        out,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\
<text x=\"14\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        L + pw / 2.0,
        H - 6.0,
        esc(x_label),
        T + ph / 2.0,
        T + ph / 2.0,
        esc(y_label)
    );
}

fn trim(v: f64) -> String {
    if v >= 100.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn legend(out: &mut String, entries: &[(&str, &str, bool)]) {
    for (i, (name, colour, dashed)) in entries.iter().enumerate() {
        let y = T + 10.0 + 18.0 * i as f64;
        let x = W - R + 12.0;
        let dash = if *dashed {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            x + 20.0,
            x + 26.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// A round tick step giving at most eight ticks up to `x`.
fn x_step(x: f64) -> f64 {
    [
        0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|s| x / s <= 8.0)
    .unwrap_or(1200.0)
}

fn line_chart(out: &mut String, title: &str, y_label: &str, lines: &[Line<'_>], y_floor: f64) {
    let x_data = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    // The x axis ends on a round tick.
    let step = x_step(x_data);
    let x_max = (x_data / step).ceil() * step;
    let y_max = nice_max(
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(y_floor, f64::max),
    );
    axes(
        out,
        title,
        y_label,
        x_max,
        y_max,
        "seconds since the side started",
    );
    let (pw, ph) = (W - L - R, H - T - B);
    for l in lines {
        if l.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|(x, y)| {
                let px = L + if x_max > 0.0 { pw * x / x_max } else { 0.0 };
                let py = T + ph - ph * (y / y_max).clamp(0.0, 1.0);
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let dash = if l.dashed {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"><title>{}</title></polyline>",
            l.colour,
            pts.join(" "),
            esc(l.name)
        );
    }
    let entries: Vec<(&str, &str, bool)> =
        lines.iter().map(|l| (l.name, l.colour, l.dashed)).collect();
    legend(out, &entries);
    let _ = writeln!(out, "</svg></figure>");
}

/// Grouped bars: one group per phase, one bar per series.
fn bar_chart(
    out: &mut String,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(&str, &str, Vec<f64>)],
    reference: Option<(f64, &str)>,
) {
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .chain(reference.map(|r| r.0 * 1.1))
            .fold(0.0, f64::max),
    );
    axes(out, title, y_label, 0.0, y_max, "offered load (× capacity)");
    let (pw, ph) = (W - L - R, H - T - B);
    let gw = pw / groups.len().max(1) as f64;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (g, name) in groups.iter().enumerate() {
        let gx = L + gw * g as f64;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            gx + gw / 2.0,
            T + ph + 16.0,
            esc(name)
        );
        for (i, (sname, colour, values)) in series.iter().enumerate() {
            let v = values.get(g).copied().unwrap_or(0.0);
            let h = ph * (v / y_max).clamp(0.0, 1.0);
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\"><title>{} {}: {:.1}</title></rect>",
                gx + gw * 0.1 + bw * i as f64,
                T + ph - h,
                bw - 2.0,
                esc(sname),
                esc(name),
                v
            );
        }
    }
    let mut entries: Vec<(&str, &str, bool)> = series.iter().map(|s| (s.0, s.1, false)).collect();
    if let Some((v, name)) = reference {
        let y = T + ph - ph * (v / y_max).clamp(0.0, 1.0);
        let _ = writeln!(
            out,
            "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{OFFERED}\" stroke-dasharray=\"5 3\"/>",
            L + pw
        );
        entries.push((name, OFFERED, true));
    }
    legend(out, &entries);
    let _ = writeln!(out, "</svg></figure>");
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
    bar_chart(
        &mut out,
        "Goodput per phase (2xx within the timeout, requests/s)",
        "requests/s",
        &groups,
        &[
            (
                "unprotected",
                UNPROTECTED,
                report
                    .unprotected
                    .phases
                    .iter()
                    .map(|p| p.goodput)
                    .collect(),
            ),
            (
                "protected",
                PROTECTED,
                report.protected.phases.iter().map(|p| p.goodput).collect(),
            ),
        ],
        Some((report.capacity, "capacity")),
    );
    let _ = writeln!(out, "<h2>Over time</h2>");
    for side in report.sides() {
        let colour = match side.side {
            crate::Side::Unprotected => UNPROTECTED,
            crate::Side::Protected => PROTECTED,
        };
        line_chart(
            &mut out,
            &format!(
                "{}: offered load and goodput (requests/s)",
                side.side.as_str()
            ),
            "requests/s",
            &[
                Line {
                    name: "offered",
                    colour: OFFERED,
                    dashed: true,
                    points: pts(&side.series, |p| Some(p.offered)),
                },
                Line {
                    name: "goodput",
                    colour,
                    dashed: false,
                    points: pts(&side.series, |p| Some(p.goodput)),
                },
                Line {
                    name: "wasted work/s",
                    colour: "#8c564b",
                    dashed: false,
                    points: pts(&side.series, |p| Some(p.wasted)),
                },
            ],
            report.capacity,
        );
    }
    line_chart(
        &mut out,
        "Success latency p99 per interval (ms, from the intended send time)",
        "ms",
        &[
            Line {
                name: "unprotected",
                colour: UNPROTECTED,
                dashed: false,
                points: pts(&report.unprotected.series, |p| {
                    (p.success_p99_ms > 0.0).then_some(p.success_p99_ms)
                }),
            },
            Line {
                name: "protected",
                colour: PROTECTED,
                dashed: false,
                points: pts(&report.protected.series, |p| {
                    (p.success_p99_ms > 0.0).then_some(p.success_p99_ms)
                }),
            },
        ],
        report.timeout.as_secs_f64() * 1000.0,
    );
    line_chart(
        &mut out,
        "The proxy's adaptive concurrency limit",
        "limit",
        &[Line {
            name: "limit",
            colour: PROTECTED,
            dashed: false,
            points: pts(&report.protected.series, |p| p.limit.map(|l| l as f64)),
        }],
        report.workers as f64,
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
        let series: Vec<(&str, &str, Vec<f64>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_str(),
                    TIER_COLOURS[i % TIER_COLOURS.len()],
                    side.phases
                        .iter()
                        .map(|p| p.tiers.get(i).map_or(0.0, |t| 100.0 * t.success_share()))
                        .collect(),
                )
            })
            .collect();
        bar_chart(
            &mut out,
            &format!(
                "{}: share of each tier's requests answered 2xx within the timeout (%)",
                side.side.as_str()
            ),
            "%",
            &groups,
            &series,
            None,
        );
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
    fn nice_max_rounds_up() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(201.0), 250.0);
        assert_eq!(nice_max(2000.0), 2000.0);
    }

    #[test]
    fn x_axis_ends_on_a_round_tick() {
        assert_eq!(x_step(31.0), 5.0);
        assert_eq!(x_step(8.5), 2.0);
        assert_eq!(x_step(1.0), 0.25);
        assert_eq!(trim(0.25), "0.25");
        assert_eq!(trim(12.5), "12.5");
        assert_eq!(trim(40.0), "40");
        assert_eq!(trim(250.0), "250");
    }

    #[test]
    fn escapes() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
