//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<u8>`
//! returning the exit code.

pub(crate) mod backend;
pub(crate) mod drill;
pub(crate) mod load;
pub(crate) mod load_grpc;
pub(crate) mod plan;
pub(crate) mod proxy;
pub(crate) mod rls;
pub(crate) mod sim;
pub(crate) mod sim_outbound;
pub(crate) mod slo;

/// The one default of `--seed` in every subcommand (`load`, `drill`, `backend`, `plan`,
/// and the scenarios `sim` runs): the same number everywhere, so that "seed 1" in a report
/// means the same draw whichever command wrote it. It equals the libraries' defaults
/// (`tailwater_drill::DrillConfig`, `tailwater_load`'s config, the simulator's scenarios).
pub(crate) const DEFAULT_SEED: u64 = 1;

/// One subcommand's `Args` parsed from `argv` (the program name first) as the binary's
/// parser would: the one test parser of every subcommand's tests.
#[cfg(test)]
pub(crate) fn parse_args<A: clap::Args>(
    argv: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<A, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    <Cli<A> as clap::Parser>::try_parse_from(argv).map(|c| c.args)
}

/// A failure of `tailwater sim` or `tailwater plan`: bad input (exit code 2) or anything
/// else (exit code 1, reported by `main`).
pub(crate) enum Failure {
    Input(tailwater_sim::SimError),
    Io(anyhow::Error),
}

impl From<tailwater_sim::SimError> for Failure {
    fn from(e: tailwater_sim::SimError) -> Self {
        Failure::Input(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Io(e)
    }
}

/// Maps the outcome of `tailwater sim` / `tailwater plan` to the process exit code.
pub(crate) fn sim_exit_code(command: &str, outcome: Result<(), Failure>) -> anyhow::Result<u8> {
    match outcome {
        Ok(()) => Ok(0),
        Err(Failure::Input(e)) => {
            eprintln!("tailwater {command}: error: {e}");
            Ok(2)
        }
        Err(Failure::Io(e)) => Err(e),
    }
}

/// `--json [PATH]`, one meaning in every subcommand: the JSON goes to PATH, or to stdout when
/// PATH is `-` or left out (then stdout carries nothing else).
pub(crate) fn json_to_stdout(path: &Option<std::path::PathBuf>) -> bool {
    path.as_deref().is_some_and(|p| p.as_os_str() == "-")
}

/// Writes `text` where `--json` said: stdout for `-` (a closed pipe is not an error), else
/// the file.
pub(crate) fn write_json(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if path.as_os_str() == "-" {
        sim::emit(text)
    } else {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}
