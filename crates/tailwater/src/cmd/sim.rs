//! `tailwater sim` (not built yet).

/// Arguments of `tailwater sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `tailwater sim`.
pub(crate) fn run(_args: Args) -> anyhow::Result<u8> {
    eprintln!("tailwater sim: not available in this build yet");
    Ok(2)
}
