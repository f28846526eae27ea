//! `tailwater proxy`: the admission-control sidecar.
//!
//! ```text
//! tailwater proxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000
//! tailwater proxy --config proxy.toml [--listen ADDR] [--admin ADDR] [--workers N]
//! ```
//!
//! The proxy runs thread-per-core: `--workers` (default `server.workers`, else one per
//! CPU) threads, each with its own event loop, `SO_REUSEPORT` listener and upstream
//! connections; the main thread only handles signals and the admin listener.
//!
//! SIGTERM / SIGINT drain (stop accepting, finish in-flight requests up to
//! `server.drain_timeout`, exit 0); SIGHUP reloads `--config` (an invalid file keeps the
//! running configuration and logs why). A bad configuration at start exits with code 2 and
//! a `file:line:column: `field`: message` diagnostic.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::Context as _;
use tailwater_proxy::{Config, Listeners, Proxy};

/// Arguments of `tailwater proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to accept client connections on (default: the config's `server.listen`,
    /// else 127.0.0.1:8080).
    #[arg(long, env = "TAILWATER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Upstream for the simple case: one catch-all route with adaptive defaults.
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    upstream: Option<http::Uri>,
    /// TOML file with routes, limits, queues, tiers and rate limits (reloaded on SIGHUP).
    #[arg(long, env = "TAILWATER_CONFIG")]
    config: Option<PathBuf>,
    /// Admin listener for /metrics, /status, /healthz, /ready (default 127.0.0.1:9901).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Do not start the admin listener.
    #[arg(long, conflicts_with = "admin")]
    no_admin: bool,
    /// Check the configuration and exit (0 if valid, 2 if not).
    #[arg(long)]
    check: bool,
    /// Worker threads (default: the config's `server.workers`, else one per CPU).
    #[arg(long, env = "TAILWATER_WORKERS")]
    workers: Option<NonZeroUsize>,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, value_enum, default_value_t, env = "TAILWATER_LOG_FORMAT")]
    log_format: crate::logging::LogFormat,
}

/// Runs `tailwater proxy`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    crate::logging::init(args.log_format);

    let mut config = match (&args.config, &args.upstream) {
        (Some(path), _) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tailwater proxy: invalid configuration: {e}");
                return Ok(2);
            }
        },
        (None, Some(upstream)) => {
            let c = Config::simple(upstream.clone());
            if let Err(e) = c.validate() {
                eprintln!("tailwater proxy: invalid --upstream: {e}");
                return Ok(2);
            }
            c
        }
        (None, None) => {
            eprintln!("tailwater proxy: give --upstream URL or --config FILE");
            return Ok(2);
        }
    };
    if args.check {
        println!("configuration ok: {} route(s)", config.routes.len());
        return Ok(0);
    }
    let listen = args
        .listen
        .or(config.server.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let admin = (!args.no_admin).then(|| args.admin.unwrap_or(config.admin.listen));
    if let Some(n) = args.workers {
        config.server.workers = Some(n);
    }
    let workers = config.server.worker_threads();
    let shared = config.server.reuse_port_shared;
    let proxy = match Proxy::new(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tailwater proxy: invalid configuration: {e}");
            return Ok(2);
        }
    };

    // Signals and the admin listener only: the workers run their own runtimes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(proxy, listen, workers, shared, admin, args.config))?;
    Ok(0)
}

async fn serve(
    proxy: Proxy,
    listen: SocketAddr,
    workers: NonZeroUsize,
    shared: bool,
    admin: Option<SocketAddr>,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let listeners = if shared {
        Listeners::bind_shared(listen, workers).await
    } else {
        Listeners::bind(listen, workers).await
    };
    let listeners = listeners.with_context(|| format!("binding {listen}"))?;
    tracing::info!(addr = %listeners.local_addr(), workers = listeners.len(), "starting workers");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut admin_task = None;
    if let Some(addr) = admin {
        let admin_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding admin listener {addr}"))?;
        tracing::info!(%addr, "admin listening");
        let mut rx = stop_rx.clone();
        let p = proxy.clone();
        admin_task = Some(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = tailwater_proxy::admin::serve(admin_listener, p, stop).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        }));
    }

    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let reloader = proxy.clone();
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
                _ = hup.recv() => match &config_path {
                    Some(path) => {
                        tracing::info!(path = %path.display(), "SIGHUP: reloading");
                        let _ = reloader.reload_from_file(path);
                    }
                    None => tracing::warn!("SIGHUP ignored: no --config file to reload"),
                },
            }
        }
    };
    proxy.serve_threaded(listeners, shutdown).await?;
    let _ = stop_tx.send(true);
    if let Some(task) = admin_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    Ok(())
}
