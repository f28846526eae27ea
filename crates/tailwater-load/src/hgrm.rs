//! The HdrHistogram percentile-spectrum text format (`.hgrm`), as wrk2 prints it.
//!
//! The hdrhistogram crate has no text output, so this module writes the same layout as
//! HdrHistogram_c's `hdr_percentiles_print(…, ticks = 5, scale, CLASSIC)` used by wrk2's
//! `--latency`: a header line, one line per quantile step (`Value  Percentile  TotalCount
//! 1/(1-Percentile)`), then the `#[Mean …]`, `#[Max …]` and `#[Buckets …]` footer. The
//! hdrhistogram.org plotter reads this text. [`parse_hgrm`] reads it back.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Writes the percentile spectrum of `hist` with values divided by `scale`
/// (e.g. a histogram in µs with `scale = 1000.0` prints milliseconds, as wrk2 does).
///
/// `ticks_per_half_distance` is the number of steps per halving of the remaining
/// percentile distance (wrk2 uses 5).
///
/// ```
/// use hdrhistogram::Histogram;
/// let mut h = Histogram::<u64>::new(3).unwrap();
/// for v in 1..=1000 { h.record(v).unwrap(); }
/// let text = tailwater_load::hgrm::format_hgrm(&h, 5, 1000.0);
/// assert!(text.contains("1/(1-Percentile)"));
/// let lines = tailwater_load::hgrm::parse_hgrm(&text).unwrap();
/// assert_eq!(lines.last().unwrap().total_count, 1000);
/// ```
pub fn format_hgrm(hist: &Histogram<u64>, ticks_per_half_distance: u32, scale: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>12} {:>12} {:>12}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !hist.is_empty() {
        for v in hist.iter_quantiles(ticks_per_half_distance) {
            // The quantile steps come from the iterator; each value and count is read back from
            // the histogram so that the text agrees with `value_at_quantile` exactly.
            let q = v.quantile_iterated_to();
            let raw = hist.highest_equivalent(hist.value_at_quantile(q));
            let total = hist.count_between(0, raw);
            let value = raw as f64 / scale;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{:>12.3} {:>12.6} {:>12} {:>12.2}",
                    value,
                    q,
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(
                    out,
                    "{:>12.3} {:>12.6} {:>12} {:>12}",
                    value, q, total, "inf"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        hist.mean() / scale,
        hist.stdev() / scale
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        hist.max() as f64 / scale,
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_bucket_count(hist.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count: 2·10^sigfig rounded up to a power of two (2048 for 3).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// One line of a percentile spectrum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmLine {
    /// The value, in the printed unit.
    pub value: f64,
    /// The quantile (0..=1) at or below which `value` lies.
    pub quantile: f64,
    /// Number of recorded values at or below `value`.
    pub total_count: u64,
}

/// Error from [`parse_hgrm`]: the 1-based line number and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct HgrmParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Parses the data lines of a `.hgrm` spectrum (header, blank and `#` lines are skipped).
pub fn parse_hgrm(text: &str) -> Result<Vec<HgrmLine>, HgrmParseError> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("Value") {
            continue;
        }
        let err = |reason: &str| HgrmParseError {
            line: i + 1,
            reason: format!("{reason}: `{t}`"),
        };
        let cols: Vec<&str> = t.split_whitespace().collect();
        if cols.len() != 4 {
            return Err(err("expected 4 columns"));
        }
        let value = cols[0].parse().map_err(|_| err("bad value"))?;
        let quantile: f64 = cols[1].parse().map_err(|_| err("bad percentile"))?;
        let total_count = cols[2].parse().map_err(|_| err("bad total count"))?;
        if cols[3] != "inf" {
            let inv: f64 = cols[3].parse().map_err(|_| err("bad 1/(1-Percentile)"))?;
            if quantile < 1.0 && (inv - 1.0 / (1.0 - quantile)).abs() > 0.01 * inv.max(1.0) {
                return Err(err("1/(1-Percentile) does not match the percentile"));
            }
        }
        lines.push(HgrmLine {
            value,
            quantile,
            total_count,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectrum_matches_the_histogram() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        // A skewed distribution in µs: most fast, a long tail.
        for i in 0..100_000u64 {
            let v = 500 + (i * 7919) % 2000 + if i % 1000 == 0 { 900_000 } else { 0 };
            h.record(v).unwrap();
        }
        let text = format_hgrm(&h, 5, 1000.0);
        let lines = parse_hgrm(&text).unwrap();
        assert!(lines.len() > 50);
        assert_eq!(lines.last().unwrap().total_count, h.len());
        assert_eq!(lines.last().unwrap().quantile, 1.0);
        for l in &lines {
            // The value printed at quantile q is the histogram's value at q; the percentile
            // column has 6 decimals, so allow the values at q ± 1e-6.
            let at = |q: f64| h.highest_equivalent(h.value_at_quantile(q.clamp(0.0, 1.0)));
            let value_us = (l.value * 1000.0).round() as u64;
            assert!(
                at(l.quantile - 1e-6) <= value_us && value_us <= at(l.quantile + 1e-6),
                "q={} {} vs {}",
                l.quantile,
                value_us,
                at(l.quantile)
            );
            // TotalCount is the number of values at or below the printed value.
            assert_eq!(
                l.total_count,
                h.count_between(0, value_us),
                "q={}",
                l.quantile
            );
        }
        assert!(text.contains("#[Max     ="));
        assert!(text.contains("Total count    =       100000]"));
    }

    #[test]
    fn empty_histogram_prints_footer_only() {
        let h = Histogram::<u64>::new(3).unwrap();
        let text = format_hgrm(&h, 5, 1000.0);
        assert!(parse_hgrm(&text).unwrap().is_empty());
        assert!(text.contains("#[Mean"));
    }

    #[test]
    fn parse_errors_give_the_line() {
        let e = parse_hgrm("   Value Percentile TotalCount 1/(1-Percentile)\n\n 1.0 0.5 x 2.00\n")
            .unwrap_err();
        assert_eq!(e.line, 3);
    }
}
