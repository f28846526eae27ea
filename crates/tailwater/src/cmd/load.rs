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
    /// Target URL: http:// or https:// (with --http2: h2c, or h2 negotiated over TLS).
    url: String,
    /// Constant target rate in requests/s (with --duration).
    #[arg(short = 'R', long, allow_hyphen_values = true)]
    rate: Option<String>,
    /// Run length with --rate (e.g. 30s, 2m).
    #[arg(short = 'd', long, default_value = "10s", allow_hyphen_values = true)]
    duration: String,
    /// Send exactly this many requests at --rate (instead of --duration).
    #[arg(short = 'n', long, allow_hyphen_values = true)]
    requests: Option<String>,
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
    #[arg(long, default_value_t = super::DEFAULT_SEED)]
    seed: u64,
    /// The pacer's release quantum: it wakes at most once per quantum and releases every
    /// request due by then (never early, at most this late; latency is still measured from
    /// each request's intended time). 0s releases each request on its own. At most 10ms.
    #[arg(long, default_value = "250us", allow_hyphen_values = true)]
    pace_quantum: String,
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
    #[arg(long, conflicts_with = "body")]
    body_file: Option<PathBuf>,
    /// Request body, inline.
    #[arg(short = 'b', long)]
    body: Option<String>,
    /// Content-Type of the body (shortcut for -H "Content-Type: ...").
    #[arg(short = 'T', long)]
    content_type: Option<String>,
    /// Use HTTP/2: h2c (prior knowledge) for http://, h2 by ALPN for https://.
    #[arg(long)]
    http2: bool,
    /// Unary gRPC (implies --http2): POST the --grpc-body message to this method, e.g.
    /// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit; each answer is counted
    /// by its grpc-status (RESOURCE_EXHAUSTED as 429, UNAVAILABLE as 503, ...).
    #[arg(long, value_name = "SERVICE/METHOD")]
    grpc: Option<String>,
    /// The gRPC request message (serialized protobuf, without the 5-byte frame): @FILE, or
    /// hex digits. Default: the empty message.
    #[arg(long, value_name = "@FILE|HEX", requires = "grpc")]
    grpc_body: Option<String>,
    /// Envoy rate limit service calls (implies --grpc with ShouldRateLimit): the domain.
    /// OVER_LIMIT answers are their own outcome, counted as 429.
    #[arg(long, conflicts_with = "grpc_body")]
    rls_domain: Option<String>,
    /// With --rls-domain: one descriptor, `key=value[,key=value...]` (repeatable).
    #[arg(long, value_name = "K=V[,K=V...]", requires = "rls_domain")]
    rls_descriptor: Vec<String>,
    /// https://: accept any server certificate (test servers with self-signed ones).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// https://: also trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Connections (default 100 for HTTP/1.1, 4 for h2c).
    #[arg(short = 'c', long)]
    connections: Option<usize>,
    /// Bound on outstanding requests; requests it delays are counted and reported.
    #[arg(long, default_value_t = tailwater_load::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Request timeout, counted from the intended send time.
    #[arg(long, default_value = "10s", allow_hyphen_values = true)]
    timeout: String,
    /// After the schedule, wait at most this long for outstanding requests (default: the
    /// timeout); those still outstanding are reported as abandoned.
    #[arg(long, allow_hyphen_values = true)]
    drain: Option<String>,
    /// Pass/fail thresholds, e.g. "p99<200ms,errors<1%": exit 3 when one is missed.
    /// Latency thresholds apply to 2xx responses. Metrics: p50 p90 p99 p99.9 p99.99 max mean
    /// errors rejected success rate.
    #[arg(long)]
    fail_on: Option<String>,
    /// Reporting interval (time series, HdrHistogram log, progress).
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Print the corrected percentile spectrum (.hgrm format, ms), as wrk2 --latency.
    #[arg(long)]
    latency: bool,
    /// With --latency, print the uncorrected spectrum too (wrk2 -U).
    #[arg(short = 'U', long)]
    u_latency: bool,
    /// Write the corrected percentile spectrum (.hgrm, ms) to this file (`-`: stdout).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// JSON report (stable keys): to FILE, or to stdout when FILE is `-` or left out (the
    /// summary then goes to stderr).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
    /// Write an HdrHistogram interval log (V2, compressed, base64) to this file.
    #[arg(long)]
    hdr_log: Option<PathBuf>,
    /// Write a self-contained HTML report to this file (`-`: stdout).
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Exit code when a `--fail-on` threshold is missed or no request succeeded.
const EXIT_FAILED_RUN: u8 = 3;

fn bad(err: impl std::fmt::Display) -> anyhow::Result<u8> {
    eprintln!("tailwater load: {err}");
    Ok(2)
}

fn is_stdout(path: &Option<PathBuf>) -> bool {
    path.as_deref() == Some(std::path::Path::new("-"))
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
        let duration = match &args.requests {
            Some(n) => {
                let n = parse_count(n)?;
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(ConfigError::new("rate", "-n needs a rate above 0"));
                }
                // Half a spacing of slack so rounding never drops the last request; the
                // count caps the run at exactly `n`.
                Duration::from_secs_f64((n as f64 + 0.5) / rate)
            }
            None => tailwater_load::parse_duration("duration", &args.duration)?,
        };
        Schedule::constant(rate, duration)?
    };
    if args.requests.is_some() && (args.schedule.is_some() || args.schedule_file.is_some()) {
        return Err(ConfigError::new(
            "requests",
            "-n works with --rate, not with a schedule",
        ));
    }
    let mut config = Config::new(&args.url, schedule)?;
    if let Some(n) = &args.requests {
        config.max_requests = Some(parse_count(n)?);
    }
    config.spacing = if args.spacing == "poisson" {
        Spacing::Poisson
    } else {
        Spacing::Uniform
    };
    config.seed = args.seed;
    config.pace_quantum = tailwater_load::parse_duration("pace_quantum", &args.pace_quantum)?;
    if config.pace_quantum > tailwater_load::MAX_PACE_QUANTUM {
        return Err(ConfigError::new("pace_quantum", "must be at most 10ms"));
    }
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
    if let Some(body) = &args.body {
        config.body = body.clone().into_bytes().into();
    }
    if let Some(ct) = &args.content_type {
        let value = ct.trim().parse().map_err(|_| {
            ConfigError::new("content_type", format!("`{ct}` is not a header value"))
        })?;
        config
            .headers
            .insert(tailwater_load::http::header::CONTENT_TYPE, value);
    }
    config.grpc = super::load_grpc::call(
        args.grpc.as_deref(),
        args.grpc_body.as_deref(),
        args.rls_domain.as_deref(),
        &args.rls_descriptor,
    )?;
    config.http2 = args.http2 || config.grpc.is_some();
    config.tls.insecure = args.insecure;
    config.tls.ca_file = args.cacert.clone();
    let default_conns = if config.http2 {
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
    if let Some(drain) = &args.drain {
        config.drain = Some(tailwater_load::parse_duration("drain", drain)?);
    }
    if let Some(spec) = &args.fail_on {
        tailwater_load::Thresholds::parse(spec)?;
    }
    config.interval = tailwater_load::parse_duration("interval", &args.interval)?;
    if config.interval < Duration::from_millis(10) {
        return Err(ConfigError::new("interval", "must be at least 10ms"));
    }
    config.hdr_log = args.hdr_log.clone();
    let to_stdout = [&args.json, &args.hgrm, &args.report]
        .into_iter()
        .filter(|p| is_stdout(p))
        .count();
    if to_stdout > 1 {
        return Err(ConfigError::new(
            "json",
            "only one of --json, --hgrm and --report can write to stdout (-)",
        ));
    }
    if is_stdout(&args.hdr_log) {
        return Err(ConfigError::new(
            "hdr_log",
            "the HdrHistogram log is written during the run; give a file",
        ));
    }
    // Every output file is checked before the run, not found unwritable after it.
    for (field, path) in [
        ("json", &args.json),
        ("hgrm", &args.hgrm),
        ("report", &args.report),
        ("hdr_log", &args.hdr_log),
    ] {
        if let Some(path) = path.as_ref().filter(|p| p.as_os_str() != "-") {
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

/// Parses `-n`: a positive whole number of requests.
fn parse_count(text: &str) -> Result<u64, ConfigError> {
    match text.trim().replace('_', "").parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::new(
            "requests",
            format!("`{text}` is not a positive whole number of requests"),
        )),
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
            if p.draining {
                bar.set_message(format!(
                    "schedule done; waiting for {} outstanding requests (--drain bounds this)",
                    p.in_flight
                ));
                return;
            }
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
    let mut report = report;
    report.meta.command = Some(command_line());
    let thresholds = match &args.fail_on {
        Some(spec) => match tailwater_load::Thresholds::parse(spec) {
            Ok(t) => Some(t),
            Err(e) => return bad(e),
        },
        None => None,
    };
    let verdicts = thresholds.map(|t| t.check(&report)).unwrap_or_default();
    let mut human = report.summary();
    if args.latency {
        human.push_str("\n  Detailed Percentile spectrum (corrected, ms):\n");
        human.push_str(&report.hgrm());
        if args.u_latency {
            human.push_str("\n  Detailed Percentile spectrum (uncorrected, ms):\n");
            human.push_str(&report.hgrm_uncorrected());
        }
    }
    if !verdicts.is_empty() {
        human.push_str("\nThresholds\n");
        for v in &verdicts {
            human.push_str(&format!("  {v}\n"));
        }
    }
    let nothing_succeeded = report.total.requests > 0 && report.total.successes() == 0;
    if nothing_succeeded {
        human.push_str("\nNo request succeeded (no 2xx response): exit code 3.\n");
    }
    let mut artefact: Option<String> = None;
    for (path, text) in [
        (&args.hgrm, report.hgrm()),
        (&args.json, serde_json_pretty(&report)),
        (&args.report, tailwater_load::html::render(&report)),
    ] {
        match path {
            Some(p) if p.as_os_str() == "-" => artefact = Some(text),
            Some(p) => {
                std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?
            }
            None => {}
        }
    }
    // With an artefact on stdout, the summary goes to stderr so stdout stays parseable.
    // A closed pipe (`| head`) ends the output quietly: it is not a failure of the run.
    let written = match artefact {
        Some(text) => write_all(&mut std::io::stderr().lock(), &human)
            .and_then(|()| write_all(&mut std::io::stdout().lock(), &text)),
        None => write_all(&mut std::io::stdout().lock(), &human),
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(anyhow::Error::new(e).context("writing the report"));
    }
    Ok(exit_code(&verdicts, nothing_succeeded))
}

/// 0 when the run met every threshold and something succeeded, [`EXIT_FAILED_RUN`] otherwise.
fn exit_code(verdicts: &[tailwater_load::Verdict], nothing_succeeded: bool) -> u8 {
    if nothing_succeeded || verdicts.iter().any(|v| !v.passed) {
        EXIT_FAILED_RUN
    } else {
        0
    }
}

fn write_all(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The command line as typed, for the report's provenance (arguments with spaces quoted).
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("{a:?}")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn serde_json_pretty(report: &tailwater_load::Report) -> String {
    format!("{:#}\n", report.to_json())
}

#[cfg(test)]
mod tests {

    fn code(argv: &[&str]) -> u8 {
        let mut full = vec!["load"];
        full.extend_from_slice(argv);
        let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape");
        super::run(cli).expect("no runtime error")
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
            (vec!["ftp://example.com/", "--rate", "1"], "url"),
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
            (vec![url, "--rate", "10", "-n", "0"], "requests"),
            (vec![url, "--rate", "10", "-n", "many"], "requests"),
            (vec![url, "--rate", "0", "-n", "5"], "rate"),
            (vec![url, "--schedule", "10:1s", "-n", "5"], "requests"),
            (vec![url, "--rate", "1", "--fail-on", "p99<200"], "fail_on"),
            (vec![url, "--rate", "1", "--fail-on", "speed<1"], "fail_on"),
            (vec![url, "--rate", "1", "--drain", "-1s"], "drain"),
            (
                vec![url, "--rate", "1", "--json", "-", "--report", "-"],
                "json",
            ),
            (vec![url, "--rate", "1", "--hdr-log", "-"], "hdr_log"),
            (
                vec![url, "--rate", "1", "--pace-quantum", "11ms"],
                "pace_quantum",
            ),
            (
                vec![url, "--rate", "1", "--pace-quantum", "-1us"],
                "pace_quantum",
            ),
            (
                vec![url, "--rate", "1", "--pace-quantum", "fast"],
                "pace_quantum",
            ),
            (
                vec![url, "--rate", "1", "-T", "bad\u{7f}value"],
                "content_type",
            ),
        ] {
            let cli = {
                let mut full = vec!["load"];
                full.extend_from_slice(&argv);
                crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape")
            };
            let err = super::build_config(&cli.opts).expect_err("refused");
            assert_eq!(err.field(), field, "{argv:?}: {err}");
            assert_eq!(code(&argv), 2, "{argv:?}");
        }
    }

    #[test]
    fn pace_quantum_defaults_to_250us_and_takes_zero() {
        let quantum = |extra: &[&str]| {
            let mut full = vec!["load", "http://127.0.0.1:1/", "--rate", "1"];
            full.extend_from_slice(extra);
            let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap");
            super::build_config(&cli.opts).expect("valid").pace_quantum
        };
        assert_eq!(quantum(&[]), tailwater_load::DEFAULT_PACE_QUANTUM);
        assert_eq!(
            quantum(&[]),
            std::time::Duration::from_micros(250),
            "the help text names 250us"
        );
        assert_eq!(
            quantum(&["--pace-quantum", "0s"]),
            std::time::Duration::ZERO
        );
        assert_eq!(
            quantum(&["--pace-quantum", "1ms"]),
            std::time::Duration::from_millis(1)
        );
    }

    #[test]
    fn exit_code_is_3_for_a_missed_threshold_or_no_success() {
        let verdict = |passed| tailwater_load::Verdict {
            threshold: "p99<1ms".into(),
            actual: "2ms".into(),
            passed,
        };
        assert_eq!(super::exit_code(&[], false), 0);
        assert_eq!(super::exit_code(&[verdict(true)], false), 0);
        assert_eq!(super::exit_code(&[verdict(true), verdict(false)], false), 3);
        assert_eq!(super::exit_code(&[verdict(true)], true), 3);
    }

    #[test]
    fn schedule_file_errors_give_file_and_line() {
        let path = std::env::temp_dir().join(format!("tw-sched-{}.txt", std::process::id()));
        std::fs::write(&path, "# warm up\n100:1s\n200:zz\n").expect("temp file");
        let p = path.display().to_string();
        let cli = crate::cmd::parse_args::<super::Args>([
            "load",
            "http://127.0.0.1:1/",
            "--schedule-file",
            &p,
        ])
        .expect("clap");
        let err = super::build_config(&cli.opts).expect_err("refused");
        let _ = std::fs::remove_file(&path);
        assert_eq!(err.field(), "schedule");
        assert!(err.to_string().contains(":3:"), "{err}");
    }
}
