//! # tailwater-redis
//!
//! Global rate limits on Redis (and Redis Cluster) for fleets that outgrow one machine:
//! the same GCRA as [`tailwater_core::rate`], with its state in Redis.
//!
//! ## Which limiter
//!
//! | need | use | accuracy | cost per decision |
//! |---|---|---|---|
//! | one process | `tailwater_core::rate::DirectLimiter` / `KeyedLimiter` | exact | a CAS, no I/O |
//! | fleet-wide, exact | [`RedisRateStore`] (atomic path) | exact: never admits beyond the GCRA, across any number of instances | one `EVALSHA` round trip |
//! | fleet-wide, high rate | [`LeasedLimiter`] (leased path) | never beyond the GCRA over a run; per window at most `N·H` extra (below) | a CAS; one refill round trip per chunk |
//!
//! [`RedisRateStore`] implements the core's `RateStore`, so a
//! `tailwater_core::rate::StoreLimiter` runs on memory or Redis without code changes.
//!
//! Measured on one shared 2-core machine against a local `redis-server` 7.0 (limit
//! 100 000/s, burst 1 000, `cargo bench -p tailwater-redis --bench redis`; the crate
//! README has all tables): the atomic path about 59 000 decisions/s per instance, the
//! leased path about 6.0 M/s for one instance (101x) and 1.8 M/s per instance for four
//! instances sharing the two cores (30x), both with zero overshoot over the run and at
//! most `burst + rate` admitted in any 1 s window; envoyproxy/ratelimit's `INCR` +
//! `EXPIRE` fixed window reached 2x the limit in a sliding 1 s window.
//!
//! ## Atomic path
//!
//! One Lua script per decision (`EVALSHA`, reloaded on `NOSCRIPT`) reads every quota of
//! the key, decides with Redis `TIME` as `now` (client clock skew does not matter; Redis 7
//! replicates script effects, so `TIME` before writes is allowed), and charges all quotas
//! or none. Denied hits change nothing (envoyproxy/ratelimit counts them, its #185). Keys
//! get a `PEXPIRE` until their TAT, so idle keys vanish. The arithmetic is
//! `tailwater_core::rate::gcra::step` exactly (see the `script` notes: two-limb integer
//! nanoseconds in Lua's doubles), and the decision returned is computed by the core's
//! `gcra::step_all` from the very state and `now` the script used. A property test runs
//! both on random sequences and compares every admit/deny and every stored TAT.
//!
//! Limit: a quota's `burst · T` must be at most 2^55 ns (about 417 days,
//! [`MAX_REDIS_TOLERANCE_NANOS`]): a `year` with burst = rate fits. Up to 2^52 ns (about
//! 52 days, [`EXACT_REDIS_TOLERANCE_NANOS`]: a 30-day month fits) the arithmetic is exact
//! in nanoseconds; above, the emission interval is rounded up to a multiple of 8 ns
//! ([`redis_quota`]: the rate is lower by under 8 ns / `T`, 1.1 ppm for a year) and every
//! time the script handles is a multiple of 8 ns, again exact.
//!
//! ## Atomic batch
//!
//! [`RedisRateStore::check_batch`] decides several keys at once, each with its own quota
//! and cell count (one Envoy rate-limit call: several descriptors), in one script with
//! `tailwater_core::rate::step_batch`'s semantics: denied items are never charged and
//! nothing is charged unless the whole batch is admitted (shadow items never deny it;
//! quota items only when all of them deny). The keys of a batch sit in different hash
//! slots, so on Redis Cluster use [`RedisRateStore::check_batch_tagged`]: every key of the
//! batch carries one hash tag (the Envoy RLS uses the call's domain), so they share a slot
//! and the batch stays one atomic script; all keys of one tag live on one master.
//!
//! ## Leased path and its overshoot bound
//!
//! [`LeasedLimiter`] debits chunks of the same GCRA in Redis (one script call per chunk)
//! and answers from local credit. Every admitted cell was debited first, so over a whole
//! run the fleet admits **at most `burst + rate · t / period`**, exactly like the atomic
//! path. Credit leased before a window can be spent inside it, so in any window of length
//! `w` the fleet of `N` instances admits at most
//!
//! ```text
//! burst + rate · w / period + N · H,     H = max_chunk + ceil(max_chunk / 2)
//! ```
//!
//! (`H` is the most credit one instance holds: a refill starts at half a chunk and brings
//! at most one chunk). An instance that got no refill for `lease_ttl` drops its credit,
//! and [`LeasedLimiter::release`] gives unused credit back. Chunks follow each instance's own
//! rate: `clamp(rate · refill_interval, min_chunk, max_chunk)`.
//!
//! ## Failure policy
//!
//! Each call gives up after [`ConnectionOptions::call_timeout`] (default 5 ms; Envoy's RLS
//! client gives up after 20 ms), and then the [`FailurePolicy`] answers: `FailOpen`
//! (admit), `FailClosed` ([`RedisStoreError::Unavailable`], an edge answers 503), or
//! `Degrade { replicas }` (a local GCRA at `limit / replicas`). After a failure Redis is
//! left alone for `retry_backoff` (50 ms), so a dead Redis costs nothing per call: no
//! multi-second stalls (envoyproxy/ratelimit #462, #978). The connection is a
//! `redis::aio::ConnectionManager` with bounded connect (100 ms) and response (250 ms)
//! timeouts that reconnects by itself; when Redis comes back, decisions go back to it
//! without restarting anything. Every timeout, error, skipped call and fallback is counted
//! in `stats()` ([`RedisStats`]). A call that timed out may still have been applied by
//! Redis (counted once, not admitted): fail-safe, never an over-admission.
//!
//! ## Key layout
//!
//! ```text
//! {prefix}:{<escaped key>}:g:<T ns>:<burst>       value: TAT, decimal ns since the Unix epoch
//! ```
//!
//! The user's key is percent-escaped (`%`, `{`, `}`, `:`, non-printable bytes), so keys
//! cannot collide or inject, and the escaped key is the Redis Cluster **hash tag**: all
//! quotas of one key share a slot and one script updates them atomically (see
//! [`KeyLayout`]). The leased path uses the same keys, so atomic and leased users of one
//! key share one budget. Redis Cluster needs the `cluster` feature
//! (`RedisConnection::open_cluster`; a plain link would break the docs built without it).
#![forbid(unsafe_code)]

mod atomic;
mod batch;
mod call;
mod conn;
mod error;
mod group;
mod key;
mod leased;
mod policy;
mod script;
mod stats;

pub use atomic::{Checked, DecisionSource, RedisRateStore, RedisRateStoreBuilder, ScriptOutcome};
pub use batch::{CheckedBatch, MAX_BATCH_ITEMS};
pub use call::{
    EXACT_REDIS_TOLERANCE_NANOS, MAX_REDIS_TOLERANCE_NANOS, REDIS_LONG_GRAIN_NANOS, redis_quota,
};
pub use conn::{ConnectionOptions, RedisConnection};
pub use error::{BackendError, RedisStoreError};
pub use key::KeyLayout;
pub use leased::{LeasedLimiter, LeasedLimiterBuilder};
pub use policy::FailurePolicy;
pub use stats::RedisStats;
