//! Open-loop, coordinated-omission-correct HTTP load generation (HTTP/1.1 and HTTP/2, in the
//! clear or over TLS; unary gRPC over HTTP/2, see [`GrpcCall`]), and a synthetic backend.
//!
//! The load generator follows wrk2's measurement model (Gil Tene, "How NOT to Measure
//! Latency"): requests are due on a schedule fixed in advance, and each latency is measured
//! from the request's *intended* send time, so a stalled server is charged for every request
//! it delayed, not only for the few that were on the wire ("coordinated omission"). Unlike
//! wrk2, requests are not tied one-per-connection to a closed loop: pacing threads dispatch
//! each request at its time (for HTTP/1.1, the same thread then writes it), outstanding requests are bounded by
//! [`Config::max_in_flight`] (and lateness caused by that bound is counted), and everything is
//! recorded in constant memory (HdrHistogram, 3 significant figures).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tailwater_load::{Config, HeaderMix, Schedule};
//! let schedule = Schedule::parse("500:10s,ramp:500..2000:10s")?;
//! let mut config = Config::new("http://127.0.0.1:9000/", schedule)?;
//! config.header_mix = Some(HeaderMix::parse("x-criticality: critical=70,sheddable=30")?);
//! let report = tailwater_load::run(config, std::future::pending()).await?;
//! println!("{}", report.summary());
//! for phase in &report.phases {
//!     println!("{}: {:.0} ok/s", phase.segment, phase.goodput());
//! }
//! # Ok(()) }
//! ```
// `unsafe` only in `latency::sys` (sched_setattr, no safe wrapper) and `run::timer::sys`
// (timerfd, and registering its descriptor with tokio).
#![deny(unsafe_code)]

pub mod backend;
mod client;
mod config;
mod grpc;
pub mod hgrm;
pub mod html;
pub mod latency;
mod meta;
mod parse;
pub mod report;
mod run;
mod schedule;
mod stats;
mod summary;
mod threshold;
mod tls;

pub use config::{
    Config, DEFAULT_CONNECTIONS_HTTP1, DEFAULT_CONNECTIONS_HTTP2, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_PACE_QUANTUM, DEFAULT_TIMEOUT, HeaderMix, MAX_PACE_QUANTUM, Progress, ProgressFn,
    Target,
};
pub use grpc::{GrpcCall, GrpcOutcome, MAX_MESSAGE as MAX_GRPC_MESSAGE, OverLimitFn, parse_hex};
/// The `http` crate, re-exported for header and method types in [`Config`].
pub use http;
pub use meta::{RunMeta, VERSION, rfc3339};
pub use parse::parse_duration;
pub use report::{IntervalReport, PhaseReport, Report, TierReport};
pub use run::run;
pub use schedule::{Arrival, Arrivals, Schedule, Segment, Spacing};
pub use stats::{ErrorKind, Percentiles, Stats};
pub use tailwater_core::ConfigError;
pub use threshold::{Thresholds, Verdict};
pub use tls::TlsOptions;

/// Why a run could not start or finish its outputs (request failures are counted in the
/// report, not returned as errors).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An invalid setting, naming the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The target host did not resolve.
    #[error("could not resolve `{host}`: {source}")]
    Resolve {
        /// `host:port`.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// An output file could not be written.
    #[error("could not write `{path}`: {source}")]
    Output {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}
