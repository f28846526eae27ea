//! The connection state every request reads: what a reload swaps ([`State`]), what the
//! accept loop, the connections and the admin endpoints share ([`Shared`]), and one client
//! connection's own ([`Conn`]). Below the engines (`server`, `h1`, `hyper_conn`,
//! `service`, `tunnel`) so that they all depend on it and it on none of them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::Config;
use crate::headers::Forwarding;
use crate::idle::IdleConns;
use crate::metrics::Metrics;
use crate::route::RouteTable;

/// The upstream client type.
pub(crate) type UpstreamClient = Client<HttpConnector, crate::request_body::RequestBody>;

/// What a reload swaps: the configuration, the routes built from it and the clients.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) table: RouteTable,
    /// hyper-util clients (h2c, CONNECT), one pair per worker so that each worker's
    /// upstream connections stay on its thread.
    pub(crate) clients: Box<[Clients]>,
    /// The TLS acceptor when `[server.tls]` is set (rebuilt on reload).
    pub(crate) tls: Option<crate::tls::Acceptor>,
    /// The access log when `[access_log]` is set (reopened on reload).
    pub(crate) access_log: Option<Arc<crate::access_log::AccessLog>>,
}

/// The legacy-client pair of one worker.
#[derive(Debug)]
pub(crate) struct Clients {
    pub(crate) http1: UpstreamClient,
    pub(crate) h2c: UpstreamClient,
}

impl State {
    /// The clients of `worker`.
    pub(crate) fn clients(&self, worker: usize) -> &Clients {
        &self.clients[worker % self.clients.len()]
    }
}

/// State shared by the accept loop, every connection and the admin endpoints.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: ArcSwap<State>,
    pub(crate) metrics: Metrics,
    /// Set once a drain starts: `/ready` answers 503.
    pub(crate) draining: AtomicBool,
    /// Worker shards of the upstream pools, fixed for the life of the proxy.
    pub(crate) workers: usize,
    /// Idle keep-alive connections, reclaimed when the connection slots run out.
    pub(crate) idle: IdleConns,
}

/// What every request of one client connection shares: cloned per request, so the
/// reference count it touches is this connection's, not one shared by all threads.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    /// The worker serving the connection (its upstream pool shard).
    pub(crate) worker: usize,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// `X-Forwarded-For` / `Forwarded` values for this client.
    pub(crate) forwarding: Forwarding,
    /// Set when a request on a hyper-served connection was answered without its body
    /// being read: the connection then closes with a lingering close (`crate::linger`).
    pub(crate) linger: Arc<AtomicBool>,
    /// The `Upgrade` tunnel a request set up, run once hyper hands the connection over.
    pub(crate) tunnel: PendingTunnel,
}

/// The tunnel a connection runs once hyper has handed it over: set by the request that
/// was answered `101`, taken by the connection's task (`hyper_conn::serve`), so that a
/// tunnel keeps its connection slot and is closed by a drain like any connection.
#[derive(Default)]
pub(crate) struct PendingTunnel(Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>);

impl std::fmt::Debug for PendingTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingTunnel")
    }
}

impl PendingTunnel {
    pub(crate) fn set(&self, tunnel: Pin<Box<dyn Future<Output = ()> + Send>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tunnel);
    }

    /// The tunnel to run, if a request set one.
    pub(crate) fn take(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
