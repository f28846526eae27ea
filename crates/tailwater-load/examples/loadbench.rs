//! A minimal driver for profiling the load generator without the whole `tailwater` binary.
//!
//! `loadbench backend PORT` serves the zero-service-time backend;
//! `loadbench load URL RATE SECONDS CONNECTIONS` runs a constant-rate load and prints the summary
//! (`https://` targets are not verified, like `tailwater load -k`; `LOADBENCH_QUANTUM_US` sets
//! the pace quantum in µs).

use std::num::NonZeroUsize;
use std::time::Duration;

use tailwater_load::backend::{BackendConfig, serve};
use tailwater_load::{Config, Schedule};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("backend") => {
            let port: u16 = args.get(2).ok_or("port")?.parse()?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let mut config =
                BackendConfig::new(NonZeroUsize::new(100_000).ok_or("n")?, Duration::ZERO);
            config.queue = 0;
            let stats = serve(listener, config, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            println!("{stats:?}");
        }
        Some("load") => {
            let url = args.get(2).ok_or("url")?;
            let rate: f64 = args.get(3).ok_or("rate")?.parse()?;
            let secs: f64 = args.get(4).ok_or("seconds")?.parse()?;
            let conns: usize = args.get(5).ok_or("connections")?.parse()?;
            let schedule = Schedule::constant(rate, Duration::from_secs_f64(secs))?;
            let mut config = Config::new(url, schedule)?;
            config.connections = NonZeroUsize::new(conns).ok_or("connections")?;
            config.tls.insecure = true;
            if let Ok(q) = std::env::var("LOADBENCH_QUANTUM_US") {
                config.pace_quantum = Duration::from_micros(q.parse()?);
            }
            let report = tailwater_load::run(config, std::future::pending()).await?;
            print!("{}", report.summary());
        }
        _ => {
            eprintln!("usage: loadbench backend PORT | loadbench load URL RATE SECONDS CONNECTIONS")
        }
    }
    Ok(())
}
