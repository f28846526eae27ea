//! Where a field is in TOML configuration text, for errors that say `file:line:column`: the
//! line and column of a byte offset (a parser's error span), the field path at a line, and
//! the line of a field path such as `route[1].limit.min_limit` or `phase[2].load`.
//!
//! The one locator of the workspace: the proxy's configuration and the simulator's scenario
//! files both use it. It reads the text only (no TOML parser): `[table]` and `[[array]]`
//! headers, `key = value` lines and inline tables. Columns count characters, not bytes, so a
//! line with multi-byte UTF-8 before the error still points at the right place.
//!
//! ```
//! use tailwater_core::toml_locate::{find_field, line_col};
//! let src = "[[route]]\nname = \"a\"\n[[route]]\nname = \"é\"\nlimit = 0\n";
//! assert_eq!(find_field(src, "route[1].limit"), Some((5, 1)));
//! assert_eq!(line_col(src, src.find("0").unwrap()), (5, 9));
//! ```

/// 1-based line and column (in characters) of byte `offset`; an offset past the end is the
/// end, one inside a multi-byte character is that character's.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// The field named by a toml error: the key on that line (`key = value`), or the spanned
/// text itself (an unknown key's span is the key).
pub fn field_at(src: &str, line: usize, spanned: &str) -> String {
    let text = src.lines().nth(line - 1).unwrap_or("");
    let table = table_path_at(src, line);
    // An error about a whole table (a missing key, a table's own check) spans its header:
    // the field is the table.
    if text.trim_start().starts_with('[') && spanned.trim_start().starts_with('[') {
        return table;
    }
    let key = match text.split_once('=') {
        Some((k, _)) if !text.trim_start().starts_with('[') => {
            k.trim().trim_matches('"').to_owned()
        }
        _ => spanned.trim().trim_matches(['[', ']', '"']).to_owned(),
    };
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) if key == table || table.ends_with(&format!(".{key}")) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// The indexed table path (`route[1].limit`) in effect at `line`.
fn table_path_at(src: &str, line: usize) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut current = String::new();
    for text in src.lines().take(line) {
        if let Some(p) = header(text, &mut counts) {
            current = p;
        }
    }
    current
}

/// Parses a table header line into an indexed path, counting `[[array]]` entries. Array
/// counters are keyed by `"<indexed parent>/<dotted name>"`, so a nested array restarts
/// its numbering in each parent entry.
fn header(text: &str, counts: &mut Vec<(String, usize)>) -> Option<String> {
    let t = text.trim();
    let t = t.split('#').next().unwrap_or(t).trim();
    if let Some(name) = t.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
        let name = name.trim();
        let (parent_path, leaf) = match name.rsplit_once('.') {
            Some((p, leaf)) => (indexed(p, counts), leaf),
            None => (String::new(), name),
        };
        let key = format!("{parent_path}/{name}");
        let idx = match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                counts.push((key, 1));
                0
            }
        };
        return Some(if parent_path.is_empty() {
            format!("{leaf}[{idx}]")
        } else {
            format!("{parent_path}.{leaf}[{idx}]")
        });
    }
    if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Some(indexed(name.trim(), counts));
    }
    None
}

/// `route.limit` → `route[N].limit`, using the latest entry of each array table on the way.
fn indexed(dotted: &str, counts: &[(String, usize)]) -> String {
    let mut out = String::new();
    let mut plain = String::new();
    for part in dotted.split('.') {
        if !plain.is_empty() {
            plain.push('.');
        }
        plain.push_str(part);
        let key = format!("{out}/{plain}");
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
        if let Some((_, n)) = counts.iter().find(|(k, _)| *k == key) {
            out.push_str(&format!("[{}]", n - 1));
        }
    }
    out
}

/// Line and column of `field` (an indexed path) in `src`: the key's line when it is set, or
/// the line of its table's header.
pub fn find_field(src: &str, field: &str) -> Option<(usize, usize)> {
    if field.is_empty() {
        return None;
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut current = String::new();
    let mut table_line = None;
    for (i, text) in src.lines().enumerate() {
        if let Some(p) = header(text, &mut counts) {
            current = p;
            if current == field {
                table_line = Some((i + 1, 1));
            }
            continue;
        }
        let Some((key, rest)) = text.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        let full = if current.is_empty() {
            key.to_owned()
        } else {
            format!("{current}.{key}")
        };
        let col = text.find(key).map_or(1, |c| char_col(text, c));
        if full == field {
            return Some((i + 1, col));
        }
        // An inline table: `limit = { min_limit = 9, max_limit = 2 }`.
        if let Some(sub) = field.strip_prefix(&format!("{full}.")) {
            let col = rest
                .find(sub)
                .map_or(col, |c| char_col(text, text.len() - rest.len() + c));
            return Some((i + 1, col));
        }
    }
    table_line.or_else(|| {
        // Fall back to the innermost table header the field lives in.
        let parent = field.rsplit_once('.').map(|(p, _)| p)?;
        find_field(src, parent)
    })
}

/// The 1-based column, in characters, of byte `offset` of a line.
fn char_col(line: &str, offset: usize) -> usize {
    line.get(..offset).map_or(offset, |s| s.chars().count()) + 1
}

#[cfg(test)]
mod tests;
