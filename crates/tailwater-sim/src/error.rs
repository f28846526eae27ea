//! Errors: every one names the field at fault, and for scenario files the file and line.

use std::path::PathBuf;

/// What went wrong while configuring or running a simulation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A value is out of range or inconsistent.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The field, as a dotted path (`server.workers`, `phase[2].load`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A scenario file could not be parsed or has an invalid value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field, when known.
        field: Option<String>,
        /// The parser's or validator's message.
        message: String,
    },
    /// A scenario file could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// No built-in scenario or policy of that name.
    #[error("unknown {kind} `{name}` (known: {known})")]
    Unknown {
        /// `scenario` or `policy`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The core rejected a limiter configuration.
    #[error("policy `{policy}`: {source}")]
    Core {
        /// The policy.
        policy: String,
        /// The core's error.
        source: tailwater_core::ConfigError,
    },
}

impl SimError {
    /// An [`SimError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SimError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field at fault, if the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            SimError::Invalid { field, .. } => Some(field),
            SimError::File { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// Checks that `value` is finite and within `[min, max]`.
pub(crate) fn check(field: &str, value: f64, min: f64, max: f64) -> Result<(), SimError> {
    if !value.is_finite() || value < min || value > max {
        let range = if max.is_infinite() {
            format!("≥ {min}")
        } else {
            format!("within [{min}, {max}]")
        };
        return Err(SimError::invalid(
            field,
            format!("must be {range}, got {value}"),
        ));
    }
    Ok(())
}

impl From<tailwater_core::ConfigError> for SimError {
    /// A core outbound configuration (breaker, budget, hedger, throttle) the simulator
    /// built was refused: reported under the field's name.
    fn from(e: tailwater_core::ConfigError) -> Self {
        SimError::invalid(e.field(), e.reason())
    }
}
