//! Placeholder until the simulator benchmark lands.
fn main() {}
