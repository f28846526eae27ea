//! The normalised SLO model that both spec formats parse into and that the rule generator,
//! the runbooks and the evaluator read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::duration::PromDuration;
use crate::tier::{Severity, Tier, round_sig};

/// Which spec format a set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// Sloth's `prometheus/v1`.
    SlothV1,
    /// `tailwater/v1`, the native form over the proxy's metrics.
    Native,
}

/// All SLOs of one spec file, with the settings shared by them.
#[derive(Debug, Clone)]
pub struct SloSet {
    /// The file the spec came from (for messages).
    pub source: PathBuf,
    /// The format it was written in.
    pub format: SpecFormat,
    /// The SLO period (30 days unless the spec or the CLI says otherwise).
    pub period: PromDuration,
    /// The alert tiers, the workbook's by default.
    pub tiers: Vec<Tier>,
    /// The SLOs.
    pub slos: Vec<Slo>,
    /// Sloth plugins named in the spec; they are not run, and the caller should say so.
    pub ignored_plugins: Vec<String>,
}

impl SloSet {
    /// A set over a period of `period_days` days, with the workbook tiers for it.
    pub(crate) fn new(
        source: &Path,
        format: SpecFormat,
        period_days: u32,
        slos: Vec<Slo>,
        ignored_plugins: Vec<String>,
    ) -> Self {
        let mut set = Self {
            source: source.to_owned(),
            format,
            period: PromDuration::from_secs(0),
            tiers: Vec::new(),
            slos,
            ignored_plugins,
        };
        set.set_period_days(period_days);
        set
    }

    /// Replaces the period and recomputes the workbook tiers for it (Sloth's `--window-days`).
    pub fn set_period_days(&mut self, days: u32) {
        self.period = PromDuration::from_secs(u64::from(days) * 86_400);
        self.tiers = Tier::workbook(days);
    }

    /// The distinct windows the rules record, shortest first (the tiers' windows plus the period).
    pub fn windows(&self) -> Vec<PromDuration> {
        let mut w: Vec<PromDuration> = self
            .tiers
            .iter()
            .flat_map(|t| [t.short, t.long])
            .chain([self.period])
            .collect();
        w.sort();
        w.dedup();
        w
    }
}

/// One service level objective.
#[derive(Debug, Clone)]
pub struct Slo {
    /// `service-name`, Sloth's `sloth_id`.
    pub id: String,
    /// The service (`sloth_service`).
    pub service: String,
    /// The SLO's name (`sloth_slo`).
    pub name: String,
    /// Free text for the runbook.
    pub description: Option<String>,
    /// Target in percent, in (0, 100), e.g. 99.9.
    pub objective: f64,
    /// Labels on every generated rule (service labels merged with the SLO's).
    pub labels: BTreeMap<String, String>,
    /// How errors are measured.
    pub sli: Sli,
    /// Alert names, labels, annotations and which severities are on.
    pub alerting: Alerting,
    /// Low-traffic guard, if any.
    pub guard: Option<Guard>,
    /// Extra runbook text the native form knows (metrics to look at, knobs to turn).
    pub context: Option<NativeContext>,
}

impl Slo {
    /// The file name of the runbook of this SLO's `sev` alert:
    /// `<alert>-<sloth_id>-<severity>.md`. Here, beside the model, because both the rules
    /// (their `runbook_url`) and the runbooks name it.
    pub fn runbook_file(&self, sev: Severity) -> String {
        format!("{}-{}-{sev}.md", self.alerting.name, self.id)
    }

    /// The objective as a ratio (0.999), rounded to 12 significant digits.
    pub fn objective_ratio(&self) -> f64 {
        round_sig(self.objective / 100.0)
    }

    /// The error budget as a ratio, `1 − objective` (0.001 for 99.9 %), computed as Sloth does
    /// (`(100 − objective) / 100`) and rounded to 12 significant digits.
    pub fn budget(&self) -> f64 {
        round_sig((100.0 - self.objective) / 100.0)
    }

    /// The matchers that select this SLO's recorded series.
    pub fn selector(&self) -> String {
        format!(
            "sloth_id=\"{}\", sloth_service=\"{}\", sloth_slo=\"{}\"",
            self.id, self.service, self.name
        )
    }

    /// Settings of the alert of `severity`.
    pub fn alert(&self, severity: Severity) -> &AlertConfig {
        match severity {
            Severity::Page => &self.alerting.page,
            Severity::Ticket => &self.alerting.ticket,
        }
    }
}

/// How the error ratio of an SLO is measured. Queries carry Sloth's `{{.window}}` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// Bad events over all events; each query returns a sum over the window, so the ratio is a
    /// ratio of sums on every window.
    Events {
        /// Bad events (e.g. 5xx) over the window.
        error_query: String,
        /// All events over the window.
        total_query: String,
    },
    /// A query that already returns the error ratio over the window.
    Raw {
        /// The error ratio (0..1) over the window.
        error_ratio_query: String,
    },
}

/// Alert settings shared by the SLO's page and ticket alerts.
#[derive(Debug, Clone, Default)]
pub struct Alerting {
    /// The alert name (both severities share it, as in Sloth).
    pub name: String,
    /// Labels on both alerts.
    pub labels: BTreeMap<String, String>,
    /// Annotations on both alerts.
    pub annotations: BTreeMap<String, String>,
    /// The page alert.
    pub page: AlertConfig,
    /// The ticket alert.
    pub ticket: AlertConfig,
}

/// Settings of one alert (page or ticket).
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    /// Do not generate it.
    pub disable: bool,
    /// Labels (routing keys, severity names of your Alertmanager).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Prometheus `for:` (Sloth's `alert_for` plugin setting), if given.
    pub for_: Option<PromDuration>,
}

/// Low-traffic guard: a tier fires only when its long window holds at least `min_events`
/// events, so a handful of requests cannot page anyone (the workbook's low-traffic case:
/// at 10 requests/hour one error is a 1,000× burn).
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// Events per second over `{{.window}}` (the total query, which must be a rate).
    pub total_rate_query: String,
    /// How many events the long window must hold.
    pub min_events: MinEvents,
}

/// The guard's threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinEvents {
    /// Per tier, the fewest events for which one bad event alone stays under the tier's
    /// threshold: `ceil(1 / (factor × budget))` (70 for 14.4× at 99.9 %).
    Auto,
    /// The same count for every tier.
    Fixed(u64),
}

impl MinEvents {
    /// The count for a tier with `factor` and error `budget`.
    pub fn for_tier(self, factor: f64, budget: f64) -> u64 {
        match self {
            MinEvents::Fixed(n) => n,
            MinEvents::Auto => {
                let n = 1.0 / (factor * budget);
                // Clamp: a budget near 0 would ask for an absurd count.
                round_sig(n).ceil().clamp(1.0, 1e12) as u64
            }
        }
    }
}

/// What the native form knows about the proxy, for the runbook.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeContext {
    /// The proxy route the SLO watches, if one.
    pub route: Option<String>,
    /// `availability` or `latency`.
    pub kind: &'static str,
    /// Latency threshold in seconds, for latency SLOs.
    pub threshold: Option<f64>,
}

/// Replaces Sloth's `{{.window}}` (spaces allowed inside the braces) with `window`.
/// Any other `{{ ... }}` is left as is (the parser rejects it beforehand).
pub fn expand(query: &str, window: PromDuration) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        if inner == ".window" {
            out.push_str(&window.to_string());
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Checks a templated query: non-empty, every `{{ }}` is `{{.window}}`, and (if `required`)
/// at least one is present. Returns what is wrong.
pub fn check_template(query: &str, required: bool) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("the query is empty".into());
    }
    let mut rest = query;
    let mut found = false;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            return Err("`{{` without a closing `}}`".into());
        };
        let inner = rest[start + 2..start + len].trim();
        if inner != ".window" {
            return Err(format!(
                "unsupported template `{{{{{inner}}}}}`: only {{{{.window}}}} is known"
            ));
        }
        found = true;
        rest = &rest[start + len + 2..];
    }
    if required && !found {
        return Err("the query must use {{.window}} in its range selectors".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_the_window_placeholder() {
        let q = "sum(rate(x[{{.window}}])) / sum(rate(y[{{ .window }}]))";
        assert_eq!(
            expand(q, PromDuration::from_secs(300)),
            "sum(rate(x[5m])) / sum(rate(y[5m]))"
        );
    }

    #[test]
    fn template_errors() {
        assert!(check_template("rate(x[{{.window}}])", true).is_ok());
        assert!(
            check_template("rate(x[5m])", true)
                .unwrap_err()
                .contains("must use")
        );
        assert!(check_template("rate(x[5m])", false).is_ok());
        assert!(check_template("  ", false).unwrap_err().contains("empty"));
        assert!(
            check_template("rate(x[{{.window])", true)
                .unwrap_err()
                .contains("closing")
        );
        assert!(
            check_template("rate(x[{{.w}}])", true)
                .unwrap_err()
                .contains("unsupported")
        );
    }

    #[test]
    fn auto_guard_counts() {
        assert_eq!(MinEvents::Auto.for_tier(14.4, 0.001), 70);
        assert_eq!(MinEvents::Auto.for_tier(1.0, 0.001), 1000);
        assert_eq!(MinEvents::Auto.for_tier(6.0, 0.05), 4);
        assert_eq!(MinEvents::Fixed(5).for_tier(14.4, 0.001), 5);
    }
}
