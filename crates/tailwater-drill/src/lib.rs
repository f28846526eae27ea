//! # tailwater-drill
//!
//! The game day in one call: a synthetic backend of known capacity, the tailwater proxy in
//! front of it, and open-loop load at 0.5×, 1×, 2×, 5× and 10× that capacity, first straight
//! at the backend (unprotected), then through the proxy (protected). The result is a
//! side-by-side table per phase (goodput, success latency, shed, client timeouts, wasted
//! work, goodput per criticality tier), a JSON document and a self-contained HTML report.
//!
//! Why a drill: "backpressure that hasn't been tested under simulated overload is probably
//! broken" (the seed's Black Friday game day). An unprotected service with a generous queue
//! and clients that give up after a timeout collapses under overload: its queue fills with
//! requests whose clients are gone, it serves them anyway (wasted work), and goodput falls
//! toward zero while it is 100 % busy. The proxy bounds the work in the backend with an
//! adaptive concurrency limit, keeps its own queue short (CoDel or adaptive LIFO) and sheds
//! the excess at once, least critical tier first, so goodput stays near capacity.
//!
//! ```no_run
//! use tailwater_drill::{DrillConfig, render_table, run};
//! let report = run(&DrillConfig::quick(), None)?;
//! println!("{}", render_table(&report));
//! let (unprotected, protected) = report.phase_at(5.0).unwrap();
//! assert!(protected.ok > unprotected.ok);
//! # Ok::<(), tailwater_drill::DrillError>(())
//! ```
//!
//! `--cells` runs another drill: the blast radius of a cell architecture ([`run_cells`]).
//!
//! # Measurement
//!
//! - Goodput is the rate of 2xx responses that arrived within the client timeout, over each
//!   phase's steady part (from one timeout after the phase starts to its end, so every
//!   response counted was sent in that phase). The per-phase counts (`ok`, `shed`,
//!   `timeouts`, per tier) are by *intended* send time: every scheduled request ends in
//!   exactly one outcome (2xx, shed `503`/`429`, other status, client timeout, other client
//!   error), and [`SideResult::outcomes_balance`] checks the counts add up.
//! - Wasted work comes from the backend: requests a worker finished after their client had
//!   gone, attributed to the phase in which the worker finished them. Requests still in the
//!   backend when a side ends are doomed too and are added to the last phase.
//! - Latencies are measured from the intended send time (coordinated-omission corrected).
#![forbid(unsafe_code)]

mod cells;
mod config;
mod html;
mod json;
mod knee;
mod model;
mod run;
mod setup;
mod table;

pub use cells::{
    CellResult, CellsConfig, CellsReport, RoundP99, Scenario, TENANT_HEADER, cells_proxy_config,
    render_cells_table, run_cells,
};
pub use config::{DEFAULT_MAX_RATE, DrillConfig, ExternalTarget, ServiceDistribution};
pub use html::render_html;
pub use json::to_json;
pub use knee::{Knee, KneeStep, RECOVERY_LIMIT, find_capacity, wait_until_recovered};
pub use model::{DrillReport, PhaseResult, ProxyTotals, SeriesPoint, Side, SideResult, TierResult};
pub use run::{Event, Observer, run, run_side};
pub use setup::{backend_config, proxy_config};
pub use table::render_table;
pub use tailwater_core::ConfigError;
pub use tailwater_core::names::{AlgorithmName, QueueName};

/// Why the drill could not run (request failures are results, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// An invalid drill setting, naming the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A runtime or a loopback listener could not be created.
    #[error("could not start the drill: {0}")]
    Io(#[from] std::io::Error),
    /// The load generator failed.
    #[error("load generator: {0}")]
    Load(#[from] tailwater_load::LoadError),
    /// The proxy refused its configuration.
    #[error("proxy: {0}")]
    Proxy(#[from] tailwater_proxy::ConfigError),
    /// The proxy failed to start.
    #[error("proxy: {0}")]
    ProxyServer(#[from] tailwater_proxy::Error),
    /// A bug in the drill.
    #[error("internal error: {0}")]
    Internal(&'static str),
}
