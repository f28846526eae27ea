//! Grouped bar charts: one group per category (a load phase), one bar per series (a side).

use std::fmt::Write as _;

use crate::axis::Axis;
use crate::{Frame, PALETTE, escape};

/// One series of a [`BarChart`]: a value per group, in the groups' order.
#[derive(Debug, Clone)]
pub struct BarSeries {
    name: String,
    colour: Option<String>,
    values: Vec<f64>,
}

impl BarSeries {
    /// A series in the next palette colour; a missing or non-finite value draws no bar.
    pub fn new(name: impl Into<String>, values: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            colour: None,
            values,
        }
    }

    /// Draws the bars in `colour` instead of the palette's.
    pub fn colour(mut self, colour: impl Into<String>) -> Self {
        self.colour = Some(colour.into());
        self
    }
}

/// A grouped bar chart on a linear value axis from zero, with an optional dashed reference line
/// (the capacity, say).
#[derive(Debug, Clone)]
pub struct BarChart {
    id: Option<String>,
    title: String,
    x_label: String,
    y: Axis,
    groups: Vec<String>,
    series: Vec<BarSeries>,
    reference: Option<(f64, String)>,
    width: f64,
    height: f64,
}

impl BarChart {
    /// An empty chart, 900 × 300, with `groups` along the x axis labelled `x_label`.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        groups: Vec<String>,
    ) -> Self {
        Self {
            id: None,
            title: title.into(),
            x_label: x_label.into(),
            y: Axis::linear(y_label),
            groups,
            series: Vec::new(),
            reference: None,
            width: 900.0,
            height: 300.0,
        }
    }

    /// Sets the SVG element's `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a series of bars.
    pub fn series(mut self, series: BarSeries) -> Self {
        self.series.push(series);
        self
    }

    /// Draws a dashed horizontal line at `value`, named `name` in the legend.
    pub fn reference(mut self, value: f64, name: impl Into<String>) -> Self {
        self.reference = Some((value, name.into()));
        self
    }

    /// The `<svg>` element.
    pub fn render(&self) -> String {
        let frame = Frame::new(self.width, self.height);
        let mut out = frame.open(
            self.id.as_deref(),
            &self.title,
            &self.x_label,
            &self.y.label,
        );
        let top = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .chain(self.reference.as_ref().map(|r| r.0 * 1.05))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let yd = self.y.domain(0.0, top);
        let (pw, ph) = (frame.plot_width(), frame.plot_height());
        let py = |v: f64| frame.top + ph - yd.fraction(v) * ph;
        for &t in &yd.ticks {
            frame.y_tick(&mut out, py(t), &self.y.label_of(t));
        }
        let group_width = pw / self.groups.len().max(1) as f64;
        let bar_width = group_width * 0.8 / self.series.len().max(1) as f64;
        for (g, group) in self.groups.iter().enumerate() {
            let gx = frame.left + group_width * g as f64;
            frame.x_tick(&mut out, gx + group_width / 2.0, group);
            for (i, s) in self.series.iter().enumerate() {
                let Some(v) = s.values.get(g).copied().filter(|v| v.is_finite()) else {
                    continue;
                };
                let y = py(v);
                let _ = writeln!(
                    out,
                    "<rect data-series=\"{0}\" x=\"{1:.1}\" y=\"{y:.1}\" width=\"{2:.1}\" height=\"{3:.1}\" fill=\"{4}\"><title>{0} {5}: {v:.1}</title></rect>",
                    escape(&s.name),
                    gx + group_width * 0.1 + bar_width * i as f64,
                    (bar_width - 2.0).max(1.0),
                    frame.top + ph - y,
                    escape(&self.colour_of(i)),
                    escape(group)
                );
            }
        }
        for (i, s) in self.series.iter().enumerate() {
            frame.legend(&mut out, i, &s.name, &self.colour_of(i), "");
        }
        if let Some((value, name)) = &self.reference {
            let y = py(*value);
            let dash = " stroke-dasharray=\"5 3\"";
            let _ = writeln!(
                out,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#999\"{dash}/>",
                frame.left,
                frame.left + pw
            );
            frame.legend(&mut out, self.series.len(), name, "#999", dash);
        }
        out.push_str("</svg>\n");
        out
    }

    fn colour_of(&self, i: usize) -> String {
        self.series[i]
            .colour
            .clone()
            .unwrap_or_else(|| PALETTE[i % PALETTE.len()].to_string())
    }
}
