//! The proxy server: accept loop with a connection cap, HTTP/1.1 + h2c connections, hot
//! reload of the route table, and graceful drain.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{Config, ConfigError};
use crate::conn::{Clients, Conn, Shared, State};
use crate::headers::Forwarding;
use crate::idle::IdleConns;
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::send_deadline::SendDeadline;
use crate::status::RouteStatus;

/// Errors from [`Proxy::serve`] and [`run`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// A configured proxy, ready to serve. Cheap to clone (clones share state), so one clone
/// serves and another reloads or reports.
///
/// ```no_run
/// # async fn demo() -> Result<(), tailwater_proxy::Error> {
/// use tailwater_proxy::{Config, Proxy};
/// let proxy = Proxy::new(Config::simple("http://127.0.0.1:9000".parse().unwrap()))?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let handle = proxy.clone();
/// tokio::spawn(async move { /* later: */ let _ = handle.reload_from_file("proxy.toml".as_ref()); });
/// proxy.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Proxy {
    pub(crate) shared: Arc<Shared>,
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains: stops accepting,
/// lets in-flight requests finish for up to `server.drain_timeout`, closes the rest.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    Proxy::new(config)?.serve(listener, shutdown).await
}

fn build_state(
    config: Config,
    old: Option<&State>,
    metrics: &Metrics,
    workers: usize,
) -> Result<State, ConfigError> {
    // A `Config` made in code was never validated: building takes the proof.
    let table = RouteTable::build_reusing(
        config.validated()?,
        old.map(|s| &s.table),
        Some(metrics),
        workers,
    )?;
    let clients = (0..workers.max(1)).map(|_| clients(&config)).collect();
    let tls = config
        .server
        .tls
        .as_ref()
        .map(crate::tls::acceptor)
        .transpose()?;
    let access_log = config
        .access_log
        .as_ref()
        .map(|c| crate::access_log::AccessLog::open(c, Arc::clone(&metrics.access_log_dropped)))
        .transpose()?;
    Ok(State {
        config,
        table,
        clients,
        tls,
        access_log,
    })
}

fn clients(config: &Config) -> Clients {
    let u = &config.upstream;
    let h2 = &config.server.http2;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(u.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_max_idle_per_host(u.pool_max_idle_per_host)
        .pool_idle_timeout(u.pool_idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    let http1 = b.build(connector.clone());
    b.http2_only(true)
        .http2_initial_stream_window_size(h2.initial_stream_window)
        .http2_initial_connection_window_size(h2.initial_connection_window)
        .http2_adaptive_window(h2.adaptive_window)
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_timeout(Duration::from_secs(10));
    let h2c = b.build(connector);
    Clients { http1, h2c }
}

impl Proxy {
    /// Validates `config` and builds the routes and upstream clients, with one upstream
    /// connection pool shard per worker thread (`server.workers`).
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let workers = config.server.worker_threads().get();
        let metrics = Metrics::new(workers);
        let state = build_state(config, None, &metrics, workers)?;
        Ok(Self {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(state),
                metrics,
                draining: AtomicBool::new(false),
                workers,
                idle: IdleConns::new(workers),
            }),
        })
    }

    /// Replaces the routes and upstream settings. Connections stay open; requests already
    /// admitted finish under the old route. A route whose name and admission settings are
    /// unchanged keeps its limiter (learned limit and in-flight count). On error nothing
    /// changes. Every worker sees the new routes from its next request on. Settings under
    /// `[server]` other than `max_body_bytes` apply to the next start only.
    pub fn reload(&self, config: Config) -> Result<(), ConfigError> {
        let old = self.shared.state.load();
        let state = build_state(
            config,
            Some(&old),
            &self.shared.metrics,
            self.shared.workers,
        );
        self.shared.metrics.reloaded(state.is_ok());
        let state = state?;
        self.shared.state.store(Arc::new(state));
        tracing::info!(
            routes = self.shared.state.load().table.routes().len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// Reads `path` and [`reload`](Self::reload)s it; an invalid file keeps the old
    /// configuration and the error says why (file:line and field). This is what SIGHUP does.
    pub fn reload_from_file(&self, path: &Path) -> Result<(), ConfigError> {
        let result = Config::from_file(path)
            .inspect_err(|_| self.shared.metrics.reloaded(false))
            .and_then(|c| self.reload(c));
        if let Err(e) = &result {
            tracing::error!(error = %e, "reload failed; keeping the previous configuration");
        }
        result
    }

    /// The configuration in effect.
    pub fn config(&self) -> Config {
        self.shared.state.load().config.clone()
    }

    /// A snapshot of every route's limiter and counters.
    pub fn status(&self) -> Vec<RouteStatus> {
        crate::status::snapshot(&self.shared)
    }

    /// The Prometheus text exposition of every metric.
    pub fn metrics_text(&self) -> String {
        let state = self.shared.state.load();
        self.shared.metrics.render(&state.table, &state.config)
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Serves connections from `listener` on the current runtime until `shutdown` resolves,
    /// then drains (see [`run`]). Returns once every connection is closed or the drain
    /// deadline passed. [`serve_threaded`](Self::serve_threaded) is the thread-per-core
    /// alternative that `tailwater proxy` uses.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let max = self.shared.state.load().config.server.max_connections;
        self.serve_worker(listener, 0, Arc::new(Semaphore::new(max)), shutdown)
            .await
    }

    /// The accept loop and drain of worker `worker`: its connections count against
    /// `conn_slots` (shared by all workers) and use the worker's upstream connections.
    pub(crate) async fn serve_worker(
        &self,
        listener: TcpListener,
        worker: usize,
        conn_slots: Arc<Semaphore>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let (server_cfg, ready_builder) = {
            let state = self.shared.state.load();
            let s = state.config.server.clone();
            let b = connection_builder(&s);
            (s, b)
        };
        let builder = Arc::new(ready_builder);
        // Worker 0 feeds the burn rates once a second while it serves.
        let _burn_tick = (worker == 0).then(|| crate::burn::spawn_tick(Arc::clone(&self.shared)));
        // Tells every connection to close once idle (`hyper_conn` shuts hyper's down
        // gracefully).
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut conns: JoinSet<()> = JoinSet::new();
        let mut backoff = Duration::from_millis(5);
        tokio::pin!(shutdown);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, worker, "proxy listening");
        }
        loop {
            while conns.try_join_next().is_some() {}
            // Accept first, then take a slot: a worker waiting in `accept` holds no slot
            // that a busier worker could use.
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => {
                        backoff = Duration::from_millis(5);
                        a
                    }
                    Err(e) => {
                        // EMFILE and friends: wait, then retry (mini-redis's accept backoff).
                        tracing::warn!(error = %e, ?backoff, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            let slot = match Arc::clone(&conn_slots).try_acquire_owned() {
                Ok(s) => s,
                Err(_) => {
                    let waited = self.slot_for_new_connection(&conn_slots);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        slot = waited => match slot {
                            Some(s) => s,
                            None => break, // never closed
                        },
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            // The acceptor of the configuration in force now: a reload changes the
            // certificates of new connections only.
            let tls = self.shared.state.load().tls.clone();
            let conn = Conn {
                shared: Arc::clone(&self.shared),
                worker,
                peer,
                forwarding: Forwarding::with_proto(
                    peer.ip(),
                    if tls.is_some() { "https" } else { "http" },
                ),
                linger: Arc::default(),
                tunnel: Default::default(),
            };
            let drain = drain_rx.clone();
            let lean = server_cfg.lean_http1;
            spawn_connection(&mut conns, &builder, stream, conn, slot, drain, lean, tls);
        }
        drop(listener);
        self.shared.draining.store(true, Ordering::Release);
        drain_tx.send_replace(true);
        // Idle keep-alive connections on the lean path watch no drain channel: the idle
        // registry wakes them (`crate::idle`).
        self.shared.idle.drain_worker(worker);
        let open = conns.len();
        tracing::info!(worker, open, deadline = ?server_cfg.drain_timeout, "draining");
        let drained = tokio::time::timeout(server_cfg.drain_timeout, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = conns.len(),
                "drain deadline passed; closing connections"
            );
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        tracing::info!(worker, "proxy stopped");
        Ok(())
    }
}

impl Proxy {
    /// A connection slot when all are taken: closes the oldest idle keep-alive connection
    /// to make room (nginx reclaims idle connections the same way), and waits for a slot,
    /// trying again every [`RECLAIM_RETRY`] while none is free (connections that are busy
    /// free theirs as they finish). `None` if the semaphore closed (it never does).
    async fn slot_for_new_connection(
        &self,
        conn_slots: &Arc<Semaphore>,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        loop {
            self.shared.idle.reclaim(1);
            tokio::select! {
                slot = Arc::clone(conn_slots).acquire_owned() => return slot.ok(),
                () = tokio::time::sleep(RECLAIM_RETRY) => {}
            }
        }
    }
}

/// How often a worker waiting for a connection slot looks again for an idle connection to
/// reclaim.
const RECLAIM_RETRY: Duration = Duration::from_millis(50);

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn spawn_connection(
    conns: &mut JoinSet<()>,
    builder: &Arc<auto::Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    conn: Conn,
    slot: tokio::sync::OwnedSemaphorePermit,
    mut drain: watch::Receiver<bool>,
    lean: bool,
    tls: Option<crate::tls::Acceptor>,
) {
    let metrics = &conn.shared.metrics;
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    metrics.accepted_by(conn.worker);
    // Counted open, and holding its slot, until the task ends or is aborted at the drain
    // deadline: both are released by drop, never by code after an `.await`.
    let open = OpenConnection::new(Arc::clone(&conn.shared), slot);
    let conn = Arc::new(conn);
    if lean && tls.is_none() {
        let handoff = crate::h1::Handoff {
            builder: Arc::clone(builder),
        };
        conns.spawn(async move {
            let accepted = tokio::time::Instant::now();
            crate::h1::serve(Arc::clone(&conn), stream, handoff, drain, accepted).await;
            drop(open);
        });
        return;
    }
    let send_timeout = conn.shared.state.load().config.server.send_timeout;
    let header_read_timeout = conn.shared.state.load().config.server.header_read_timeout;
    let builder = Arc::clone(builder);
    if let Some(acceptor) = tls {
        conns.spawn(async move {
            let accepted = tokio::time::Instant::now();
            if let Some(stream) = crate::tls::handshake(
                conn.peer,
                &conn.shared.metrics.tls_handshake_failures,
                &acceptor,
                stream,
                header_read_timeout,
                &mut drain,
            )
            .await
            {
                // ALPN `h2` goes to hyper; `http/1.1` or none takes the lean path like a
                // plain connection (which hands it to hyper when a request needs that).
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                if lean && !h2 {
                    let handoff = crate::h1::Handoff { builder };
                    crate::h1::serve(Arc::clone(&conn), stream, handoff, drain, accepted).await;
                } else {
                    let io =
                        SendDeadline::new(stream, send_timeout).lingering(Arc::clone(&conn.linger));
                    crate::hyper_conn::serve(Arc::clone(&conn), io, &builder, drain).await;
                }
            }
            drop(open);
        });
        return;
    }
    conns.spawn(async move {
        // hyper-util's protocol detection reads the first bytes without a deadline: a
        // client that connects and sends nothing would hold its slot for ever.
        let mut probe = [0u8; 1];
        let first = tokio::select! {
            r = tokio::time::timeout(header_read_timeout, stream.peek(&mut probe)) => {
                matches!(r, Ok(Ok(n)) if n > 0)
            }
            _ = drain.wait_for(|d| *d) => false,
        };
        if first {
            let io = SendDeadline::new(stream, send_timeout).lingering(Arc::clone(&conn.linger));
            crate::hyper_conn::serve(Arc::clone(&conn), io, &builder, drain).await;
        } else {
            tracing::debug!(peer = %conn.peer, "no request head in time");
        }
        drop(open);
    });
}

/// A client connection counted in `tailwater_connections_open` and holding its connection
/// slot. Dropping it (the task ended, or was aborted at the drain deadline) releases both.
struct OpenConnection {
    shared: Arc<Shared>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(shared: Arc<Shared>, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        shared
            .metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        Self {
            shared,
            _slot: slot,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shared
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The hyper server builder: header limits, slowloris timeout, HTTP/2 settings.
fn connection_builder(s: &crate::config::ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes)
        .max_headers(s.max_headers)
        .keep_alive(true);
    let h2 = &s.http2;
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .initial_stream_window_size(h2.initial_stream_window)
        .initial_connection_window_size(h2.initial_connection_window)
        .adaptive_window(h2.adaptive_window)
        .max_header_list_size(h2.max_header_list_size);
    b
}
