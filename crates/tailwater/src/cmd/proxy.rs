//! `tailwater proxy` (not built yet).

/// Arguments of `tailwater proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `tailwater proxy`.
pub(crate) fn run(_args: Args) -> anyhow::Result<u8> {
    eprintln!("tailwater proxy: not available in this build yet");
    Ok(2)
}
