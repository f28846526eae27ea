//! SLO error-budget alerting for tailwater: multi-window, multi-burn-rate Prometheus rules,
//! a runbook per alert, and an offline evaluator that replays incidents through the same
//! alert logic.
//!
//! The alerting scheme is the Google SRE Workbook's (ch. 5, "Alerting on SLOs", Table 5-8 and
//! its final PromQL): four tiers, each firing when the error ratio exceeds `factor × budget`
//! over a long window **and** over a short window of about 1/12 of it.
//!
//! | Severity | Long / short | Factor | Budget consumed when it fires |
//! |---|---|---|---|
//! | page | 1h / 5m | 14.4 | 2 % |
//! | page | 6h / 30m | 6 | 5 % |
//! | ticket | 1d / 2h | 3 | 10 % |
//! | ticket | 3d / 6h | 1 | 10 % |
//!
//! Input is either [Sloth](https://github.com/slok/sloth)'s `prometheus/v1` spec, accepted as
//! is, or a short native form (`version: tailwater/v1`) that knows the proxy's own metrics
//! ([`spec::native`]). The output follows Sloth's rule names (`slo:sli_error:ratio_rate5m`,
//! `sloth_id`, `sloth_severity`, ...), so Sloth's dashboards work on it, with three
//! differences that fix reported Sloth problems:
//!
//! - every window, the 30-day one included, is a ratio of sums (Sloth's optimised 30-day rule
//!   averages 5-minute ratios, which under-counts errors when traffic is uneven: Sloth #241);
//! - an optional low-traffic guard: a tier fires only if its long window holds enough events
//!   that one bad event cannot trip it on its own (the workbook's low-traffic section);
//! - each alert carries `slo_tier` labels and a runbook, and an Alertmanager inhibition rule
//!   (page silences ticket for the same SLO) is generated.
//!
//! ```
//! let spec = "version: tailwater/v1\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli: availability\n";
//! let set = tailwater_slo::spec::parse(spec, "shop.yaml").unwrap();
//! let rules = tailwater_slo::rules::generate(&set);
//! let yaml = rules.to_yaml().unwrap();
//! assert!(yaml.contains("slo:sli_error:ratio_rate1h"));
//! assert!(yaml.contains("14.4 * 0.001"));
//! ```

#![forbid(unsafe_code)]

pub mod dashboard;
pub mod duration;
pub mod error;
pub mod eval;
pub mod model;
pub mod ops;
pub mod rls_dashboard;
pub mod rules;
pub mod runbook;
pub mod series;
pub mod spec;
pub mod tier;

pub use duration::PromDuration;
pub use error::SloError;
pub use model::{Slo, SloSet};
pub use tier::{Severity, Tier};
