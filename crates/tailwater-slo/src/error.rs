//! The crate's one error type: every bad input names its file and line (and the field), so a
//! user can fix a spec or a series without guessing.

use std::path::PathBuf;

/// Why a spec or a series could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The YAML (or JSON) did not parse or did not match the spec's shape.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A field parsed but its value cannot be used.
    #[error("{file}:{line}: `{field}`: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the field (or of the entry that lacks it).
        line: usize,
        /// The field's path, e.g. `slos[0].objective`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl SloError {
    /// Builds [`SloError::Invalid`].
    pub fn invalid(
        file: impl Into<PathBuf>,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SloError::Invalid {
            file: file.into(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    /// The 1-based line the error points at, if any (I/O errors have none).
    pub fn line(&self) -> Option<usize> {
        match self {
            SloError::Io { .. } => None,
            SloError::Syntax { line, .. } | SloError::Invalid { line, .. } => Some(*line),
        }
    }
}
