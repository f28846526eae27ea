//! Plain-text tables, for the reports and the suite summary.

use std::fmt::Write as _;

/// Rows as a text table: every column left-aligned to its widest cell, two spaces apart,
/// each line trimmed at the end; with `rule`, a line of dashes under the first row (the
/// header). Empty without rows.
pub(crate) fn text_table(rows: &[Vec<String>], rule: bool) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return out;
    };
    let widths: Vec<usize> = (0..first.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<w$}", w = widths.get(c).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 && rule {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
    out
}
