//! Broker consumer metrics through the `metrics` facade, named in
//! [`tailwater_core::vocabulary`] (the `BROKER_*` entries) as the rest of tailwater's
//! (`tailwater_` prefix, `_total` on counters). Every series has the labels `broker`
//! (`redis`, `nats` or `rabbitmq`), `stream` and `group` (for NATS, the durable consumer's
//! name; for RabbitMQ both are the queue's). They are recorded by the consumer's fetch loop
//! at each lag sample.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | [`LAG`] `tailwater_broker_lag_messages` | gauge | messages in the stream not yet delivered to the group |
//! | [`LAG_GROWTH`] `tailwater_broker_lag_growth_per_second` | gauge | the lag's growth between the last two samples (negative while catching up) |
//! | [`PENDING`] `tailwater_broker_pending_messages` | gauge | delivered to the group, not yet acknowledged |
//! | [`IN_FLIGHT`] `tailwater_broker_in_flight_messages` | gauge | messages in this consumer's handlers |
//! | [`LIMIT`] `tailwater_broker_fetch_limit` | gauge | the limiter's limit: the most this consumer holds |
//! | [`DELIVERED`] `tailwater_broker_delivered_total` | counter | messages handed to the handler |
//! | [`REDELIVERED`] `tailwater_broker_redelivered_total` | counter | of those, messages delivered before |
//! | [`ACKED`] `tailwater_broker_acked_total` | counter | messages acknowledged |
//! | [`FAILED`] `tailwater_broker_failed_total` | counter | handler errors (left pending for redelivery) |

use tailwater_core::vocabulary;

/// `tailwater_broker_lag_messages`.
pub const LAG: &str = vocabulary::BROKER_LAG.name;
/// `tailwater_broker_lag_growth_per_second`.
pub const LAG_GROWTH: &str = vocabulary::BROKER_LAG_GROWTH.name;
/// `tailwater_broker_pending_messages`.
pub const PENDING: &str = vocabulary::BROKER_PENDING.name;
/// `tailwater_broker_in_flight_messages`.
pub const IN_FLIGHT: &str = vocabulary::BROKER_IN_FLIGHT.name;
/// `tailwater_broker_fetch_limit`.
pub const LIMIT: &str = vocabulary::BROKER_FETCH_LIMIT.name;
/// `tailwater_broker_delivered_total`.
pub const DELIVERED: &str = vocabulary::BROKER_DELIVERED.name;
/// `tailwater_broker_redelivered_total`.
pub const REDELIVERED: &str = vocabulary::BROKER_REDELIVERED.name;
/// `tailwater_broker_acked_total`.
pub const ACKED: &str = vocabulary::BROKER_ACKED.name;
/// `tailwater_broker_failed_total`.
pub const FAILED: &str = vocabulary::BROKER_FAILED.name;

/// Every metric name above, for vocabulary checks.
pub const ALL: [&str; 9] = [
    LAG,
    LAG_GROWTH,
    PENDING,
    IN_FLIGHT,
    LIMIT,
    DELIVERED,
    REDELIVERED,
    ACKED,
    FAILED,
];

#[cfg_attr(
    not(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq")),
    allow(dead_code)
)]
pub(crate) fn record(broker: &'static str, stream: &str, group: &str, s: &super::ConsumerStats) {
    let labels = [
        ("broker", broker.to_owned()),
        ("stream", stream.to_owned()),
        ("group", group.to_owned()),
    ];
    if let Some(lag) = s.lag {
        ::metrics::gauge!(LAG, &labels).set(lag as f64);
    }
    if let Some(g) = s.lag_growth_per_second {
        ::metrics::gauge!(LAG_GROWTH, &labels).set(g);
    }
    if let Some(p) = s.pending {
        ::metrics::gauge!(PENDING, &labels).set(p as f64);
    }
    ::metrics::gauge!(IN_FLIGHT, &labels).set(s.in_flight as f64);
    ::metrics::gauge!(LIMIT, &labels).set(s.limit as f64);
    ::metrics::counter!(DELIVERED, &labels).absolute(s.delivered);
    ::metrics::counter!(REDELIVERED, &labels).absolute(s.redelivered);
    ::metrics::counter!(ACKED, &labels).absolute(s.acked);
    ::metrics::counter!(FAILED, &labels).absolute(s.failed);
}
