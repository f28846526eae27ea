//! `tailwater sim --suite outbound`: the client-side scenarios of issue 12 (retry budget,
//! hedging, circuit breakers, adaptive throttling) side by side with the anchors' defaults,
//! then the goals with ok/FAIL (as `--suite default-limit`, the exit code is 0 either way).

use std::io::Write as _;

use anyhow::Context as _;

use super::Failure;

/// Prints the tables and the goals; `seed` defaults to 1.
pub(crate) fn run(seed: Option<u64>) -> Result<(), Failure> {
    let (text, _all_met) = tailwater_sim::outbound::report(seed.unwrap_or(super::DEFAULT_SEED))?;
    std::io::stdout()
        .write_all(format!("== suite outbound (issue 12)\n{text}").as_bytes())
        .context("writing the report")?;
    Ok(())
}
