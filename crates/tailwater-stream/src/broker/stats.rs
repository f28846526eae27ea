//! What a broker consumer has done: the snapshot [`ConsumerStats`] (public with or without a
//! broker feature; the counters behind it are in `counters.rs`, built with the brokers).

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
