//! The `tailwater` command.
fn main() {
    println!("tailwater {}", env!("CARGO_PKG_VERSION"));
}
