//! A self-contained HTML report: inline SVG charts, no scripts, no network requests.
//!
//! Three figures: latency percentiles over time (corrected p50/p90/p99/p99.9/max and the
//! uncorrected p99), throughput (target, achieved) and responses per status code over time,
//! and the percentile spectrum (corrected and uncorrected) on HdrHistogram's usual
//! `1/(1-percentile)` log axis. Each series is an SVG `<polyline>` with a `data-series`
//! attribute naming it; the report's JSON is embedded too (`<script type="application/json">`).

use std::fmt::Write as _;

use crate::report::Report;

const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

struct Axis {
    label: &'static str,
    log: bool,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        return (a..=b).map(|e| 10f64.powi(e)).collect();
    }
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).floor() * step;
    let mut out = Vec::new();
    while t <= hi + step * 0.001 {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 1.0 {
        format!("{}", (v * 100.0).round() / 100.0)
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

#[allow(clippy::too_many_arguments)]
fn chart(
    out: &mut String,
    id: &str,
    title: &str,
    x: Axis,
    y: Axis,
    series: &[Series],
    x_labels: Option<&dyn Fn(f64) -> String>,
) {
    let (w, h) = (900.0, 360.0);
    let (ml, mr, mt, mb) = (70.0, 170.0, 30.0, 45.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let tx = |v: f64, log: bool| if log { v.max(1e-9).log10() } else { v };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(a, b)| a.is_finite() && b.is_finite() && (!y.log || *b > 0.0))
        .collect();
    let _ = writeln!(out, "<section><h2>{}</h2>", esc(title));
    if all.is_empty() {
        let _ = writeln!(out, "<p id=\"{id}\">No data.</p></section>");
        return;
    }
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for (a, b) in &all {
        x0 = x0.min(*a);
        x1 = x1.max(*a);
        y0 = y0.min(*b);
        y1 = y1.max(*b);
    }
    // Time and percentile axes start at 0; linear y axes too.
    x0 = x0.min(0.0);
    if !y.log {
        y0 = y0.min(0.0);
    }
    if y.log {
        y0 = 10f64.powf(y0.log10().floor());
        y1 = 10f64.powf(y1.log10().ceil());
        if y1 <= y0 {
            y1 = y0 * 10.0;
        }
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let (ty0, ty1) = (tx(y0, y.log), tx(y1, y.log));
    let px = |v: f64| ml + (v - x0) / (x1 - x0) * pw;
    let py = |v: f64| mt + ph - (tx(v, y.log) - ty0) / (ty1 - ty0) * ph;
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        out,
        "<rect x=\"{ml}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fff\" stroke=\"#999\"/>"
    );
    for t in nice_ticks(y0, y1, y.log) {
        if t < y0 * 0.999 || t > y1 * 1.001 {
            continue;
        }
        let yy = py(t);
        let _ = writeln!(
            out,
            "<line x1=\"{ml}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ml + pw,
            ml - 5.0,
            yy + 4.0,
            fmt_tick(t)
        );
    }
    for t in nice_ticks(x0, x1, false) {
        if t < x0 - 1e-9 || t > x1 + 1e-9 {
            continue;
        }
        let xx = px(t);
        let label = match x_labels {
            Some(f) => f(t),
            None => fmt_tick(t),
        };
        let _ = writeln!(
            out,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{mt}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            mt + ph,
            mt + ph + 15.0,
            esc(&label)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text transform=\"translate(14,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        ml + pw / 2.0,
        h - 8.0,
        esc(x.label),
        mt + ph / 2.0,
        esc(y.label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for (a, b) in &s.points {
            if !(a.is_finite() && b.is_finite()) || (y.log && *b <= 0.0) {
                continue;
            }
            let _ = write!(pts, "{:.1},{:.1} ", px(*a), py(*b));
        }
        let dash = if s.dashed {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dash} points=\"{}\"><title>{}</title></polyline>",
            esc(&s.name),
            pts.trim_end(),
            esc(&s.name)
        );
        let ly = mt + 10.0 + i as f64 * 16.0;
        let lx = ml + pw + 12.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 18.0,
            lx + 22.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    let _ = writeln!(out, "</svg></section>");
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
    let lat = |name: &str, f: &dyn Fn(&crate::report::IntervalReport) -> u64, dashed| Series {
        name: name.to_string(),
        points: iv
            .iter()
            .filter(|i| i.corrected.count > 0)
            .map(|i| (t(i), ms(f(i))))
            .collect(),
        dashed,
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
    chart(
        &mut out,
        "latency-over-time",
        "Latency percentiles over time",
        Axis {
            label: "time (s)",
            log: false,
        },
        Axis {
            label: "latency (ms, log)",
            log: true,
        },
        &series,
        None,
    );
    let mut series = vec![
        Series {
            name: "target rate".into(),
            points: iv.iter().map(|i| (t(i), i.target_rate)).collect(),
            dashed: true,
        },
        Series {
            name: "achieved rate".into(),
            points: iv.iter().map(|i| (t(i), i.achieved_rate)).collect(),
            dashed: false,
        },
    ];
    let mut codes: Vec<u16> = report.total.status.keys().copied().collect();
    codes.sort_unstable();
    for code in codes {
        series.push(Series {
            name: format!("status {code}"),
            points: iv
                .iter()
                .map(|i| {
                    let n = i.status.get(&code).copied().unwrap_or(0);
                    (t(i), n as f64 / i.duration.as_secs_f64().max(1e-9))
                })
                .collect(),
            dashed: false,
        });
    }
    for kind in report.total.errors.keys() {
        series.push(Series {
            name: format!("error {kind}"),
            points: iv
                .iter()
                .map(|i| {
                    let n = i.errors.get(kind).copied().unwrap_or(0);
                    (t(i), n as f64 / i.duration.as_secs_f64().max(1e-9))
                })
                .collect(),
            dashed: true,
        });
    }
    chart(
        &mut out,
        "throughput-over-time",
        "Throughput and status codes over time",
        Axis {
            label: "time (s)",
            log: false,
        },
        Axis {
            label: "per second",
            log: false,
        },
        &series,
        None,
    );
    let series = vec![
        Series {
            name: "corrected".into(),
            points: spectrum(&report.total.corrected),
            dashed: false,
        },
        Series {
            name: "uncorrected".into(),
            points: spectrum(&report.total.uncorrected),
            dashed: true,
        },
    ];
    let pct_label = |x: f64| -> String {
        let q = 1.0 - 1.0 / 10f64.powf(x);
        format!("{}%", (q * 100.0 * 1000.0).round() / 1000.0)
    };
    chart(
        &mut out,
        "percentile-spectrum",
        "Latency by percentile (HdrHistogram spectrum)",
        Axis {
            label: "percentile",
            log: false,
        },
        Axis {
            label: "latency (ms, log)",
            log: true,
        },
        &series,
        Some(&pct_label),
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
