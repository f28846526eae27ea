//! `tailwater load`: open-loop, coordinated-omission-correct HTTP load generation.

use std::io::IsTerminal as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tailwater_load::{Config, ConfigError, HeaderMix, Progress, Schedule, Spacing};

/// Arguments of `tailwater load` (boxed: they are many, and `Command` stays small).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    opts: Box<Opts>,
}

/// The options of `tailwater load`.
#[derive(Debug, clap::Args)]
struct Opts {
    /// Target URL (http:// only; use --http2 for h2c).
    url: String,
    /// Constant target rate in requests/s (with --duration).
    #[arg(short = 'R', long, allow_hyphen_values = true)]
    rate: Option<String>,
    /// Run length with --rate (e.g. 30s, 2m).
    #[arg(short = 'd', long, default_value = "10s", allow_hyphen_values = true)]
    duration: String,
    /// Steps and ramps, e.g. "500:10s,2000:10s,ramp:2000..10000:20s".
    #[arg(long, conflicts_with_all = ["rate", "schedule_file"])]
    schedule: Option<String>,
    /// A schedule file: the same items, one or more per line, `#` comments.
    #[arg(long, conflicts_with = "rate")]
    schedule_file: Option<PathBuf>,
    /// Arrival spacing: uniform (wrk2-style, evenly spaced) or poisson.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "poisson"])]
    spacing: String,
    /// Seed for Poisson spacing and the header mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Per-request header drawn from a weighted mix, reported per value,
    /// e.g. "x-criticality: critical_plus=10,critical=40,sheddable=50".
    #[arg(long)]
    header_mix: Option<String>,
    /// Request body from a file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Use HTTP/2 over cleartext (prior knowledge).
    #[arg(long)]
    http2: bool,
    /// Connections (default 100 for HTTP/1.1, 4 for h2c).
    #[arg(short = 'c', long)]
    connections: Option<usize>,
    /// Bound on outstanding requests; requests it delays are counted and reported.
    #[arg(long, default_value_t = tailwater_load::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Request timeout, counted from the intended send time.
    #[arg(long, default_value = "10s", allow_hyphen_values = true)]
    timeout: String,
    /// Reporting interval (time series, HdrHistogram log, progress).
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Print the corrected percentile spectrum (.hgrm format, ms), as wrk2 --latency.
    #[arg(long)]
    latency: bool,
    /// With --latency, print the uncorrected spectrum too (wrk2 -U).
    #[arg(short = 'U', long)]
    u_latency: bool,
    /// Write the corrected percentile spectrum (.hgrm, ms) to this file.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write the JSON report (stable keys) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HdrHistogram interval log (V2, compressed, base64) to this file.
    #[arg(long)]
    hdr_log: Option<PathBuf>,
    /// Write a self-contained HTML report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn bad(err: impl std::fmt::Display) -> anyhow::Result<u8> {
    eprintln!("tailwater load: {err}");
    Ok(2)
}

fn build_config(args: &Opts) -> Result<Config, ConfigError> {
    let schedule = if let Some(s) = &args.schedule {
        Schedule::parse(s)?
    } else if let Some(path) = &args.schedule_file {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("schedule_file", format!("{name}: {e}")))?;
        Schedule::parse_file(&name, &text)?
    } else {
        let rate = args.rate.as_deref().ok_or_else(|| {
            ConfigError::new("rate", "give --rate (with --duration) or --schedule")
        })?;
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| ConfigError::new("rate", format!("`{rate}` is not a number")))?;
        let duration = tailwater_load::parse_duration("duration", &args.duration)?;
        Schedule::constant(rate, duration)?
    };
    let mut config = Config::new(&args.url, schedule)?;
    config.spacing = if args.spacing == "poisson" {
        Spacing::Poisson
    } else {
        Spacing::Uniform
    };
    config.seed = args.seed;
    config.method =
        args.method.to_ascii_uppercase().parse().map_err(|_| {
            ConfigError::new("method", format!("`{}` is not a method", args.method))
        })?;
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| ConfigError::new("header", format!("`{h}` is not `Name: value`")))?;
        let name = http_name(name.trim())
            .ok_or_else(|| ConfigError::new("header", format!("`{name}` is not a header name")))?;
        let value = value
            .trim()
            .parse()
            .map_err(|_| ConfigError::new("header", format!("`{h}`: bad value")))?;
        config.headers.append(name, value);
    }
    if let Some(mix) = &args.header_mix {
        config.header_mix = Some(HeaderMix::parse(mix)?);
    }
    if let Some(path) = &args.body_file {
        let body = std::fs::read(path)
            .map_err(|e| ConfigError::new("body_file", format!("{}: {e}", path.display())))?;
        config.body = body.into();
    }
    config.http2 = args.http2;
    let default_conns = if args.http2 {
        tailwater_load::DEFAULT_CONNECTIONS_HTTP2
    } else {
        tailwater_load::DEFAULT_CONNECTIONS_HTTP1
    };
    config.connections = NonZeroUsize::new(args.connections.unwrap_or(default_conns))
        .ok_or_else(|| ConfigError::new("connections", "must be at least 1"))?;
    config.max_in_flight = NonZeroUsize::new(args.max_in_flight)
        .ok_or_else(|| ConfigError::new("max_in_flight", "must be at least 1"))?;
    config.timeout = tailwater_load::parse_duration("timeout", &args.timeout)?;
    if config.timeout.is_zero() {
        return Err(ConfigError::new("timeout", "must be greater than 0"));
    }
    config.interval = tailwater_load::parse_duration("interval", &args.interval)?;
    if config.interval < Duration::from_millis(10) {
        return Err(ConfigError::new("interval", "must be at least 10ms"));
    }
    config.hdr_log = args.hdr_log.clone();
    // Every output file is checked before the run, not found unwritable after it.
    for (field, path) in [
        ("json", &args.json),
        ("hgrm", &args.hgrm),
        ("report", &args.report),
        ("hdr_log", &args.hdr_log),
    ] {
        if let Some(path) = path {
            writable(path).map_err(|e| {
                ConfigError::new(field, format!("{}: cannot write: {e}", path.display()))
            })?;
        }
    }
    Ok(config)
}

/// Whether `path` can be written, without changing it: an existing file is opened for
/// writing (not truncated); a new one is created and removed again.
fn writable(path: &std::path::Path) -> std::io::Result<()> {
    if path.exists() {
        std::fs::OpenOptions::new().write(true).open(path).map(drop)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        std::fs::remove_file(path)
    }
}

fn http_name(name: &str) -> Option<tailwater_load::http::HeaderName> {
    tailwater_load::http::HeaderName::try_from(name).ok()
}

/// Runs `tailwater load`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let args = *args.opts;
    let mut config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let bar = if show_progress {
        let bar = indicatif::ProgressBar::new(config.schedule.duration().as_millis() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    {
        let bar = bar.clone();
        config.on_progress = Some(Arc::new(move |p: &Progress| {
            bar.set_position(p.elapsed.as_millis() as u64);
            bar.set_message(format!(
                "target {:.0}/s  achieved {:.0}/s  p99 {:.2}ms  errors {}  in flight {}",
                p.target_rate,
                p.achieved_rate,
                p.p99_us as f64 / 1000.0,
                p.errors,
                p.in_flight
            ));
        }));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(async {
        tailwater_load::run(config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    });
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(tailwater_load::LoadError::Config(e)) => return bad(e),
        Err(e) => return Err(e.into()),
    };
    print!("{}", report.summary());
    if args.latency {
        println!("\n  Detailed Percentile spectrum (corrected, ms):");
        print!("{}", report.hgrm());
        if args.u_latency {
            println!("\n  Detailed Percentile spectrum (uncorrected, ms):");
            print!("{}", report.hgrm_uncorrected());
        }
    }
    if let Some(path) = &args.hgrm {
        std::fs::write(path, report.hgrm())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let text = serde_json_pretty(&report);
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, tailwater_load::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(0)
}

fn serde_json_pretty(report: &tailwater_load::Report) -> String {
    format!("{:#}\n", report.to_json())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    fn code(argv: &[&str]) -> u8 {
        let mut full = vec!["load"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).expect("clap accepts the shape");
        super::run(cli.args).expect("no runtime error")
    }

    #[test]
    fn bad_input_exits_2_naming_the_field() {
        let url = "http://127.0.0.1:1/";
        for (argv, field) in [
            (vec![url, "--rate", "-5"], "rate"),
            (vec![url, "--rate", "abc"], "rate"),
            (vec![url, "--rate", "100", "--duration", "-1s"], "duration"),
            (vec![url, "--rate", "100", "--duration", "10"], "duration"),
            (vec![url, "--schedule", "500:10s,oops"], "schedule"),
            (vec![url, "--schedule", "ramp:1..-2:5s"], "schedule"),
            (vec![url], "rate"),
            (vec!["https://example.com/", "--rate", "1"], "url"),
            (vec![url, "--rate", "1", "--timeout", "0s"], "timeout"),
            (vec![url, "--rate", "1", "-H", "novalue"], "header"),
            (
                vec![url, "--rate", "1", "--connections", "0"],
                "connections",
            ),
            (
                vec![url, "--rate", "1", "--header-mix", "x-c: a=-1"],
                "header_mix",
            ),
            (
                vec![url, "--rate", "1", "--json", "/nonexistent-dir/out.json"],
                "json",
            ),
            (
                vec![url, "--rate", "1", "--report", "/nonexistent-dir/r.html"],
                "report",
            ),
            (
                vec![url, "--rate", "1", "--hgrm", "/nonexistent-dir/x.hgrm"],
                "hgrm",
            ),
        ] {
            let cli = {
                let mut full = vec!["load"];
                full.extend_from_slice(&argv);
                Cli::try_parse_from(full).expect("clap accepts the shape")
            };
            let err = super::build_config(&cli.args.opts).expect_err("refused");
            assert_eq!(err.field(), field, "{argv:?}: {err}");
            assert_eq!(code(&argv), 2, "{argv:?}");
        }
    }

    #[test]
    fn schedule_file_errors_give_file_and_line() {
        let path = std::env::temp_dir().join(format!("tw-sched-{}.txt", std::process::id()));
        std::fs::write(&path, "# warm up\n100:1s\n200:zz\n").expect("temp file");
        let p = path.display().to_string();
        let cli = Cli::try_parse_from(["load", "http://127.0.0.1:1/", "--schedule-file", &p])
            .expect("clap");
        let err = super::build_config(&cli.args.opts).expect_err("refused");
        let _ = std::fs::remove_file(&path);
        assert_eq!(err.field(), "schedule");
        assert!(err.to_string().contains(":3:"), "{err}");
    }
}
