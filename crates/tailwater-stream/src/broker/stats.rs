//! Counters shared between a consumer's fetch loop and its handler tasks, and their
//! snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What a broker consumer has done, from its start. Counters only grow; `in_flight` and the
/// lag are current values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerStats {
    /// Fetch commands that asked the broker for messages (new or claimed).
    pub fetches: u64,
    /// Messages handed to the handler, first deliveries and redeliveries.
    pub delivered: u64,
    /// Of `delivered`, the messages that had been delivered before (claimed from a dead or
    /// slow consumer, or read back from this consumer's own pending list at start).
    pub redelivered: u64,
    /// Messages acknowledged after their handler returned `Ok`.
    pub acked: u64,
    /// Handler errors: the message was not acknowledged and will be delivered again.
    pub failed: u64,
    /// Acknowledgements the broker did not confirm (the message will be delivered again).
    pub ack_errors: u64,
    /// Pending entries the broker had deleted (trimmed) before they could be claimed.
    pub deleted: u64,
    /// Messages whose handler is running now.
    pub in_flight: usize,
    /// The most messages ever in flight at once.
    pub peak_in_flight: usize,
    /// Payload bytes (field names and values) of the messages in flight now.
    pub in_flight_bytes: usize,
    /// The most payload bytes ever in flight at once.
    pub peak_in_flight_bytes: usize,
    /// The largest single fetch (messages asked for).
    pub max_fetch_size: usize,
    /// The size of the last fetch (messages asked for).
    pub last_fetch_size: usize,
    /// The limiter's limit at the last fetch: the most the consumer would hold in flight.
    pub limit: usize,
    /// The group's lag at the last sample: messages in the stream not yet delivered to the
    /// group. `None` before the first sample or when the broker cannot tell.
    pub lag: Option<u64>,
    /// Messages delivered to the group and not yet acknowledged, at the last sample.
    pub pending: Option<u64>,
    /// How fast the lag grew between the last two samples, in messages per second
    /// (negative while the consumer catches up).
    pub lag_growth_per_second: Option<f64>,
}

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
