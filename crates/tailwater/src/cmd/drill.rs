//! `tailwater drill` (not built yet).

/// Arguments of `tailwater drill`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `tailwater drill`.
pub(crate) fn run(_args: Args) -> anyhow::Result<u8> {
    eprintln!("tailwater drill: not available in this build yet");
    Ok(2)
}
