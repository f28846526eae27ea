//! `tailwater backend`: a synthetic HTTP service of known capacity.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use anyhow::Context as _;
use tailwater_load::ConfigError;
use tailwater_load::backend::{Backend, BackendConfig, ServiceDistribution, Stall};

/// Arguments of `tailwater backend`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Requests that may wait for a worker (FIFO); beyond that, --overflow-status is answered.
    #[arg(long, default_value_t = tailwater_load::backend::DEFAULT_QUEUE)]
    queue: usize,
    /// Mean service time per request (simulated, 1 ms timer granularity).
    #[arg(long, default_value = "10ms", allow_hyphen_values = true)]
    service_time: String,
    /// Service-time distribution: constant, exponential, lognormal:CV, bimodal or bimodal:P:K
    /// (a fraction P of requests K times slower; default 5 % 10× slower).
    #[arg(long, default_value = "const")]
    distribution: String,
    /// Stall all responses: "DUR@START" or "DUR@START every PERIOD" (repeatable).
    #[arg(long)]
    stall: Vec<String>,
    /// Status answered when the queue is full.
    #[arg(long, default_value_t = 503)]
    overflow_status: u16,
    /// Seed for the service-time distribution.
    #[arg(long, default_value_t = super::DEFAULT_SEED)]
    seed: u64,
}

fn build(args: &Args) -> Result<(SocketAddr, BackendConfig), ConfigError> {
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        ConfigError::new("listen", format!("`{}` is not ADDRESS:PORT", args.listen))
    })?;
    let workers = NonZeroUsize::new(args.workers)
        .ok_or_else(|| ConfigError::new("workers", "must be at least 1"))?;
    let service = tailwater_load::parse_duration("service_time", &args.service_time)?;
    let mut config = BackendConfig::new(workers, service);
    config.queue = args.queue;
    config.distribution = ServiceDistribution::parse(&args.distribution)?;
    config.stalls = args
        .stall
        .iter()
        .map(|s| Stall::parse(s))
        .collect::<Result<_, _>>()?;
    config.overflow_status = tailwater_load::http::StatusCode::from_u16(args.overflow_status)
        .map_err(|_| ConfigError::new("overflow_status", "not an HTTP status"))?;
    config.seed = args.seed;
    Ok((addr, config))
}

/// Runs `tailwater backend`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let (addr, config) = match build(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tailwater backend: {e}");
            return Ok(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let capacity = config.capacity();
        eprintln!(
            "tailwater backend: listening on http://{} ({} workers, queue {}, service time {:?} {:?}, capacity {}); Ctrl-C to stop",
            listener.local_addr().unwrap_or(addr),
            config.workers,
            config.queue,
            config.service_time,
            config.distribution,
            if capacity.is_finite() {
                format!("{capacity:.0} req/s")
            } else {
                "unbounded".into()
            }
        );
        let backend = Backend::new(config);
        let stats = backend
            .serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")?;
        println!(
            "received {}  completed {}  rejected {}  wasted {}  busy {:.3}s  connections {}",
            stats.received,
            stats.completed,
            stats.rejected,
            stats.wasted,
            stats.busy.as_secs_f64(),
            stats.connections
        );
        Ok::<u8, anyhow::Error>(0)
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn bad_input_exits_2_naming_the_field() {
        for (argv, field) in [
            (vec!["--workers", "0"], "workers"),
            (vec!["--service-time", "-1ms"], "service_time"),
            (vec!["--distribution", "weird"], "distribution"),
            (vec!["--stall", "1s"], "stall"),
            (vec!["--listen", "nowhere"], "listen"),
            (vec!["--overflow-status", "42"], "overflow_status"),
        ] {
            let mut full = vec!["backend"];
            full.extend_from_slice(&argv);
            let cli = crate::cmd::parse_args::<super::Args>(full.clone())
                .expect("clap accepts the shape");
            let err = super::build(&cli).expect_err("refused");
            assert_eq!(err.field(), field, "{argv:?}");
            let cli = crate::cmd::parse_args::<super::Args>(full).expect("clap accepts the shape");
            assert_eq!(super::run(cli).expect("no runtime error"), 2);
        }
    }
}
