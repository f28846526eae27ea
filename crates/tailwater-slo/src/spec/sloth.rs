//! Sloth's `prometheus/v1` spec (slok/sloth, `pkg/prometheus/api/v1`), accepted as is.
//!
//! Fields: `version`, `service`, `labels`, `slo_plugins`, `slos[]` with `name`,
//! `description`, `objective`, `labels`, `plugins`, `sli` (`events {error_query,
//! total_query}` or `raw {error_ratio_query}`; the camelCase spellings Sloth's examples also
//! use are accepted), and `alerting` (`name`, `labels`, `annotations`, `page_alert` /
//! `ticket_alert` with `disable`, `labels`, `annotations`, `for`). Unknown fields are errors,
//! so a typo does not silently drop a setting. Sloth plugins are recorded in
//! [`SloSet::ignored_plugins`](crate::model::SloSet::ignored_plugins) and not run; an SLI
//! `plugin` is an error, since its queries live in Go code.

use std::path::Path;

use serde::Deserialize;

use super::{Entry, Labels, first_bad_label, from_yaml, locate, valid_name};
use crate::error::SloError;
use crate::model::{AlertConfig, Alerting, Sli, SloSet, SpecFormat, check_template};

/// The `version` value of Sloth specs.
pub const VERSION: &str = "prometheus/v1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[allow(dead_code)]
    version: String,
    service: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    slo_plugins: Option<PluginChain>,
    #[serde(default)]
    slos: Vec<SloSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginChain {
    #[serde(default)]
    overrides: bool,
    #[serde(default)]
    chain: Vec<PluginRef>,
}

#[derive(Debug, Deserialize)]
struct PluginRef {
    id: String,
    #[serde(default)]
    #[allow(dead_code)]
    config: Option<serde_norway::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    priority: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloSpec {
    name: String,
    #[serde(default)]
    description: Option<String>,
    objective: f64,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    plugins: Option<PluginChain>,
    sli: SliSpec,
    #[serde(default)]
    alerting: AlertingSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SliSpec {
    #[serde(default)]
    events: Option<EventsSpec>,
    #[serde(default)]
    raw: Option<RawSpec>,
    #[serde(default)]
    plugin: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsSpec {
    #[serde(alias = "errorQuery")]
    error_query: String,
    #[serde(alias = "totalQuery")]
    total_query: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(alias = "errorRatioQuery")]
    error_ratio_query: String,
}

/// An SLO's `alerting` section; shared with the native form (both accept Sloth's
/// `pageAlert` / `ticketAlert` spellings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertingSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(default, alias = "pageAlert")]
    page_alert: AlertSpec,
    #[serde(default, alias = "ticketAlert")]
    ticket_alert: AlertSpec,
}

impl AlertingSpec {
    /// Checks and converts SLO `i`'s section: the page and ticket alerts, the labels, then
    /// the alert name. A missing or blank name is `default_name` (the native form's) or,
    /// without one, an error unless both alerts are disabled (Sloth's rule). `line` finds a
    /// field's line from its path under the SLO.
    pub(crate) fn into_alerting(
        self,
        file: &Path,
        i: usize,
        line: impl Fn(&[&str]) -> usize,
        default_name: Option<String>,
    ) -> Result<Alerting, SloError> {
        let page =
            self.page_alert
                .into_config(file, &format!("slos[{i}].alerting.page_alert"), |k| {
                    line(&["alerting", "page_alert", k])
                })?;
        let ticket = self.ticket_alert.into_config(
            file,
            &format!("slos[{i}].alerting.ticket_alert"),
            |k| line(&["alerting", "ticket_alert", k]),
        )?;
        if let Some(bad) = first_bad_label(&self.labels.0) {
            return Err(SloError::invalid(
                file,
                line(&["alerting", "labels"]),
                format!("slos[{i}].alerting.labels"),
                format!("`{bad}` is not a Prometheus label name"),
            ));
        }
        let name = match (self.name, default_name) {
            (Some(n), _) if !n.trim().is_empty() => n,
            (_, Some(default)) => default,
            _ if page.disable && ticket.disable => String::new(),
            _ => {
                return Err(SloError::invalid(
                    file,
                    line(&["alerting", "name"]),
                    format!("slos[{i}].alerting.name"),
                    "required unless both page_alert and ticket_alert are disabled",
                ));
            }
        };
        Ok(Alerting {
            name,
            labels: self.labels.0,
            annotations: self.annotations.0,
            page,
            ticket,
        })
    }
}

/// One alert's settings; shared with the native form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertSpec {
    #[serde(default)]
    pub(crate) disable: bool,
    #[serde(default)]
    pub(crate) labels: Labels,
    #[serde(default)]
    pub(crate) annotations: Labels,
    #[serde(default, rename = "for")]
    pub(crate) for_: Option<String>,
}

impl AlertSpec {
    /// Converts, checking label names and the `for` duration; `path` is the field path for
    /// errors and `line` finds its line.
    pub(crate) fn into_config(
        self,
        file: &Path,
        path: &str,
        line: impl Fn(&str) -> usize,
    ) -> Result<AlertConfig, SloError> {
        if let Some(bad) = first_bad_label(&self.labels.0) {
            return Err(SloError::invalid(
                file,
                line("labels"),
                format!("{path}.labels"),
                format!("`{bad}` is not a Prometheus label name"),
            ));
        }
        let for_ = match self.for_ {
            None => None,
            Some(s) => Some(s.parse().map_err(|e: crate::duration::DurationError| {
                SloError::invalid(file, line("for"), format!("{path}.for"), e.to_string())
            })?),
        };
        Ok(AlertConfig {
            disable: self.disable,
            labels: self.labels.0,
            annotations: self.annotations.0,
            for_,
        })
    }
}

/// Checks the parts both forms share: the service name and the service labels.
pub(crate) fn check_service(
    text: &str,
    file: &Path,
    service: &str,
    labels: &Labels,
) -> Result<(), SloError> {
    if !valid_name(service) {
        return Err(SloError::invalid(
            file,
            locate::key_line(text, "service").unwrap_or(1),
            "service",
            "must be non-empty and use only letters, digits, `-`, `_`, `.` and `:`",
        ));
    }
    if let Some(bad) = first_bad_label(&labels.0) {
        return Err(SloError::invalid(
            file,
            locate::key_line(text, "labels").unwrap_or(1),
            "labels",
            format!("`{bad}` is not a Prometheus label name"),
        ));
    }
    Ok(())
}

/// Checks an SLO's name (and that no earlier SLO in `seen` has it), objective and labels
/// (shared with the native form).
pub(crate) fn check_slo_basics(
    text: &str,
    file: &Path,
    i: usize,
    name: &str,
    objective: f64,
    labels: &Labels,
    seen: &mut std::collections::BTreeSet<String>,
) -> Result<(), SloError> {
    let line = |path: &[&str]| locate::item_line(text, "slos", i, path);
    if !valid_name(name) {
        return Err(SloError::invalid(
            file,
            line(&["name"]),
            format!("slos[{i}].name"),
            "must be non-empty and use only letters, digits, `-`, `_`, `.` and `:`",
        ));
    }
    if !seen.insert(name.to_owned()) {
        return Err(SloError::invalid(
            file,
            line(&["name"]),
            format!("slos[{i}].name"),
            format!("`{name}` is used by an earlier SLO"),
        ));
    }
    if !(objective.is_finite() && objective > 0.0 && objective < 100.0) {
        return Err(SloError::invalid(
            file,
            line(&["objective"]),
            format!("slos[{i}].objective"),
            format!("{objective} is not a percentage in (0, 100), e.g. 99.9"),
        ));
    }
    if let Some(bad) = first_bad_label(&labels.0) {
        return Err(SloError::invalid(
            file,
            line(&["labels"]),
            format!("slos[{i}].labels"),
            format!("`{bad}` is not a Prometheus label name"),
        ));
    }
    Ok(())
}

/// Parses a Sloth `prometheus/v1` spec.
pub fn parse(text: &str, file: &Path) -> Result<SloSet, SloError> {
    let spec: Spec = from_yaml(text, file)?;
    check_service(text, file, &spec.service, &spec.labels)?;
    let mut ignored_plugins: Vec<String> = spec
        .slo_plugins
        .iter()
        .flat_map(|c| c.chain.iter().map(|p| p.id.clone()))
        .collect();
    let mut slos = Vec::with_capacity(spec.slos.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in spec.slos.into_iter().enumerate() {
        let line = |path: &[&str]| locate::item_line(text, "slos", i, path);
        check_slo_basics(text, file, i, &s.name, s.objective, &s.labels, &mut seen)?;
        if let Some(p) = &s.plugins {
            ignored_plugins.extend(p.chain.iter().map(|p| p.id.clone()));
            let _ = p.overrides;
        }
        let sli = match (s.sli.events, s.sli.raw, s.sli.plugin) {
            (Some(ev), None, None) => {
                for (q, name) in [
                    (&ev.error_query, "error_query"),
                    (&ev.total_query, "total_query"),
                ] {
                    check_template(q, true).map_err(|m| {
                        SloError::invalid(
                            file,
                            line(&["sli", "events", name]),
                            format!("slos[{i}].sli.events.{name}"),
                            m,
                        )
                    })?;
                }
                Sli::Events {
                    error_query: ev.error_query,
                    total_query: ev.total_query,
                }
            }
            (None, Some(raw), None) => {
                check_template(&raw.error_ratio_query, true).map_err(|m| {
                    SloError::invalid(
                        file,
                        line(&["sli", "raw"]),
                        format!("slos[{i}].sli.raw.error_ratio_query"),
                        m,
                    )
                })?;
                Sli::Raw {
                    error_ratio_query: raw.error_ratio_query,
                }
            }
            (None, None, Some(_)) => {
                return Err(SloError::invalid(
                    file,
                    line(&["sli", "plugin"]),
                    format!("slos[{i}].sli.plugin"),
                    "SLI plugins run Go code inside Sloth and are not supported: write the plugin's queries as `events` or `raw`",
                ));
            }
            _ => {
                return Err(SloError::invalid(
                    file,
                    line(&["sli"]),
                    format!("slos[{i}].sli"),
                    "give exactly one of `events` or `raw`",
                ));
            }
        };
        let alerting = s.alerting.into_alerting(file, i, line, None)?;
        let entry = Entry {
            name: s.name,
            description: s.description,
            objective: s.objective,
            labels: s.labels,
        };
        slos.push(entry.into_slo(&spec.service, &spec.labels, sli, alerting));
    }
    Ok(SloSet::new(
        file,
        SpecFormat::SlothV1,
        30,
        slos,
        ignored_plugins,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SloError;

    const GOOD: &str = r#"version: "prometheus/v1"
service: "myservice"
labels:
  owner: "myteam"
  tier: 2
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "HTTP availability."
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: MyServiceHighErrorRate
      page_alert:
        labels:
          severity: pageteam
      ticket_alert:
        disable: true
"#;

    fn err(text: &str) -> String {
        match parse(text, Path::new("s.yaml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_a_sloth_spec() {
        let set = parse(GOOD, Path::new("s.yaml")).unwrap();
        let slo = &set.slos[0];
        assert_eq!(slo.id, "myservice-requests-availability");
        assert_eq!(slo.labels.get("tier").map(String::as_str), Some("2"));
        assert_eq!(slo.budget(), 0.001);
        assert!(slo.alerting.ticket.disable);
        assert!(matches!(slo.sli, Sli::Events { .. }));
    }

    #[test]
    fn every_bad_field_is_named_with_its_line() {
        let cases: Vec<(String, &str)> = vec![
            (GOOD.replace("objective: 99.9", "objective: 100"), "s.yaml:8: `slos[0].objective`"),
            (GOOD.replace("objective: 99.9", "objective: -1"), "s.yaml:8: `slos[0].objective`"),
            (GOOD.replace("objective: 99.9", "objective: high"), "s.yaml:8:"),
            (GOOD.replace("[{{.window}}]))\n        total", "[5m]))\n        total"), "s.yaml:12: `slos[0].sli.events.error_query`: the query must use"),
            (GOOD.replace("{{.window}}]))\n    alerting", "{{.win}}]))\n    alerting"), "`slos[0].sli.events.total_query`: unsupported template"),
            (GOOD.replace("      name: MyServiceHighErrorRate\n", ""), "`slos[0].alerting.name`: required"),
            (GOOD.replace("severity: pageteam", "bad-label: x"), "s.yaml:17: `slos[0].alerting.page_alert.labels`"),
            (GOOD.replace("owner:", "0wner:"), "s.yaml:3: `labels`"),
            (GOOD.replace("service: \"myservice\"", "service: \"my service\""), "s.yaml:2: `service`"),
            (GOOD.replace("  - name: \"requests-availability\"", "  - name: \"\""), "s.yaml:7: `slos[0].name`"),
            (GOOD.replace("      events:", "      plugin:\n        id: x\n      events:"), "`slos[0].sli`: give exactly one"),
            (GOOD.replace("    sli:\n      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n", "    sli:\n      plugin:\n        id: sloth-common/availability\n"), "`slos[0].sli.plugin`: SLI plugins"),
            (GOOD.replace("disable: true", "disable: true\n        for: soon"), "`slos[0].alerting.ticket_alert.for`"),
            (GOOD.replace("    description:", "    descripton:"), "s.yaml:9:5: slos[0]: unknown field `descripton`"),
            (format!("{GOOD}{}", &GOOD[GOOD.find("  - name").unwrap_or(0)..]), "`slos[1].name`: `requests-availability` is used"),
        ];
        for (text, want) in cases {
            let got = err(&text);
            assert!(got.contains(want), "want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn plugins_are_recorded_not_run() {
        let text = GOOD.replace(
            "slos:\n",
            "slo_plugins:\n  chain:\n    - id: \"sloth.dev/contrib/alert_for/v1\"\nslos:\n",
        );
        let set = parse(&text, Path::new("s.yaml")).unwrap();
        assert_eq!(set.ignored_plugins, vec!["sloth.dev/contrib/alert_for/v1"]);
    }

    #[test]
    fn syntax_errors_are_typed() {
        let e = parse(
            "version: \"prometheus/v1\"\nservice: [\n",
            Path::new("s.yaml"),
        )
        .unwrap_err();
        assert!(matches!(e, SloError::Syntax { .. }), "{e}");
    }
}
