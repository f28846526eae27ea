//! Synchronisation primitives, swapped for loom's models under `--cfg loom`.
//!
//! The limiter's permit accounting and waiter hand-off are checked exhaustively by loom
//! (`RUSTFLAGS="--cfg loom" cargo test -p tailwater-core --lib --release loom_`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
