//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<u8>`
//! returning the exit code.

pub(crate) mod backend;
pub(crate) mod drill;
pub(crate) mod load;
pub(crate) mod plan;
pub(crate) mod proxy;
pub(crate) mod rls;
pub(crate) mod sim;

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
