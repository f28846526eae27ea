//! Configuration errors with `file:line:column` and the field's path.

use std::fmt;
use std::path::{Path, PathBuf};

/// An invalid configuration: the field (a path such as `route[0].limit.min_limit`), why,
/// and where in the file when it came from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    line: Option<usize>,
    column: Option<usize>,
    field: String,
    message: String,
}

impl ConfigError {
    /// An error about `field` with no position yet.
    pub fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            file: None,
            line: None,
            column: None,
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: &Path, err: &std::io::Error) -> Self {
        Self {
            file: Some(path.to_owned()),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read: {err}"),
        }
    }

    /// Wraps a core builder error under the path `prefix` (`route[0].limit`).
    pub(crate) fn core(prefix: &str, err: &tailwater_core::ConfigError) -> Self {
        // Core names some fields with their table (`queue.capacity`, `tiers.critical`);
        // the prefix already is that table, so keep only the last segment.
        let leaf = err.field().rsplit('.').next().unwrap_or(err.field());
        Self::new(format!("{prefix}.{leaf}"), err.reason())
    }

    /// The field's path, e.g. `route[0].limit.min_limit` (empty for I/O errors).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// 1-based column, when known.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The file, when the configuration came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Why the value is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn from_toml(err: &toml::de::Error, src: &str, path: Option<&Path>) -> Self {
        let (line, column, field) = match err.span() {
            Some(span) => {
                let (line, column) = line_col(src, span.start);
                let text = src.get(span.clone()).unwrap_or("");
                (Some(line), Some(column), field_at(src, line, text))
            }
            None => (None, None, String::new()),
        };
        Self {
            file: path.map(Path::to_owned),
            line,
            column,
            field,
            message: err.message().trim().to_owned(),
        }
    }

    /// Finds the line of this error's field in `src`.
    pub(crate) fn locate(mut self, src: &str, path: Option<&Path>) -> Self {
        self.file = path.map(Path::to_owned);
        if let Some((line, col)) = find_field(src, &self.field) {
            self.line = Some(line);
            self.column = Some(col);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(
                f,
                "{}:{}:{}: ",
                file.display(),
                line,
                self.column.unwrap_or(1)
            )?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {}:{}: ", line, self.column.unwrap_or(1))?,
            (None, None) => {}
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// The field named by a toml error: the key on that line (`key = value`), or the spanned
/// text itself (an unknown key's span is the key).
fn field_at(src: &str, line: usize, spanned: &str) -> String {
    let text = src.lines().nth(line - 1).unwrap_or("");
    let table = table_path_at(src, line);
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
fn find_field(src: &str, field: &str) -> Option<(usize, usize)> {
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
        let col = text.find(key).map_or(1, |c| c + 1);
        if full == field {
            return Some((i + 1, col));
        }
        // An inline table: `limit = { min_limit = 9, max_limit = 2 }`.
        if let Some(sub) = field.strip_prefix(&format!("{full}.")) {
            let col = rest
                .find(sub)
                .map_or(col, |c| text.len() - rest.len() + c + 1);
            return Some((i + 1, col));
        }
    }
    table_line.or_else(|| {
        // Fall back to the innermost table header the field lives in.
        let parent = field.rsplit_once('.').map(|(p, _)| p)?;
        find_field(src, parent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[server]\nmax_connections = 5\n\n[[route]]\nname = \"a\"\n\n[[route]]\nname = \"b\"\n[route.limit]\nmin_limit = 9\n[[route.rate_limit]]\nrate = 1\n[[route.rate_limit]]\nrate = 0\n";

    #[test]
    fn finds_keys_in_array_tables() {
        assert_eq!(find_field(SRC, "server.max_connections"), Some((2, 1)));
        assert_eq!(find_field(SRC, "route[1].name"), Some((8, 1)));
        assert_eq!(find_field(SRC, "route[1].limit.min_limit"), Some((10, 1)));
        assert_eq!(
            find_field(SRC, "route[1].rate_limit[1].rate"),
            Some((14, 1))
        );
        // Unset key: the table's header.
        assert_eq!(find_field(SRC, "route[1].limit.max_limit"), Some((9, 1)));
    }

    #[test]
    fn inline_tables_point_at_the_key() {
        let src = "[[route]]\nlimit = { min_limit = 9, max_limit = 2 }\n";
        assert_eq!(find_field(src, "route[0].limit.max_limit"), Some((2, 26)));
    }

    #[test]
    fn line_and_column_of_offsets() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
