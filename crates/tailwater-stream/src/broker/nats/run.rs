//! Connecting, and NATS's side of the consumer driver: pull requests, acknowledgements
//! and lag.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;

use super::{JetStreamConfig, Message};
use crate::broker::BrokerError;
use crate::broker::driver::{Broker, Fetched, Settle, call};

/// Connects, finds the stream and gets (or creates) the durable pull consumer.
pub(super) async fn connect(
    url: &str,
    config: &JetStreamConfig,
) -> Result<PullConsumer, BrokerError> {
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(config.common.call_timeout)
        .request_timeout(Some(config.common.call_timeout));
    let client = call("connect", config.common.call_timeout, options.connect(url)).await?;
    let js = jetstream::new(client);
    let stream = call(
        "get_stream",
        config.common.call_timeout,
        js.get_stream(&config.stream),
    )
    .await?;
    let consumer = pull::Config {
        durable_name: Some(config.durable.clone()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        // Checked to fit at validation.
        max_ack_pending: i64::try_from(config.max_ack_pending).unwrap_or(i64::MAX),
        filter_subject: config.filter_subject.clone(),
        ..Default::default()
    };
    call(
        "get_or_create_consumer",
        config.common.call_timeout,
        stream.get_or_create_consumer(&config.durable, consumer),
    )
    .await
}

/// The NATS side of a consumer: the durable pull consumer and the settings of its pulls.
pub(super) struct Nats {
    pub(super) consumer: PullConsumer,
    pub(super) config: JetStreamConfig,
}

/// A delivered message's reply subject: `+ACK` (confirmed) or `-NAK`.
pub(super) struct Ack {
    acker: async_nats::jetstream::message::Acker,
    nak: AckKind,
    timeout: Duration,
}

impl Settle for Ack {
    async fn ack(self) -> Result<(), BrokerError> {
        call("ack", self.timeout, self.acker.double_ack()).await
    }

    async fn nack(self) -> Result<(), BrokerError> {
        call("nak", self.timeout, self.acker.ack_with(self.nak)).await
    }
}

impl Nats {
    fn message(&self, msg: jetstream::Message) -> (Message, Ack) {
        let (stream_sequence, delivered) = match msg.info() {
            Ok(info) => (
                info.stream_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
            ),
            // Not a JetStream delivery subject: handled as a first delivery.
            Err(_) => (0, 1),
        };
        let (message, acker) = msg.split();
        let msg = Message {
            subject: message.subject.to_string(),
            payload: message.payload,
            stream_sequence,
            delivered,
        };
        let nak = if self.config.nak_delay.is_zero() {
            AckKind::Nak(None)
        } else {
            AckKind::Nak(Some(self.config.nak_delay))
        };
        let ack = Ack {
            acker,
            nak,
            timeout: self.config.common.call_timeout,
        };
        (msg, ack)
    }
}

impl Broker for Nats {
    type Message = Message;
    type Settle = Ack;

    async fn fetch(
        &mut self,
        n: usize,
        deliver: &mut (dyn FnMut(Message, Ack) + Send),
    ) -> Result<Fetched, BrokerError> {
        let mut batch = call(
            "pull request",
            self.config.common.call_timeout,
            self.consumer
                .batch()
                .max_messages(n)
                .expires(self.config.expires)
                .messages(),
        )
        .await?;
        // The batch ends when `n` messages came, or at the server's timeout status after
        // `expires` (after which the server sends nothing more for this request); our own
        // deadline only guards against a lost status.
        let wait = self.config.expires + self.config.common.call_timeout;
        let (mut got, mut refused) = (0usize, false);
        while let Ok(Some(next)) = tokio::time::timeout(wait, batch.next()).await {
            let Ok(msg) = next else {
                // A status other than a timeout (409: max_ack_pending reached, too many
                // waiting pulls, ...) ends this pull request; the driver asks again.
                refused = true;
                break;
            };
            got += 1;
            let (msg, ack) = self.message(msg);
            deliver(msg, ack);
        }
        // Refused at once: wait one `expires` (or a stop) before asking again, so a
        // refusing server is not asked in a tight loop.
        let backoff = (refused && got == 0).then_some(self.config.expires);
        Ok(Fetched { backoff })
    }

    async fn lag(&mut self) -> Result<(Option<u64>, Option<u64>), BrokerError> {
        let info = call(
            "consumer info",
            self.config.common.call_timeout,
            self.consumer.get_info(),
        )
        .await?;
        Ok((Some(info.num_pending), Some(info.num_ack_pending as u64)))
    }
}
