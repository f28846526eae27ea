//! # tailwater-proxy
//!
//! An admission-control reverse proxy (sidecar) for services that cannot change: it sits
//! in front of an HTTP/1.1 or h2c service, admits requests against an adaptive concurrency
//! limit per route (with a bounded wait queue, criticality tiers and local rate limits),
//! answers the excess at once with `503` + `Retry-After` (or `429` for rate limits), and
//! streams everything it admits without buffering.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tailwater_proxy::{Config, run};
//! let config = Config::from_file("proxy.toml".as_ref())?; // or Config::simple(uri)
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! run(listener, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Dependencies go one way, with no cycle (`scripts/module-cycles.py`): configuration →
//! counters → routes → connection state → admission → the engines → the server.
//!
//! - [`config`]: the TOML format and its field checks (errors carry file:line and the field);
//! - `decision`: what happened to a request (the labels of `tailwater_requests_total`);
//! - `route`: the route table, each route's admission (limiter, queue wait) and rate limits,
//!   `Config::validate` (which builds them), the endpoint reach both engines share, and
//!   `route::cell`: `[[cell]]`, a route's requests spread over cells by a stable key;
//! - `conn`: the connection state every request reads (the table in force, the counters,
//!   one client connection's own);
//! - `admit`: the admission steps both engines call, on tailwater-tower's transport-neutral
//!   [`admission`](tailwater_tower::admission);
//! - `balance`: a route's endpoints and the choice among several (tailwater-core's
//!   balancer), and when a request may go to another endpoint;
//! - `deadline`: the client's time budget (`grpc-timeout`, a configured header): refused
//!   when spent, cutting the queue wait and the upstream timeout, forwarded as what remains;
//! - `service`: one request on hyper's engine: route, admission, forward, stream back;
//! - `body`: the response body that holds the permit until the upstream body ends;
//! - `request_body`: the client's body on hyper's engine, bounded in size and time;
//! - `outcome`: how a forwarded request ended (upstream failure or client fault), for both
//!   engines;
//! - `h1`: the lean HTTP/1.1 path (httparse heads, the upstream socket driven by the
//!   request's own task), which hands anything unusual to hyper;
//! - `framing`: the one framing decision per message both engines share (RFC 9112 §6);
//! - `target`: `Host` rules (RFC 9112 §3.2) and the normalised path routes match on;
//! - `headers`: hop-by-hop removal and `X-Forwarded-For` / `Forwarded`;
//! - `server`: [`Proxy`], [`run`]: accept loop, connection cap, reload, drain;
//! - `workers`: [`Listeners`], [`Proxy::serve_threaded`]: thread-per-core serving, one
//!   runtime, `SO_REUSEPORT` listener and upstream pool shard per worker thread;
//! - `access_log`: the optional access log (`[access_log]`), both engines, written by a
//!   thread of its own through a bounded queue;
//! - [`admin`]: `/metrics`, `/status`, `/healthz`, `/ready`;
//! - `metrics`: lock-free counters (and each route's burn rates); `exposition`: their
//!   Prometheus rendering; `tunnel_stats`: the tunnels' counters;
//! - [`upstream_tls`]: `https://` upstreams (verification, SNI, client certificates);
//! - [`tunnel`]: HTTP/1.1 `Upgrade` (WebSocket) tunnels, bounded, and `CONNECT` refused.
//!
//! # Failure modes
//!
//! - Upstream down or refusing: 502, counted as a drop (the limit backs off).
//! - Upstream slow: 504 after `upstream.request_timeout`, counted as a drop.
//! - Client gone mid-response: the permit is released as "ignored" (no sample).
//! - Client's fault (malformed, oversized, aborted request body, or one not complete within
//!   `server.body_timeout`): 400, 413, nothing, or 408, and never counted against the
//!   upstream (one classification for both engines: `outcome`). Small declared bodies
//!   (`server.body_buffer_bytes`) are read before admission, so trickling them holds no
//!   permit.
//! - Invalid reload: the old configuration stays and the error is logged and returned.
//! - Drain deadline passed: remaining connections are closed.
#![forbid(unsafe_code)]

mod access_log;
pub mod admin;
mod admit;
mod balance;
mod body;
mod burn;
pub mod config;
mod conn;
mod deadline;
mod decision;
mod exposition;
mod framing;
mod h1;
mod h2c_failover;
mod headers;
mod hyper_conn;
mod idle;
mod linger;
mod metrics;
mod outcome;
mod port;
mod request_body;
mod rls;
mod route;
mod send_deadline;
mod server;
mod service;
mod status;
mod target;
pub mod tls;
pub mod tunnel;
mod tunnel_stats;
mod upstream;
pub mod upstream_tls;
mod workers;

pub use body::{BodyIdleTimeout, BoxError, ProxyBody};
pub use burn::BudgetStatus;
pub use config::{Config, ConfigError};
pub use server::{Error, Proxy, run};
pub use status::RouteStatus;
pub use tailwater_tower::admission::CRITICALITY_HEADER;
pub use workers::Listeners;
