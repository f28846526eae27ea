//! # tailwater-core
//!
//! Overload control primitives with no I/O: adaptive concurrency limits, RAII permits,
//! criticality tiers, bounded waiting queues and rate limits. The tower layers, the sidecar
//! proxy and the simulator are all built on this crate, and the simulator drives *this exact
//! code* on virtual time: what it says about an algorithm holds for production.
//!
//! ## The three seams
//!
//! 1. **Algorithms** ([`algorithm`]) are pure state machines: one [`Sample`](algorithm::Sample)
//!    (time, RTT, in-flight at acquire, outcome) in, a new limit out. They never read a clock.
//! 2. **Enforcement** ([`Limiter`], [`rate`]) holds the shared state: admission is one
//!    compare-and-swap, a [`Permit`] releases itself exactly once (RAII), and every
//!    [`Rejection`] carries a [`RejectReason`] and a retry hint. A permit borrows its limiter
//!    (`try_acquire`) or holds a handle on it ([`OwnedPermit`], `try_acquire_owned`) when it
//!    must travel. At high rates only a steady subset of permits read the clock and feed the
//!    algorithm ([`limiter::RttSampling`]); every outcome is counted and every drop is fed.
//!    The whole acquire-and-release costs about what `tokio::sync::Semaphore` does (see the
//!    README's performance section).
//! 3. **Integration** lives in other crates (`tailwater-tower`, `tailwater-proxy`): this
//!    crate has no tokio, tower or hyper types in its API. The optional `tokio` feature adds
//!    `Limiter::acquire` (waiting with tokio timers) and a `TokioClock`.
//!
//! The caller's side of overload (circuit breaker, one retry-and-hedge budget, hedging delay,
//! client-side adaptive throttling) is in [`outbound`], as state machines of the same kind.
//!
//! Time is data: every stateful type reads a [`Clock`](clock::Clock), so tests and the
//! simulator use a [`ManualClock`](clock::ManualClock) instead of sleeping.
//!
//! ## Choosing an algorithm
//!
//! See the table in [`algorithm`]. In short: [`recommended`](algorithm::recommended) (the
//! default: corrected Gradient2 in 20–100 ms windows) for latency-driven server limits;
//! [`Aimd`](algorithm::Aimd) when the signal is errors and timeouts; [`Vegas`](algorithm::Vegas) when the latency floor is stable;
//! [`Fixed`](algorithm::Fixed) when you know the number. The Netflix and Envoy reference
//! behaviours are kept (with their known faults) so that they can be compared.
//!
//! ## Tiers, partitions and queues
//!
//! - **Criticality tiers** ([`Criticality`], [`TierThresholds`]): the SRE book's four levels.
//!   Each tier keeps a share of the limit (100 / 80 / 50 / 20 % by default, the seed's
//!   "Tiered shedding") while more important tiers contend for the rest, and may use the
//!   whole limit when none does: the least important work is shed first and the most
//!   important last, and no capacity is reserved without contention.
//! - **Partitions**: Netflix-style percentage shares, each guaranteed its share and free to
//!   borrow idle capacity, without ever exceeding the limit.
//! - **Waiting** ([`limiter::QueueConfig`]): a bounded queue with FIFO, LIFO, adaptive LIFO
//!   or CoDel ("Fail at Scale"), more important tiers ahead; every waiter leaves with a
//!   permit, a timeout or a rejection.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use tailwater_core::{Criticality, Limiter, RejectReason, TierThresholds};
//! use tailwater_core::algorithm::recommended;
//! use tailwater_core::limiter::{QueueConfig, Request};
//!
//! let limiter = Limiter::builder()
//!     .algorithm(recommended()) // Headroom (the default)
//!     .tiers(TierThresholds::default())
//!     .queue(QueueConfig::codel(100)?)
//!     .build()?;
//!
//! match limiter.try_acquire_with(Request::new().tier(Criticality::Sheddable)) {
//!     Ok(permit) => {
//!         // ... handle the request ...
//!         permit.success(); // or permit.dropped() on a timeout / 503 from downstream
//!     }
//!     Err(rejection) => {
//!         // Answer 503 with Retry-After: rejection.retry_after.
//!         assert_ne!(rejection.reason, RejectReason::QueueFull);
//!     }
//! }
//! println!("{:?}", limiter.stats());
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod balance;
pub mod cell;
pub mod clock;
pub mod criticality;
pub mod duration;
pub mod error;
pub mod limiter;
pub mod names;
pub mod outbound;
pub mod rate;
mod sync;
pub mod toml_locate;
pub mod vocabulary;

pub use criticality::{Criticality, TierThresholds};
pub use error::ConfigError;
pub use limiter::{Limiter, OwnedPermit, Permit, RejectReason, Rejection};
