//! `tailwater plan`: capacity planning with queueing theory.
//!
//! ```text
//! tailwater plan --rate 200 --service-time 20ms --ca 1.2 --cs 1.5 --servers 6
//! tailwater plan --rate 200 --service-time 20ms --ca 1.2 --cs 1.5 --budget p99=100ms
//! tailwater plan --rate 200 --service-time 20ms --utilisation 0.7 --validate
//! tailwater plan --samples measured.txt --budget p99=100ms --plot curve.svg
//! ```

use std::path::PathBuf;

use super::Failure;
use anyhow::Context as _;
use tailwater_sim::SimError;
use tailwater_sim::plan::PlanInput;
use tailwater_sim::theory::{self, Budget};

fn duration_secs(s: &str) -> Result<f64, String> {
    tailwater_core::duration::parse(s)
        .map(|d| d.as_secs_f64())
        .map_err(String::from)
}

/// Arguments of `tailwater plan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Give --servers to evaluate a system, or --budget / --utilisation to size it. \
Formulas: Little's law, Erlang C (via the Erlang B recursion) for M/M/c, Kingman for G/G/1, \
Allen–Cunneen for G/G/c, M/M/c/K with --queue-bound. Exit code 2 on bad input."
)]
pub(crate) struct Args {
    /// Arrival rate, requests per second.
    #[arg(long, allow_hyphen_values = true)]
    rate: Option<f64>,
    /// Mean service time (e.g. 20ms).
    #[arg(long = "service-time", value_parser = duration_secs, value_name = "DURATION")]
    service_time: Option<f64>,
    /// Coefficient of variation of inter-arrival times (1 = Poisson).
    #[arg(long, allow_hyphen_values = true)]
    ca: Option<f64>,
    /// Coefficient of variation of service times (1 = exponential).
    #[arg(long, allow_hyphen_values = true)]
    cs: Option<f64>,
    /// Number of servers (workers).
    #[arg(long, allow_hyphen_values = true)]
    servers: Option<i64>,
    /// Utilisation target for sizing, in (0, 1).
    #[arg(long, alias = "utilization", allow_hyphen_values = true)]
    utilisation: Option<f64>,
    /// Latency budget on the response time (p99=100ms, p99.9=250ms, mean=40ms) or on the wait
    /// alone (wait-p99=20ms, wait-mean=5ms).
    #[arg(long)]
    budget: Option<String>,
    /// Waiting room: at most this many queued requests (M/M/c/K); allows ρ ≥ 1.
    #[arg(long = "queue-bound", allow_hyphen_values = true)]
    queue_bound: Option<i64>,
    /// Measured samples: one `INTER-ARRIVAL SERVICE` pair per line (seconds or with units);
    /// gives the rate, the service time and both CVs unless given explicitly.
    #[arg(long, value_name = "FILE")]
    samples: Option<PathBuf>,
    /// Also run the simulator with the same inputs and print prediction vs simulation.
    #[arg(long)]
    validate: bool,
    /// Arrivals simulated by --validate.
    #[arg(long, default_value_t = 400_000)]
    events: u64,
    /// Seed of --validate.
    #[arg(long, default_value_t = super::DEFAULT_SEED)]
    seed: u64,
    /// Write the utilisation → wait curve as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// JSON output: to FILE, or to stdout instead of the text when FILE is `-` or left out.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
}

/// Runs `tailwater plan`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    super::sim_exit_code("plan", plan(&args))
}

fn plan(args: &Args) -> Result<(), Failure> {
    let samples = match &args.samples {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let stats = theory::parse_samples(&text).map_err(|e| match e {
                SimError::Invalid { field, message } => SimError::Invalid {
                    field: format!("{}: {field}", path.display()),
                    message,
                },
                other => other,
            })?;
            Some(stats)
        }
        None => None,
    };
    let rate = args
        .rate
        .or(samples.map(|s| s.rate))
        .ok_or_else(|| SimError::invalid("rate", "required (or give --samples)"))?;
    let service = args
        .service_time
        .or(samples.map(|s| s.service))
        .ok_or_else(|| SimError::invalid("service-time", "required (or give --samples)"))?;
    let queue_bound = match args.queue_bound {
        None => None,
        Some(k) if k >= 0 => Some(k as u64),
        Some(k) => {
            return Err(SimError::invalid("queue-bound", format!("must be ≥ 0, got {k}")).into());
        }
    };
    let servers = match args.servers {
        None => None,
        Some(c) if c >= 1 => Some(c as u64),
        Some(c) => {
            return Err(SimError::invalid("servers", format!("must be ≥ 1, got {c}")).into());
        }
    };
    let input = PlanInput {
        ca: args.ca.or(samples.map(|s| s.ca)).unwrap_or(1.0),
        cs: args.cs.or(samples.map(|s| s.cs)).unwrap_or(1.0),
        servers,
        utilisation: args.utilisation,
        budget: args.budget.as_deref().map(Budget::parse).transpose()?,
        queue_bound,
        validate: args.validate.then_some((args.events, args.seed)),
        ..PlanInput::new(rate, service)
    };
    let out = tailwater_sim::plan::plan(&input)?;
    if let Some(file) = &args.plot {
        std::fs::write(
            file,
            tailwater_chart::LineChart::stack(&[out.curve_chart()]),
        )
        .with_context(|| format!("writing {}", file.display()))?;
    }
    if let Some(path) = &args.json {
        let mut json = serde_json::to_string_pretty(&out).context("serialising the plan")?;
        json.push('\n');
        super::write_json(path, &json)?;
    }
    if !super::json_to_stdout(&args.json) {
        super::sim::emit(&out.to_text(samples.as_ref()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    fn run(argv: &[&str]) -> u8 {
        let cli = crate::cmd::parse_args::<super::Args>(
            std::iter::once("plan").chain(argv.iter().copied()),
        )
        .expect("arguments parse");
        super::run(cli).expect("no I/O failure")
    }

    #[test]
    fn bad_input_exits_2() {
        let base = ["--service-time", "20ms"];
        let with = |extra: &[&str]| -> u8 {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            run(&v)
        };
        assert_eq!(with(&["--rate", "-5", "--servers", "2"]), 2);
        assert_eq!(with(&["--rate", "100", "--servers", "4", "--ca", "-1"]), 2);
        assert_eq!(
            with(&["--rate", "100", "--servers", "4", "--cs", "-0.5"]),
            2
        );
        assert_eq!(with(&["--rate", "100", "--servers", "1"]), 2); // ρ = 2, no queue bound
        assert_eq!(
            with(&["--rate", "100", "--servers", "1", "--queue-bound", "5"]),
            0
        );
        assert_eq!(with(&["--rate", "100", "--budget", "p100=1s"]), 2);
        assert_eq!(with(&["--rate", "100", "--budget", "p0=1s"]), 2);
        assert_eq!(with(&["--rate", "100", "--utilisation", "1.5"]), 2);
        assert_eq!(with(&["--rate", "100"]), 2); // neither servers nor a budget
        assert_eq!(with(&["--rate", "100", "--budget", "p99=200ms"]), 0);
        // Absurd sizes are refused at once (they ran for minutes or aborted on allocation).
        assert_eq!(with(&["--rate", "100", "--servers", "4294967296"]), 2);
        assert_eq!(
            with(&[
                "--rate",
                "100",
                "--servers",
                "2",
                "--queue-bound",
                "1000000000"
            ]),
            2
        );
        assert_eq!(
            with(&[
                "--rate",
                "100",
                "--servers",
                "100000",
                "--queue-bound",
                "100000"
            ]),
            0
        );
    }

    #[test]
    fn samples_file() {
        let dir = std::env::temp_dir().join(format!("tailwater-plan-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samples.txt");
        std::fs::write(
            &file,
            "# inter-arrival service\n10ms 5ms\n12ms 6ms\n8ms 4ms\n",
        )
        .unwrap();
        assert_eq!(
            run(&["--samples", file.to_str().unwrap(), "--servers", "1"]),
            0
        );
        std::fs::write(&file, "10ms\n").unwrap();
        assert_eq!(
            run(&["--samples", file.to_str().unwrap(), "--servers", "1"]),
            2
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
