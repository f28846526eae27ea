//! `tailwater plan`: capacity planning with queueing theory.
//!
//! ```text
//! tailwater plan --rate 200 --service-time 20ms --ca 1.2 --cs 1.5 --servers 6
//! tailwater plan --rate 200 --service-time 20ms --ca 1.2 --cs 1.5 --budget p99=100ms
//! tailwater plan --rate 200 --service-time 20ms --utilisation 0.7 --validate
//! tailwater plan --samples measured.txt --budget p99=100ms --plot curve.svg
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use super::Failure;
use anyhow::Context as _;
use tailwater_sim::SimError;
use tailwater_sim::report::{Panel, svg};
use tailwater_sim::scenario::parse_duration;
use tailwater_sim::theory::{self, Budget, Model};

fn duration_secs(s: &str) -> Result<f64, String> {
    parse_duration(s).map(|d| d.as_secs_f64())
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

fn ms(s: f64) -> String {
    let v = s * 1e3;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.3} ms")
    }
}

#[derive(serde::Serialize)]
struct Output {
    model: Model,
    prediction: theory::Prediction,
    wait_quantiles: Vec<(f64, f64)>,
    response_quantiles: Vec<(f64, f64)>,
    budget: Option<BudgetOut>,
    curve: Vec<CurveRow>,
    validation: Option<tailwater_sim::Measured>,
}

#[derive(serde::Serialize)]
struct BudgetOut {
    budget: String,
    seconds: f64,
    servers_needed: u64,
    predicted_at_needed: f64,
    concurrency_limit: u64,
    queue_bound: u64,
    met_with_given_servers: Option<bool>,
}

#[derive(serde::Serialize)]
struct CurveRow {
    utilisation: f64,
    rate: f64,
    wait_mean: f64,
    wait_p99: f64,
    response_mean: f64,
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
    let ca = args.ca.or(samples.map(|s| s.ca)).unwrap_or(1.0);
    let cs = args.cs.or(samples.map(|s| s.cs)).unwrap_or(1.0);
    let budget = args.budget.as_deref().map(Budget::parse).transpose()?;
    let queue_bound = match args.queue_bound {
        None => None,
        Some(k) if k >= 0 => Some(k as u64),
        Some(k) => {
            return Err(SimError::invalid("queue-bound", format!("must be ≥ 0, got {k}")).into());
        }
    };
    let given_servers = match args.servers {
        None => None,
        Some(c) if c >= 1 => Some(c as u64),
        Some(c) => {
            return Err(SimError::invalid("servers", format!("must be ≥ 1, got {c}")).into());
        }
    };
    let base = Model {
        rate,
        service,
        ca,
        cs,
        servers: given_servers.unwrap_or(1),
        queue_bound,
    };
    // Validate everything but ρ first (a queue bound skips that check), so that a bad CV or
    // an absurd --servers / --queue-bound is reported as such.
    Model {
        servers: given_servers.unwrap_or(1),
        queue_bound: base.queue_bound.or(Some(0)),
        ..base
    }
    .validate()?;
    let sized = if budget.is_some() || args.utilisation.is_some() {
        Some(theory::size_servers(
            Model {
                queue_bound: None,
                ..base
            },
            budget,
            args.utilisation,
        )?)
    } else {
        None
    };
    let servers = match (given_servers, sized) {
        (Some(c), _) => c,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(SimError::invalid(
                "servers",
                "give --servers to evaluate a system, or --budget / --utilisation to size one",
            )
            .into());
        }
    };
    let model = Model { servers, ..base };
    let prediction = model.predict()?;
    let ps = [0.5, 0.9, 0.99, 0.999];
    let wait_q: Vec<(f64, f64)> = ps
        .iter()
        .map(|&p| model.wait_quantile(p).map(|q| (p, q)))
        .collect::<Result<_, _>>()?;
    let resp_q: Vec<(f64, f64)> = ps
        .iter()
        .map(|&p| model.response_quantile(p).map(|q| (p, q)))
        .collect::<Result<_, _>>()?;
    let budget_out = match (budget, sized) {
        (Some(b), Some(need)) => {
            let at = Model {
                servers: need,
                queue_bound: None,
                ..base
            };
            // Time a request may spend waiting, and in the system, under the budget.
            let (wait_allowed, response_allowed) = if b.wait_only {
                (b.seconds(), b.seconds() + service)
            } else {
                (b.seconds() - service, b.seconds())
            };
            // Little: at most λ·W requests can be in the system if each is to finish within W.
            let limit = (rate * response_allowed).ceil() as u64;
            // Waiters that can still be served within the budget once all servers are busy.
            let queue = ((wait_allowed * need as f64 / service).floor()).max(0.0) as u64;
            Some(BudgetOut {
                budget: b.label(),
                seconds: b.seconds(),
                servers_needed: need,
                predicted_at_needed: b.predicted(&at)?,
                concurrency_limit: limit.max(need),
                queue_bound: queue,
                met_with_given_servers: match given_servers {
                    Some(_) if model.utilisation() < 1.0 || queue_bound.is_some() => {
                        Some(b.predicted(&model)? <= b.seconds())
                    }
                    Some(_) => Some(false),
                    None => None,
                },
            })
        }
        _ => None,
    };
    let curve: Vec<CurveRow> = [
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99,
    ]
    .iter()
    .map(|&u| {
        let m = Model {
            rate: u * servers as f64 / service,
            queue_bound: None,
            ..model
        };
        let p = m.predict()?;
        Ok(CurveRow {
            utilisation: u,
            rate: m.rate,
            wait_mean: p.wait_mean,
            wait_p99: m.wait_quantile(0.99)?,
            response_mean: p.response_mean,
        })
    })
    .collect::<Result<_, SimError>>()?;
    let validation = if args.validate {
        Some(tailwater_sim::simulate_model(
            &model,
            args.events,
            args.seed,
        )?)
    } else {
        None
    };
    if let Some(file) = &args.plot {
        let panels = [Panel {
            title: format!(
                "wait vs utilisation: c = {servers}, E[S] = {}, ca = {ca}, cs = {cs} (Allen–Cunneen)",
                ms(service)
            ),
            y_label: "ms (log)",
            lines: vec![
                (
                    "mean wait".into(),
                    curve
                        .iter()
                        .map(|r| (r.utilisation, r.wait_mean * 1e3))
                        .collect(),
                ),
                (
                    "p99 wait".into(),
                    curve
                        .iter()
                        .map(|r| (r.utilisation, r.wait_p99 * 1e3))
                        .collect(),
                ),
                (
                    "mean response".into(),
                    curve
                        .iter()
                        .map(|r| (r.utilisation, r.response_mean * 1e3))
                        .collect(),
                ),
            ],
            log_y: true,
        }];
        std::fs::write(file, svg(&panels))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    let out = Output {
        model,
        prediction,
        wait_quantiles: wait_q,
        response_quantiles: resp_q,
        budget: budget_out,
        curve,
        validation,
    };
    if let Some(path) = &args.json {
        let mut json = serde_json::to_string_pretty(&out).context("serialising the plan")?;
        json.push('\n');
        super::write_json(path, &json)?;
    }
    if !super::json_to_stdout(&args.json) {
        let mut text = String::new();
        print_text(&mut text, &out, samples.as_ref());
        super::sim::emit(&text)?;
    }
    Ok(())
}

fn print_text(out: &mut String, o: &Output, samples: Option<&theory::SampleStats>) {
    let m = &o.model;
    let p = &o.prediction;
    if let Some(s) = samples {
        _ = writeln!(
            out,
            "samples: {} pairs → rate {:.2}/s, E[S] {}, ca {:.3}, cs {:.3}",
            s.count,
            s.rate,
            ms(s.service),
            s.ca,
            s.cs
        );
    }
    _ = writeln!(
        out,
        "inputs: λ = {} req/s, E[S] = {}, ca = {}, cs = {}, servers c = {}{}",
        m.rate,
        ms(m.service),
        m.ca,
        m.cs,
        m.servers,
        m.queue_bound
            .map_or(String::new(), |k| format!(", queue bound K = {k}"))
    );
    _ = writeln!(
        out,
        "offered load A = λ·E[S] = {:.3} Erlangs; utilisation ρ = A/c = {:.3}",
        p.offered_erlangs, p.utilisation
    );
    let model_name = match (m.queue_bound, m.servers) {
        (Some(_), _) => "M/M/c/K scaled by (ca²+cs²)/2",
        (None, 1) => "Kingman G/G/1",
        (None, _) => "Allen–Cunneen G/G/c",
    };
    _ = writeln!(
        out,
        "P(wait) = {:.4} ({}){}",
        p.p_wait,
        if m.queue_bound.is_some() {
            "M/M/c/K"
        } else {
            "Erlang C"
        },
        if m.queue_bound.is_some() {
            format!(
                "; P(blocked) = {:.4}, throughput {:.2}/s",
                p.p_block, p.throughput
            )
        } else {
            String::new()
        }
    );
    _ = writeln!(
        out,
        "mean wait W_q = {} ({model_name}); M/M/c with the same λ, E[S], c: {}",
        ms(p.wait_mean),
        ms(p.wait_mean_mmc)
    );
    _ = writeln!(
        out,
        "mean response W = W_q + E[S] = {}",
        ms(p.response_mean)
    );
    _ = writeln!(
        out,
        "Little's law: L_q = λW_q = {:.3} waiting, L = λW = {:.3} in the system",
        p.queue_mean, p.in_system_mean
    );
    let qs = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(p, q)| format!("p{} {}", p * 100.0, ms(*q)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    _ = writeln!(
        out,
        "wait quantiles (exponential tail): {}",
        qs(&o.wait_quantiles)
    );
    _ = writeln!(
        out,
        "response quantiles (wait + service quantile, conservative): {}",
        qs(&o.response_quantiles)
    );
    if let Some(b) = &o.budget {
        _ = writeln!(out);
        _ = writeln!(
            out,
            "budget {} ≤ {}: {} server(s) needed (predicted {} at ρ = {:.3}){}",
            b.budget,
            ms(b.seconds),
            b.servers_needed,
            ms(b.predicted_at_needed),
            m.rate * m.service / b.servers_needed as f64,
            match b.met_with_given_servers {
                Some(true) => format!("; met with {} servers", m.servers),
                Some(false) => format!("; NOT met with {} servers", m.servers),
                None => String::new(),
            }
        );
        _ = writeln!(
            out,
            "  concurrency limit ≈ max(c, ⌈λ·W_max⌉) = {} (Little: more in flight cannot all finish within the budget)",
            b.concurrency_limit
        );
        _ = writeln!(
            out,
            "  queue bound ≈ ⌊W_q,max·c/E[S]⌋ = {} waiters (a later one would miss the budget anyway)",
            b.queue_bound
        );
    }
    _ = writeln!(out);
    _ = writeln!(out, "utilisation → wait (c = {}):", m.servers);
    _ = writeln!(
        out,
        "  {:>5}  {:>10}  {:>12}  {:>12}  {:>12}",
        "ρ", "λ (req/s)", "mean wait", "p99 wait", "mean resp"
    );
    for r in &o.curve {
        _ = writeln!(
            out,
            "  {:>5.2}  {:>10.1}  {:>12}  {:>12}  {:>12}",
            r.utilisation,
            r.rate,
            ms(r.wait_mean),
            ms(r.wait_p99),
            ms(r.response_mean)
        );
    }
    if let Some(v) = &o.validation {
        let err = |pred: f64, sim: f64| {
            if sim > 0.0 {
                format!("{:+.1}%", (pred - sim) / sim * 100.0)
            } else {
                "-".into()
            }
        };
        let wait_p99 = o
            .wait_quantiles
            .iter()
            .find(|(p, _)| (*p - 0.99).abs() < 1e-9)
            .map_or(0.0, |x| x.1);
        let resp_p99 = o
            .response_quantiles
            .iter()
            .find(|(p, _)| (*p - 0.99).abs() < 1e-9)
            .map_or(0.0, |x| x.1);
        _ = writeln!(out);
        _ = writeln!(
            out,
            "validation: simulated {} requests (gamma inter-arrivals; constant, exponential or lognormal service times, as assumed above)",
            v.served
        );
        _ = writeln!(
            out,
            "  {:<16} {:>12} {:>12} {:>10}",
            "", "predicted", "simulated", "error"
        );
        let rows = [
            ("mean wait", p.wait_mean, v.wait_mean),
            ("p99 wait", wait_p99, v.wait_p99),
            ("mean response", p.response_mean, v.response_mean),
            ("p99 response", resp_p99, v.response_p99),
        ];
        for (name, pred, sim) in rows {
            _ = writeln!(
                out,
                "  {name:<16} {:>12} {:>12} {:>10}",
                ms(pred),
                ms(sim),
                err(pred, sim)
            );
        }
        if m.queue_bound.is_some() {
            _ = writeln!(
                out,
                "  {:<16} {:>12.4} {:>12.4} {:>10}",
                "P(blocked)",
                p.p_block,
                v.blocked,
                err(p.p_block, v.blocked)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    fn run(argv: &[&str]) -> u8 {
        let cli = Cli::try_parse_from(std::iter::once("plan").chain(argv.iter().copied()))
            .expect("arguments parse");
        super::run(cli.args).expect("no I/O failure")
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
