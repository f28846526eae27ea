//! Line charts: named series of (x, y) points on linear or logarithmic axes.

use std::fmt::Write as _;

use crate::axis::Axis;
use crate::{Frame, PALETTE, escape};

/// One named line of a [`LineChart`].
#[derive(Debug, Clone)]
pub struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    colour: Option<String>,
    dashed: bool,
}

impl Series {
    /// A solid line in the next palette colour. Points that are not finite, or not positive on
    /// a logarithmic axis, are left out when drawing.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            colour: None,
            dashed: false,
        }
    }

    /// Draws the line in `colour` (any SVG colour) instead of the palette's.
    pub fn colour(mut self, colour: impl Into<String>) -> Self {
        self.colour = Some(colour.into());
        self
    }

    /// Draws the line dashed (for a reference or an uncorrected figure beside a corrected one).
    pub fn dashed(mut self, dashed: bool) -> Self {
        self.dashed = dashed;
        self
    }
}

/// A line chart: a title, two axes and a legend of named series in the right margin.
///
/// Each series is one `<polyline>` with a `data-series` attribute naming it, so tests and
/// browsers' tools can find it; the chart's own `<title>` names it for screen readers.
#[derive(Debug, Clone)]
pub struct LineChart {
    id: Option<String>,
    title: String,
    x: Axis,
    y: Axis,
    series: Vec<Series>,
    width: f64,
    height: f64,
}

impl LineChart {
    /// An empty chart, 900 × 300.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Self {
            id: None,
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            width: 900.0,
            height: 300.0,
        }
    }

    /// Sets the SVG element's `id` (for links and tests).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the chart's size in SVG user units (pixels at 100 %).
    pub fn size(mut self, width: f64, height: f64) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Adds a series; its legend entry follows the ones added before.
    pub fn series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Adds several series in order.
    pub fn extend(mut self, series: impl IntoIterator<Item = Series>) -> Self {
        self.series.extend(series);
        self
    }

    /// The chart's height, for [`crate::document`].
    pub fn height(&self) -> f64 {
        self.height
    }

    /// Several charts stacked in one standalone SVG document (see [`crate::document`]).
    pub fn stack(charts: &[LineChart]) -> String {
        let width = charts.iter().map(|c| c.width).fold(0.0, f64::max);
        let rendered: Vec<(String, f64)> = charts.iter().map(|c| (c.render(), c.height)).collect();
        crate::document(width, &rendered)
    }

    /// The `<svg>` element. A chart without a drawable point says "No data" instead of axes.
    pub fn render(&self) -> String {
        let frame = Frame::new(self.width, self.height);
        let mut out = frame.open(
            self.id.as_deref(),
            &self.title,
            &self.x.label,
            &self.y.label,
        );
        let drawable = |&(x, y): &(f64, f64)| self.x.accepts(x) && self.y.accepts(y);
        let mut bounds: Option<(f64, f64, f64, f64)> = None;
        for &(x, y) in self.series.iter().flat_map(|s| &s.points) {
            if !drawable(&(x, y)) {
                continue;
            }
            bounds = Some(match bounds {
                None => (x, x, y, y),
                Some((x0, x1, y0, y1)) => (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
            });
        }
        let Some((x0, x1, y0, y1)) = bounds else {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"no-data\">No data.</text></svg>",
                frame.left + frame.plot_width() / 2.0,
                frame.top + frame.plot_height() / 2.0
            );
            return out;
        };
        let (xd, yd) = (self.x.domain(x0, x1), self.y.domain(y0, y1));
        let (pw, ph) = (frame.plot_width(), frame.plot_height());
        let px = |v: f64| frame.left + xd.fraction(v) * pw;
        let py = |v: f64| frame.top + ph - yd.fraction(v) * ph;
        for &t in &yd.ticks {
            frame.y_tick(&mut out, py(t), &self.y.label_of(t));
        }
        for &t in &xd.ticks {
            frame.x_tick(&mut out, px(t), &self.x.label_of(t));
        }
        for (i, s) in self.series.iter().enumerate() {
            let colour = s
                .colour
                .clone()
                .unwrap_or_else(|| PALETTE[i % PALETTE.len()].to_string());
            // Past the palette's length, colours repeat: dash the repeats to tell them apart.
            let dash = if s.dashed || (s.colour.is_none() && i >= PALETTE.len()) {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            };
            let mut points = String::new();
            for &p in s.points.iter().filter(|p| drawable(p)) {
                let _ = write!(points, "{:.1},{:.1} ", px(p.0), py(p.1));
            }
            let _ = writeln!(
                out,
                "<polyline data-series=\"{0}\" fill=\"none\" stroke=\"{1}\" stroke-width=\"1.8\"{dash} points=\"{2}\"><title>{0}</title></polyline>",
                escape(&s.name),
                escape(&colour),
                points.trim_end()
            );
            frame.legend(&mut out, i, &s.name, &colour, dash);
        }
        out.push_str("</svg>\n");
        out
    }
}
