//! The one SVG chart writer behind every tailwater report: the load generator's and the drill's
//! HTML pages and the simulator's and planner's `--plot` files.
//!
//! Why a crate of its own: the three reports used to carry three hand-written chart modules,
//! each with its own escaper, tick rules and legend, and they drifted (one escaped quotes, one
//! did not). This crate has no dependencies and writes plain SVG 1.1 text: no scripts, no fonts,
//! no network requests, so a report stays one self-contained file.
//!
//! Two chart kinds cover every report: [`LineChart`] (time series and percentile spectra, linear
//! or logarithmic axes) and [`BarChart`] (one group per load phase, one bar per side).
//! [`document`] stacks charts into one standalone `.svg` file.
//!
//! ```
//! use tailwater_chart::{Axis, LineChart, Series};
//!
//! let chart = LineChart::new("Goodput", Axis::linear("seconds"), Axis::linear("req/s"))
//!     .series(Series::new("protected", vec![(0.0, 180.0), (1.0, 195.0)]));
//! let svg = chart.render();
//! assert!(svg.starts_with("<svg"));
//! assert!(svg.contains("data-series=\"protected\""));
//! ```

mod axis;
mod bar;
mod line;

pub use axis::{Axis, Scale};
pub use bar::{BarChart, BarSeries};
pub use line::{LineChart, Series};

use std::fmt::Write as _;

/// Ten distinguishable colours (the "category10" set), used in order when a series names none.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Escapes text for HTML or XML, in element content and in quoted attribute values alike
/// (`&`, `<`, `>`, `"` and `'`), so a series name or a target URL cannot end an attribute or
/// open an element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Margins of the plot area inside a chart, in SVG user units.
#[derive(Debug, Clone, Copy)]
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn new(width: f64, height: f64) -> Self {
        Self {
            width,
            height,
            left: 64.0,
            right: 170.0,
            top: 28.0,
            bottom: 40.0,
        }
    }

    fn plot_width(&self) -> f64 {
        (self.width - self.left - self.right).max(1.0)
    }

    fn plot_height(&self) -> f64 {
        (self.height - self.top - self.bottom).max(1.0)
    }

    /// A chart's text so far: the opened `<svg>` element with the title, the plot's border
    /// and the axis labels drawn.
    fn open(&self, id: Option<&str>, title: &str, x_label: &str, y_label: &str) -> String {
        let mut out = String::new();
        let Frame {
            width: w,
            height: h,
            left: l,
            top: t,
            ..
        } = *self;
        let (pw, ph) = (self.plot_width(), self.plot_height());
        let id = id.map_or(String::new(), |id| format!(" id=\"{}\"", escape(id)));
        let _ = writeln!(
            out,
            "<svg{id} xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">"
        );
        let _ = writeln!(
            out,
            "<title>{0}</title><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><text x=\"{l}\" y=\"{1}\" font-size=\"13\" font-weight=\"bold\">{0}</text>",
            escape(title),
            t - 10.0
        );
        let _ = writeln!(
            out,
            "<rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
            l + pw / 2.0,
            h - 6.0,
            escape(x_label),
            t + ph / 2.0,
            t + ph / 2.0,
            escape(y_label)
        );
        out
    }

    /// One legend entry in the right margin.
    fn legend(&self, out: &mut String, index: usize, name: &str, colour: &str, dash: &str) {
        let x = self.left + self.plot_width() + 12.0;
        let y = self.top + 10.0 + 16.0 * index as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"3\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 18.0,
            escape(colour),
            x + 22.0,
            y + 4.0,
            escape(name)
        );
    }

    /// A horizontal grid line with its tick label at plot height `y`.
    fn y_tick(&self, out: &mut String, y: f64, label: &str) {
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            self.left,
            self.left + self.plot_width(),
            self.left - 5.0,
            y + 4.0,
            escape(label)
        );
    }

    /// A tick label under the plot at abscissa `x`.
    fn x_tick(&self, out: &mut String, x: f64, label: &str) {
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            self.top + self.plot_height() + 15.0,
            escape(label)
        );
    }
}

/// Stacks charts (each already rendered by [`LineChart::render`] or [`BarChart::render`]) one
/// under the other in one standalone SVG document, for `--plot FILE.svg` outputs.
///
/// `charts` pairs each rendered chart with its height; the document is as wide as the widest
/// width given.
pub fn document(width: f64, charts: &[(String, f64)]) -> String {
    let gap = 12.0;
    let height: f64 = charts.iter().map(|(_, h)| h + gap).sum::<f64>().max(gap);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    let mut y = gap / 2.0;
    for (svg, h) in charts {
        // A nested <svg> takes x/y attributes: place each chart at its offset.
        let placed = svg.replacen("<svg", &format!("<svg x=\"0\" y=\"{y}\""), 1);
        out.push_str(&placed);
        y += h + gap;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests;
