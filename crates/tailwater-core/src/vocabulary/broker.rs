//! The metrics of `tailwater-stream`'s broker consumers (Redis Streams, NATS JetStream,
//! RabbitMQ).

use super::Emitters::Stream;
use super::Kind::{Counter, Gauge};
use super::{Metric, m};

/// The labels of every broker consumer metric: `broker` (`redis`, `nats` or `rabbitmq`),
/// `stream` (the stream, or RabbitMQ's queue) and `group` (the consumer group, NATS's
/// durable consumer, or RabbitMQ's queue).
const BROKER_LABELS: &[&str] = &["broker", "stream", "group"];
/// A broker consumer's lag.
pub const BROKER_LAG: Metric = m(
    "tailwater_broker_lag_messages",
    Gauge,
    "messages",
    BROKER_LABELS,
    "Messages in the stream or queue not yet delivered to the group, at the last sample.",
    Stream,
);
/// How fast a broker consumer's lag grows.
pub const BROKER_LAG_GROWTH: Metric = m(
    "tailwater_broker_lag_growth_per_second",
    Gauge,
    "messages per second",
    BROKER_LABELS,
    "The lag's growth between the last two samples (negative while catching up).",
    Stream,
);
/// Messages delivered to a group and not acknowledged.
pub const BROKER_PENDING: Metric = m(
    "tailwater_broker_pending_messages",
    Gauge,
    "messages",
    BROKER_LABELS,
    "Messages delivered to the group and not yet acknowledged (not reported by RabbitMQ).",
    Stream,
);
/// Messages in a consumer's handlers.
pub const BROKER_IN_FLIGHT: Metric = m(
    "tailwater_broker_in_flight_messages",
    Gauge,
    "messages",
    BROKER_LABELS,
    "Messages in this consumer's handlers now.",
    Stream,
);
/// A consumer's limit.
pub const BROKER_FETCH_LIMIT: Metric = m(
    "tailwater_broker_fetch_limit",
    Gauge,
    "messages",
    BROKER_LABELS,
    "The consumer's limiter limit: the most messages it holds (and RabbitMQ's prefetch).",
    Stream,
);
/// Messages handed to a consumer's handler.
pub const BROKER_DELIVERED: Metric = m(
    "tailwater_broker_delivered_total",
    Counter,
    "messages",
    BROKER_LABELS,
    "Messages handed to the handler, first deliveries and redeliveries.",
    Stream,
);
/// Redeliveries.
pub const BROKER_REDELIVERED: Metric = m(
    "tailwater_broker_redelivered_total",
    Counter,
    "messages",
    BROKER_LABELS,
    "Of the messages delivered, those the broker had delivered before.",
    Stream,
);
/// Acknowledgements.
pub const BROKER_ACKED: Metric = m(
    "tailwater_broker_acked_total",
    Counter,
    "messages",
    BROKER_LABELS,
    "Messages acknowledged after their handler succeeded.",
    Stream,
);
/// Handler failures.
pub const BROKER_FAILED: Metric = m(
    "tailwater_broker_failed_total",
    Counter,
    "messages",
    BROKER_LABELS,
    "Handler failures: the message was left or sent back for redelivery.",
    Stream,
);
