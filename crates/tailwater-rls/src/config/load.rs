//! Loading a directory of YAML files, with errors that name the file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeSeed;

use super::yaml::FileSeed;
use super::{Config, Domain};

/// The largest configuration file read (a bound: the directory may be writable by others).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The most files one directory may hold.
pub const MAX_FILES: usize = 1024;

/// A configuration that cannot be used: where (`file:line`, when known) and why, in
/// envoyproxy/ratelimit's words where it has them ("duplicate descriptor composite key",
/// "invalid rate limit unit", "duplicate domain", ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl ConfigError {
    fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// Parses one file's text (`source` names it in errors).
pub fn load_str(source: &str, text: &str) -> Result<Domain, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    FileSeed { source }.deserialize(de).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let mut message = e.to_string();
        // The location is reported as `file:line`; drop serde_norway's own suffix.
        if let Some((m, _)) = message.rsplit_once(" at line ") {
            message = m.to_owned();
        }
        ConfigError::new(source, line, message)
    })
}

/// Loads every `*.yaml` / `*.yml` file of `dir` (not hidden, not recursive), in name
/// order. One domain per file; a domain defined twice is an error (envoyproxy/ratelimit
/// without `MERGE_DOMAIN_CONFIG`). Any error rejects the whole directory.
pub fn load_dir(dir: &Path) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for path in config_files(dir)? {
        let name = path.display().to_string();
        let text = read_bounded(&path).map_err(|e| ConfigError::new(&name, None, e))?;
        if text.trim().is_empty() {
            continue;
        }
        let domain = load_str(&name, &text)?;
        if let Some(prev) = config.domains.get(&domain.domain) {
            return Err(ConfigError::new(
                &name,
                line_of(&text, "domain:"),
                format!(
                    "duplicate domain '{}' in config file (first defined in {})",
                    domain.domain, prev.source
                ),
            ));
        }
        config.domains.insert(domain.domain.clone(), domain);
    }
    Ok(config)
}

/// The configuration files of `dir`, sorted.
pub(crate) fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let name = dir.display().to_string();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::new(&name, None, format!("cannot read directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| ConfigError::new(&name, None, format!("cannot list: {e}")))?;
        let path = entry.path();
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let is_yaml = file_name.ends_with(".yaml") || file_name.ends_with(".yml");
        if file_name.starts_with('.') || !is_yaml || !path.is_file() {
            continue;
        }
        files.push(path);
        if files.len() > MAX_FILES {
            return Err(ConfigError::new(
                &name,
                None,
                format!("more than {MAX_FILES} configuration files"),
            ));
        }
    }
    files.sort();
    Ok(files)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
}
