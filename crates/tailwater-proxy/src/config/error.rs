//! Configuration errors with `file:line:column` and the field's path.

use std::fmt;
use std::path::{Path, PathBuf};

use tailwater_core::toml_locate::{field_at, find_field, line_col};

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
        let mut message = err.message().trim().to_owned();
        let (mut line, mut column, mut field) = match err.span() {
            Some(span) => {
                let (line, column) = line_col(src, span.start);
                let text = src.get(span.clone()).unwrap_or("");
                (Some(line), Some(column), field_at(src, line, text))
            }
            None => (None, None, String::new()),
        };
        // A table's own check (`[route.limit]`'s: "`min_limit` is not a parameter of ...")
        // is spanned by the parser over the whole table; it names the key first, so point
        // at the key's line when it is written (the table's header when it is missing).
        let table = err.span().is_some_and(|s| {
            let text = src.get(s.clone()).unwrap_or("");
            let before = src.get(..s.start).unwrap_or("");
            let line_start = before.rfind('\n').map_or(before, |i| &before[i + 1..]);
            // A header (`[route.limit]` opening its line) or an inline table, not an array.
            text.starts_with('{') || (text.starts_with('[') && line_start.trim().is_empty())
        });
        if table && let Some((key, rest)) = leading_key(&message) {
            field = format!("{field}.{key}");
            if let Some((l, c)) = find_field(src, &field) {
                (line, column) = (Some(l), Some(c));
            }
            message = rest.to_owned();
        } else if let Some(key) = missing_key(&message) {
            // serde's "missing field `upstream`", spanned over the table that lacks it: name
            // the key; the line stays the table's, since the key has none.
            field = if field.is_empty() {
                key.to_owned()
            } else {
                format!("{field}.{key}")
            };
            message = "is required".to_owned();
        }
        Self {
            file: path.map(Path::to_owned),
            line,
            column,
            field,
            message,
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

/// `("min_limit", "is not ...")` from "`min_limit` is not ...": a message that starts with a
/// key (letters, digits, `_`) in backticks.
fn leading_key(message: &str) -> Option<(&str, &str)> {
    let (key, rest) = message.strip_prefix('`')?.split_once('`')?;
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    is_key.then(|| (key, rest.trim_start()))
}

/// `upstream` from serde's "missing field `upstream`".
fn missing_key(message: &str) -> Option<&str> {
    let key = message.strip_prefix("missing field `")?.strip_suffix('`')?;
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    is_key.then_some(key)
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
