//! Allen–Cunneen (Kingman for c = 1) against the simulator: an error table over
//! utilisation, servers and variability, as a markdown table.
//!
//! `cargo run --release -p tailwater-sim --example error_table [ARRIVALS]`
//!
//! Inter-arrival times are gamma (CV c_a), service times lognormal (CV c_s; exponential for
//! 1), mean service 10 ms, seed 42. Errors are (predicted − simulated) / simulated. Each run
//! simulates `ARRIVALS × (0.5/(1−ρ))²` arrivals (default 200 000 at ρ = 0.5, 5 M at 0.9),
//! since the variance of a simulated mean wait grows like 1/(1−ρ)⁴; the M/M/c rows (c_a =
//! c_s = 1), where the formula is exact, show the simulation's own residual error.

use tailwater_sim::simulate_model;
use tailwater_sim::theory::Model;

fn main() {
    let arrivals: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let pairs = [(1.0, 1.0), (0.5, 0.5), (1.0, 0.5), (1.5, 1.5), (1.0, 2.0)];
    let rhos = [0.5, 0.7, 0.8, 0.9];
    let servers = [1u64, 4, 16];
    print!("| c | c_a | c_s |");
    for rho in rhos {
        print!(" ρ={rho} |");
    }
    println!();
    print!("|---|---|---|");
    for _ in rhos {
        print!("---|");
    }
    println!();
    for c in servers {
        for (ca, cs) in pairs {
            print!("| {c} | {ca} | {cs} |");
            for rho in rhos {
                let m = Model {
                    rate: rho * c as f64 / 0.010,
                    service: 0.010,
                    ca,
                    cs,
                    servers: c,
                    queue_bound: None,
                };
                let predicted = m.predict().expect("valid model").wait_mean;
                let n = (arrivals as f64 * (0.5 / (1.0 - rho)).powi(2)) as u64;
                let simulated = simulate_model(&m, n, 42).expect("runs").wait_mean;
                let err = (predicted - simulated) / simulated * 100.0;
                print!(" {err:+.1}% |");
            }
            println!();
        }
    }
}
