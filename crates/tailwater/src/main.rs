//! The `tailwater` command: one binary for the sidecar proxy, the load generator, the drill,
//! the simulator and the capacity planner.
//!
//! Each subcommand lives in its own module under `cmd/` and returns the process exit code:
//! 0 on success, 1 on a runtime failure, 2 on bad input (usage or configuration).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

/// Overload control for services: shed load gracefully, measure honestly, plan capacity.
#[derive(Debug, Parser)]
#[command(name = "tailwater", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the game day: a backend, the proxy in front of it, and load from 0.5x to 10x capacity.
    Drill(cmd::drill::Args),
    /// Open-loop, coordinated-omission-correct HTTP load generator.
    Load(cmd::load::Args),
    /// A synthetic HTTP service of known capacity, for experiments and drills.
    Backend(cmd::backend::Args),
    /// Admission-control reverse proxy (sidecar) for a service you cannot change.
    Proxy(cmd::proxy::Args),
    /// Simulate admission policies under overload on virtual time.
    Sim(cmd::sim::Args),
    /// Capacity planning with queueing theory (Little, Erlang C, Kingman, Allen–Cunneen).
    Plan(cmd::plan::Args),
    /// SLO burn-rate alerting: generate Prometheus rules and runbooks, evaluate them offline.
    Slo(cmd::slo::Args),
    /// Envoy rate limit service (RLS v3 gRPC) reading envoyproxy/ratelimit's YAML.
    Rls(cmd::rls::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Drill(args) => cmd::drill::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Backend(args) => cmd::backend::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Slo(args) => cmd::slo::run(args),
        Command::Rls(args) => cmd::rls::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("tailwater: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
