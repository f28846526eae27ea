//! Event series for offline evaluation: piecewise-constant rates of total and bad events,
//! built from a synthetic incident, a CSV file or a `tailwater load --json` report.
//!
//! Within each interval events are spread evenly, so window sums are exact at any instant
//! and the evaluator can find when a threshold is crossed to the millisecond.

use std::path::Path;

use crate::error::SloError;

/// One interval of constant rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds (> start).
    pub end: f64,
    /// All events in the interval.
    pub total: f64,
    /// Bad events in the interval (≤ total).
    pub errors: f64,
}

/// Consecutive segments with cumulative sums, for window queries in O(log n).
#[derive(Debug, Clone)]
pub struct Series {
    segs: Vec<Segment>,
    /// Cumulative (total, errors) at each segment's start.
    cum: Vec<(f64, f64)>,
}

/// A synthetic incident: steady traffic, then an error ratio `error_ratio` for `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Incident {
    /// Events per second, throughout.
    pub rate: f64,
    /// Error ratio during the incident, (0, 1].
    pub error_ratio: f64,
    /// Incident length, seconds.
    pub duration: f64,
    /// Error ratio before and after the incident, [0, 1).
    pub background: f64,
    /// Healthy traffic before the incident (so every window is full), seconds.
    pub lead: f64,
    /// Healthy traffic after it (to see every alert reset), seconds.
    pub tail: f64,
}

impl Series {
    /// Builds a series from consecutive segments. Contract: at least one segment, each
    /// `end > start`, contiguous, with `0 ≤ errors ≤ total` (checked by the loaders).
    pub fn from_segments(segs: Vec<Segment>) -> Self {
        let mut cum = Vec::with_capacity(segs.len());
        let (mut t, mut e) = (0.0, 0.0);
        for s in &segs {
            cum.push((t, e));
            t += s.total;
            e += s.errors;
        }
        Series { segs, cum }
    }

    /// The series of a synthetic incident; the incident starts at `lead`.
    pub fn synthetic(i: &Incident) -> Self {
        let seg = |start: f64, len: f64, ratio: f64| Segment {
            start,
            end: start + len,
            total: i.rate * len,
            errors: i.rate * len * ratio,
        };
        let mut segs = Vec::new();
        if i.lead > 0.0 {
            segs.push(seg(0.0, i.lead, i.background));
        }
        segs.push(seg(i.lead, i.duration, i.error_ratio));
        if i.tail > 0.0 {
            segs.push(seg(i.lead + i.duration, i.tail, i.background));
        }
        Series::from_segments(segs)
    }

    /// First instant.
    pub fn start(&self) -> f64 {
        self.segs.first().map_or(0.0, |s| s.start)
    }

    /// Last instant.
    pub fn end(&self) -> f64 {
        self.segs.last().map_or(0.0, |s| s.end)
    }

    /// Mean events per second over the whole series.
    pub fn mean_rate(&self) -> f64 {
        let (t, _) = self.cumulative(self.end());
        let len = self.end() - self.start();
        if len > 0.0 { t / len } else { 0.0 }
    }

    /// (total, errors) from the start up to `t`.
    pub fn cumulative(&self, t: f64) -> (f64, f64) {
        if self.segs.is_empty() || t <= self.start() {
            return (0.0, 0.0);
        }
        let i = self.segs.partition_point(|s| s.start < t) - 1;
        let s = &self.segs[i];
        let frac = ((t - s.start) / (s.end - s.start)).clamp(0.0, 1.0);
        let (ct, ce) = self.cum[i];
        (ct + s.total * frac, ce + s.errors * frac)
    }

    /// (total, errors) in the window `(t − w, t]`, clipped to the series.
    pub fn window(&self, t: f64, w: f64) -> (f64, f64) {
        let (t1, e1) = self.cumulative(t);
        let (t0, e0) = self.cumulative(t - w);
        ((t1 - t0).max(0.0), (e1 - e0).max(0.0))
    }

    /// Loads `timestamp,total,errors` rows (a header line is allowed; `#` starts a comment).
    /// Each row holds the events of the interval that ends at its timestamp (seconds, any
    /// epoch); the first row's interval is as long as the second's.
    pub fn from_csv(text: &str, file: &Path) -> Result<Self, SloError> {
        let mut rows: Vec<(usize, f64, f64, f64)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            if rows.is_empty() && cols.first().is_some_and(|c| c.parse::<f64>().is_err()) {
                if cols != ["timestamp", "total", "errors"] {
                    return Err(SloError::invalid(
                        file,
                        line,
                        "header",
                        "expected `timestamp,total,errors`",
                    ));
                }
                continue;
            }
            let [ts, total, errors] = cols.as_slice() else {
                return Err(SloError::invalid(
                    file,
                    line,
                    "row",
                    format!(
                        "expected 3 columns (timestamp,total,errors), got {}",
                        cols.len()
                    ),
                ));
            };
            let num = |field: &str, v: &str| -> Result<f64, SloError> {
                match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                    _ => Err(SloError::invalid(
                        file,
                        line,
                        field,
                        format!("`{v}` is not a non-negative number"),
                    )),
                }
            };
            let (ts, total, errors) = (
                num("timestamp", ts)?,
                num("total", total)?,
                num("errors", errors)?,
            );
            if errors > total {
                return Err(SloError::invalid(
                    file,
                    line,
                    "errors",
                    format!("{errors} errors exceed {total} total events"),
                ));
            }
            if let Some(&(_, prev, _, _)) = rows.last()
                && ts <= prev
            {
                return Err(SloError::invalid(
                    file,
                    line,
                    "timestamp",
                    format!("{ts} does not follow {prev}: timestamps must increase"),
                ));
            }
            rows.push((line, ts, total, errors));
        }
        if rows.len() < 2 {
            return Err(SloError::invalid(
                file,
                rows.first().map_or(1, |r| r.0),
                "rows",
                "need at least two rows",
            ));
        }
        let first_len = rows[1].1 - rows[0].1;
        let mut segs = Vec::with_capacity(rows.len());
        let mut prev = rows[0].1 - first_len;
        for &(_, ts, total, errors) in &rows {
            segs.push(Segment {
                start: prev,
                end: ts,
                total,
                errors,
            });
            prev = ts;
        }
        Ok(Series::from_segments(segs))
    }

    /// Loads the `intervals[]` of a `tailwater load --json` report: total = responses plus
    /// transport errors; bad = 5xx responses plus transport errors.
    pub fn from_load_json(text: &str, file: &Path) -> Result<Self, SloError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| SloError::Syntax {
            file: file.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let bad = |field: &str, msg: &str| SloError::invalid(file, 1, field, msg);
        let intervals = v
            .get("intervals")
            .and_then(|i| i.as_array())
            .ok_or_else(|| bad("intervals", "missing: not a `tailwater load --json` report"))?;
        let mut segs = Vec::with_capacity(intervals.len());
        for (k, iv) in intervals.iter().enumerate() {
            let f = |name: &str| -> Result<f64, SloError> {
                iv.get(name)
                    .and_then(serde_json::Value::as_f64)
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        bad(
                            &format!("intervals[{k}].{name}"),
                            "missing or not a non-negative number",
                        )
                    })
            };
            let start = f("start_s")?;
            let len = f("duration_s")?;
            let counts = |name: &str| -> Result<Vec<(String, f64)>, SloError> {
                match iv.get(name) {
                    None => Ok(Vec::new()),
                    Some(serde_json::Value::Object(m)) => m
                        .iter()
                        .map(|(k2, c)| {
                            c.as_f64()
                                .filter(|x| *x >= 0.0)
                                .map(|c| (k2.clone(), c))
                                .ok_or_else(|| {
                                    bad(&format!("intervals[{k}].{name}.{k2}"), "not a count")
                                })
                        })
                        .collect(),
                    Some(_) => Err(bad(&format!("intervals[{k}].{name}"), "not an object")),
                }
            };
            let status = counts("status")?;
            let transport: f64 = counts("errors")?.iter().map(|(_, c)| c).sum();
            let total = status.iter().map(|(_, c)| c).sum::<f64>() + transport;
            let errors = status
                .iter()
                .filter(|(code, _)| code.starts_with('5'))
                .map(|(_, c)| c)
                .sum::<f64>()
                + transport;
            if len <= 0.0 {
                return Err(bad(&format!("intervals[{k}].duration_s"), "must be > 0"));
            }
            if let Some(prev) = segs.last().map(|s: &Segment| s.end)
                && start + 1e-9 < prev
            {
                return Err(bad(
                    &format!("intervals[{k}].start_s"),
                    "intervals overlap or are out of order",
                ));
            }
            segs.push(Segment {
                start,
                end: start + len,
                total,
                errors,
            });
        }
        if segs.is_empty() {
            return Err(bad(
                "intervals",
                "empty: run `tailwater load` with an interval (`--interval`)",
            ));
        }
        // Gaps between intervals become empty segments so the series stays contiguous.
        let mut out: Vec<Segment> = Vec::with_capacity(segs.len());
        for s in segs {
            if let Some(p) = out.last()
                && s.start > p.end
            {
                out.push(Segment {
                    start: p.end,
                    end: s.start,
                    total: 0.0,
                    errors: 0.0,
                });
            }
            let start = out.last().map_or(s.start, |p| p.end.max(s.start));
            out.push(Segment { start, ..s });
        }
        Ok(Series::from_segments(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sums_are_exact_inside_segments() {
        let s = Series::synthetic(&Incident {
            rate: 10.0,
            error_ratio: 1.0,
            duration: 100.0,
            background: 0.0,
            lead: 100.0,
            tail: 100.0,
        });
        assert_eq!(s.window(150.0, 100.0), (1000.0, 500.0));
        assert_eq!(s.window(50.0, 100.0), (500.0, 0.0), "clipped at the start");
        assert_eq!(s.window(300.0, 50.0), (500.0, 0.0));
        assert_eq!(s.mean_rate(), 10.0);
    }

    #[test]
    fn csv_rows_and_errors() {
        let p = Path::new("s.csv");
        let s = Series::from_csv("timestamp,total,errors\n60,600,0\n120,600,60\n", p).unwrap();
        assert_eq!((s.start(), s.end()), (0.0, 120.0));
        assert_eq!(s.window(120.0, 60.0), (600.0, 60.0));
        for (text, want) in [
            ("time,total,errors\n1,1,0\n2,1,0\n", "s.csv:1: `header`"),
            ("1,1,0\n2,1\n", "s.csv:2: `row`"),
            ("1,1,0\n2,x,0\n", "s.csv:2: `total`"),
            ("1,1,0\n2,1,-1\n", "s.csv:2: `errors`"),
            ("1,1,0\n2,1,2\n", "s.csv:2: `errors`: 2 errors exceed"),
            ("# c\n5,1,0\n5,1,0\n", "s.csv:3: `timestamp`"),
            ("1,1,0\n", "s.csv:1: `rows`"),
            ("", "s.csv:1: `rows`"),
        ] {
            let got = Series::from_csv(text, p).unwrap_err().to_string();
            assert!(got.contains(want), "want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn load_report_intervals() {
        let p = Path::new("r.json");
        let text = r#"{"intervals":[
            {"start_s":0,"duration_s":1,"status":{"200":90,"503":10}},
            {"start_s":2,"duration_s":1,"status":{"200":50},"errors":{"connect":5}}]}"#;
        let s = Series::from_load_json(text, p).unwrap();
        assert_eq!(s.window(1.0, 1.0), (100.0, 10.0));
        assert_eq!(s.window(2.0, 1.0), (0.0, 0.0), "the gap is empty");
        assert_eq!(s.window(3.0, 1.0), (55.0, 5.0));
        for (text, want) in [
            ("{", "r.json:1:"),
            ("{}", "`intervals`: missing"),
            (r#"{"intervals":[]}"#, "`intervals`: empty"),
            (
                r#"{"intervals":[{"duration_s":1}]}"#,
                "`intervals[0].start_s`",
            ),
            (
                r#"{"intervals":[{"start_s":0,"duration_s":0}]}"#,
                "`intervals[0].duration_s`",
            ),
            (
                r#"{"intervals":[{"start_s":0,"duration_s":1,"status":{"200":"x"}}]}"#,
                "`intervals[0].status.200`",
            ),
            (
                r#"{"intervals":[{"start_s":5,"duration_s":1},{"start_s":0,"duration_s":1}]}"#,
                "`intervals[1].start_s`",
            ),
        ] {
            let got = Series::from_load_json(text, p).unwrap_err().to_string();
            assert!(got.contains(want), "want {want:?}, got {got:?}");
        }
    }
}
