//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<u8>`
//! returning the exit code.

pub(crate) mod backend;
pub(crate) mod drill;
pub(crate) mod load;
pub(crate) mod plan;
pub(crate) mod proxy;
pub(crate) mod sim;
