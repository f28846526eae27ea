//! Prints the client-side (outbound) scenarios' tables: `cargo run --release -p tailwater-sim --example outbound [seed]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1);
    let (text, _all_met) = tailwater_sim::outbound::report(seed)?;
    print!("{text}");
    Ok(())
}
