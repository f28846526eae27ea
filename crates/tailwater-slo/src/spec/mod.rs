//! Spec files: Sloth's `prometheus/v1` ([`sloth`]) and the native `tailwater/v1`
//! ([`native`]), told apart by their `version` field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::SloError;
use crate::model::{Alerting, Sli, Slo, SloSet};

pub mod locate;
pub mod native;
pub mod sloth;

/// Reads and parses a spec file.
pub fn load(path: &Path) -> Result<SloSet, SloError> {
    let text = std::fs::read_to_string(path).map_err(|source| SloError::Io {
        file: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses a spec from text; `file` names it in errors.
pub fn parse(text: &str, file: impl AsRef<Path>) -> Result<SloSet, SloError> {
    let file = file.as_ref();
    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_norway::Value>,
    }
    let probe: Probe = from_yaml(text, file)?;
    let line = locate::key_line(text, "version").unwrap_or(1);
    match probe.version {
        Some(serde_norway::Value::String(v)) if v == sloth::VERSION => sloth::parse(text, file),
        Some(serde_norway::Value::String(v)) if v == native::VERSION => native::parse(text, file),
        Some(other) => Err(SloError::invalid(
            file,
            line,
            "version",
            format!(
                "unknown spec version {}: expected \"{}\" (Sloth) or \"{}\"",
                serde_norway::to_string(&other).unwrap_or_default().trim(),
                sloth::VERSION,
                native::VERSION
            ),
        )),
        None => Err(SloError::invalid(
            file,
            1,
            "version",
            format!(
                "missing: expected \"{}\" (Sloth) or \"{}\"",
                sloth::VERSION,
                native::VERSION
            ),
        )),
    }
}

/// What both forms say of one SLO besides its SLI and alerting.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) objective: f64,
    pub(crate) labels: Labels,
}

impl Entry {
    /// The SLO of `service` as both forms build it: the id is `service-name` (Sloth's
    /// `sloth_id`) and the labels are the service's overlaid by the SLO's own. No guard and
    /// no native context (the native form adds its own).
    pub(crate) fn into_slo(
        self,
        service: &str,
        service_labels: &Labels,
        sli: Sli,
        alerting: Alerting,
    ) -> Slo {
        let mut labels = service_labels.0.clone();
        labels.extend(self.labels.0);
        Slo {
            id: format!("{service}-{}", self.name),
            service: service.to_owned(),
            name: self.name,
            description: self.description,
            objective: self.objective,
            labels,
            sli,
            alerting,
            guard: None,
            context: None,
        }
    }
}

/// Deserialises YAML, turning the parser's location into `file:line:column`.
pub(crate) fn from_yaml<T: for<'de> Deserialize<'de>>(
    text: &str,
    file: &Path,
) -> Result<T, SloError> {
    serde_norway::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        SloError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: e.to_string(),
        }
    })
}

/// A label map whose values may be written as strings, numbers or booleans (`tier: 2`),
/// as Sloth's examples do; every value becomes a string.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Labels(pub(crate) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw: Option<BTreeMap<String, serde_norway::Value>> = Option::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw.unwrap_or_default() {
            let s = match v {
                serde_norway::Value::String(s) => s,
                serde_norway::Value::Number(n) => n.to_string(),
                serde_norway::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(D::Error::custom(format!(
                        "label `{k}`: the value must be a string, a number or a boolean"
                    )));
                }
            };
            out.insert(k, s);
        }
        Ok(Labels(out))
    }
}

/// Checks a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a name that is put into label values and selectors unescaped.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Validates every label name of a map; returns the first bad one.
pub(crate) fn first_bad_label(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels
        .keys()
        .find(|k| !valid_label_name(k))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_versions_are_errors_with_lines() {
        let e = parse("service: a\nversion: \"sloth/v9\"\n", "x.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("x.yaml:2: `version`:"), "{msg}");
        let e = parse("service: a\n", "x.yaml").unwrap_err();
        assert!(e.to_string().contains("`version`: missing"), "{e}");
        let e = parse("version: [\n", "x.yaml").unwrap_err();
        assert!(matches!(e, SloError::Syntax { .. }), "{e}");
    }

    #[test]
    fn label_names() {
        assert!(valid_label_name("routing_key"));
        assert!(valid_label_name("_x1"));
        assert!(!valid_label_name("1x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
    }

    #[test]
    fn load_reports_missing_files() {
        let e = load(Path::new("/nonexistent/slo.yaml")).unwrap_err();
        assert!(matches!(e, SloError::Io { .. }));
        assert!(e.to_string().starts_with("/nonexistent/slo.yaml: "), "{e}");
    }
}
