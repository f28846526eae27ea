//! `tailwater load` (not built yet).

/// Arguments of `tailwater load`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `tailwater load`.
pub(crate) fn run(_args: Args) -> anyhow::Result<u8> {
    eprintln!("tailwater load: not available in this build yet");
    Ok(2)
}
