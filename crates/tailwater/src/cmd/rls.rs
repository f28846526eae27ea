//! `tailwater rls`: the Envoy rate limit service (gRPC) and its HTTP side, over a directory
//! of envoyproxy/ratelimit YAML files reloaded on change.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tailwater_core::ConfigError;
use tailwater_redis::{ConnectionOptions, FailurePolicy, RedisConnection, RedisRateStore};
use tailwater_rls::{
    ConfigWatcher, LeasedOptions, LeasedStore, MemoryStore, RateLimiter, Store, serve_http,
};

/// Arguments of `tailwater rls`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of envoyproxy/ratelimit YAML files (`*.yaml`, `*.yml`), reloaded on change.
    #[arg(long)]
    config: PathBuf,
    /// gRPC address (envoy.service.ratelimit.v3.RateLimitService).
    #[arg(long, default_value = "127.0.0.1:8081")]
    grpc: String,
    /// HTTP address: /json, /healthcheck, /metrics, /rlconfig.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Redis URL (redis://host:port/): share the limits across replicas. Default: in memory.
    #[arg(long)]
    redis: Option<String>,
    /// Per-call Redis timeout, after which the failure policy answers.
    #[arg(long, default_value = "5ms")]
    redis_timeout: String,
    /// When Redis does not answer: open, closed (gRPC UNAVAILABLE) or local:N (a local
    /// limit / N, N = replicas).
    #[arg(long, default_value = "open")]
    failure_policy: String,
    /// How Redis is used: atomic (one script per call), leased (chunks of each key's budget
    /// held locally; overshoot bound in the README) or cluster (Redis Cluster, `--redis`
    /// takes comma-separated node URLs; atomic per call, keys hash-tagged by domain).
    #[arg(long, default_value = "atomic")]
    redis_mode: String,
    /// Atomic mode: decide the calls that arrive while a Redis script is in flight in one
    /// script (group commit; each call stays atomic). `false`: one script per call.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    redis_group_commit: bool,
    /// Leased mode: the largest chunk leased per key (sets the overshoot bound).
    #[arg(long, default_value_t = 100)]
    lease_max_chunk: u32,
    /// Keys the in-memory store holds at most.
    #[arg(long, default_value_t = tailwater_rls::store::DEFAULT_MAX_KEYS)]
    max_keys: usize,
    /// Threads serving gRPC, each a single-threaded runtime accepting on the same socket
    /// and answering its connections' calls without handing them to another thread
    /// (default: one per CPU). 0: serve gRPC on the shared multi-threaded runtime instead.
    #[arg(long)]
    grpc_threads: Option<usize>,
    /// How often the configuration directory is checked for changes.
    #[arg(long, default_value = "1s")]
    reload_interval: String,
}

fn addr(field: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::new(field, format!("`{s}` is not ADDRESS:PORT")))
}

fn duration(field: &'static str, s: &str) -> Result<Duration, ConfigError> {
    tailwater_load::parse_duration(field, s).map_err(|e| ConfigError::new(field, e))
}

fn policy(s: &str) -> Result<FailurePolicy, ConfigError> {
    match s {
        "open" => Ok(FailurePolicy::FailOpen),
        "closed" => Ok(FailurePolicy::FailClosed),
        _ => s
            .strip_prefix("local:")
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(NonZeroU32::new)
            .map(|replicas| FailurePolicy::Degrade { replicas })
            .ok_or_else(|| {
                ConfigError::new(
                    "failure_policy",
                    format!("`{s}`: use open, closed or local:N"),
                )
            }),
    }
}

/// `--redis-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedisMode {
    Atomic,
    Leased,
    Cluster,
}

fn redis_mode(s: &str) -> Result<RedisMode, ConfigError> {
    match s {
        "atomic" => Ok(RedisMode::Atomic),
        "leased" => Ok(RedisMode::Leased),
        "cluster" => Ok(RedisMode::Cluster),
        _ => Err(ConfigError::new(
            "redis_mode",
            format!("`{s}`: use atomic, leased or cluster"),
        )),
    }
}

struct Built {
    grpc: SocketAddr,
    http: SocketAddr,
    reload: Duration,
    redis: Option<(String, ConnectionOptions, FailurePolicy)>,
    mode: RedisMode,
}

fn build(args: &Args) -> Result<Built, ConfigError> {
    let grpc = addr("grpc", &args.grpc)?;
    let http = addr("http", &args.http)?;
    let reload = duration("reload_interval", &args.reload_interval)?;
    if reload.is_zero() {
        return Err(ConfigError::new(
            "reload_interval",
            "must be greater than zero",
        ));
    }
    let timeout = duration("redis_timeout", &args.redis_timeout)?;
    let policy = policy(&args.failure_policy)?;
    let redis = args.redis.as_ref().map(|url| {
        let opts = ConnectionOptions::default().call_timeout(timeout);
        (url.clone(), opts, policy)
    });
    if let Some((_, opts, _)) = &redis {
        opts.validate()?;
    }
    if args.max_keys == 0 {
        return Err(ConfigError::new("max_keys", "must be at least 1"));
    }
    let mode = redis_mode(&args.redis_mode)?;
    if args.grpc_threads.is_some_and(|n| n > 1024) {
        return Err(ConfigError::new("grpc_threads", "at most 1024"));
    }
    if args.lease_max_chunk == 0 {
        return Err(ConfigError::new("lease_max_chunk", "must be at least 1"));
    }
    Ok(Built {
        grpc,
        http,
        reload,
        redis,
        mode,
    })
}

/// Runs `tailwater rls`.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let built = match build(&args) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tailwater rls: {e}");
            return Ok(2);
        }
    };
    // The Redis scripts compute GCRA exactly up to a 2^55 ns tolerance (about 417 days: a
    // `year` fits, its emission interval rounded to 8 ns).
    let limit = if built.redis.is_some() {
        tailwater_redis::MAX_REDIS_TOLERANCE_NANOS
    } else {
        u64::MAX
    };
    let watcher = match ConfigWatcher::open_with_limit(&args.config, limit) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("tailwater rls: {e}");
            return Ok(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let grpc_threads = match args.grpc_threads {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    };
    runtime.block_on(async move {
        let store = match built.redis {
            None => Store::Memory(Arc::new(MemoryStore::new(args.max_keys))),
            Some((url, opts, policy)) => match built.mode {
                RedisMode::Atomic => {
                    let conn = RedisConnection::open(&url, opts)?;
                    Store::Redis(
                        RedisRateStore::builder(conn)
                            .policy(policy)
                            .group_commit(args.redis_group_commit)
                            .build()?,
                    )
                }
                RedisMode::Leased => {
                    let conn = RedisConnection::open(&url, opts)?;
                    let options = LeasedOptions {
                        max_chunk: args.lease_max_chunk,
                        policy,
                        max_keys: args.max_keys,
                        ..LeasedOptions::default()
                    };
                    Store::Leased(Arc::new(LeasedStore::new(conn, options)?))
                }
                RedisMode::Cluster => {
                    let urls: Vec<String> = url.split(',').map(str::to_owned).collect();
                    let conn = RedisConnection::open_cluster(&urls, opts).await?;
                    Store::Cluster(RedisRateStore::builder(conn).policy(policy).build()?)
                }
            },
        };
        let kind = store.kind();
        let limiter = RateLimiter::new(watcher.handle(), store);
        let grpc = tokio::net::TcpListener::bind(built.grpc)
            .await
            .with_context(|| format!("binding {}", built.grpc))?;
        let http = tokio::net::TcpListener::bind(built.http)
            .await
            .with_context(|| format!("binding {}", built.http))?;
        eprintln!(
            "tailwater rls: gRPC on {}, HTTP on http://{}, {} domain(s) from {}, {kind} store; Ctrl-C to stop",
            grpc.local_addr().unwrap_or(built.grpc),
            http.local_addr().unwrap_or(built.http),
            watcher.handle().load().len(),
            args.config.display(),
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let w = Arc::clone(&watcher);
        let poll = tokio::spawn({
            let rx = stop_rx.clone();
            async move { w.run(built.reload, stopped(rx)).await }
        });
        let http_task = tokio::spawn(serve_http(
            http,
            limiter.clone(),
            Some(Arc::clone(&watcher)),
            stopped(stop_rx.clone()),
        ));
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop_tx.send(true);
        });
        if grpc_threads == 0 {
            tailwater_rls::serve_grpc(grpc, limiter, stopped(stop_rx))
                .await
                .context("serving gRPC")?;
        } else {
            let threads = tailwater_rls::spawn_grpc_threads(
                grpc.into_std().context("the gRPC listener")?,
                limiter,
                std::num::NonZeroUsize::new(grpc_threads).unwrap_or(std::num::NonZeroUsize::MIN),
                tailwater_rls::GrpcServerOptions::default(),
                stop_rx.clone(),
            )
            .context("starting the gRPC threads")?;
            stopped(stop_rx).await;
            tokio::task::spawn_blocking(move || threads.join())
                .await
                .context("gRPC threads")?
                .context("serving gRPC")?;
        }
        http_task.await.context("HTTP task")?.context("serving HTTP")?;
        poll.await.context("reload task")?;
        Ok::<u8, anyhow::Error>(0)
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn bad_input_names_the_field() {
        for (argv, field) in [
            (vec!["--grpc", "nowhere"], "grpc"),
            (vec!["--http", "x:y"], "http"),
            (vec!["--redis-timeout", "soon"], "redis_timeout"),
            (vec!["--failure-policy", "local:0"], "failure_policy"),
            (vec!["--reload-interval", "0s"], "reload_interval"),
            (vec!["--max-keys", "0"], "max_keys"),
            (vec!["--redis-mode", "sharded"], "redis_mode"),
            (vec!["--lease-max-chunk", "0"], "lease_max_chunk"),
            (vec!["--grpc-threads", "5000"], "grpc_threads"),
        ] {
            let mut full = vec!["t", "--config", "/nonexistent"];
            full.extend(argv);
            let cli = crate::cmd::parse_args::<super::Args>(&full).expect("parses");
            let err = super::build(&cli).err().expect("rejected");
            assert_eq!(err.field(), field, "{full:?}");
        }
    }
}
