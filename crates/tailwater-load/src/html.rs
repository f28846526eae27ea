//! A self-contained HTML report: inline SVG charts, no scripts, no network requests.
//!
//! Three figures: latency percentiles over time (corrected p50/p90/p99/p99.9/max and the
//! uncorrected p99), throughput (target, achieved) and responses per status code over time,
//! and the percentile spectrum (corrected and uncorrected) on HdrHistogram's usual
//! `1/(1-percentile)` log axis. Each series is an SVG `<polyline>` with a `data-series`
//! attribute naming it; the report's JSON is embedded too (`<script type="application/json">`).

use std::fmt::Write as _;

use tailwater_chart::{Axis, LineChart, Series, escape as esc};

use crate::report::Report;

/// One chart in its own section of the page.
fn section(out: &mut String, chart: LineChart) {
    let _ = writeln!(out, "<section>{}</section>", chart.render());
}

fn spectrum(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let x = (1.0 / (1.0 - q)).log10();
        pts.push((
            x,
            h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
        ));
    }
    // The maximum at the right edge.
    let last_x = pts.last().map_or(0.0, |p| p.0).max(1.0) + 0.3;
    pts.push((last_x, h.max() as f64 / 1000.0));
    pts
}

/// Renders the report as one self-contained HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tailwater load report</title>\n<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:8px}}</style></head><body>"
    );
    let _ = writeln!(
        out,
        "<h1>tailwater load: {}</h1>\n<p class=\"meta\">tailwater {} · started {} · <code>{}</code></p>\n<pre>{}</pre>",
        esc(&report.target),
        esc(report.meta.version),
        esc(&report.meta.started_at_rfc3339()),
        esc(report.meta.command.as_deref().unwrap_or("")),
        esc(&report.summary())
    );
    let t = |i: &crate::report::IntervalReport| (i.start + i.duration).as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    let iv = &report.intervals;
    let lat = |name: &str, f: &dyn Fn(&crate::report::IntervalReport) -> u64, dashed| {
        Series::new(
            name,
            iv.iter()
                .filter(|i| i.corrected.count > 0)
                .map(|i| (t(i), ms(f(i))))
                .collect(),
        )
        .dashed(dashed)
    };
    let series = vec![
        lat("corrected p50", &|i| i.corrected.p50, false),
        lat("corrected p90", &|i| i.corrected.p90, false),
        lat("corrected p99", &|i| i.corrected.p99, false),
        lat("corrected p99.9", &|i| i.corrected.p99_9, false),
        lat("corrected max", &|i| i.corrected.max, false),
        lat("uncorrected p99", &|i| i.uncorrected.p99, true),
        lat("send lag p99", &|i| i.send_lag.p99, true),
    ];
    section(
        &mut out,
        LineChart::new(
            "Latency percentiles over time",
            Axis::linear("time (s)"),
            Axis::log("latency (ms, log)"),
        )
        .id("latency-over-time")
        .extend(series),
    );
    let mut series = vec![
        Series::new(
            "target rate",
            iv.iter().map(|i| (t(i), i.target_rate)).collect(),
        )
        .dashed(true),
        Series::new(
            "achieved rate",
            iv.iter().map(|i| (t(i), i.achieved_rate)).collect(),
        ),
    ];
    let mut codes: Vec<u16> = report.total.status.keys().copied().collect();
    codes.sort_unstable();
    for code in codes {
        series.push(Series::new(
            format!("status {code}"),
            iv.iter()
                .map(|i| {
                    let n = i.status.get(&code).copied().unwrap_or(0);
                    (t(i), n as f64 / i.duration.as_secs_f64().max(1e-9))
                })
                .collect(),
        ));
    }
    for kind in report.total.errors.keys() {
        series.push(
            Series::new(
                format!("error {kind}"),
                iv.iter()
                    .map(|i| {
                        let n = i.errors.get(kind).copied().unwrap_or(0);
                        (t(i), n as f64 / i.duration.as_secs_f64().max(1e-9))
                    })
                    .collect(),
            )
            .dashed(true),
        );
    }
    section(
        &mut out,
        LineChart::new(
            "Throughput and status codes over time",
            Axis::linear("time (s)"),
            Axis::linear("per second"),
        )
        .id("throughput-over-time")
        .extend(series),
    );
    let series = vec![
        Series::new("corrected", spectrum(&report.total.corrected)),
        Series::new("uncorrected", spectrum(&report.total.uncorrected)).dashed(true),
    ];
    let pct_label = |x: f64| -> String {
        let q = 1.0 - 1.0 / 10f64.powf(x);
        format!("{}%", (q * 100.0 * 1000.0).round() / 1000.0)
    };
    section(
        &mut out,
        LineChart::new(
            "Latency by percentile (HdrHistogram spectrum)",
            Axis::linear("percentile").tick_label(pct_label),
            Axis::log("latency (ms, log)"),
        )
        .id("percentile-spectrum")
        .extend(series),
    );
    let _ = writeln!(
        out,
        "<h2>Percentile spectrum (.hgrm, corrected, ms)</h2><pre id=\"hgrm\">{}</pre>",
        esc(&report.hgrm())
    );
    let json = report.to_json().to_string().replace("</", "<\\/");
    let _ = writeln!(
        out,
        "<script type=\"application/json\" id=\"report-data\">{json}</script>\n</body></html>"
    );
    out
}
