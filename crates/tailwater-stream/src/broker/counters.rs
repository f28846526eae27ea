//! Counters shared between a consumer's fetch loop and its handler tasks; [`Counters::snapshot`]
//! reads them into a [`ConsumerStats`]. Built only with a broker feature (the driver is their
//! only writer).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::stats::ConsumerStats;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fetches: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) ack_errors: AtomicU64,
    pub(crate) deleted: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) peak_in_flight: AtomicUsize,
    pub(crate) in_flight_bytes: AtomicUsize,
    pub(crate) peak_in_flight_bytes: AtomicUsize,
    pub(crate) max_fetch_size: AtomicUsize,
    pub(crate) last_fetch_size: AtomicUsize,
    pub(crate) limit: AtomicUsize,
    pub(crate) lag: std::sync::Mutex<LagState>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LagState {
    pub(crate) lag: Option<u64>,
    pub(crate) pending: Option<u64>,
    pub(crate) growth: Option<f64>,
}

impl Counters {
    /// A message enters its handler.
    pub(crate) fn enter(&self, bytes: usize, redelivered: bool) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if redelivered {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_in_flight.fetch_max(n, Ordering::AcqRel);
        let b = self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak_in_flight_bytes.fetch_max(b, Ordering::AcqRel);
    }

    /// A message leaves its handler (acknowledged or not).
    pub(crate) fn leave(&self, bytes: usize) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.in_flight_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn fetched(&self, asked: usize, limit: usize) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.last_fetch_size.store(asked, Ordering::Relaxed);
        self.max_fetch_size.fetch_max(asked, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn set_lag(&self, state: LagState) {
        *self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    pub(crate) fn snapshot(&self) -> ConsumerStats {
        let lag = *self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ConsumerStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            ack_errors: self.ack_errors.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Acquire),
            peak_in_flight: self.peak_in_flight.load(Ordering::Acquire),
            in_flight_bytes: self.in_flight_bytes.load(Ordering::Acquire),
            peak_in_flight_bytes: self.peak_in_flight_bytes.load(Ordering::Acquire),
            max_fetch_size: self.max_fetch_size.load(Ordering::Relaxed),
            last_fetch_size: self.last_fetch_size.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            lag: lag.lag,
            pending: lag.pending,
            lag_growth_per_second: lag.growth,
        }
    }
}
