//! Thread-per-core serving, as nginx's worker processes: N OS threads, each with its own
//! single-threaded tokio runtime, its own listening socket on the shared address
//! (`SO_REUSEPORT`: the kernel spreads new connections over the sockets) and its own
//! upstream connections.
//!
//! Why: on a small machine the proxy's cost is per-request CPU. A work-stealing runtime
//! moves tasks between threads, wakes other threads through futexes and bounces the
//! cache lines of the sockets it touches; a worker here accepts, reads, forwards and
//! answers on one thread, with no cross-thread wake-ups on the request path. What the
//! workers do share is lock-free: the route table (swapped on reload, so a reload reaches
//! every worker at its next request), each route's limiter, the metrics, the connection
//! cap and the draining flag.
//!
//! `SO_REUSEPORT` also lets another process of the same user bind the same address; the
//! kernel then spreads connections over both, which is how nginx does a binary upgrade.
//! [`Listeners::bind`] refuses an address another proxy (or anything) already listens on
//! (see `port`); [`Listeners::bind_shared`] is the explicit opt-in to sharing
//! (`server.reuse_port_shared`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::port::PortLock;
use crate::server::{Error, Proxy};

/// Backlog of each worker's listening socket (the kernel caps it at `somaxconn`).
const BACKLOG: u32 = 1024;

/// One listening socket per worker, all bound to the same address with `SO_REUSEPORT`.
///
/// Every socket listens as soon as [`bind`](Self::bind) returns (connections wait in its
/// backlog), so an address in use is reported at once and no connection is refused while
/// the workers start; each worker then takes its socket into its own runtime.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::num::NonZeroUsize;
/// use tailwater_proxy::Listeners;
/// let listeners = Listeners::bind("127.0.0.1:8080".parse().unwrap(), NonZeroUsize::new(2).unwrap()).await?;
/// assert_eq!(listeners.len(), 2);
/// println!("listening on {}", listeners.local_addr());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    addr: SocketAddr,
    /// The address is this process's while the listeners (or the workers serving them)
    /// live; `None` when shared on purpose.
    lock: Option<PortLock>,
}

impl Listeners {
    /// Binds `workers` listening sockets to `addr`, which must not be in use: an error of
    /// kind `AddrInUse` if another tailwater proxy holds it or any socket listens on it
    /// (with `SO_REUSEPORT` a second proxy would otherwise start silently and take a share
    /// of the traffic). With port 0 the first socket picks a free port and the others bind
    /// to the same one. Async only because tokio registers a socket with the calling
    /// runtime when it starts listening (the socket leaves that runtime again before this
    /// returns).
    pub async fn bind(addr: SocketAddr, workers: NonZeroUsize) -> io::Result<Self> {
        Self::bind_with(addr, workers, false)
    }

    /// As [`bind`](Self::bind), but joins the sockets another process (of the same user)
    /// already has on `addr` with `SO_REUSEPORT`, and lets later ones join: the kernel
    /// spreads connections over all of them. For a deliberate hand-over only
    /// (`server.reuse_port_shared = true`): each process admits against its own limits.
    pub async fn bind_shared(addr: SocketAddr, workers: NonZeroUsize) -> io::Result<Self> {
        Self::bind_with(addr, workers, true)
    }

    fn bind_with(addr: SocketAddr, workers: NonZeroUsize, shared: bool) -> io::Result<Self> {
        let lock_early = !shared && addr.port() != 0;
        let mut lock = if lock_early {
            Some(PortLock::take(addr)?)
        } else {
            None
        };
        let first = reuseport_listener(addr)?;
        let addr = first.local_addr()?;
        if !shared && lock.is_none() {
            // A port the kernel just picked: nobody else listens on it, but a proxy
            // asked for it by number later must be refused.
            lock = Some(PortLock::take_unprobed(addr)?);
        }
        let mut sockets = Vec::with_capacity(workers.get());
        sockets.push(first);
        for _ in 1..workers.get() {
            sockets.push(reuseport_listener(addr)?);
        }
        Ok(Self {
            sockets,
            addr,
            lock,
        })
    }

    /// The address every socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The number of sockets, i.e. of worker threads.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Always false: [`bind`](Self::bind) makes at least one socket.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // Still non-blocking, as `TcpListener::from_std` in the worker requires.
    socket.listen(BACKLOG)?.into_std()
}

impl Proxy {
    /// Serves on `listeners` with one worker thread per socket until `shutdown` resolves,
    /// then drains every worker (see [`run`](crate::run)) and returns once all of them
    /// stopped. Each worker runs its own single-threaded runtime; the caller's runtime
    /// only waits, so it can be small (it also serves the admin listener and signals in
    /// `tailwater proxy`).
    ///
    /// `server.max_connections` caps the connections of all workers together. The proxy's
    /// upstream pools have [`server.workers`](crate::config::ServerConfig::workers) shards;
    /// more listeners than that share shards (correct, only slower).
    ///
    /// Errors: a worker that cannot start (its runtime could not be built) stops the
    /// others and its error is returned.
    pub async fn serve_threaded(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let n = listeners.len();
        // Held until every worker stopped.
        let _lock = listeners.lock;
        let max = self.shared.state.load().config.server.max_connections;
        let conn_slots = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<Result<(), Error>>(n);
        let serving = Arc::new(watch::Sender::new(n));
        let mut threads = Vec::with_capacity(n);
        for (worker, socket) in listeners.sockets.into_iter().enumerate() {
            let proxy = self.clone();
            let slots = Arc::clone(&conn_slots);
            let mut stop = stop_rx.clone();
            let done = done_tx.clone();
            let serving_count = Serving(Arc::clone(&serving));
            let spawned = std::thread::Builder::new()
                .name(format!("tailwater-worker-{worker}"))
                .spawn(move || {
                    let stop = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    run_worker(&proxy, worker, socket, slots, stop, &done, serving_count);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // This worker and the ones after it never serve.
                    serving.send_modify(|c| *c = c.saturating_sub(n - worker));
                    let _ = stop_tx.send(true);
                    join_all(threads).await;
                    return Err(e.into());
                }
            }
        }
        drop(done_tx);
        tokio::pin!(shutdown);
        let mut first: Result<(), Error> = tokio::select! {
            () = &mut shutdown => Ok(()),
            // A worker stopped on its own: it could not start, or it failed.
            early = done_rx.recv() => early.unwrap_or(Ok(())),
        };
        let _ = stop_tx.send(true);
        while let Some(result) = done_rx.recv().await {
            if first.is_ok() {
                first = result;
            }
        }
        join_all(threads).await;
        first
    }
}

/// One worker still serving; dropping it (also while unwinding) counts the worker out.
struct Serving(Arc<watch::Sender<usize>>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.send_modify(|c| *c = c.saturating_sub(1));
    }
}

/// Runs worker `worker` on a fresh single-threaded runtime, on the calling thread, and
/// reports its result on `done` as soon as it stopped serving. The runtime then keeps
/// running until every worker stopped: with more workers than pool shards, a request on
/// one worker may use an upstream connection whose task lives on another worker's
/// runtime, and that task must outlive the other worker's drain.
fn run_worker(
    proxy: &Proxy,
    worker: usize,
    socket: std::net::TcpListener,
    conn_slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
    done: &mpsc::Sender<Result<(), Error>>,
    serving: Serving,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            drop(serving);
            let _ = done.try_send(Err(e.into()));
            return;
        }
    };
    let mut all_stopped = serving.0.subscribe();
    rt.block_on(async {
        let result = match tokio::net::TcpListener::from_std(socket) {
            Ok(listener) => {
                proxy
                    .serve_worker(listener, worker, conn_slots, shutdown)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        drop(serving);
        let _ = done.try_send(result);
        let _ = all_stopped.wait_for(|c| *c == 0).await;
    });
}

/// Joins worker threads without blocking the caller's runtime: every thread has already
/// sent its result (or is about to return), so the blocking joins are short.
async fn join_all(threads: Vec<std::thread::JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a proxy worker thread panicked");
            }
        }
    })
    .await;
}
