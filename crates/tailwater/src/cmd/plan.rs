//! `tailwater plan` (not built yet).

/// Arguments of `tailwater plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `tailwater plan`.
pub(crate) fn run(_args: Args) -> anyhow::Result<u8> {
    eprintln!("tailwater plan: not available in this build yet");
    Ok(2)
}
