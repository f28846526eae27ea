//! `tailwater slo`: SLO burn-rate alerting.
//!
//! ```text
//! tailwater slo generate slo.yaml -o rules.yml --runbooks runbooks/ --inhibit inhibit.yml
//! tailwater slo eval --objective 99.9 --error-rate 1 --duration 1h
//! tailwater slo eval --spec slo.yaml --slo availability --csv errors.csv --eval-interval 30s
//! tailwater slo eval --objective 99.9 --load-json run.json
//! tailwater slo dashboard --proxy-config proxy.toml --spec slo.yaml -o dashboard.json
//! tailwater slo dashboard --rls -o rls-dashboard.json
//! tailwater slo ops -o ops-rules.yml --runbooks runbooks/
//! ```
//!
//! `generate` reads Sloth's `prometheus/v1` spec or the native `tailwater/v1` one and writes
//! Prometheus rules (multi-window, multi-burn-rate, the SRE workbook's factors), one runbook
//! per alert and an Alertmanager inhibition rule. `eval` replays a synthetic incident or a
//! recorded series through the same alert logic and prints, per tier and alert, when it fires,
//! when it resets and the budget spent. Bad input exits 2 with `file:line: field: message`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tailwater_slo::eval::{self, EvalSpec};
use tailwater_slo::model::{Guard, MinEvents, Sli, SloSet};
use tailwater_slo::series::{Incident, Series};
use tailwater_slo::{PromDuration, SloError, Tier};

/// Arguments of `tailwater slo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Prometheus recording and alerting rules, runbooks and inhibition rules from a spec.
    Generate(GenerateArgs),
    /// Replay an incident or a recorded series through the alert logic.
    Eval(EvalArgs),
    /// A Grafana dashboard JSON for the proxy, from its config (and an SLO spec), or for
    /// the rate limit service (`--rls`).
    Dashboard(DashboardArgs),
    /// Operational (non-SLO) alert rules and their runbooks: refused reloads of the proxy
    /// and the RLS, dropped access log lines, RLS store fallback.
    Ops(OpsArgs),
}

/// Arguments of `tailwater slo ops`.
#[derive(Debug, clap::Args)]
struct OpsArgs {
    /// Write the rules here (default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write one markdown runbook per alert into this directory.
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Prefix of each alert's `runbook_url` annotation (the runbook's file name is appended).
    #[arg(long, value_name = "URL")]
    runbook_url: Option<String>,
}

/// Arguments of `tailwater slo dashboard`.
#[derive(Debug, clap::Args)]
struct DashboardArgs {
    /// The proxy's TOML config: its route names become the `route` variable's options.
    #[arg(long, value_name = "FILE", required_unless_present = "rls")]
    proxy_config: Option<PathBuf>,
    /// Add an SLO row over the rules `tailwater slo generate` makes from this spec.
    #[arg(long, value_name = "FILE", conflicts_with = "rls")]
    spec: Option<PathBuf>,
    /// The dashboard of `tailwater rls` (from its metrics) instead of the proxy's.
    #[arg(long, conflicts_with = "proxy_config")]
    rls: bool,
    /// Write the dashboard here (default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Arguments of `tailwater slo generate`.
#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// The spec: Sloth `prometheus/v1` or native `tailwater/v1` YAML.
    spec: PathBuf,
    /// Write the rules here (default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write one markdown runbook per alert into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Write Alertmanager inhibit_rules (page silences ticket) to this file.
    #[arg(long, value_name = "FILE")]
    inhibit: Option<PathBuf>,
    /// Add a `runbook_url` annotation: this prefix + the runbook's file name.
    #[arg(long, value_name = "URL")]
    runbook_url: Option<String>,
    /// SLO period in days (Sloth's --window-days); the default is the spec's, else 30.
    #[arg(long, value_parser = clap::value_parser!(u32).range(7..=366))]
    period_days: Option<u32>,
    /// Low-traffic guard: a tier fires only with at least N events in its long window.
    /// For Sloth specs the total_query must then be a per-second rate.
    #[arg(long, value_name = "N", conflicts_with = "no_traffic_guard", value_parser = clap::value_parser!(u64).range(1..))]
    min_events: Option<u64>,
    /// No low-traffic guard (native specs have an automatic one by default).
    #[arg(long)]
    no_traffic_guard: bool,
}

/// Arguments of `tailwater slo eval`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Detection is measured from the incident start (series start for recorded data), \
reset from the incident end (the last bad event for recorded data). Without --eval-interval \
the instants are exact (continuous time, the workbook's figures)."
)]
struct EvalArgs {
    /// Take the objective, period, tiers and guard from this spec.
    #[arg(long, conflicts_with = "objective")]
    spec: Option<PathBuf>,
    /// Which SLO of --spec (default: the first).
    #[arg(long, requires = "spec")]
    slo: Option<String>,
    /// Objective in percent (without --spec), e.g. 99.9.
    #[arg(long, allow_hyphen_values = true)]
    objective: Option<f64>,
    /// Synthetic incident: error ratio in (0, 1] (1 = total outage).
    #[arg(long, allow_hyphen_values = true, requires = "duration", conflicts_with_all = ["csv", "load_json"])]
    error_rate: Option<f64>,
    /// Synthetic incident: how long it lasts (e.g. 1h).
    #[arg(long, requires = "error_rate")]
    duration: Option<PromDuration>,
    /// Synthetic incident: events per second.
    #[arg(long, default_value_t = 100.0, allow_hyphen_values = true)]
    rate: f64,
    /// Synthetic incident: error ratio outside the incident, in [0, 1).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    background: f64,
    /// Recorded series: CSV rows `timestamp,total,errors` (events in the interval ending at
    /// the timestamp, in seconds).
    #[arg(long, value_name = "FILE", conflicts_with = "load_json")]
    csv: Option<PathBuf>,
    /// Recorded series: the JSON report of `tailwater load --json` (its intervals).
    #[arg(long, value_name = "FILE")]
    load_json: Option<PathBuf>,
    /// Rule evaluation interval (e.g. 30s); default: continuous.
    #[arg(long)]
    eval_interval: Option<PromDuration>,
    /// Replace the tiers: SEVERITY:LONG:SHORT:FACTOR, repeatable (e.g. page:10m:10m:1).
    #[arg(long = "tier")]
    tiers: Vec<Tier>,
    /// SLO period in days (default: the spec's, else 30).
    #[arg(long, value_parser = clap::value_parser!(u32).range(7..=366))]
    period_days: Option<u32>,
    /// Low-traffic guard: at least N events in a tier's long window.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    min_events: Option<u64>,
}

/// Runs `tailwater slo`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let outcome = match args.command {
        Sub::Generate(a) => generate(&a),
        Sub::Eval(a) => evaluate(&a),
        Sub::Dashboard(a) => dashboard(&a),
        Sub::Ops(a) => ops(&a),
    };
    match outcome {
        Ok(()) => Ok(0),
        Err(Failure::Input(msg)) => {
            eprintln!("tailwater slo: error: {msg}");
            Ok(2)
        }
        Err(Failure::Io(e)) => Err(e),
    }
}

enum Failure {
    /// Bad input (exit 2).
    Input(String),
    /// Anything else (exit 1).
    Io(anyhow::Error),
}

impl From<SloError> for Failure {
    fn from(e: SloError) -> Self {
        // Every SloError is about the user's input, an unreadable spec included.
        Failure::Input(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Io(e)
    }
}

fn dashboard(a: &DashboardArgs) -> Result<(), Failure> {
    let d = match &a.proxy_config {
        Some(path) if !a.rls => {
            let config =
                tailwater_proxy::Config::from_file(path).map_err(|e| input(e.to_string()))?;
            let routes: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
            let set = a.spec.as_deref().map(|p| load_spec(p, None)).transpose()?;
            tailwater_slo::dashboard::proxy(&routes, set.as_ref())
        }
        _ => tailwater_slo::rls_dashboard::rls(),
    };
    let text = serde_json::to_string_pretty(&d).context("rendering the dashboard")? + "\n";
    match &a.output {
        Some(p) => write(p, &text),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn ops(a: &OpsArgs) -> Result<(), Failure> {
    let yaml = tailwater_slo::ops::rules(a.runbook_url.as_deref())
        .to_yaml()
        .context("rendering the rules")?;
    emit_rules(a.output.as_deref(), &yaml, a.runbooks.as_deref(), || {
        tailwater_slo::ops::runbooks()
    })?;
    Ok(())
}

fn input(msg: impl Into<String>) -> Failure {
    Failure::Input(msg.into())
}

fn load_spec(path: &Path, period_days: Option<u32>) -> Result<SloSet, Failure> {
    let mut set = tailwater_slo::spec::load(path)?;
    if let Some(d) = period_days {
        set.set_period_days(d);
    }
    for p in &set.ignored_plugins {
        // Sloth's alert_for plugin only sets `for:`, which the spec's `for` fields do here.
        if p != "sloth.dev/contrib/alert_for/v1" {
            eprintln!("tailwater slo: note: Sloth plugin `{p}` is not run");
        }
    }
    Ok(set)
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(Failure::Io)
}

/// Writes rendered rules to `output` (standard output without one) and, with a `runbooks`
/// directory (made if missing), each runbook `(file name, text)` into it: what `generate`
/// and `ops` both emit.
fn emit_rules(
    output: Option<&Path>,
    yaml: &str,
    runbooks: Option<&Path>,
    pages: impl FnOnce() -> Vec<(String, String)>,
) -> Result<(), Failure> {
    match output {
        Some(p) => write(p, yaml)?,
        None => print!("{yaml}"),
    }
    if let Some(dir) = runbooks {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in pages() {
            write(&dir.join(name), &text)?;
        }
    }
    Ok(())
}

fn generate(a: &GenerateArgs) -> Result<(), Failure> {
    let mut set = load_spec(&a.spec, a.period_days)?;
    for slo in &mut set.slos {
        if a.no_traffic_guard {
            slo.guard = None;
        } else if let Some(n) = a.min_events {
            let Sli::Events { total_query, .. } = &slo.sli else {
                return Err(input(format!(
                    "--min-events: SLO `{}` has a raw SLI, which has no event count to guard",
                    slo.name
                )));
            };
            slo.guard = Some(Guard {
                total_rate_query: total_query.clone(),
                min_events: MinEvents::Fixed(n),
            });
        }
    }
    let options = tailwater_slo::rules::Options {
        runbook_url: a.runbook_url.clone(),
    };
    let yaml = tailwater_slo::rules::generate_with(&set, &options)
        .to_yaml()
        .context("rendering the rules")?;
    emit_rules(a.output.as_deref(), &yaml, a.runbooks.as_deref(), || {
        tailwater_slo::runbook::generate(&set)
    })?;
    if let Some(p) = &a.inhibit {
        write(p, &tailwater_slo::rules::inhibit_rules_yaml())?;
    }
    Ok(())
}

fn evaluate(a: &EvalArgs) -> Result<(), Failure> {
    let (objective, mut period_days, mut tiers, mut guard, label) = match (&a.spec, a.objective) {
        (Some(path), _) => {
            let set = load_spec(path, a.period_days)?;
            let slo = match &a.slo {
                None => set.slos.first(),
                Some(n) => set.slos.iter().find(|s| &s.name == n),
            }
            .ok_or_else(|| {
                input(format!(
                    "--slo: no SLO {}in {} (it has: {})",
                    a.slo
                        .as_deref()
                        .map(|n| format!("`{n}` "))
                        .unwrap_or_default(),
                    path.display(),
                    set.slos
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let days = (set.period.secs() / 86_400) as u32;
            (
                slo.objective,
                days,
                set.tiers.clone(),
                slo.guard.as_ref().map(|g| g.min_events),
                format!("{} ({})", slo.id, path.display()),
            )
        }
        (None, Some(o)) => {
            if !(o.is_finite() && o > 0.0 && o < 100.0) {
                return Err(input(format!(
                    "--objective: {o} is not a percentage in (0, 100)"
                )));
            }
            (o, 30, Tier::workbook(30), None, format!("objective {o}%"))
        }
        (None, None) => return Err(input("give --objective PERCENT or --spec FILE")),
    };
    if let Some(d) = a.period_days {
        period_days = d;
        if a.tiers.is_empty() {
            tiers = Tier::workbook(d);
        }
    }
    if !a.tiers.is_empty() {
        tiers = a.tiers.clone();
    }
    if let Some(n) = a.min_events {
        guard = Some(MinEvents::Fixed(n));
    }
    if let Some(i) = a.eval_interval
        && i.secs() > 3600
    {
        return Err(input("--eval-interval: at most 1h"));
    }
    let longest = tiers.iter().map(|t| t.long.as_f64()).fold(0.0, f64::max);
    let (series, start, end, what) = match (a.error_rate, a.duration, &a.csv, &a.load_json) {
        (Some(r), Some(d), None, None) => {
            if !(r > 0.0 && r <= 1.0) {
                return Err(input(format!("--error-rate: {r} is not a ratio in (0, 1]")));
            }
            if !(a.rate.is_finite() && a.rate > 0.0) {
                return Err(input(format!(
                    "--rate: {} is not a positive number of events per second",
                    a.rate
                )));
            }
            if !(0.0..1.0).contains(&a.background) {
                return Err(input(format!(
                    "--background: {} is not a ratio in [0, 1)",
                    a.background
                )));
            }
            if d.secs() > 366 * 86_400 {
                return Err(input("--duration: at most 366d"));
            }
            let inc = Incident {
                rate: a.rate,
                error_ratio: r,
                duration: d.as_f64(),
                background: a.background,
                lead: longest,
                tail: longest,
            };
            (
                Series::synthetic(&inc),
                longest,
                longest + d.as_f64(),
                format!("{}% errors for {d} at {} events/s", r * 100.0, a.rate),
            )
        }
        (None, None, Some(p), None) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| input(format!("{}: {e}", p.display())))?;
            recorded(Series::from_csv(&text, p)?, p)
        }
        (None, None, None, Some(p)) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| input(format!("{}: {e}", p.display())))?;
            recorded(Series::from_load_json(&text, p)?, p)
        }
        _ => {
            return Err(input(
                "give a synthetic incident (--error-rate R --duration D) or a series (--csv FILE or --load-json FILE)",
            ));
        }
    };
    let spec = EvalSpec {
        objective,
        period: f64::from(period_days) * 86_400.0,
        tiers,
        guard,
        eval_interval: a.eval_interval.map(PromDuration::as_f64),
    };
    let report = eval::evaluate(&series, &spec, start, end);
    println!(
        "SLO {label}, {period_days}-day budget; {what}; rule evaluation: {}\n",
        a.eval_interval
            .map_or("continuous".to_owned(), |i| format!("every {i}"))
    );
    print!("{}", report.to_table());
    Ok(())
}

/// A recorded series' reference span: from its start to the end of its last bad interval.
fn recorded(series: Series, path: &Path) -> (Series, f64, f64, String) {
    let start = series.start();
    let (total, errors) = series.cumulative(series.end());
    // The last instant with errors: scan back over the cumulative error count.
    let mut end = series.end();
    let (_, e_end) = series.cumulative(end);
    let step = ((series.end() - start) / 10_000.0).max(1e-3);
    while end - step > start && series.cumulative(end - step).1 >= e_end {
        end -= step;
    }
    let what = format!(
        "{}: {total} events, {errors} bad ({:.3}%)",
        path.display(),
        if total > 0.0 {
            errors / total * 100.0
        } else {
            0.0
        }
    );
    (series, start, end, what)
}

#[cfg(test)]
mod tests;
