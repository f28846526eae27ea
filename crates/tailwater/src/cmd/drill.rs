//! `tailwater drill`: the game day. A synthetic backend, the tailwater proxy in front of it,
//! and open-loop load from 0.5× to 10× the backend's capacity, unprotected then protected,
//! printed side by side and written as a self-contained HTML report.

use std::io::{IsTerminal as _, Write as _};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tailwater_drill::{ConfigError, DrillConfig, Event};

/// Arguments of `tailwater drill`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Short phases (1.5 s each, about 18 s in all) instead of 6 s (about 65 s).
    #[arg(long)]
    quick: bool,
    /// Write the HTML report here (self-contained, no network requests).
    #[arg(long, default_value = "tailwater-drill.html")]
    report: PathBuf,
    /// Do not write the HTML report.
    #[arg(long, conflicts_with = "report")]
    no_report: bool,
    /// JSON results: to FILE, or to stdout when FILE is `-` or left out (the table then goes
    /// to stderr).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
    /// Length of each phase (default 6s, or 1.5s with --quick).
    #[arg(long)]
    phase: Option<String>,
    /// Offered load per phase, as multiples of the backend's capacity.
    #[arg(long, default_value = "0.5,1,2,5,10")]
    multipliers: String,
    /// Drill a service you run (http://host:port/path) instead of the synthetic backend:
    /// straight at it, then through the tailwater proxy in front of it. Loopback only unless
    /// --allow-remote.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// The target's capacity in requests/s; without it a short ramp finds the knee first.
    #[arg(long, requires = "target")]
    capacity: Option<f64>,
    /// Allow a --target that does not resolve to loopback.
    #[arg(long, requires = "target")]
    allow_remote: bool,
    /// With an https:// --target: trust the CA certificates in this PEM file (besides the
    /// system's roots) for the target's certificate, which is always verified.
    #[arg(long, requires = "target", value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// With --target: the highest rate the drill (ramp included) may offer, requests/s.
    #[arg(long, requires = "target", default_value_t = tailwater_drill::DEFAULT_MAX_RATE)]
    max_rate: f64,
    /// Backend workers.
    #[arg(long, default_value_t = 8, conflicts_with = "target")]
    workers: usize,
    /// Backend mean service time per request.
    #[arg(long, default_value = "40ms", conflicts_with = "target")]
    service_time: String,
    /// How the backend's service times vary: constant, exponential, lognormal (with
    /// --service-cv) or bimodal (5 % of requests 10× slower).
    #[arg(long, default_value = "constant", conflicts_with = "target")]
    service_dist: String,
    /// Coefficient of variation of --service-dist lognormal (default 1).
    #[arg(long, conflicts_with = "target")]
    service_cv: Option<f64>,
    /// Client timeout: responses after it are not goodput, and the client goes away.
    #[arg(long, default_value = "1s")]
    timeout: String,
    /// Client connections (HTTP/1.1 keep-alive).
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// The x-criticality mix, tier=weight.
    #[arg(
        long,
        default_value = "critical_plus=10,critical=50,sheddable_plus=25,sheddable=15"
    )]
    mix: String,
    /// The proxy's limit algorithm, by the name the proxy's TOML and `tailwater sim` use:
    /// recommended, static, aimd, vegas, vegas-windowed, gradient2, gradient2-raw,
    /// gradient2-corrected, gradient2-corrected-fast, envoy or envoy-corrected. Default: the
    /// one the proxy, the library and the tower layers default to.
    #[arg(long, default_value = "recommended")]
    algorithm: String,
    /// The proxy's queue discipline: none, fifo, lifo, adaptive-lifo or codel.
    #[arg(long, default_value = "codel")]
    queue: String,
    /// The proxy's utilisation thresholds per tier: critical_plus,critical,sheddable_plus,sheddable.
    #[arg(long, default_value = "1,0.9,0.75,0.5")]
    tiers: String,
    /// Seed of the arrivals and the mix.
    #[arg(long, default_value_t = super::DEFAULT_SEED)]
    seed: u64,
    /// Evenly spaced arrivals instead of Poisson.
    #[arg(long)]
    uniform: bool,
    /// No progress lines.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The cells drill instead (issue 14): four cells behind the proxy's `[[cell]]`;
    /// rounds of a baseline, a tenant at 10× in cell A and a control (the baseline again),
    /// then cell A's backend stopped; prints each cell's goodput and p99, whether the blast
    /// radius stayed in cell A (exit 1 if not) and the control's ratio (the noise floor).
    /// Takes --quick (2 s scenarios instead of 3 s), --phase, --rounds, --seed.
    #[arg(long, conflicts_with = "target")]
    cells: bool,
    /// With --cells: rounds of baseline, noisy and control (default 8; 1 to 100).
    #[arg(long, requires = "cells")]
    rounds: Option<usize>,
}

fn run_cells(args: &Args) -> anyhow::Result<u8> {
    let mut c = tailwater_drill::CellsConfig::default();
    if args.quick {
        c.phase = std::time::Duration::from_secs(2);
    }
    if let Some(p) = &args.phase {
        match tailwater_load::parse_duration("phase", p) {
            Ok(d) => c.phase = d,
            Err(e) => {
                eprintln!("tailwater drill: {e}");
                return Ok(2);
            }
        }
    }
    c.seed = args.seed;
    if let Some(r) = args.rounds {
        c.rounds = r;
    }
    if let Err(e) = c.validate() {
        eprintln!("tailwater drill: {e}");
        return Ok(2);
    }
    if !args.quiet {
        eprintln!(
            "tailwater drill --cells: {} rounds of baseline, noisy tenant and control, then a dead cell; {:.1}s each (about {:.0}s)",
            c.rounds,
            c.phase.as_secs_f64(),
            (3 * c.rounds + 1) as f64 * c.phase.as_secs_f64()
        );
    }
    let report = tailwater_drill::run_cells(&c).context("the cells drill failed")?;
    print!("{}", tailwater_drill::render_cells_table(&report));
    let met = report.others_goodput_when_dead().is_some_and(|g| g >= 0.99)
        && report
            .others_p99_ratio_when_noisy()
            .is_some_and(|r| r <= 1.1);
    Ok(if met { 0 } else { 1 })
}

fn build_config(args: &Args) -> Result<DrillConfig, ConfigError> {
    let mut c = if args.quick {
        DrillConfig::quick()
    } else {
        DrillConfig::full()
    };
    if let Some(p) = &args.phase {
        c.phase = tailwater_load::parse_duration("phase", p)?;
    }
    c.multipliers = args
        .multipliers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|m| {
            m.trim_end_matches(['x', '×'])
                .parse::<f64>()
                .map_err(|_| ConfigError::new("multipliers", format!("`{m}` is not a number")))
        })
        .collect::<Result<_, _>>()?;
    c.workers = NonZeroUsize::new(args.workers)
        .ok_or_else(|| ConfigError::new("workers", "must be at least 1"))?;
    c.service_time = tailwater_load::parse_duration("service_time", &args.service_time)?;
    c.service_dist = DrillConfig::parse_service_dist(&args.service_dist, args.service_cv)?;
    c.timeout = tailwater_load::parse_duration("timeout", &args.timeout)?;
    c.connections = NonZeroUsize::new(args.connections)
        .ok_or_else(|| ConfigError::new("connections", "must be at least 1"))?;
    c.mix = DrillConfig::parse_mix(&args.mix)?;
    c.algorithm = DrillConfig::parse_algorithm(&args.algorithm)?;
    c.queue = DrillConfig::parse_queue(&args.queue)?;
    let tiers: Vec<f64> = args
        .tiers
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .map_err(|_| ConfigError::new("tiers", format!("`{t}` is not a number")))
        })
        .collect::<Result<_, _>>()?;
    c.tiers = tiers
        .try_into()
        .map_err(|_| ConfigError::new("tiers", "needs four thresholds"))?;
    c.seed = args.seed;
    c.poisson = !args.uniform;
    if let Some(url) = &args.target {
        c.target = Some(
            tailwater_drill::ExternalTarget::new(
                url,
                args.capacity,
                args.allow_remote,
                args.max_rate,
            )?
            .with_ca_file(args.cacert.clone()),
        );
    }
    c.validate()?;
    Ok(c)
}

fn observer(live: bool) -> tailwater_drill::Observer {
    Arc::new(move |e: &Event| match *e {
        Event::Phase {
            side,
            index,
            of,
            multiplier,
            offered,
        } => {
            if live {
                eprint!("\r\x1b[2K");
            }
            eprintln!(
                "{:<11} phase {}/{}: {multiplier}x capacity, {offered:.0} req/s offered",
                side.as_str(),
                index + 1,
                of
            );
        }
        Event::Tick {
            side,
            elapsed,
            total,
            achieved,
        } if live => {
            eprint!(
                "\r\x1b[2K{:<11} {:>5.1}s / {:.1}s  responses {achieved:>6.0}/s",
                side.as_str(),
                elapsed.as_secs_f64(),
                total.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
        Event::SideFinished { side, elapsed } => {
            if live {
                eprint!("\r\x1b[2K");
            }
            eprintln!(
                "{:<11} done in {:.1}s",
                side.as_str(),
                elapsed.as_secs_f64()
            );
        }
        _ => {}
    })
}

/// Runs `tailwater drill`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    if args.cells {
        return run_cells(&args);
    }
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tailwater drill: {e}");
            return Ok(2);
        }
    };
    let observer = (!args.quiet).then(|| observer(std::io::stderr().is_terminal()));
    if !args.quiet {
        eprintln!(
            "tailwater drill: {} phases of {:.2}s, unprotected then protected (about {:.0}s)",
            config.multipliers.len(),
            config.phase.as_secs_f64(),
            2.0 * (config.side_duration() + config.timeout).as_secs_f64() + 1.0
        );
    }
    if !args.quiet && config.target.as_ref().is_some_and(|t| t.capacity.is_none()) {
        eprintln!("tailwater drill: finding the target's capacity with a short ramp (about 10s)");
    }
    let report = match tailwater_drill::run(&config, observer) {
        Ok(r) => r,
        // A refused target (not loopback, or no knee within the bounds) is bad input.
        Err(tailwater_drill::DrillError::Config(e)) => {
            eprintln!("tailwater drill: {e}");
            return Ok(2);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("the drill failed")),
    };
    // With the JSON on stdout, the human output goes to stderr so stdout stays parseable.
    let json_stdout = super::json_to_stdout(&args.json);
    let mut human = tailwater_drill::render_table(&report);
    if !args.no_report {
        std::fs::write(&args.report, tailwater_drill::render_html(&report))
            .with_context(|| format!("could not write `{}`", args.report.display()))?;
        human.push_str(&format!("HTML report: {}\n", args.report.display()));
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&tailwater_drill::to_json(&report))
            .context("could not encode the JSON report")?;
        super::write_json(path, &(text + "\n"))?;
        if !json_stdout {
            human.push_str(&format!("JSON: {}\n", path.display()));
        }
    }
    if json_stdout {
        eprint!("{human}");
    } else {
        super::sim::emit(&human)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["drill"];
        argv.extend_from_slice(extra);
        crate::cmd::parse_args::<Args>(argv).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_build_the_full_drill() {
        let c = build_config(&args(&[])).unwrap();
        assert_eq!(c, DrillConfig::full());
        let q = build_config(&args(&["--quick"])).unwrap();
        assert_eq!(q, DrillConfig::quick());
    }

    #[test]
    fn flags_are_applied() {
        let c = build_config(&args(&[
            "--phase",
            "2s",
            "--multipliers",
            "1x,3",
            "--workers",
            "4",
            "--service-time",
            "20ms",
            "--algorithm",
            "vegas",
            "--queue",
            "adaptive-lifo",
            "--tiers",
            "1,1,0.5,0.25",
            "--service-dist",
            "lognormal",
            "--service-cv",
            "2",
            "--uniform",
        ]))
        .unwrap();
        assert_eq!(c.phase, std::time::Duration::from_secs(2));
        assert_eq!(c.multipliers, vec![1.0, 3.0]);
        assert_eq!(c.capacity(), 200.0);
        assert_eq!(c.algorithm, tailwater_drill::AlgorithmName::Vegas);
        assert_eq!(c.queue, tailwater_drill::QueueName::AdaptiveLifo);
        assert_eq!(c.tiers, [1.0, 1.0, 0.5, 0.25]);
        assert_eq!(
            c.service_dist,
            tailwater_drill::ServiceDistribution::LogNormal { cv: 2.0 }
        );
        assert!(!c.poisson);
    }

    #[test]
    fn bad_input_exits_2_and_names_the_field() {
        for (flags, field) in [
            (&["--phase", "10"][..], "phase"),
            (&["--multipliers", "1,x"][..], "multipliers"),
            (&["--multipliers", "0"][..], "multipliers"),
            (&["--workers", "0"][..], "workers"),
            (&["--service-time", "1ms"][..], "service_time"),
            (&["--timeout", "soon"][..], "timeout"),
            (&["--connections", "0"][..], "connections"),
            (&["--mix", "gold=1"][..], "mix"),
            (&["--algorithm", "pid"][..], "algorithm"),
            (&["--queue", "random"][..], "queue"),
            (&["--service-dist", "pareto"][..], "service_dist"),
            (&["--service-cv", "2"][..], "service_cv"),
            (&["--tiers", "1,0.5"][..], "tiers"),
            (&["--tiers", "0.5,1,1,1"][..], "tiers"),
        ] {
            let err = build_config(&args(flags)).unwrap_err();
            assert_eq!(err.field(), field, "{flags:?}");
            assert_eq!(run(args(flags)).unwrap(), 2, "{flags:?}");
        }
    }
}
