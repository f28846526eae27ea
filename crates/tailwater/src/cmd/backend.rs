//! `tailwater backend` (not built yet).

/// Arguments of `tailwater backend`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `tailwater backend`.
pub(crate) fn run(_args: Args) -> anyhow::Result<u8> {
    eprintln!("tailwater backend: not available in this build yet");
    Ok(2)
}
