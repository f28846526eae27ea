//! Connecting, and RabbitMQ's side of the consumer driver: the prefetch window, deliveries,
//! acknowledgements and lag.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use super::{Message, RabbitConfig};
use crate::broker::BrokerError;
use crate::broker::driver::{Broker, Fetched, Settle, call};

/// The prefetch for a limiter at `limit`: the limit, within 1 and `max`.
pub(super) fn prefetch_for(limit: usize, max: u16) -> u16 {
    u16::try_from(limit)
        .unwrap_or(u16::MAX)
        .clamp(1, max.max(1))
}

/// The RabbitMQ side of a consumer: its connection (closed when dropped, so that a killed
/// consumer's messages go back to the queue), channel and consumer.
pub(super) struct Rabbit {
    // Held so the connection lives as long as the consumer.
    _connection: Connection,
    channel: Channel,
    consumer: Consumer,
    config: RabbitConfig,
    prefetch: u16,
}

impl Rabbit {
    /// Connects, opens a channel, declares the queue (if asked), sets the prefetch and
    /// starts consuming with manual acknowledgements.
    pub(super) async fn connect(
        url: &str,
        config: RabbitConfig,
        prefetch: u16,
    ) -> Result<Self, BrokerError> {
        let timeout = config.common.call_timeout;
        let connection = call(
            "connect",
            timeout,
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await?;
        let channel = call("channel.open", timeout, connection.create_channel()).await?;
        let options = if config.declare {
            QueueDeclareOptions::durable()
        } else {
            QueueDeclareOptions::durable().passive()
        };
        call(
            "queue.declare",
            timeout,
            channel.queue_declare(config.queue.as_str().into(), options, FieldTable::default()),
        )
        .await?;
        set_qos(&channel, prefetch, timeout).await?;
        let consumer = call(
            "basic.consume",
            timeout,
            channel.basic_consume(
                config.queue.as_str().into(),
                config.consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(Self {
            _connection: connection,
            channel,
            consumer,
            config,
            prefetch,
        })
    }

    fn settle(delivery: lapin::message::Delivery, timeout: Duration) -> (Message, Ack) {
        let msg = Message {
            routing_key: delivery.routing_key.to_string(),
            payload: delivery.data,
            delivery_tag: delivery.delivery_tag,
            redelivered: delivery.redelivered,
        };
        let ack = Ack {
            acker: delivery.acker,
            timeout,
        };
        (msg, ack)
    }
}

/// `basic.qos` for the whole channel (`global`): RabbitMQ applies a channel's prefetch to
/// its running consumers at once, a per-consumer one only to consumers started after it.
async fn set_qos(channel: &Channel, prefetch: u16, timeout: Duration) -> Result<(), BrokerError> {
    call(
        "basic.qos",
        timeout,
        channel.basic_qos(prefetch, BasicQosOptions { global: true }),
    )
    .await
}

/// One delivery's acknowledgement: `basic.ack`, or `basic.nack` with requeue.
pub(super) struct Ack {
    acker: lapin::Acker,
    timeout: Duration,
}

impl Settle for Ack {
    async fn ack(self) -> Result<(), BrokerError> {
        let sent = call(
            "basic.ack",
            self.timeout,
            self.acker.ack(BasicAckOptions::default()),
        )
        .await?;
        sent.then_some(()).ok_or(BrokerError::Protocol {
            op: "basic.ack",
            detail: "the delivery was already settled or its channel closed".to_owned(),
        })
    }

    async fn nack(self) -> Result<(), BrokerError> {
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        call("basic.nack", self.timeout, self.acker.nack(options))
            .await
            .map(drop)
    }
}

impl Broker for Rabbit {
    type Message = Message;
    type Settle = Ack;

    async fn limit_changed(&mut self, limit: usize) -> Result<(), BrokerError> {
        let prefetch = prefetch_for(limit, self.config.prefetch);
        if prefetch != self.prefetch {
            set_qos(&self.channel, prefetch, self.config.common.call_timeout).await?;
            self.prefetch = prefetch;
        }
        Ok(())
    }

    async fn fetch(
        &mut self,
        n: usize,
        deliver: &mut (dyn FnMut(Message, Ack) + Send),
    ) -> Result<Fetched, BrokerError> {
        let timeout = self.config.common.call_timeout;
        // The first delivery may take up to `wait`; the rest of the batch is what the broker
        // has already pushed (at most the prefetch), taken without waiting.
        let Ok(first) = tokio::time::timeout(self.config.wait, self.consumer.next()).await else {
            return Ok(Fetched::default());
        };
        let (mut next, mut got) = (first, 0);
        loop {
            match next {
                Some(Ok(delivery)) => {
                    let (msg, ack) = Self::settle(delivery, timeout);
                    deliver(msg, ack);
                    got += 1;
                }
                Some(Err(e)) => {
                    return Err(BrokerError::Broker {
                        op: "basic.deliver",
                        reason: e.to_string(),
                    });
                }
                None => {
                    return Err(BrokerError::Broker {
                        op: "basic.deliver",
                        reason: "the broker cancelled the consumer".to_owned(),
                    });
                }
            }
            if got >= n {
                break;
            }
            match self.consumer.next().now_or_never() {
                Some(item) => next = item,
                None => break,
            }
        }
        Ok(Fetched::default())
    }

    async fn lag(&mut self) -> Result<(Option<u64>, Option<u64>), BrokerError> {
        let queue = call(
            "queue.declare",
            self.config.common.call_timeout,
            self.channel.queue_declare(
                self.config.queue.as_str().into(),
                QueueDeclareOptions::durable().passive(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok((Some(u64::from(queue.message_count())), None))
    }
}
