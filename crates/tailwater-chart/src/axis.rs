//! Axes: their scale, their domain from the data, round ticks and tick labels.

/// How values map to positions along an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// Equal distances for equal differences.
    #[default]
    Linear,
    /// Equal distances for equal ratios (base 10); values ≤ 0 are not drawn.
    Log,
}

/// One axis of a chart: its label, scale and how its domain is chosen.
#[derive(Debug, Clone)]
pub struct Axis {
    pub(crate) label: String,
    pub(crate) scale: Scale,
    pub(crate) from_zero: bool,
    pub(crate) at_least: f64,
    pub(crate) tick_label: Option<fn(f64) -> String>,
}

impl Axis {
    /// A linear axis starting at zero (or below, if the data goes there).
    pub fn linear(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            scale: Scale::Linear,
            from_zero: true,
            at_least: f64::NEG_INFINITY,
            tick_label: None,
        }
    }

    /// A base-10 logarithmic axis spanning whole decades of the data.
    pub fn log(label: impl Into<String>) -> Self {
        Self {
            scale: Scale::Log,
            from_zero: false,
            ..Self::linear(label)
        }
    }

    /// A linear axis over the data's own range, not forced to include zero.
    pub fn fitted(mut self) -> Self {
        self.from_zero = false;
        self
    }

    /// The axis reaches at least `v`, even when every value is smaller (a goodput axis that
    /// always shows the capacity line, say).
    pub fn at_least(mut self, v: f64) -> Self {
        self.at_least = v;
        self
    }

    /// Labels ticks with `f` instead of the default round-number formatting.
    pub fn tick_label(mut self, f: fn(f64) -> String) -> Self {
        self.tick_label = Some(f);
        self
    }

    pub(crate) fn label_of(&self, v: f64) -> String {
        self.tick_label.map_or_else(|| format_tick(v), |f| f(v))
    }

    /// Whether a value can be drawn on this axis.
    pub(crate) fn accepts(&self, v: f64) -> bool {
        v.is_finite() && (self.scale == Scale::Linear || v > 0.0)
    }

    /// The drawn range and its ticks for data spanning `lo..=hi` (both finite).
    pub(crate) fn domain(&self, lo: f64, hi: f64) -> Domain {
        let hi = if self.at_least.is_finite() {
            hi.max(self.at_least)
        } else {
            hi
        };
        match self.scale {
            Scale::Log => {
                let mut a = lo.log10().floor();
                let mut b = hi.log10().ceil();
                if b <= a {
                    b = a + 1.0;
                }
                if !a.is_finite() {
                    a = b - 1.0;
                }
                Domain {
                    lo: 10f64.powf(a),
                    hi: 10f64.powf(b),
                    scale: Scale::Log,
                    ticks: (a as i32..=b as i32).map(|e| 10f64.powi(e)).collect(),
                }
            }
            Scale::Linear => {
                let lo = if self.from_zero { lo.min(0.0) } else { lo };
                let mut hi = hi;
                if hi <= lo {
                    hi = lo + 1.0;
                }
                let step = round_step((hi - lo) / 5.0);
                let first = (lo / step).floor() * step;
                let last = (hi / step).ceil() * step;
                let n = ((last - first) / step).round() as usize;
                Domain {
                    lo: first,
                    hi: last,
                    scale: Scale::Linear,
                    ticks: (0..=n).map(|i| first + step * i as f64).collect(),
                }
            }
        }
    }
}

/// The range an axis draws, in data units, and its tick positions.
#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) scale: Scale,
    pub(crate) ticks: Vec<f64>,
}

impl Domain {
    /// The fraction `0..=1` of the axis's length at which `v` lies (clamped).
    pub(crate) fn fraction(&self, v: f64) -> f64 {
        let f = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The round step (1, 2, 2.5 or 5 × 10^k) nearest above `raw`.
fn round_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// A tick label: whole numbers from 100 up, at most two decimals from 1, three below, no
/// trailing zeros.
pub(crate) fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = if v.abs() >= 100.0 {
        return format!("{v:.0}");
    } else if v.abs() < 0.001 {
        return format!("{v:.0e}");
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
